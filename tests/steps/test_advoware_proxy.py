"""End to end: /advoware/proxy through the stand-in engine and the real worker against the
Advoware simulator (round trips, pass-through, token refresh, shared token fetch, attack
corpus, caller auth, upstream failures)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import redis.asyncio as aioredis
from yarl import URL

from iii_local.testing import MotiaTester, Response
from services.clients.advoware.sealed import TokenSeal
from services.platform.settings import load_settings
from simulators.sandbox import Simulators
from tests.steps.conftest import PROXY_TOKEN

TERMINE = "api/v1/advonet/TermineActiveSync"
BETEILIGTE = "api/v1/advonet/Beteiligte"
TOKEN_CACHE_KEY = "advoware:token"
AUTH = {"Authorization": f"Bearer {PROXY_TOKEN}"}


async def token_grows_old(stack: MotiaTester) -> None:
    """Wait until the worker's Advoware token is older than ADVOWARE_TOKEN_MIN_REFRESH_SECONDS
    (tests/e2e.py), so a 401 may replace it (a younger one is kept: tests/security/test_proxy.py)."""
    await asyncio.sleep(float(stack.env["ADVOWARE_TOKEN_MIN_REFRESH_SECONDS"]) + 0.2)


async def proxy(
    stack: MotiaTester,
    method: str,
    endpoint: str,
    *,
    json_body: Any = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return await stack.request(
        method, "/advoware/proxy", json_body=json_body, params={"endpoint": endpoint, **(params or {})},
        headers={**AUTH, **(headers or {})},
    )


async def raw_request(stack: MotiaTester, method: str, query: str, headers: dict[str, str] | None = None) -> Response:
    """A request whose query string goes on the wire exactly as given (no re-encoding)."""
    url = URL(f"{stack.base_url}/advoware/proxy?{query}", encoded=True)
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, headers=headers or {}) as r:
            return Response(r.status, dict(r.headers), await r.read())


async def sim_get(sims: Simulators, path: str) -> Any:
    async with aiohttp.ClientSession() as s:
        async with s.get(sims.advoware.url + path) as r:
            return await r.json()


async def sim_post(sims: Simulators, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s:
        async with s.post(sims.advoware.url + path, json=body) as r:
            return await r.json()


async def token_requests(sims: Simulators) -> int:
    return len(await sim_get(sims, "/_sim/requests?path=(?i)/api/v1/Token$&method=POST"))


async def sim_log(sims: Simulators, path_re: str = ".*") -> list[dict[str, Any]]:
    return await sim_get(sims, "/_sim/requests?path=" + quote(path_re, safe=""))


def termin(text: str) -> dict[str, Any]:
    return {"Text": text, "Datum": "2031-03-04T10:00:00Z", "UhrzeitBis": "11:00:00", "Anwalt": "ZZ", "Ort": "Büro"}


async def test_every_method_round_trips_with_query_and_body(stack: MotiaTester, sims: Simulators) -> None:
    text = f"proxy-{uuid.uuid4().hex[:8]}"
    created = await proxy(stack, "POST", TERMINE, json_body=termin(text))
    assert created.status == 200, created.text
    frnr = created.json()
    assert isinstance(frnr, int)

    listed = await proxy(stack, "GET", TERMINE, params={"from": "2031-03-01", "to": "2031-03-31", "kuerzel": "ZZ"})
    assert listed.status == 200 and listed.headers["Content-Type"].startswith("application/json")
    assert [t["FrNr"] for t in listed.json() if t["Text"] == text] == [frnr]

    changed = await proxy(stack, "PUT", TERMINE, params={"frnr": str(frnr)}, json_body={**termin(text), "Ort": "Gericht"})
    assert changed.status == 200 and changed.json()["Ort"] == "Gericht"
    one = await proxy(stack, "GET", TERMINE, params={"frnr": str(frnr)})
    assert one.json()["Ort"] == "Gericht" and one.json()["Text"] == text

    deleted = await proxy(stack, "DELETE", TERMINE, params={"frnr": str(frnr)})
    assert deleted.status == 200
    gone = await proxy(stack, "GET", TERMINE, params={"frnr": str(frnr)})
    assert gone.status == 404 and "nicht gefunden" in gone.json()["Message"]

    # the query reached Advoware as sent; the caller's own headers did not
    log = await sim_log(sims, "(?i)TermineActiveSync")
    assert any(r["method"] == "PUT" and r["query"] == f"frnr={frnr}" for r in log)
    assert any(r["method"] == "GET" and "kuerzel=ZZ" in r["query"] and "from=2031-03-01" in r["query"] for r in log)
    assert all("endpoint" not in r["query"] for r in log)


async def test_json_is_taken_parsed_and_other_bodies_raw(stack: MotiaTester, sims: Simulators) -> None:
    """Engine 0.8.3 (modules/rest_api/views.rs 246-289): a JSON body arrives parsed while the
    request channel stays open and empty until the answer (reading it would cost the whole
    request timeout); other content types stream the raw bytes, which go on unchanged."""
    name = f"Raw-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    created = await proxy(stack, "POST", BETEILIGTE, json_body={"Vorname": "Jörg", "Name": name})
    assert created.status == 201, created.text
    assert time.monotonic() - started < 5, "the proxy waited on the request channel of a JSON request"
    assert created.json()["Name"] == name and created.json()["Vorname"] == "Jörg"

    doc = ('{"Name": "' + name + '-raw",\n  "Vorname": "J\\u00f6rg", "Ort": "Köln"}').encode()
    r = await stack.request("POST", "/advoware/proxy", data=doc, params={"endpoint": BETEILIGTE},
                            headers={**AUTH, "Content-Type": "text/plain; charset=utf-8"})
    assert r.status == 201, r.text
    assert r.json()["Name"] == f"{name}-raw" and r.json()["Vorname"] == "Jörg" and r.json()["Ort"] == "Köln"
    posts = [x for x in await sim_log(sims, "(?i)/advonet/beteiligte$") if x["method"] == "POST"]
    assert any({k.lower(): v for k, v in x["headers"].items()}.get("content-type") == "text/plain; charset=utf-8" for x in posts)


async def test_beteiligte_round_trip_and_status_pass_through(stack: MotiaTester, sims: Simulators) -> None:
    name = f"Proxy-{uuid.uuid4().hex[:8]}"
    created = await proxy(stack, "POST", BETEILIGTE, json_body={"Name": name, "Vorname": "Jörg"},
                          headers={"Cookie": "sid=1", "X-Caller-Secret": "s3cr3t"})
    assert created.status == 201, created.text  # Advoware's own status
    betnr = created.json()["BetNr"]
    assert created.json()["Vorname"] == "Jörg"
    found = await proxy(stack, "GET", BETEILIGTE, params={"name": name})
    assert [p["BetNr"] for p in found.json()] == [betnr]
    put = await proxy(stack, "PUT", f"{BETEILIGTE}/{betnr}", json_body={"Name": name, "Ort": "Köln"})
    assert put.status == 200 and put.json()["Ort"] == "Köln"
    assert (await proxy(stack, "DELETE", f"{BETEILIGTE}/{betnr}")).status == 200
    missing = await proxy(stack, "GET", f"/{BETEILIGTE}/{betnr}/")
    assert missing.status == 404
    invalid = await proxy(stack, "POST", BETEILIGTE, json_body={"Vorname": "ohne Name"})
    assert invalid.status == 400 and "Name" in invalid.json()["Message"]

    posts = [r for r in await sim_log(sims, "(?i)/advonet/beteiligte$") if r["method"] == "POST"]
    assert posts
    for r in posts:
        names = {k.lower() for k in r["headers"]}
        assert "cookie" not in names and "x-caller-secret" not in names


async def test_injected_upstream_errors_pass_through(stack: MotiaTester, sims_reset: Simulators) -> None:
    betnr = 900000 + uuid.uuid4().int % 90000
    await sim_post(sims_reset, "/_sim/faults", {"path": f"/Beteiligte/{betnr}$", "method": "GET", "status": 503, "retry_after": 7,
                                                "body": {"Message": "Wartung"}})
    r = await proxy(stack, "GET", f"{BETEILIGTE}/{betnr}")
    assert r.status == 503 and r.json() == {"Message": "Wartung"}
    assert r.headers.get("Retry-After") == "7"
    assert len(await sim_log(sims_reset, f"/Beteiligte/{betnr}$")) == 1  # passed through, not retried
    await sim_post(sims_reset, "/_sim/faults", {"path": f"/Beteiligte/{betnr}$", "method": "PUT", "status": 409,
                                                "body": {"Message": "Konflikt"}})
    r = await proxy(stack, "PUT", f"{BETEILIGTE}/{betnr}", json_body={"Name": "x"})
    assert r.status == 409 and r.json() == {"Message": "Konflikt"}


async def test_expired_token_is_refreshed_once(stack: MotiaTester, sims: Simulators) -> None:
    endpoint = f"{BETEILIGTE}/{800000 + uuid.uuid4().int % 90000}"
    assert (await proxy(stack, "GET", endpoint)).status == 404  # warm: a token exists
    await token_grows_old(stack)
    before = await token_requests(sims)
    await sim_post(sims, "/_sim/expire-tokens")
    r = await proxy(stack, "GET", endpoint)
    assert r.status == 404 and "nicht gefunden" in r.json()["Message"]  # the real answer, not a 401
    assert await token_requests(sims) == before + 1
    statuses = [x["status"] for x in await sim_log(sims, endpoint.split("/", 3)[3] + "$")]
    assert statuses[-2:] == [401, 404]


async def test_concurrent_requests_share_one_token_fetch(stack: MotiaTester, sims: Simulators, redis_url: str) -> None:
    r = await proxy(stack, "GET", TERMINE, params={"from": "2031-01-01", "to": "2031-01-02"})
    assert r.status == 200
    await token_grows_old(stack)
    await sim_post(sims, "/_sim/expire-tokens")
    client = aioredis.from_url(redis_url)
    try:
        await client.delete(TOKEN_CACHE_KEY)
    finally:
        await client.aclose()
    before = await token_requests(sims)
    results = await asyncio.gather(
        *(proxy(stack, "GET", TERMINE, params={"from": "2031-01-01", "to": "2031-01-02", "n": str(i)}) for i in range(50))
    )
    assert [x.status for x in results] == [200] * 50
    assert await token_requests(sims) == before + 1


def attack_queries(marker: str, sim_url: str) -> list[str]:
    """Wire-level query strings (already encoded as an attacker would send them)."""
    host = sim_url.split("://", 1)[1]
    raw = [
        f"endpoint={quote(f'{sim_url}/{BETEILIGTE}/{marker}', safe='')}",  # absolute URL (to Advoware itself)
        f"endpoint=http://evil.example/{marker}",
        f"endpoint={quote(f'//{host}/{BETEILIGTE}/{marker}', safe='')}",  # scheme-relative
        f"endpoint=//evil.example/{marker}",
        f"endpoint=%2e%2e/%2e%2e/{marker}",  # engine decodes once: ../../
        f"endpoint=%252e%252e/{marker}",  # double-encoded
        f"endpoint=api/v1/%252e%252e%252f%252e%252e/{marker}",
        f"endpoint=..%5c..%5c{marker}",  # ..\\
        f"endpoint=api\\..\\{marker}",
        f"endpoint=%40evil.example/{marker}",
        f"endpoint=api@evil.example/{marker}",
        f"endpoint=api/v1/{marker}%0d%0aHost:%20evil.example",  # header/newline injection
        f"endpoint=api/v1/{marker}%250d%250aX-Injected:1",
        f"endpoint=api/v1/{marker}%00",
        "endpoint=api/" + "a/" * 2500 + marker,  # very long path
        f"endpoint=api/v1/Token%3F{marker}",
        f"m={marker}",  # no endpoint at all
    ]
    return [q if f"m={marker}" in q else q + f"&m={marker}" for q in raw]


FORBIDDEN = ["endpoint=api/v1/Token", "endpoint=elmah.axd", "endpoint=AdvonetConfigurator/api/Url",
             "endpoint=api/v1/advonet/Mitarbeiter/trace.axd"]
"""Safe paths outside the proxy's scope: 403 (services.proxy.endpoint; tests/security/test_proxy.py)."""


async def test_attack_corpus_is_refused_before_any_request(stack: MotiaTester, sims: Simulators) -> None:
    marker = f"zz{uuid.uuid4().hex[:10]}"
    queries = attack_queries(marker, sims.advoware.url)
    queries += [f"{q}&m={marker}" for q in FORBIDDEN]
    results = await asyncio.gather(*(raw_request(stack, method, q, AUTH) for q in queries for method in ("GET", "POST")))
    for q, r in zip([q for q in queries for _ in (0, 1)], results):
        scope = q.split("&")[0] in FORBIDDEN
        assert r.status == (403 if scope else 400), (q[:120], r.status, r.text[:300])
        body = r.json()
        assert body["source"] == "advoware-proxy", body
        assert body["error"].startswith("endpoint not allowed" if scope else "invalid endpoint"), body
    log = await sim_log(sims)
    assert not [x for x in log if marker in x["path"] or marker in x["query"]]


async def test_caller_token_is_required(stack: MotiaTester, sims: Simulators) -> None:
    marker = f"zz{uuid.uuid4().hex[:10]}"
    endpoint = f"{BETEILIGTE}/{marker}"
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {PROXY_TOKEN}"},
                    {"Authorization": f"Bearer {PROXY_TOKEN}-x"}, {"X-Proxy-Token": PROXY_TOKEN}):
        for method in ("GET", "POST", "PUT", "DELETE"):
            r = await stack.request(method, "/advoware/proxy", params={"endpoint": endpoint}, headers=headers,
                                    json_body={"Name": "x"} if method in ("POST", "PUT") else None)
            assert r.status == 401, (headers, method, r.text)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert PROXY_TOKEN not in r.text
    log = await sim_log(sims)
    assert not [x for x in log if marker in x["path"]]


async def test_upstream_reset_is_502(stack: MotiaTester, sims_reset: Simulators) -> None:
    betnr = 700000 + uuid.uuid4().int % 90000
    await sim_post(sims_reset, "/_sim/faults", {"path": f"/Beteiligte/{betnr}$", "reset": True})
    for method in ("GET", "DELETE"):
        r = await proxy(stack, method, f"{BETEILIGTE}/{betnr}")
        assert r.status == 502, r.text
        assert r.json()["source"] == "advoware-proxy" and "unreachable" in r.json()["error"]


async def test_no_token_in_logs_or_answers(stack: MotiaTester, redis_url: str) -> None:
    r = await proxy(stack, "GET", TERMINE, params={"from": "2031-01-01", "to": "2031-01-02"})
    assert r.status == 200
    client = aioredis.from_url(redis_url)
    try:
        cached = await client.get(TOKEN_CACHE_KEY)
    finally:
        await client.aclose()
    assert cached, "the Advoware token is cached in Redis"
    opened = TokenSeal(load_settings(dict(stack.env)).advoware.api_key_bytes(), TOKEN_CACHE_KEY).open(cached)
    assert opened is not None, "the cached token is sealed with the API key"
    advoware_token = json.loads(opened)["access_token"]
    assert advoware_token.encode() not in cached
    for header_value in r.headers.values():
        assert advoware_token not in header_value and PROXY_TOKEN not in header_value
    assert advoware_token not in r.text
    logs = await stack.logs(wait_for="advoware proxy GET")
    dumped = json.dumps(logs, default=str)
    assert "advoware proxy GET" in dumped
    assert PROXY_TOKEN not in dumped
    assert advoware_token not in dumped


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
async def test_allowed_methods_are_routed(stack: MotiaTester, method: str) -> None:
    r = await stack.request(method, "/advoware/proxy", params={"endpoint": "api/v1/x"})
    assert r.status == 401  # the route exists for every method (and refuses without a token)
