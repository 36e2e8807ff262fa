"""Rows H1-H5: the REST module of engine 0.8.3, through the real motia worker.

Paths are under `engine/src/` of iii-hq/iii at tag iii/v0.8.3 (views.rs is
`modules/rest_api/views.rs`). The steps are in `http_steps/`. The module's tester runs with
a 1.5 s `default_timeout`, so the rows that end in the engine's timeout stay quick.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from yarl import URL

from iii_local.config import EngineConfigError, parse_config
from iii_local.testing import MotiaTester, Response

STEPS = Path(__file__).parent / "http_steps"
ROOT = Path(__file__).resolve().parents[3]
FUNCTIONS = 13
TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
async def tester() -> AsyncIterator[MotiaTester]:
    t = MotiaTester(STEPS, rest_timeout_ms=TIMEOUT_MS)
    await t.start(wait_functions=FUNCTIONS)
    yield t
    await t.stop()


async def raw(tester: MotiaTester, method: str, target: str, *, data: bytes | None = None,
              headers: dict[str, str] | None = None) -> Response:
    """A request whose path and query go on the wire exactly as written (no re-encoding)."""
    async with aiohttp.ClientSession() as s:
        async with s.request(method, URL(tester.base_url + target, encoded=True), data=data, headers=headers or {}) as r:
            return Response(r.status, dict(r.headers), await r.read())


async def timed(coro: Any) -> tuple[Response, float]:
    started = time.monotonic()
    r = await coro
    return r, time.monotonic() - started


async def test_h1_json_body_is_parsed_sorted_and_the_channel_stays_open(tester: MotiaTester) -> None:
    """H1: views.rs 246-269 (`application/json` → collected, `serde_json::from_slice(..)
    .unwrap_or(Null)`, nothing sent on the request channel whose sender `req_tx` stays held until
    the handler returns) and channels/mod.rs 95-98 (`take_sender`); the answer is the
    TimeoutLayer's 504 (modules/rest_api/api_core.rs 172-175)."""
    doc = b'{"zeta": 1, "alpha": {"y": [{"d": 4, "c": 3}], "x": 2}, "mid": -0, "big": 18446744073709551616}'
    r = await tester.post("/conformance/body/parsed", data=doc, headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status == 200, r.text
    got = r.json()
    assert got["key_orders"] == {"$": ["alpha", "big", "mid", "zeta"], "$.alpha": ["x", "y"], "$.alpha.y[0]": ["c", "d"]}
    assert got["body"]["big"] == 18446744073709551616.0 and isinstance(got["body"]["big"], float)  # past u64: f64
    assert got["body"]["mid"] == 0 and isinstance(got["body"]["mid"], float)  # "-0" is a float in serde_json
    for invalid in (b'{"a": 1,}', b"NaN", b'{"a": Infinity}', b'"\\ud800"', b"\xef\xbb\xbf{}", b"[" * 128 + b"]" * 128, b""):
        r = await tester.post("/conformance/body/parsed", data=invalid, headers={"Content-Type": "application/json"})
        assert r.status == 200 and r.json()["body"] is None, invalid[:20]

    # A handler that reads the request channel of a JSON request waits for the engine's answer,
    # which is the timeout; then its read ends empty.
    key = uuid.uuid4().hex
    r, elapsed = await timed(tester.post("/conformance/body/read", json_body={"a": 1}, headers={"x-test-id": key}))
    assert r.status == 504 and r.body == b""
    assert TIMEOUT_MS / 1000 - 0.1 <= elapsed < TIMEOUT_MS / 1000 + 2
    deadline = time.monotonic() + 5
    while (seen := await tester.state_get("conformance.body", key)) is None:
        assert time.monotonic() < deadline, "the handler never got past its read"
        await asyncio.sleep(0.05)
    assert seen["bytes"] == 0 and seen["body_is_none"] is False
    assert seen["waited"] >= TIMEOUT_MS / 1000 - 0.2


async def test_h2_other_content_types_stream_raw_bytes(tester: MotiaTester) -> None:
    """H2: views.rs 270-289 (not `application/json`: `body` is Null and a spawned task sends
    every body frame into the request channel, dropping the sender at the end)."""
    payload = bytes(range(256)) * 1200 + b"\r\n\x00end"  # ~300 KiB, several channel frames
    cases = {
        "application/octet-stream": payload,
        "text/plain; charset=utf-8": "Grüße\r\n".encode() * 10,
        "Application/JSON": b'{"not": "parsed"}',  # the engine's check is case-sensitive
        "application/vnd.api+json": b'{"not": "parsed either"}',
        "": b"no content type at all",
    }
    for content_type, body in cases.items():
        key = uuid.uuid4().hex
        headers = {"x-test-id": key, **({"Content-Type": content_type} if content_type else {})}
        r, elapsed = await timed(raw(tester, "POST", "/conformance/body/read", data=body, headers=headers))
        assert r.status == 200, (content_type, r.text)
        got = r.json()
        assert got["body_is_none"] is True, content_type
        assert got["bytes"] == len(body) and got["sha256"] == hashlib.sha256(body).hexdigest(), content_type
        assert elapsed < TIMEOUT_MS / 1000, content_type
    r = await raw(tester, "POST", "/conformance/body/read", data=b"", headers={"Content-Type": "text/plain"})
    assert r.status == 200 and r.json()["bytes"] == 0  # an empty body: the channel just ends


async def test_h3_result_before_channel_body_answers_json_with_status_only(tester: MotiaTester) -> None:
    """H3: views.rs 380-465 (a biased select between the response channel and the call: a
    non-null result first → `(status_code, Json(body))` from `HttpResponse::from_function_return`,
    types.rs 46-67, which reads `status_code` (default 200) and `body` (default `{}`); headers and
    `set_status` are dropped. A null result breaks to phase 2, which waits on the channel alone:
    never closed → the TimeoutLayer's 504)."""
    r = await tester.get("/conformance/answer/result-first")
    assert r.status == 201
    assert "X-Step" not in r.headers
    assert r.headers["Content-Type"] == "application/json"
    assert r.body == '{"a":[1.5e-7,1e+16,"ü"],"b":1}'.encode()  # serde_json: sorted, compact

    r = await tester.get("/conformance/answer/plain-status")
    assert r.status == 200 and r.json() == {"plain": True}  # `status` is not `status_code`

    r = await tester.get("/conformance/answer/no-body-key")
    assert r.status == 409 and r.body == b"{}"

    r, elapsed = await timed(tester.get("/conformance/answer/nothing"))
    assert r.status == 504 and r.body == b""
    assert elapsed >= TIMEOUT_MS / 1000 - 0.1

    # The other branch: everything on the channel before the result keeps status and headers.
    r = await tester.get("/conformance/answer/streamed")
    assert r.status == 206
    assert r.headers["X-Step"] == "h3" and r.headers["Content-Type"] == "text/plain"
    assert r.body == b"part one, part two"


async def test_h4_routing_errors_params_and_no_size_limit(tester: MotiaTester) -> None:
    """H4: views.rs 74-101 (`extract_path_params` on the raw `uri.path()`: not
    percent-decoded), 567-576 (a matched axum route without a registry entry → 404 "Not Found");
    axum's router (api_core.rs 221-277): an unknown path → 404 with an empty body, a known path
    with another method → 405; the TimeoutLayer's 504 has an empty body; no body size limit
    (neither the router nor views.rs caps the body)."""
    r = await raw(tester, "GET", "/conformance/items/a%20b%2Fc?x=%41&x=2")
    assert r.status == 200
    assert r.json()["path_params"] == {"id": "a%20b%2Fc"} and r.json()["query_params"] == {"x": "2"}
    assert r.json()["route"] == "/conformance/items/:id"
    r = await raw(tester, "GET", "/conformance/items/special")
    assert r.json()["route"] == "/conformance/items/special"  # a static segment wins

    for target in ("/no/such/route", "/conformance/items/42/", "/conformance/items/", "//conformance/items/42"):
        r = await raw(tester, "GET", target)
        assert r.status == 404 and r.body == b"", target
    r = await raw(tester, "DELETE", "/conformance/items/42")
    assert r.status == 405 and r.body == b"" and r.headers["Allow"] == "GET,HEAD,POST"
    r = await raw(tester, "HEAD", "/conformance/items/42")  # axum sends HEAD to the GET route ...
    assert r.status == 404 and r.headers["Content-Type"].startswith("text/plain")  # ... views.rs finds no HEAD entry

    r = await tester.get("/conformance/answer/nothing")
    assert r.status == 504 and r.body == b""

    big = b"\x00\x01\x02\x03" * (3 * 1024 * 1024)  # 12 MiB, above the old stand-in's 10 MiB cap
    r = await raw(tester, "POST", "/conformance/body/stream-first", data=big, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200
    assert json.loads(r.body) == {"bytes": len(big), "sha256": hashlib.sha256(big).hexdigest()}


async def test_incoming_traceparent_does_not_continue_the_trace(tester: MotiaTester) -> None:
    """views.rs 190-207: the HTTP span is created without reading `traceparent`, so the
    handler's trace is a new one (the answer's `x-iii-trace-id` is a stand-in extra)."""
    incoming = "0af7651916cd43dd8448eb211c80319c"
    r = await tester.get("/conformance/items/7", headers={"traceparent": f"00-{incoming}-b7ad6b7169203331-01"})
    assert r.status == 200
    assert r.json()["trace_id"] != incoming
    assert r.headers["x-iii-trace-id"] == r.json()["trace_id"]


class ConfiguredTester(MotiaTester):
    """The tester with extra RestApiModule fields."""

    rest_extra: dict[str, Any] = {}

    def write_config(self) -> Path:
        path = super().write_config()
        doc = yaml.safe_load(path.read_text())
        doc["modules"][0]["config"].update(self.rest_extra)
        path.write_text(yaml.safe_dump(doc))
        return path


async def test_h5_rest_config_fields(tester: MotiaTester, tmp_path: Path) -> None:
    """H5: modules/rest_api/config.rs 25-42 (`RestApiConfig`, `deny_unknown_fields`: port,
    host, default_timeout, cors, concurrency_request_limit) and api_core.rs 159-186, 279-322
    (a CorsLayer on every route: permissive without `cors`, which answers every OPTIONS itself;
    a ConcurrencyLimitLayer per route)."""
    rest = {"class": "modules::api::RestApiModule", "config": {"port": 3111, "max_request_bytes": 10}}
    with pytest.raises(EngineConfigError, match="max_request_bytes"):
        parse_config({"modules": [rest]})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"modules": [rest]}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "iii_local", "run", "-c", str(bad)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "max_request_bytes" in proc.stdout + proc.stderr

    # No `cors`: permissive, on answers and errors alike; OPTIONS never reaches a handler.
    for target in ("/conformance/items/1", "/no/such/route"):
        r = await raw(tester, "GET", target, headers={"Origin": "https://a.example"})
        assert r.headers["Access-Control-Allow-Origin"] == "*" and r.headers["Access-Control-Expose-Headers"] == "*"
    r = await raw(tester, "OPTIONS", "/conformance/items/1", headers={"Origin": "https://a.example"})
    assert r.status == 200 and r.body == b"" and r.headers["Access-Control-Allow-Methods"] == "*"

    configured = ConfiguredTester(STEPS, rest_timeout_ms=5000)
    configured.rest_extra = {"cors": {"allowed_origins": ["https://app.example"], "allowed_methods": ["GET", "POST"]},
                             "concurrency_request_limit": 1}
    await configured.start(wait_functions=FUNCTIONS)
    try:
        r = await raw(configured, "OPTIONS", "/conformance/items/1", headers={"Origin": "https://app.example"})
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert r.headers["Access-Control-Allow-Methods"] == "GET,POST"
        r = await raw(configured, "GET", "/conformance/items/1", headers={"Origin": "https://evil.example"})
        assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        assert "Access-Control-Expose-Headers" not in r.headers

        # One request at a time per route: the second waits for the first; another route does not.
        results = await asyncio.gather(timed(configured.get("/conformance/slow?s=0.6")), timed(configured.get("/conformance/slow?s=0.6")),
                                       timed(configured.get("/conformance/slow-too?s=0.6")))
        assert [r.status for r, _ in results] == [200, 200, 200]
        same_route = sorted(elapsed for _, elapsed in results[:2])
        assert same_route[1] >= 1.15 and same_route[1] - same_route[0] >= 0.5
        assert results[2][1] < same_route[1]
    finally:
        await configured.stop()
