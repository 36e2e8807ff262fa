"""Nothing acknowledged is lost on the real engine's queue (issue #12, section 5).

The stand-in reproduces engine 0.8.3 (../shared/spec/iii-engine-0.8.3-semantics.md):
- Q5 (engine/src/builtins/kv.rs 184-215, builtins/queue.rs 221-292): the builtin adapter's
  `file_based` store is written every `save_interval_ms`, so a SIGKILL loses the jobs enqueued
  since, and jobs in flight (`queue:{topic}:active`) are never delivered again;
- R1 (modules/queue/adapters/redis_adapter.rs 93-130): the Redis adapter only PUBLISHes, so a
  message whose handler had not finished when the engine died is gone;
- Q3 (engine/mod.rs 803-846): no invocation timeout, a hung handler would hold its slot for ever.
Here webhooks are acknowledged, then the engine and the worker are SIGKILLed together before
the work is done; after the restart every document must be synced within 2 minutes, with
exactly one upload each, without the reconciler's help: the sync ledger (services/platform/ledger)
and its sweeper are what bring the work back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import RedisServer
from tests.e2e import LEDGER_FAST_ENV
from tests.reliability.private_stack import PrivateStack, case_pipeline, clear_faults, sim_fault, start_private_stack
from tests.reliability.test_document_pipeline_faults import sim_json

FAST_LEDGER = dict(LEDGER_FAST_ENV)  # sweep every second, short leases (locks: 10 s)
DOCS = 40


async def _ready_jobs(stack: PrivateStack) -> int:
    """Jobs the engine itself would still deliver (queued or retrying, not stranded or dead)."""
    rows = (await stack.engine.console("GET", "/_console/queues"))["queues"]
    return sum(int(r.get("depth", 0)) + int(r.get("retrying", 0)) for r in rows)


async def _kill_after_ack(stack: PrivateStack, redis_queue: bool) -> None:
    async with case_pipeline(stack) as (pipeline, before):
        # Slow xAI down so that, once every webhook is acknowledged, most work is still queued
        # or running when the engine and the worker die.
        await sim_fault(stack.sims.xai.url, {"method": "POST", "path": "^/v1/files$", "latency_ms": 1500})
        await pipeline.create_docs(DOCS)
        await sim_json("POST", f"{stack.sims.espocrm.url}/_sim/webhooks/flush?timeout=10")
        not_clean_at_kill = len(await pipeline.not_clean())
        assert not_clean_at_kill > DOCS // 2, "the work finished before the kill: the test shows nothing"
        await stack.engine.kill_worker(wait=False)
        await stack.engine.restart_engine(kill=True, functions=10)
        await clear_faults(stack.sims.xai.url)
        left = len(await pipeline.not_clean())
        if not redis_queue:
            # The engine alone would not finish: what it still holds is less than what is left.
            assert await _ready_jobs(stack) < left, "the engine lost nothing at the kill: the ledger is not shown"
        deadline = time.monotonic() + 120
        while await pipeline.not_clean():
            assert time.monotonic() < deadline, f"not synced 2 minutes after the restart: {(await pipeline.not_clean())[:3]}"
            await asyncio.sleep(0.5)
        await pipeline.check_exactly_once(before)


@pytest.fixture
async def builtin_stack(redis_server: RedisServer) -> AsyncIterator[PrivateStack]:
    stack = await start_private_stack(redis_server.url, db=7, extra_env=FAST_LEDGER)
    yield stack
    await stack.stop()


@pytest.fixture
async def redis_queue_stack(redis_server: RedisServer) -> AsyncIterator[PrivateStack]:
    stack = await start_private_stack(redis_server.url, db=8, redis_queue=True, extra_env=FAST_LEDGER)
    yield stack
    await stack.stop()


@pytest.mark.slow
async def test_engine_and_worker_killed_after_ack_builtin_adapter(builtin_stack: PrivateStack) -> None:
    await _kill_after_ack(builtin_stack, redis_queue=False)


@pytest.mark.slow
async def test_engine_and_worker_killed_after_ack_redis_adapter(redis_queue_stack: PrivateStack) -> None:
    await _kill_after_ack(redis_queue_stack, redis_queue=True)


@pytest.fixture
async def boxed_stack(redis_server: RedisServer) -> AsyncIterator[PrivateStack]:
    # Documents get a time-box of 900 s × 0.005 = 4.5 s here.
    stack = await start_private_stack(redis_server.url, db=9, extra_env={**FAST_LEDGER, "LEDGER_TIME_BOX_SCALE": "0.005"})
    yield stack
    await stack.stop()


@pytest.mark.slow
async def test_hung_handler_is_stopped_and_retried(boxed_stack: PrivateStack) -> None:
    """The engine never stops a handler (Q3); the ledger's time-box does, and the retry syncs."""
    stack = boxed_stack
    async with case_pipeline(stack) as (pipeline, before):
        # The first upload hangs for 10 minutes (once); later ones answer normally.
        await sim_fault(stack.sims.xai.url, {"method": "POST", "path": "^/v1/files$", "latency_ms": 600_000, "times": 1})
        await pipeline.create_docs(1)
        deadline = time.monotonic() + 60
        while await pipeline.not_clean():
            assert time.monotonic() < deadline, "the hung run was not stopped and retried within a minute"
            await asyncio.sleep(0.3)
        logs: dict[str, Any] = await stack.engine.console("GET", "/_console/logs?limit=5000")
        lines = [entry["message"] for entry in logs["logs"]]
        assert any("time-box" in line for line in lines), "the retry did not come from the time-box"
        await pipeline.check_exactly_once(before)
