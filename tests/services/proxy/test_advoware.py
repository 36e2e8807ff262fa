"""services.proxy.advoware: endpoint validation (attack corpus), header filtering, and
forwarding against the Advoware simulator and a fake upstream; the whole request path with a
mock context (caller check, scope, body limits, security headers). Caller tokens and the
proxy's 429: test_auth.py (the limiter itself: tests/services/platform/test_auth.py); the scope
rules: test_endpoint.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from iii_local.testing import MockRequest, mock_context
from services.clients.advoware.api import AdvowareAPI
from services.clients.retry import RetryPolicy
from services.platform.auth import AuthFailureLimiter
from services.platform.settings import Settings, load_settings
from services.proxy.advoware import (
    SECURITY_HEADERS,
    EndpointRejected,
    ProxyError,
    ProxyMethod,
    filter_request_headers,
    filter_response_headers,
    forward,
    forward_params,
    proxy_request,
    proxy_timeout,
    read_body,
    validate_endpoint,
)
from services.proxy.endpoint import MAX_ENDPOINT_LENGTH
from simulators.advoware import create_app
from simulators.runner import RunningApp, start_app
from src.glue.http import send_answer
from tests.advoware_demo import API_KEY, APP_ID, DATABASE, KANZLEI, PASSWORD, USER, demo_client

PROXY_TOKEN = "unit-proxy-token-0123456789abcdef0123456789"
TERMINE = "api/v1/advonet/TermineActiveSync"
BETEILIGTE = "api/v1/advonet/Beteiligte"
FAST = RetryPolicy(max_attempts=1)


# --- validate_endpoint ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("api/v1/advonet/Beteiligte", "api/v1/advonet/Beteiligte"),
        ("/api/v1/advonet/Beteiligte", "api/v1/advonet/Beteiligte"),
        ("api/v1/advonet/Beteiligte/", "api/v1/advonet/Beteiligte"),
        ("api/v1/Akten/4711", "api/v1/Akten/4711"),
        ("api/v1/advonet/Beteiligte/12/Bankverbindungen/3", "api/v1/advonet/Beteiligte/12/Bankverbindungen/3"),
        ("api%2Fv1%2FAkten", "api/v1/Akten"),  # an encoded slash is just a slash
        ("api/v1/Dokumente/3f2a-9b_x~1.pdf", "api/v1/Dokumente/3f2a-9b_x~1.pdf"),
        ("employees", "employees"),
    ],
)
def test_valid_endpoints_are_normalized(raw: str, expected: str) -> None:
    assert validate_endpoint(raw, ()) == expected


ATTACKS = [
    # absolute URLs and schemes
    "http://evil.example/api/v1/Akten",
    "https://127.0.0.1:1/x",
    "HTTP://EVIL",
    "http:evil.example",
    "javascript:alert(1)",
    "file:///etc/passwd",
    "http%3A%2F%2Fevil.example%2F",
    "http%253A%252F%252Fevil.example",
    # scheme-relative
    "//evil.example/x",
    "///evil.example",
    "/%2F%2Fevil.example",
    "%2f%2fevil.example/x",
    "%252f%252fevil.example",
    # backslashes
    "\\\\evil.example\\x",
    "/\\evil.example",
    "..\\..\\windows\\win.ini",
    "api\\..\\x",
    "api%5c..%5cx",
    "api%255c..%255cx",
    # dot segments, plain and encoded
    "../x",
    "api/../../x",
    "api/v1/..",
    "api/v1/./Akten",
    "./api",
    "..",
    "...",
    "%2e%2e/x",
    "%2E%2E/x",
    ".%2e/x",
    "%2e./x",
    "api/%2e%2e/%2e%2e/x",
    "api%2f..%2f..%2fx",
    "%252e%252e/x",
    "%252E%252E%252Fx",
    "%25252e%25252e/x",
    "..;/x",
    "api/v1/Akten./x",
    # user info / host switch
    "a@evil.example",
    "user:pass@evil.example/x",
    "%40evil.example",
    "api%2540evil",
    # control characters / header injection
    "x\r\nHost: evil",
    "x%0d%0aHost:%20evil",
    "x%0aSet-Cookie:a=b",
    "x%250d%250aHost:evil",
    "x%00y",
    "x\x00y",
    "x%7fy",
    "x\u2028y",
    "x%E2%80%A8y",
    "x\ty",
    # whitespace, query, fragment, odd characters
    "a b",
    "a%20b",
    "api/v1/Akten?x=1",
    "api/v1/Akten%3Fx=1",
    "api/v1/Akten#frag",
    "api/v1/Akten;jsessionid=1",
    "api/v1/Akten:8080",
    "api/v1/%ff",
    "api/v1/%E2%80%AE",
    "ａｐｉ/v1",
    "api/v1/Akten%",
    "api/v1/Akten%25",
    # empty segments, empty, too long
    "a//b",
    "a%2f%2fb",
    "",
    "/",
    "a" * (MAX_ENDPOINT_LENGTH + 1),
    "api/" + "x/" * 3000,
]
"""Unsafe endpoints: 400. What is safe but never proxied (the token endpoint, the diagnostic
handlers) is services.proxy.endpoint's scope, refused with 403: test_endpoint.NEVER_FORWARDED."""


@pytest.mark.parametrize("raw", ATTACKS)
def test_attack_corpus_is_refused(raw: str) -> None:
    with pytest.raises(EndpointRejected) as info:
        validate_endpoint(raw, ())
    assert info.value.reason  # a clear reason for the 400


def test_missing_endpoint_is_refused() -> None:
    for raw in (None, 42, ""):
        with pytest.raises(EndpointRejected, match="required"):
            validate_endpoint(raw, ())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("http://evil", "absolute URL"),
        ("//evil", "scheme-relative"),
        ("a\\b", "backslash"),
        ("%2e%2e/x", "'..'"),
        ("%252e%252e/x", "'..'"),
        ("x%0d%0ay", "control characters"),
        ("a@b", "'@'"),
        ("a" * 2000, "longer than"),
        ("%2525252e", "percent-encoded more than"),
    ],
)
def test_rejection_reasons_are_specific(raw: str, reason: str) -> None:
    with pytest.raises(EndpointRejected, match=reason):
        validate_endpoint(raw, ())


def test_allowed_prefixes_are_segment_wise_and_case_insensitive() -> None:
    allowed = ("api/v1/advonet/", "/api/v1/Akten")
    assert validate_endpoint("api/v1/advonet/Beteiligte/1", allowed) == "api/v1/advonet/Beteiligte/1"
    assert validate_endpoint("API/V1/ADVONET/TermineActiveSync", allowed) == "API/V1/ADVONET/TermineActiveSync"
    assert validate_endpoint("api/v1/Akten", allowed) == "api/v1/Akten"
    for outside in ("api/v1/Akten2", "api/v1/advonetX/y", "api/v1/Mitarbeiter", "api", "api/v1"):
        with pytest.raises(EndpointRejected, match="allowed prefix"):
            validate_endpoint(outside, allowed)
    # dot segments cannot climb out of an allowed prefix
    with pytest.raises(EndpointRejected):
        validate_endpoint("api/v1/advonet/%2e%2e/Token", allowed)
    # an empty allow-list (or only empty entries) allows every safe path
    assert validate_endpoint("api/v1/Mitarbeiter", ("", "/")) == "api/v1/Mitarbeiter"


# --- headers, caller auth, params ------------------------------------------------------


def test_request_headers_only_safe_ones_are_forwarded() -> None:
    headers = {
        "authorization": "Bearer caller-secret",
        "Proxy-Authorization": "Basic abc",
        "cookie": "session=1",
        "x-api-key": "k",
        "connection": "keep-alive, If-Match",
        "keep-alive": "timeout=5",
        "te": "trailers",
        "trailer": "x",
        "transfer-encoding": "chunked",
        "upgrade": "websocket",
        "host": "engine:3111",
        "content-length": "12",
        "x-forwarded-for": "1.2.3.4",
        "traceparent": "00-abc",
        "accept": "application/pdf",
        "Content-Type": "application/json",
        "if-none-match": '"v1"',
        "if-match": '"v2"',  # named in Connection → hop-by-hop
        "accept-language": "de\r\nX-Injected: 1",
    }
    assert filter_request_headers(headers) == {
        "accept": "application/pdf",
        "content-type": "application/json",
        "if-none-match": '"v1"',
    }
    assert filter_request_headers(None) == {}


def test_response_headers_are_filtered() -> None:
    upstream = {
        "Content-Type": "application/pdf",
        "Content-Disposition": 'attachment; filename="Vollmacht.pdf"',
        "ETag": '"abc"',
        "Retry-After": "3",
        "Set-Cookie": "ASP.NET_SessionId=1",
        "WWW-Authenticate": "Bearer",
        "Location": "http://advoware.internal:9000/api/v1/x",
        "Transfer-Encoding": "chunked",
        "Connection": "close",
        "Content-Length": "10",
        "Content-Encoding": "gzip",
        "Server": "Microsoft-IIS/10.0",
        "X-Powered-By": "ASP.NET",
    }
    assert filter_response_headers(upstream) == {
        "Content-Type": "application/pdf",
        "Content-Disposition": 'attachment; filename="Vollmacht.pdf"',
        "Etag": '"abc"',
        "Retry-After": "3",
    }


def test_forward_params_drop_endpoint_and_keep_order() -> None:
    assert forward_params({"endpoint": "x", "from": "2026-01-01", "to": "2026-01-31"}) == [
        ("from", "2026-01-01"),
        ("to", "2026-01-31"),
    ]
    assert forward_params({"kuerzel": ["MM", "AB"], "n": None}) == [("kuerzel", "MM"), ("kuerzel", "AB"), ("n", "")]
    with pytest.raises(ProxyError) as info:
        forward_params({f"p{i}": "1" for i in range(101)})
    assert info.value.status == 400


# --- against the simulator / a fake upstream --------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[RunningApp]:
    running = await start_app(create_app(API_KEY, APP_ID, KANZLEI, DATABASE, USER, PASSWORD))
    try:
        yield running
    finally:
        await running.stop()


def client_for(url: str, *, timeout: float = 10.0) -> AdvowareAPI:
    return demo_client(url + "/", url + "/api/v1/Token", timeout=timeout, retry_policy=FAST)


def settings_for(url: str, **advoware: Any) -> Settings:
    base = load_settings({"APP_MODE": "sandbox", "ADVOWARE_PROXY_TOKEN": PROXY_TOKEN})
    adv = base.advoware.model_copy(update={"api_base_url": url + "/", "token_url": url + "/api/v1/Token", **advoware})
    return base.model_copy(update={"advoware": adv})


async def sim_admin(sim: RunningApp, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, sim.url + path, json=body) as r:
            return await r.json()


@asynccontextmanager
async def opened_client(url: str, *, timeout: float = 10.0) -> AsyncIterator[AdvowareAPI]:
    """client_for(url), closed on exit."""
    client = client_for(url, timeout=timeout)
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def client_with_fault(sim: RunningApp, fault: dict[str, Any], *, timeout: float = 10.0) -> AsyncIterator[AdvowareAPI]:
    """A client that already holds its token, with `fault` then armed on the simulator's
    TermineActiveSync; closed on exit."""
    async with opened_client(sim.url, timeout=timeout) as client:
        await client.get_token()
        await sim_admin(sim, "POST", "/_sim/faults", {"path": "TermineActiveSync", **fault})
        yield client


async def api_requests(sim: RunningApp) -> list[dict[str, Any]]:
    return [r for r in await sim_admin(sim, "GET", "/_sim/requests") if not r["path"].lower().endswith("/token")]


async def test_forward_passes_answers_and_errors_through(sim: RunningApp) -> None:
    async with opened_client(sim.url) as client:
        ok = await forward(client, ProxyMethod.GET, TERMINE, params=[("from", "2026-01-01"), ("to", "2026-01-31")])
        assert ok.status == 200 and ok.upstream and json.loads(ok.body) == []
        assert ok.headers["Content-Type"].startswith("application/json")
        bad = await forward(client, "get", TERMINE)  # Advoware's own 400 (from/to missing)
        assert bad.status == 400 and bad.upstream
        assert "erforderlich" in json.loads(bad.body)["Message"]
        await sim_admin(sim, "POST", "/_sim/faults", {"path": "TermineActiveSync", "status": 503, "times": 1})
        down = await forward(client, ProxyMethod.GET, TERMINE, params=[("frnr", "1")])
        assert down.status == 503 and down.upstream  # passed through, not retried


async def test_timeout_is_504(sim: RunningApp) -> None:
    async with client_with_fault(sim, {"status": 0, "latency_ms": 2000}) as client:
        started = asyncio.get_running_loop().time()
        result = await forward(client, ProxyMethod.GET, TERMINE, params=[("frnr", "1")], timeout_seconds=0.3)
        assert asyncio.get_running_loop().time() - started < 1.5
        assert result.status == 504 and not result.upstream
        assert "did not answer" in result.body["error"]


async def test_client_timeout_is_504_too(sim: RunningApp) -> None:
    async with client_with_fault(sim, {"status": 0, "latency_ms": 2000}, timeout=0.3) as client:
        result = await forward(client, ProxyMethod.POST, TERMINE, body=b"{}", timeout_seconds=5)
        assert result.status == 504


async def test_reset_is_502_and_unreachable_is_502(sim: RunningApp) -> None:
    async with client_with_fault(sim, {"reset": True, "times": 3}) as client:
        result = await forward(client, ProxyMethod.GET, TERMINE, params=[("frnr", "1")])
        assert result.status == 502 and "unreachable" in result.body["error"]
    from simulators.runner import free_port

    dead = client_for(f"http://127.0.0.1:{free_port()}")
    try:
        result = await forward(dead, ProxyMethod.GET, TERMINE)
        assert result.status == 502
        assert result.body["source"] == "advoware-proxy"
    finally:
        await dead.close()


PDF = b"%PDF-1.7\n" + bytes(range(256)) * 400 + b"\n%%EOF\n"


@pytest.fixture
async def fake_upstream() -> AsyncIterator[tuple[RunningApp, list[dict[str, Any]]]]:
    """A minimal Advoware: a token endpoint and a few API answers (a PDF, cookies, a big body)."""
    seen: list[dict[str, Any]] = []

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "upstream-secret-token-42", "expiration_utc": "2099-01-01T00:00:00Z"})

    async def api(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"method": request.method, "path": request.path, "query": request.query_string,
                     "headers": dict(request.headers), "body": body})
        tail = request.match_info["tail"]
        if tail == "Dokumente/7/Inhalt":
            return web.Response(body=PDF, content_type="application/pdf",
                                headers={"Content-Disposition": 'attachment; filename="a.pdf"', "Set-Cookie": "s=1",
                                         "Location": "http://internal/x"})
        if tail == "big":
            return web.Response(body=b"x" * 5000, content_type="application/octet-stream")
        if tail == "empty":
            return web.Response(status=204)
        if tail == "moved":  # to an address only the proxy's host can reach
            raise web.HTTPFound(str(request.url.with_path("/api/v1/internal-secret")))
        if tail == "internal-secret":
            return web.json_response({"secret": "INTERNAL-ONLY"})
        if tail == "cached":
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.json_response({"echo": body.decode("utf-8", "replace"), "ct": request.headers.get("Content-Type")})

    app = web.Application()
    app.router.add_post("/api/v1/Token", token)
    app.router.add_route("*", "/api/v1/{tail:.*}", api)
    running = await start_app(app)
    try:
        yield running, seen
    finally:
        await running.stop()


async def test_binary_passes_through_intact(fake_upstream: tuple[RunningApp, list[dict[str, Any]]]) -> None:
    upstream, _ = fake_upstream
    async with opened_client(upstream.url) as client:
        result = await forward(client, ProxyMethod.GET, "api/v1/Dokumente/7/Inhalt", headers={"accept": "application/pdf"})
        assert result.status == 200
        assert isinstance(result.body, bytes) and result.body == PDF
        assert result.headers["Content-Type"] == "application/pdf"
        assert result.headers["Content-Disposition"] == 'attachment; filename="a.pdf"'
        assert "Set-Cookie" not in result.headers and "Location" not in result.headers
        empty = await forward(client, ProxyMethod.DELETE, "api/v1/empty")
        assert empty.status == 204 and empty.body is None


async def test_redirects_are_502_and_never_followed(fake_upstream: tuple[RunningApp, list[dict[str, Any]]]) -> None:
    upstream, seen = fake_upstream
    async with opened_client(upstream.url) as client:
        for method in ProxyMethod:
            result = await forward(client, method, "api/v1/moved", body=b"{}" if method in ("POST", "PUT") else None)
            assert result.status == 502 and not result.upstream, result
            assert "redirect (302)" in result.body["error"] and "INTERNAL" not in json.dumps(result.body)
        not_modified = await forward(client, ProxyMethod.GET, "api/v1/cached", headers={"if-none-match": '"v1"'})
        assert not_modified.status == 304 and not_modified.upstream and not_modified.headers["Etag"] == '"v1"'
    assert not [r for r in seen if r["path"].endswith("internal-secret")]


async def test_response_limit_is_502(fake_upstream: tuple[RunningApp, list[dict[str, Any]]]) -> None:
    upstream, _ = fake_upstream
    async with opened_client(upstream.url) as client:
        result = await forward(client, ProxyMethod.GET, "api/v1/big", max_response_bytes=1000)
        assert result.status == 502 and "1000 bytes" in result.body["error"]
        ok = await forward(client, ProxyMethod.GET, "api/v1/big", max_response_bytes=5000)
        assert ok.status == 200 and len(ok.body) == 5000


# --- the whole request path with a mock context ------------------------------------------


OCTETS = {"content-type": "application/octet-stream"}


class ChunkReader:
    """A request channel reader (iii ChannelReader's interface) that counts what was read."""

    def __init__(self, chunks: list[bytes], *, fail: bool = False) -> None:
        self.chunks = chunks
        self.fail = fail
        self.read_chunks = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.fail:
            raise AssertionError("the request channel was read")
        for chunk in self.chunks:
            self.read_chunks += 1
            yield chunk

    async def close_async(self) -> None:
        self.closed = True


UNREADABLE = b"<never read>"


class ChannelRequest(MockRequest):
    """MockRequest with a chunked request channel; `raw=UNREADABLE` fails when read."""

    def __init__(self, *args: Any, chunks: list[bytes] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.reader = ChunkReader(chunks if chunks is not None else [self.raw_body or b""], fail=self.raw_body == UNREADABLE)

    @property
    def request_body(self) -> Any:
        return self.reader


async def test_read_body_follows_the_engines_content_type_rule() -> None:
    """views.rs 246-289 (iii/v0.8.3): JSON content types are parsed by the engine (channel held
    open, never read here); other types stream raw bytes, read only up to the limit."""
    json_req = ChannelRequest(body={"b": [1, "ü"], "a": None}, headers={"content-type": "application/json; charset=utf-8"},
                              raw_body=UNREADABLE)
    assert await read_body(json_req, 1000) == '{"b":[1,"ü"],"a":null}'.encode()
    assert json_req.reader.read_chunks == 0
    assert await read_body(ChannelRequest(body=None, headers={"content-type": "application/json"}, raw_body=UNREADABLE), 1000) is None
    for headers in ({"content-length": "12"}, {"transfer-encoding": "chunked"}):
        with pytest.raises(ProxyError) as err:
            await read_body(ChannelRequest(body=None, headers={"content-type": "application/json", **headers}, raw_body=UNREADABLE), 1000)
        assert err.value.status == 400
    with pytest.raises(ProxyError) as err:
        await read_body(ChannelRequest(body={"x": "y" * 1000}, headers={"content-type": "application/json"}, raw_body=UNREADABLE), 1000)
    assert err.value.status == 413

    # Not JSON (the engine's test is case-sensitive): the raw stream, exactly.
    raw = ChannelRequest(headers={"content-type": "Application/JSON"}, chunks=[b'{"a":', b" 1}"])
    assert await read_body(raw, 1000) == b'{"a": 1}'
    assert await read_body(ChannelRequest(headers={}, chunks=[]), 1000) is None
    # Past the limit: 413 as soon as it is passed, the rest is not read.
    big = ChannelRequest(headers=OCTETS, chunks=[b"x" * 400] * 10)
    with pytest.raises(ProxyError) as err:
        await read_body(big, 1000)
    assert err.value.status == 413 and big.reader.read_chunks == 3 and big.reader.closed
    declared = ChannelRequest(headers={**OCTETS, "content-length": "5000"}, chunks=[b"x"])
    with pytest.raises(ProxyError) as err:
        await read_body(declared, 1000)
    assert err.value.status == 413 and declared.reader.read_chunks == 0
    # Cut short (fewer bytes than declared): never passed on.
    short = ChannelRequest(headers={**OCTETS, "content-length": "100"}, chunks=[b"x" * 40])
    with pytest.raises(ProxyError) as err:
        await read_body(short, 1000)
    assert err.value.status == 400 and "40 of 100" in err.value.reason


class RecordingResponse:
    """motia's MotiaHttpResponse with a recording channel writer."""

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.writer = self

    async def status(self, code: int) -> None:
        self.frames.append(("status", code))

    async def headers(self, headers: dict[str, str]) -> None:
        self.frames.append(("headers", headers))

    async def write(self, data: bytes) -> None:
        self.frames.append(("body", data))

    async def close_async(self) -> None:
        self.frames.append(("close",))


async def test_answers_go_through_the_response_channel() -> None:
    """views.rs 380-465: only the channel keeps status, headers and bytes; the step returns None."""
    req = MockRequest()
    req.response = RecordingResponse()  # type: ignore[attr-defined]
    assert await send_answer(req, 201, {"Content-Type": "application/pdf"}, b"%PDF") is None
    assert req.response.frames == [("status", 201), ("headers", {"Content-Type": "application/pdf"}), ("body", b"%PDF"), ("close",)]  # type: ignore[attr-defined]
    req.response = RecordingResponse()  # type: ignore[attr-defined]
    assert await send_answer(req, 204, {}, None) is None
    assert req.response.frames == [("status", 204), ("close",)]  # type: ignore[attr-defined]
    fallback = await send_answer(MockRequest(), 401, {"WWW-Authenticate": "Bearer"}, {"error": "x"})
    assert fallback.status == 401 and fallback.headers == {"WWW-Authenticate": "Bearer"} and fallback.body == {"error": "x"}


def proxy_req(method: str, endpoint: str | None, *, token: str | None = PROXY_TOKEN, body: Any = None,
              raw: bytes | None = None, headers: dict[str, str] | None = None, **query: str) -> MockRequest:
    h = {"content-type": "application/json", **(headers or {})}
    if token is not None:
        h["authorization"] = f"Bearer {token}"
    q = dict(query)
    if endpoint is not None:
        q["endpoint"] = endpoint
    return ChannelRequest(body=body, headers=h, query_params=q, method=method, raw_body=raw)


async def test_proxy_request_end_to_end_with_mock_context(
    fake_upstream: tuple[RunningApp, list[dict[str, Any]]],
) -> None:
    upstream, seen = fake_upstream
    settings = settings_for(upstream.url)
    client = client_for(upstream.url)
    ctx = mock_context("http")
    limiter = AuthFailureLimiter(None, limit=1000, window_seconds=60, key_prefix="unit-end-to-end:")
    try:
        # JSON: the engine's parsed body (keys sorted by the engine), re-encoded; the channel is not read
        req = proxy_req("POST", "api/v1/advonet/Beteiligte", body={"Name": "Müller", "Art": 1}, raw=UNREADABLE, x="1",
                        headers={"cookie": "c=1", "accept": "application/json", "connection": "close"})
        result = await proxy_request(ProxyMethod.POST, req, ctx, settings=settings, client=client, limiter=limiter)
        assert result.status == 200
        assert {k: result.headers[k] for k in SECURITY_HEADERS} == SECURITY_HEADERS
        assert json.loads(result.body) == {"echo": '{"Name":"Müller","Art":1}', "ct": "application/json"}
        sent = seen[-1]
        assert sent["method"] == "POST" and sent["path"] == "/api/v1/advonet/Beteiligte" and sent["query"] == "x=1"
        assert sent["headers"]["Authorization"] == "Bearer upstream-secret-token-42"
        assert "Cookie" not in sent["headers"]
        assert sent["body"] == '{"Name":"Müller","Art":1}'.encode()
        # other content types: the raw bytes from the request channel, byte for byte
        xml = '<?xml version="1.0"?><a>Müller</a>\r\n'.encode()
        req = proxy_req("PUT", "api/v1/advonet/Beteiligte", raw=xml, headers={"content-type": "application/xml"})
        result = await proxy_request(ProxyMethod.PUT, req, ctx, settings=settings, client=client, limiter=limiter)
        assert result.status == 200 and seen[-1]["body"] == xml
        assert seen[-1]["headers"]["Content-Type"] == "application/xml"

        # refusals: nothing reaches the upstream
        before = len(seen)
        x = "api/v1/advonet/x"  # within the sandbox's default allow-list
        cases = [
            (proxy_req("GET", x, token=None), 401),
            (proxy_req("GET", x, token="nope"), 401),
            (proxy_req("GET", "%2e%2e/x"), 400),
            (proxy_req("GET", None), 400),
            (proxy_req("GET", "api/v1/Mitarbeiter"), 403),  # below no allowed prefix
            (proxy_req("POST", "api/v1/Akten", body={}), 403),  # the sandbox allows GET only there
            (proxy_req("GET", "elmah.axd"), 403),
            (proxy_req("PUT", x, raw=b"x" * 2000, headers=OCTETS), 413),
            (proxy_req("PUT", x, raw=b"{}", headers={"content-length": "999999"}), 413),
            (proxy_req("POST", x, body={"x": "y" * 2000}), 413),
            (proxy_req("POST", x, body=None, headers={"content-length": "9"}), 400),  # unparsable JSON
        ]
        small = settings_for(upstream.url, proxy_max_body_bytes=1000)
        for req, status in cases:
            r = await proxy_request(req.method, req, ctx, settings=small, client=client, limiter=limiter)
            assert r.status == status, (req, r)
            assert r.body["source"] == "advoware-proxy"
            assert {k: r.headers[k] for k in SECURITY_HEADERS} == SECURITY_HEADERS
        closed = settings_for(upstream.url, proxy_token=None)
        r = await proxy_request("GET", proxy_req("GET", x), ctx, settings=closed, client=client, limiter=limiter)
        assert r.status == 503
        assert len(seen) == before

        # neither token shows up in any log line; the caller's name does
        logged = json.dumps([[lvl, msg, data] for lvl, msg, data in ctx.logger.records], default=str)
        assert PROXY_TOKEN not in logged and "upstream-secret-token-42" not in logged
        assert "%2e%2e/x" in logged  # the refused endpoint is logged (escaped) for the audit trail
        assert any(data.get("caller") == "default" for _, msg, data in ctx.logger.records if "→ 200" in msg)
    finally:
        await client.close()


def test_proxy_timeout_defaults() -> None:
    s = load_settings({"APP_MODE": "sandbox"})
    assert proxy_timeout(s) == 25.0
    fast = s.model_copy(update={"advoware": s.advoware.model_copy(update={"timeout_seconds": 5.0})})
    assert proxy_timeout(fast) == 5.0


async def test_token_failure_is_502_without_leaking(sim: RunningApp) -> None:
    client = demo_client(sim.url + "/", sim.url + "/api/v1/Token", password="falsch", retry_policy=FAST)
    try:
        result = await forward(client, ProxyMethod.GET, TERMINE, params=[("frnr", "1")])
        assert result.status == 502 and "token" in result.body["error"]
        assert "falsch" not in json.dumps(result.body)
        assert await api_requests(sim) == []  # no API call without a token
    finally:
        await client.close()
