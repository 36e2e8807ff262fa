"""Attacks with request bodies on the stand-in engine's REST port (issue 14), through the real
motia worker: a trickling body, a chunked body past the limit, a body cut short, nesting bombs
(on the REST routes and on the worker port)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from iii_local.testing import PROJECT_ROOT, MotiaTester
from tests.iii_local.attack_support import FakeWorker, raw_exchange, status_of

STEPS = PROJECT_ROOT / "tests" / "iii_local" / "conformance" / "http_steps"
FUNCTIONS = 13
LIMIT = 1024 * 1024
BODY_TIMEOUT_MS = 1500
READ = "/conformance/body/read"  # its handler records every run under conformance.body/<x-test-id>


class OneAtATime(MotiaTester):
    """One request per route at a time (`concurrency_request_limit: 1`)."""

    def write_config(self) -> Path:
        path = super().write_config()
        doc = yaml.safe_load(path.read_text())
        doc["modules"][0]["config"]["concurrency_request_limit"] = 1
        path.write_text(yaml.safe_dump(doc))
        return path


@pytest.fixture(scope="module")
async def tester() -> AsyncIterator[MotiaTester]:
    t = OneAtATime(STEPS, rest_timeout_ms=8000, local_engine={"max_body_bytes": LIMIT, "body_timeout_ms": BODY_TIMEOUT_MS})
    await t.start(wait_functions=FUNCTIONS)
    try:
        yield t
    finally:
        await t.stop()


def _head(path: str, test_id: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"x-test-id: {test_id}\r\n{extra}\r\n").encode()


async def _handled(t: MotiaTester, test_id: str) -> object:
    await asyncio.sleep(0.5)  # a handler that did run has recorded itself by now
    return await t.state_get("conformance.body", test_id)


async def test_a_trickling_body_holds_no_slot_and_gets_408(tester: MotiaTester) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tester.rest_port)
    writer.write(_head(READ, "trickle", "Content-Length: 100\r\n"))

    async def trickle() -> None:
        for _ in range(100):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.1)

    dripping = asyncio.create_task(trickle())
    try:
        await asyncio.sleep(0.3)
        started = time.monotonic()
        r = await tester.post(READ, data=b"0123456789", headers={"Content-Type": "application/octet-stream", "x-test-id": "beside"})
        assert r.status == 200 and r.json()["bytes"] == 10
        assert time.monotonic() - started < 1.0, "the trickling body held the route's only slot"
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert status_of(answer) == 408, answer[:200]
    finally:
        dripping.cancel()
        writer.close()
    assert await _handled(tester, "trickle") is None, "a body that never completed reached the handler"


async def test_a_chunked_body_past_the_limit_is_413_and_reaches_no_handler(tester: MotiaTester) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse early
        for _ in range(3):
            yield b"x" * (LIMIT // 2)

    async with aiohttp.ClientSession() as s:
        async with s.post(tester.base_url + READ, data=chunks(), headers={"Content-Type": "application/octet-stream", "x-test-id": "chunked"}) as r:
            assert r.status == 413, await r.text()
    assert await _handled(tester, "chunked") is None, "a body past the limit reached the handler"
    answer = await raw_exchange(tester.rest_port, _head(READ, "declared", f"Content-Length: {LIMIT + 1}\r\n"))
    assert status_of(answer) == 413
    r = await tester.post(READ, data=b"x" * LIMIT, headers={"Content-Type": "application/octet-stream", "x-test-id": "at-limit"})
    assert r.status == 200 and r.json()["bytes"] == LIMIT


async def test_a_body_cut_short_reaches_no_handler(tester: MotiaTester) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tester.rest_port)
    writer.write(_head(READ, "cut", "Content-Length: 100000\r\n") + b"0123456789")
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    broken = _head(READ, "bad-chunk", "Transfer-Encoding: chunked\r\n") + b"a\r\n0123456789\r\nzz\r\n"
    answer = await raw_exchange(tester.rest_port, broken)
    assert status_of(answer) == 400, answer[:200]
    assert await _handled(tester, "cut") is None, "a body cut short reached the handler"
    assert await _handled(tester, "bad-chunk") is None
    refused = [r["message"] for r in await tester.logs(level="warn") if r["message"].startswith("request refused")]
    assert any("ended after 10 of 100000" in m for m in refused), refused


async def test_nesting_bombs_never_give_a_500(tester: MotiaTester) -> None:
    """serde_json stops at 128 nested levels (its `remaining_depth`), so the engine hands the
    handler a null body (views.rs 251-269); the stand-in's reader must not raise RecursionError."""
    for bomb in (b"[" * 100_000, b"{\"a\":" * 100_000):
        r = await tester.post("/conformance/body/parsed", data=bomb, headers={"Content-Type": "application/json"})
        assert r.status == 200 and r.json()["body"] is None, r.text

    async with FakeWorker(tester.worker_port) as fake:
        await fake.send("[" * 100_000)
        assert fake.ws is not None
        await fake.ws.send_bytes(b"LOGS" + b"[" * 100_000)
        await fake.ws.send_bytes(b"OTLP" + b'{"resourceSpans": [' * 20_000)
        await fake.register_function("fake::after-the-bomb")
        assert await fake.call("engine::functions::list") is not None
        listed = (await tester.console("GET", "/_console/functions"))["functions"]
        assert [f["worker_id"] for f in listed if f["function_id"] == "fake::after-the-bomb"] == [fake.worker_id]
