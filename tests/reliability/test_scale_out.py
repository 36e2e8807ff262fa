"""Scale-out as production does it: several engines with their workers sharing one Redis.

Two stand-in engines run the project's steps with the Redis queue adapter, Redis state and the
Redis cron adapter, behind a relay that balances webhooks over them (as nginx's upstream would).
On engine 0.8.3 that means (../shared/spec/iii-engine-0.8.3-semantics.md):
- R2 (modules/queue/adapters/redis_adapter.rs 132-160, 272-342): every engine gets every
  message, so each event is handled twice;
- R1 (redis_adapter.rs 93-130): what an engine was running when it died is gone;
- C2 (modules/cron/adapters/redis_adapter.rs 23-27, 79-107): the cron lock is per trigger id,
  which is random per worker, so both engines fire every schedule.
The project copes through the sync ledger (one claim per mark), the entity locks and its own
cron slot claims. Shown here: each document is uploaded exactly once, each sweeper slot runs
on one engine only although both fire it, and killing one engine mid-run loses nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import pytest

from iii_local.testing import MotiaTester
from tests.conftest import RedisServer
from tests.reliability.private_stack import PrivateStack, case_pipeline, clear_faults, sim_fault, start_private_stack
from tests.reliability.test_crash_recovery import FAST_LEDGER
from tests.reliability.test_document_pipeline_faults import sim_json

SWEEPER = "Ledger Sweeper"
SKIPPED = "already ran on another engine"


@pytest.fixture
async def two_engines(redis_server: RedisServer) -> AsyncIterator[PrivateStack]:
    # Every 4 s: a fire up to 2 s late still counts as on schedule (services/platform/ledger/cron.py
    # tolerance: half the interval), also on a loaded 2-core CI machine running two engines.
    env = {**FAST_LEDGER, "LEDGER_SWEEP_CRON": "*/4 * * * * *"}
    stack = await start_private_stack(redis_server.url, db=10, engines=2, redis_queue=True, extra_env=env)
    yield stack
    await stack.stop()


async def _sweeper_slots(engine: MotiaTester, until: float) -> tuple[set[int], set[int]]:
    """(slots this engine fired, slots it ran) for the sweeper, up to `until` (epoch seconds)."""
    traces = (await engine.console("GET", f"/_console/traces?limit=1000&step={SWEEPER}"))["traces"]
    fired = {tr["trace_id"]: math.floor(tr["started"]) for tr in traces if tr["started"] < until}
    logs = (await engine.console("GET", "/_console/logs?limit=10000"))["logs"]
    skipped = {entry["trace_id"] for entry in logs if SKIPPED in entry["message"]}
    return set(fired.values()), {slot for trace_id, slot in fired.items() if trace_id not in skipped}


@pytest.mark.slow
async def test_two_engines_on_one_redis_upload_once_and_run_each_cron_slot_once(two_engines: PrivateStack) -> None:
    stack = two_engines
    a, b = stack.engines
    async with case_pipeline(stack) as (pipeline, before):
        await pipeline.create_docs(40)
        await pipeline.wait_all_clean(timeout=120)
        await pipeline.check_exactly_once(before)

        # Both engines fire every sweeper slot (C2); each slot runs on one of them only.
        deadline = time.monotonic() + 60
        while True:
            until = time.time() - 3  # leave time for the last runs' log lines to arrive
            fired_a, ran_a = await _sweeper_slots(a, until)
            fired_b, ran_b = await _sweeper_slots(b, until)
            both = fired_a & fired_b
            if len(both) >= 5 or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        assert len(both) >= 5, f"the engines did not both fire the sweeper: {sorted(fired_a)[-5:]} / {sorted(fired_b)[-5:]}"
        twice = ran_a & ran_b
        assert not twice, f"{len(twice)} sweeper slot(s) ran on both engines, e.g. {sorted(twice)[:3]}"
        assert both <= ran_a | ran_b, "a slot that both engines fired ran on neither"


@pytest.mark.slow
async def test_killing_one_engine_loses_nothing(two_engines: PrivateStack) -> None:
    stack = two_engines
    a, b = stack.engines
    async with case_pipeline(stack) as (pipeline, before):

        # Slow uploads, so that B is in the middle of syncs when it dies.
        await sim_fault(stack.sims.xai.url, {"method": "POST", "path": "^/v1/files$", "latency_ms": 1000})
        await pipeline.create_docs(30)
        await sim_json("POST", f"{stack.sims.espocrm.url}/_sim/webhooks/flush?timeout=10")
        await asyncio.sleep(1.5)
        await b.kill()  # engine and worker SIGKILLed, not restarted: their running work is lost (R1)
        await clear_faults(stack.sims.xai.url)
        await pipeline.create_docs(30)  # webhooks keep coming; the relay's turns to B fail and EspoCRM retries
        await pipeline.wait_all_clean(timeout=180)
        await pipeline.check_exactly_once(before)
        logs = (await a.console("GET", "/_console/logs?limit=10000"))["logs"]
        taken_over = [e for e in logs if "took over a run whose worker died" in e["message"]]
        assert taken_over, "B was running nothing when it died: the test shows nothing"
