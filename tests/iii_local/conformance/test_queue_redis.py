"""Rows R1-R2: engine 0.8.3's `modules::queue::RedisAdapter` is publish/subscribe.

Source: `engine/src/modules/queue/adapters/redis_adapter.rs` at tag iii/v0.8.3. Two
stand-in engines (A and B), each with its worker over `queue_steps/redis/`, share one
private redis-server (private so the last test may stop it without touching the
session's Redis). Handlers write what they did to one JSON-lines file per engine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.iii_local.conformance.queue_support import QueueTester, max_overlap

STEPS = Path(__file__).parent / "queue_steps" / "redis"
FUNCTIONS = 6


class RedisQueueTester(QueueTester):
    async def emit(self, topic: str, data: Any, **extra: Any) -> dict[str, Any]:
        r = await self.post("/cfr/emit", {"topic": topic, "data": data, **extra})
        assert r.status == 200, (r.status, r.text)
        return r.json()


def _tester(name: str, redis_url: str, logdir: Path) -> RedisQueueTester:
    log = logdir / f"{name}.jsonl"
    t = RedisQueueTester(
        STEPS,
        env={"CONFORMANCE_LOG": str(log), "CONFORMANCE_ENGINE": name},
        extra_modules=[{"class": "modules::queue::QueueModule",
                        "config": {"adapter": {"class": "modules::queue::RedisAdapter", "config": {"redis_url": redis_url}}}}],
    )
    t.log = log
    return t


class Engines:
    def __init__(self, server: RedisServer, a: RedisQueueTester, b: RedisQueueTester, early_receivers: int) -> None:
        self.server = server
        self.a = a
        self.b = b
        self.early_receivers = early_receivers


@pytest.fixture(scope="module")
async def engines(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Engines]:
    import redis.asyncio as aioredis

    server = RedisServer()
    server.start()
    logdir = tmp_path_factory.mktemp("queue-redis-conformance")
    client = aioredis.from_url(server.url)
    # Another engine's enqueue while no engine is subscribed: the adapter's own envelope.
    early = await client.publish("cfr.basic", json.dumps({"__trace": {"traceparent": None, "baggage": None}, "data": {"n": -1}}))
    await client.aclose()
    a, b = _tester("A", server.url, logdir), _tester("B", server.url, logdir)
    try:
        await a.start(wait_functions=FUNCTIONS)
        await b.start(wait_functions=FUNCTIONS)
        yield Engines(server, a, b, early)
    finally:
        await a.stop()
        await b.stop()
        server.stop()


async def test_r1_enqueue_is_a_publish_nothing_stored_nothing_retried(engines: Engines) -> None:
    """R1 — redis_adapter.rs 93-130 (`enqueue` = PUBLISH of `{__trace, data}`, nothing else),
    132-160/272-290 (a failed handler is only logged), 332-342 (no DLQ). A message published
    while no engine was subscribed reached nobody and never arrives; a failing handler runs
    once, with no retry and no dead letter; Redis holds no key at all."""
    import redis.asyncio as aioredis

    a = engines.a
    assert engines.early_receivers == 0
    trace_id = (await a.emit("cfr.basic", {"n": 1}))["trace_id"]
    got = await a.wait_for("basic", n=1)
    assert got[0]["trace_id"] == trace_id  # the trace rides in the envelope
    await a.emit("cfr.fail", {"n": 1})
    await a.wait_for("fail", n=1)
    await asyncio.sleep(1.0)  # maxRetries=5 with 100 ms backoff would have retried by now
    assert len(a.deliveries("fail", n=1)) == 1
    assert not a.deliveries("basic", n=-1), "a message published before any subscriber arrived"
    assert await a.dead_letters() == []
    row = await a.queue_row("cfr.fail")
    assert row["adapter"] == "redis" and row["dead"] == 0 and row["depth"] == 0
    client = aioredis.from_url(engines.server.url)
    try:
        assert await client.dbsize() == 0, await client.keys("*")
    finally:
        await client.aclose()


async def test_r2_every_engine_gets_every_message_through_its_first_trigger(engines: Engines) -> None:
    """R2 — redis_adapter.rs 132-160 (`subscribe`: one subscription per topic and engine; a
    second trigger of the topic is only warned about) and 272-290 (each message spawns its
    handler: no concurrency limit). Two steps subscribe to cfr.fanout on both engines: each
    message is handled once per engine, always by the same one of the two steps; five
    messages to a step with concurrency 1 all run at once."""
    a, b = engines.a, engines.b
    for n in range(5):
        await a.emit("cfr.fanout", {"n": n})
    for t in (a, b):
        await t.wait_for("fanout", 5)
    await asyncio.sleep(0.5)
    for t in (a, b):
        got = t.deliveries("fanout")
        assert sorted(r["n"] for r in got) == list(range(5)), (t.log.name, got)
        assert len({r["step"] for r in got}) == 1, "the second subscriber of the topic got messages"
        row = await t.queue_row("cfr.fanout")
        assert len(row["subscribers"]) == 1
    for n in range(5):
        await b.console("POST", "/_console/enqueue", {"topic": "cfr.burst", "data": {"n": n}})
    for t in (a, b):
        await t.wait_for("burst.end", 5)
        starts = {r["n"]: r["t"] for r in t.deliveries("burst.start")}
        runs = [(starts[r["n"]], r["t"]) for r in t.deliveries("burst.end")]
        assert max_overlap(runs) == 5, "the Redis adapter limited concurrency"


async def test_r1_a_failed_publish_is_only_logged(engines: Engines) -> None:
    """R1 — redis_adapter.rs 122-129 (a failed PUBLISH is logged and `enqueue` returns) and
    modules/queue/queue.rs 72-77 (`enqueue` answers success regardless). With Redis down the
    step's `ctx.enqueue` succeeds and the message is gone. (Runs last: engine A's
    subscriptions end with their connection.)"""
    a = engines.a
    engines.server.stop(kill=True)
    try:
        t0 = time.time()
        r = await a.post("/cfr/emit", {"topic": "cfr.basic", "data": {"n": 2}})
        assert r.status == 200, r.text
        logs = await a.logs(level="error", wait_for="Failed to publish to Redis queue")
        assert any(rec["message"] == "Failed to publish to Redis queue" and rec["time"] >= t0 for rec in logs)
        store = (await a.console("GET", "/_console/queues"))["store"]
        assert store["publish_errors"] >= 1
    finally:
        engines.server.start()
    await asyncio.sleep(0.5)
    assert not a.deliveries("basic", n=2)
