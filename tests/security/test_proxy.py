"""Advoware proxy attacks through the real stack (issue #14, "The Advoware proxy"): the stand-in
engine and the real motia worker over src/steps, the Advoware simulator behind a small front
that stands where Advoware's API base is (it passes everything on to the simulator, except one
path that answers with a redirect to an "internal" server), a Redis database of its own.

- Scope: the diagnostic handlers (elmah.axd, trace.axd), the configurator, the token endpoint,
  paths outside ADVOWARE_PROXY_ALLOWED_PREFIXES and methods an entry does not allow → 403;
  nothing reaches Advoware.
- Named callers: several tokens at once (rotation), each caller's name in the log, no token.
- Guessing tokens: failed authentication is limited per client address → 429 with
  Retry-After, even for the right token from that address; other addresses go on.
- A redirect from Advoware is never followed → 502; the internal server is never asked.
- An endpoint that always answers 401 cannot make the service log in to the gateway on every
  request (the simulator counts the logins).
- Every answer carries `X-Content-Type-Options: nosniff` and a restrictive CSP.
- The Advoware token in Redis is sealed (not readable without the API key).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from iii_local.testing import MotiaTester, Response
from services.clients.advoware.sealed import TokenSeal
from services.platform.settings import load_settings
from simulators.runner import RunningApp, start_app
from simulators.sandbox import Simulators, start_simulators
from tests.e2e import ROOT, stack_env
from tests.reliability.private_stack import db_url, flush_redis

PROXY_DB = 14
DEFAULT = "default-caller-token-0123456789abcdef"  # ADVOWARE_PROXY_TOKEN (the caller `default`)
CRM = "crm-caller-token-0123456789abcdef01234"
CALENDAR = "calendar-caller-token-0123456789abcdef"
ALLOWED = "GET:api/v1/advonet/Mitarbeiter,GET|POST|PUT|DELETE:api/v1/advonet/Beteiligte,GET:api/v1/Akten"
FAILURE_LIMIT = 5
MITARBEITER = "api/v1/advonet/Mitarbeiter"
REDIRECTING = "api/v1/Akten/302"
ALWAYS_401 = "api/v1/Akten/401"
TOKEN_CACHE_KEY = "advoware:token"
HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class ProxyStack:
    engine: MotiaTester
    sims: Simulators
    internal_hits: list[str] = field(default_factory=list)

    async def proxy(self, method: str, endpoint: str, token: str | None = DEFAULT, *, address: str | None = None,
                    json_body: Any = None, **params: str) -> Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if address is not None:
            headers["X-Forwarded-For"] = f"198.18.0.1, {address}"  # the last entry is what nginx appends
        return await self.engine.request(method, "/advoware/proxy", params={"endpoint": endpoint, **params},
                                         headers=headers, json_body=json_body)

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as s:
            async with s.request(method, self.sims.advoware.url + path, json=body) as r:
                assert r.status < 400, await r.text()
                return await r.json()

    async def advoware_log(self, since: float) -> list[dict[str, Any]]:
        return [r for r in await self.sim("GET", "/_sim/requests") if r["ts"] >= since]

    async def logins(self) -> int:
        return len(await self.sim("GET", "/_sim/requests?path=(?i)^/api/v1/Token$&method=POST"))


async def start_front(upstream: str, internal: str) -> RunningApp:
    """Advoware's API base as the proxy sees it: the simulator, and one path redirecting to `internal`."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(internal + "/admin/secrets")

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        async with session.request(request.method, upstream + request.path_qs, headers=headers,
                                   data=await request.read(), allow_redirects=False) as r:
            body = await r.read()
            return web.Response(status=r.status, body=body,
                                headers={k: v for k, v in r.headers.items() if k.lower() not in HOP})

    async def close(_: web.Application) -> None:
        await session.close()

    app = web.Application()
    app.router.add_route("*", "/" + REDIRECTING, redirect)
    app.router.add_route("*", "/{tail:.*}", forward)
    app.on_cleanup.append(close)
    return await start_app(app)


@pytest.fixture(scope="module")
async def proxy_stack(redis_url: str) -> AsyncIterator[ProxyStack]:
    url = db_url(redis_url, PROXY_DB)
    await flush_redis(url)
    env = stack_env(url)
    engine = MotiaTester(ROOT / "src" / "steps", queue_defaults={"backoff_ms": 200})
    sims = await start_simulators(load_settings(dict(env)), demo=False, engine_url=engine.base_url, use_configured_ports=False)
    stack = ProxyStack(engine, sims)

    async def internal_page(request: web.Request) -> web.Response:
        stack.internal_hits.append(request.path)
        return web.json_response({"page": "INTERNAL-ADMIN-PAGE"})

    internal_app = web.Application()
    internal_app.router.add_route("*", "/{tail:.*}", internal_page)
    internal = await start_app(internal_app)
    front = await start_front(sims.advoware.url, internal.url)
    engine.env = {
        **env,
        **sims.env(),
        "ADVOWARE_API_BASE_URL": front.url + "/",
        "ADVOWARE_PROXY_TOKEN": DEFAULT,
        "ADVOWARE_PROXY_TOKENS": f"crm:{CRM},calendar:{CALENDAR}",
        "ADVOWARE_PROXY_ALLOWED_PREFIXES": ALLOWED,
        "ADVOWARE_PROXY_AUTH_FAILURE_LIMIT": str(FAILURE_LIMIT),
        "ADVOWARE_PROXY_AUTH_FAILURE_WINDOW_SECONDS": "60",
        "ADVOWARE_TOKEN_MIN_REFRESH_SECONDS": "30",
    }
    try:
        await engine.start(wait_functions=1, timeout=60)
        yield stack
    finally:
        await engine.stop()
        await front.stop()
        await internal.stop()
        await sims.stop()


async def test_paths_outside_the_scope_are_refused_and_never_reach_advoware(proxy_stack: ProxyStack) -> None:
    started = time.time()
    ok = await proxy_stack.proxy("GET", MITARBEITER)
    assert ok.status == 200, ok.text  # the scope lets this through: the refusals below are the scope's
    attempts = [
        ("GET", "elmah.axd"), ("GET", "elmah.axd/detail"), ("GET", "trace.axd"), ("GET", "Trace.axd"),
        ("GET", "api/v1/advonet/elmah.axd"), ("GET", "WebResource.axd"), ("GET", "elmah"),
        ("GET", "AdvonetConfigurator/api/Url"), ("GET", "api/v1/Token"), ("POST", "api/v1/Token"),
        ("GET", "api/v1/advonet/TermineActiveSync"),  # below no allowed prefix
        ("POST", MITARBEITER), ("DELETE", f"{MITARBEITER}/1"), ("PUT", "api/v1/Akten/1"),  # a method the entry does not allow
    ]
    for method, endpoint in attempts:
        r = await proxy_stack.proxy(method, endpoint, json_body={"x": 1} if method in ("POST", "PUT") else None,
                                    Kanzlei="sandbox")
        assert r.status == 403, (method, endpoint, r.status, r.text[:200])
        assert r.json()["error"].startswith("endpoint not allowed"), r.json()
    reached = [x for x in await proxy_stack.advoware_log(started) if not x["path"].lower().endswith("/mitarbeiter")
               and x["path"].lower() != "/api/v1/token"]
    assert reached == [], f"refused requests reached Advoware: {reached[:3]}"


async def test_named_callers_rotate_and_are_named_in_the_log(proxy_stack: ProxyStack) -> None:
    marker = uuid.uuid4().hex[:8]
    for token in (DEFAULT, CRM, CALENDAR):  # three valid at once: a token is replaced without downtime
        r = await proxy_stack.proxy("GET", MITARBEITER, token, m=marker)
        assert r.status == 200, r.text
    for token in (CRM[:-1], CRM + "x", "crm", CALENDAR.upper()):
        assert (await proxy_stack.proxy("GET", MITARBEITER, token, address="192.0.2.200")).status == 401
    logs = await proxy_stack.engine.logs(wait_for="(caller calendar)", timeout=10)
    callers = {(line.get("fields") or {}).get("caller") for line in logs if "advoware proxy GET" in str(line.get("message"))}
    assert {"default", "crm", "calendar"} <= callers, callers
    dumped = json.dumps(logs, default=str)
    assert all(token not in dumped for token in (DEFAULT, CRM, CALENDAR))


async def test_guessing_tokens_is_limited_per_client_address(proxy_stack: ProxyStack) -> None:
    attacker, neighbour = "203.0.113.10", "203.0.113.11"
    statuses = [(await proxy_stack.proxy("GET", MITARBEITER, f"guess-{i}-{uuid.uuid4().hex}", address=attacker)).status
                for i in range(FAILURE_LIMIT)]
    assert statuses == [401] * FAILURE_LIMIT
    blocked = await proxy_stack.proxy("GET", MITARBEITER, "guess-again-" + uuid.uuid4().hex, address=attacker)
    assert blocked.status == 429, blocked.text
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    right_token = await proxy_stack.proxy("GET", MITARBEITER, CRM, address=attacker)
    assert right_token.status == 429  # nothing is compared for a blocked address
    assert (await proxy_stack.proxy("GET", MITARBEITER, CRM, address=neighbour)).status == 200
    assert (await proxy_stack.proxy("GET", MITARBEITER, CRM)).status == 200  # a direct caller is another address


async def test_a_redirect_from_advoware_is_never_followed(proxy_stack: ProxyStack) -> None:
    r = await proxy_stack.proxy("GET", REDIRECTING)
    assert r.status == 502, (r.status, r.text[:300])
    assert "redirect (302)" in r.json()["error"] and "INTERNAL" not in r.text
    assert "Location" not in r.headers
    assert proxy_stack.internal_hits == [], "the proxy followed Advoware's redirect to an internal address"


async def test_an_endpoint_answering_401_cannot_make_the_service_log_in_per_request(proxy_stack: ProxyStack) -> None:
    assert (await proxy_stack.proxy("GET", MITARBEITER)).status == 200  # a token is held
    fault = await proxy_stack.sim("POST", "/_sim/faults", {"path": "(?i)^/" + ALWAYS_401 + "$", "status": 401,
                                                          "body": {"Message": "Keine Berechtigung"}})
    try:
        before = await proxy_stack.logins()
        sequential = [(await proxy_stack.proxy("GET", ALWAYS_401)).status for _ in range(15)]
        concurrent = await asyncio.gather(*(proxy_stack.proxy("GET", ALWAYS_401, n=str(i)) for i in range(15)))
        assert sequential == [401] * 15 and [r.status for r in concurrent] == [401] * 15
        assert concurrent[0].json() == {"Message": "Keine Berechtigung"}  # Advoware's answer, passed on
        logins = await proxy_stack.logins() - before
        assert logins <= 1, f"30 answers of 401 caused {logins} gateway logins"
    finally:
        await proxy_stack.sim("DELETE", f"/_sim/faults/{fault['id']}")
    assert (await proxy_stack.proxy("GET", MITARBEITER)).status == 200


async def test_every_answer_is_nosniff_with_a_restrictive_csp(proxy_stack: ProxyStack) -> None:
    answers = {
        "Advoware's 200": await proxy_stack.proxy("GET", MITARBEITER),
        "Advoware's 404": await proxy_stack.proxy("GET", "api/v1/advonet/Beteiligte/987654321"),
        "401": await proxy_stack.proxy("GET", MITARBEITER, "wrong-" + uuid.uuid4().hex, address="192.0.2.201"),
        "400": await proxy_stack.proxy("GET", "../etc/passwd"),
        "403": await proxy_stack.proxy("GET", "elmah.axd"),
        "502": await proxy_stack.proxy("GET", REDIRECTING),
    }
    for name, r in answers.items():
        headers = {k.lower(): v for k, v in r.headers.items()}
        assert headers.get("x-content-type-options") == "nosniff", name
        csp = headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "sandbox" in csp, (name, csp)
    assert answers["Advoware's 200"].headers["Content-Type"].startswith("application/json")


async def test_the_advoware_token_in_redis_is_sealed(proxy_stack: ProxyStack, redis_url: str) -> None:
    assert (await proxy_stack.proxy("GET", MITARBEITER)).status == 200
    client = aioredis.from_url(db_url(redis_url, PROXY_DB))
    try:
        raw = await client.get(TOKEN_CACHE_KEY)
    finally:
        await client.aclose()
    assert raw, "the token is shared through Redis"
    stored = json.loads(raw)
    assert "access_token" not in stored and stored["v"] == 2
    api_key = load_settings(dict(proxy_stack.engine.env)).advoware.api_key_bytes()
    opened = TokenSeal(api_key, TOKEN_CACHE_KEY).open(raw)
    assert opened is not None
    assert json.loads(opened)["access_token"].encode() not in raw
