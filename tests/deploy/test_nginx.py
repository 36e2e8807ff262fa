"""The shipped nginx config (deploy/nginx/) in front of the stand-in engine running the project's steps.

Debian's nginx runs on a free port with TLS (a certificate made here) and the shipped location
snippet unchanged. EspoCRM's webhook batches must pass through it as the exact bytes EspoCRM
signed: the real engine streams raw bytes only for non-JSON content types (semantics H1/H2,
engine/src/modules/rest_api/views.rs 247-289), so nginx forwards the webhook paths as
application/octet-stream. The token mode's token rides in the URL (EspoCRM's
application/Espo/Core/Webhook/Sender.php sends no header of ours) and must not reach any log.
nginx missing fails these tests (make test and .ci/run install it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import yarl

from iii_local.testing import MotiaTester
from services.clients.espocrm_webhooks import php_json_encode
from simulators.sandbox import Simulators
from tests.deploy.nginx_front import LOCATIONS_CONF, ROOT, SERVER_CONF, NginxFront
from tests.e2e import OPS_TOKEN, WEBHOOK_ID, WEBHOOK_SECRET, stack_env

ENDPOINT = "/vmh/webhook/document/update"
TOPIC = "vmh.document.update"


def espocrm_signature(webhook_id: str, secret: str, body: bytes) -> str:
    """EspoCRM's `Signature` header (Sender.php buildSignature), computed here independently."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return base64.b64encode(f"{webhook_id}:{digest}".encode()).decode()


def espocrm_batch(doc_id: str) -> bytes:
    """A batch as EspoCRM encodes it; keys deliberately not sorted, so a re-encoded parse of it
    (what the real engine hands over for application/json, H1) would not match the signature."""
    return php_json_encode([{"name": "Vertrag/2026 ü", "modifiedAt": "2026-03-01 10:00:00", "id": doc_id}])


async def _post(front: NginxFront, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, str, float]:
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        async with session.post(yarl.URL(front.url + path, encoded=True), data=body, headers={"Content-Type": "application/json", **headers}, ssl=front.ssl_context()) as resp:
            raw = await resp.read()
            elapsed = time.monotonic() - started
            trace = resp.headers.get("x-iii-trace-id", "")
            try:
                answer = json.loads(raw) if raw else None
            except ValueError:
                answer = raw.decode(errors="replace")
            return resp.status, answer, trace, elapsed


@pytest.fixture(scope="module")
def front(stack: MotiaTester) -> Iterator[NginxFront]:
    """nginx in front of the session's stack (signature mode, ESPOCRM_WEBHOOK_SECRETS)."""
    nginx = NginxFront(stack.rest_port).start()
    yield nginx
    nginx.cleanup()


@pytest.fixture(scope="module")
def webhook_token() -> str:
    return "tok-" + secrets.token_hex(20)


@pytest.fixture(scope="module")
async def token_stack(redis_url: str, sims: Simulators, webhook_token: str) -> AsyncIterator[MotiaTester]:
    """The project's steps in token mode (ESPOCRM_WEBHOOK_TOKEN, no secrets), on its own Redis db."""
    env = stack_env(redis_url.rsplit("/", 1)[0] + "/5")
    env.pop("ESPOCRM_WEBHOOK_SECRETS")
    tester = MotiaTester(ROOT / "src" / "steps", queue_defaults={"backoff_ms": 200})
    tester.env = {**env, **sims.env(), "ESPOCRM_WEBHOOK_TOKEN": webhook_token}
    await tester.start(wait_functions=1, timeout=60)
    yield tester
    await tester.stop()


@pytest.fixture(scope="module")
def token_front(token_stack: MotiaTester) -> Iterator[NginxFront]:
    nginx = NginxFront(token_stack.rest_port).start()
    yield nginx
    nginx.cleanup()


async def test_signed_batch_passes_nginx_and_is_answered_within_a_second(stack: MotiaTester, front: NginxFront) -> None:
    doc = f"ngx{uuid.uuid4().hex[:12]}"
    body = espocrm_batch(doc)
    status, answer, trace, elapsed = await _post(front, ENDPOINT, body, {"Signature": espocrm_signature(WEBHOOK_ID, WEBHOOK_SECRET, body)})
    assert status == 200, answer
    assert answer == {"accepted": 1, "rejected": []}
    assert elapsed < 1.0, f"answered after {elapsed:.2f} s"
    assert trace, "the engine's trace id comes back through nginx"
    msgs = await stack.messages(trace)
    assert [(m["topic"], m["data"]["entity_id"]) for m in msgs] == [(TOPIC, doc)]


async def test_forged_and_unsigned_batches_get_401_and_queue_nothing(stack: MotiaTester, front: NginxFront) -> None:
    body = espocrm_batch(f"ngx{uuid.uuid4().hex[:12]}")
    other = espocrm_batch(f"ngx{uuid.uuid4().hex[:12]}")
    cases = {
        "unsigned": {},
        "forged secret": {"Signature": espocrm_signature(WEBHOOK_ID, "not-the-secret", body)},
        "signature of another body": {"Signature": espocrm_signature(WEBHOOK_ID, WEBHOOK_SECRET, other)},
        "unknown webhook id": {"Signature": espocrm_signature("someone-else", WEBHOOK_SECRET, body)},
    }
    for name, headers in cases.items():
        status, answer, trace, _ = await _post(front, ENDPOINT, body, headers)
        assert status == 401, f"{name}: {status} {answer}"
        assert trace, name
        assert await stack.messages(trace) == [], f"{name}: queued something"


async def test_token_in_the_url_works_and_reaches_no_log(token_stack: MotiaTester, token_front: NginxFront, webhook_token: str) -> None:
    doc = f"ngt{uuid.uuid4().hex[:12]}"
    body = espocrm_batch(doc)
    traces: list[str] = []

    status, answer, trace, elapsed = await _post(token_front, f"{ENDPOINT}?token={webhook_token}", body, {})
    assert status == 200 and answer["accepted"] == 1, answer
    assert elapsed < 1.0, f"answered after {elapsed:.2f} s"
    assert [m["data"]["entity_id"] for m in await token_stack.messages(trace)] == [doc]
    traces.append(trace)

    refused = {
        "no token": ("", {}),
        "wrong token": (f"?token={webhook_token}x", {}),
        # nginx replaces a client's own X-Auth-Token with the URL's token (none here).
        "token only as a client header": ("", {"X-Auth-Token": webhook_token}),
        "a signature is no token": ("", {"Signature": espocrm_signature(WEBHOOK_ID, WEBHOOK_SECRET, body)}),
    }
    for name, (query, headers) in refused.items():
        status, answer, trace, _ = await _post(token_front, ENDPOINT + query, body, headers)
        assert status == 401, f"{name}: {status} {answer}"
        assert await token_stack.messages(trace) == [], f"{name}: queued something"
        traces.append(trace)

    # Straight to the engine (no nginx, raw bytes as nginx would send them): the URL's token is
    # accepted there too, and the stand-in's own records of the request keep no query string.
    direct = await token_stack.post(f"{ENDPOINT}?token={webhook_token}", data=espocrm_batch(f"ngt{uuid.uuid4().hex[:12]}"), headers={"Content-Type": "application/octet-stream"})
    assert direct.status == 200, direct.text
    traces.append(direct.headers.get("x-iii-trace-id", ""))

    lines = token_front.wait_access_lines(len(refused) + 1)
    assert len(lines) >= len(refused) + 1 and all(ENDPOINT in line and "?" not in line for line in lines), lines
    assert webhook_token not in token_front.all_logs()
    await asyncio.sleep(0.3)  # let the worker's log lines arrive
    recorded = [await token_stack.console("GET", "/_console/logs?limit=10000")]
    recorded += [await token_stack.trace(t) for t in traces if t]
    assert webhook_token not in json.dumps(recorded), "the stand-in recorded the webhook token"
    assert webhook_token not in token_stack.engine_output(), "the engine's output shows the webhook token"


async def test_refused_oversized_webhook_leaves_no_token_in_nginx_logs(front: NginxFront) -> None:
    """nginx logs `client intended to send too large body` with the request line; not for webhooks."""
    token = "tok-" + secrets.token_hex(16)
    reader, writer = await asyncio.open_connection("127.0.0.1", front.port, ssl=front.ssl_context(), server_hostname="127.0.0.1")
    writer.write(
        f"POST {ENDPOINT}?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {64 * 1024 * 1024}\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.split()[1] == b"413", status_line
    front.wait_access_lines(1)
    assert token not in front.all_logs()


async def test_operator_api_is_not_public_and_other_paths_pass(stack: MotiaTester, front: NginxFront) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(front.url + "/_console/status", ssl=front.ssl_context()) as resp:
            assert resp.status == 404
        async with session.get(front.url + "/health", ssl=front.ssl_context()) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["status"]
    assert (await stack.get("/_console/status")).status == 200  # the engine itself still has it


OPS_PATHS = [("GET", "/ops"), ("GET", "/ops/"), ("GET", "/ops/assets/app.js"), ("GET", "/ops/ledger"), ("GET", "/ops/audit"),
             ("GET", "/ops/search?q=x"), ("GET", "/ops/entities/document/x1"), ("POST", "/ops/audit/run"),
             ("POST", "/ops/audit/repair"), ("POST", "/ops/ledger/replay"), ("POST", "/ops/entities/document/x1/resync")]


async def test_operators_page_and_api_are_not_forwarded(stack: MotiaTester, front: NginxFront) -> None:
    """/ops (page and API, with the right token too) answers 404 at nginx; on the engine's loopback port it is there."""
    headers = {"Authorization": f"Bearer {OPS_TOKEN}"}
    async with aiohttp.ClientSession() as session:
        for method, path in OPS_PATHS:
            async with session.request(method, front.url + path, headers=headers, json={}, ssl=front.ssl_context(),
                                       allow_redirects=False) as resp:
                assert resp.status == 404, (method, path, resp.status)
                body = await resp.text()
                assert "bitbylaw" not in body and "error" not in body, (path, body[:200])  # nginx's own page, not ours
    assert (await stack.get("/ops/")).status == 200
    assert (await stack.get("/ops/ledger", headers=headers)).status == 200


def test_access_log_format_never_records_the_query_string() -> None:
    """The token lives in the query string: the log format may use $uri, never the raw request."""
    server = SERVER_CONF.read_text()
    formats = re.findall(r"log_format\s+(\w+)\s+((?:'[^']*'\s*)+);", server)
    assert formats, "the server file defines its log format"
    for name, fmt in formats:
        for var in ("$request ", "$request\"", "$request'", "$request_uri", "$args", "$query_string", "$arg_", "$is_args", "$request_line"):
            assert var not in fmt, f"log_format {name} uses {var.strip()}"
        assert "$uri" in fmt
    for path in (SERVER_CONF, LOCATIONS_CONF):
        for directive in re.findall(r"^\s*access_log\s+([^;]+);", path.read_text(), re.M):
            parts = directive.split()
            assert parts[0] == "off" or (len(parts) > 1 and parts[1] in {n for n, _ in formats}), f"{path.name}: access_log {directive}"


@pytest.fixture(scope="module")
async def echo_front() -> AsyncIterator[tuple[NginxFront, list[dict[str, Any]]]]:
    """nginx in front of a recorder standing in for the engine: what exactly does the engine get?"""
    from aiohttp import web

    seen: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({"path_qs": request.path_qs, "headers": {k.lower(): v for k, v in request.headers.items()}, "body": await request.read()})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    nginx = NginxFront(port).start()
    yield nginx, seen
    nginx.cleanup()
    await runner.cleanup()


async def test_what_the_engine_receives_for_a_webhook(echo_front: tuple[NginxFront, list[dict[str, Any]]]) -> None:
    """Webhook paths: exact bytes as application/octet-stream (H2), the original type beside
    them, the URL's token moved into X-Auth-Token and no query string left (the real engine
    records it in its HTTP span: views.rs dynamic_handler `url.query`, `url.full`)."""
    front, seen = echo_front
    body = espocrm_batch("doc1")
    status, _, _, _ = await _post(front, f"{ENDPOINT}?token=abc123&x=1", body, {"Signature": "sig", "X-Auth-Token": "forged"})
    assert status == 200
    got = seen[-1]
    assert got["path_qs"] == ENDPOINT
    assert got["body"] == body
    assert got["headers"]["content-type"] == "application/octet-stream"
    assert got["headers"]["x-original-content-type"] == "application/json"
    assert got["headers"]["x-auth-token"] == "abc123"
    assert got["headers"]["signature"] == "sig"
    assert got["headers"]["x-forwarded-proto"] == "https"

    await _post(front, ENDPOINT, body, {"X-Auth-Token": "forged"})
    assert "x-auth-token" not in seen[-1]["headers"], "a client's own X-Auth-Token must not pass"

    # Other paths pass as they came: query string and content type included.
    await _post(front, "/advoware/proxy?endpoint=Akten%2F1&x=1", b'{"a":1}', {"Authorization": "Bearer t"})
    got = seen[-1]
    assert got["path_qs"] == "/advoware/proxy?endpoint=Akten%2F1&x=1"
    assert got["headers"]["content-type"] == "application/json" and got["body"] == b'{"a":1}'
    assert got["headers"]["authorization"] == "Bearer t"
