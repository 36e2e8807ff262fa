"""A step's queue config on the stand-in, as engine 0.8.3 reads it: only `concurrency` and
`type: fifo` count (builtins/queue.rs 559-625); `delaySeconds` is dropped and Motia's
`messageGroupId` never reaches the engine (modules/queue/queue.rs 40-44). Retries and
backoff: tests/iii_local/conformance/test_queue.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from iii_local.testing import MotiaTester

STEPS = Path(__file__).parent / "queue_steps"


@pytest.fixture(scope="module")
async def tester():
    t = MotiaTester(STEPS)
    await t.start(wait_functions=3)
    yield t
    await t.stop()


def _overlaps(spans: list[dict[str, float]]) -> int:
    """The largest number of runs in progress at one time."""
    edges = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans], key=lambda e: (e[0], e[1]))
    cur = best = 0
    for _, d in edges:
        cur += d
        best = max(best, cur)
    return best


async def test_fifo_is_one_at_a_time_in_order_whatever_the_message_group(tester: MotiaTester) -> None:
    order = []
    for n in range(6):
        for group in ("g1", "g2"):
            await tester.enqueue("qc.fifo", {"group": group, "n": n}, group_id=group)
            order.append(f"{group}:{n:03d}")
    await tester.wait_idle()
    runs = await tester.state_list("qc.fifo")
    assert sorted(runs) == sorted(order)
    assert _overlaps(list(runs.values())) == 1, "two messages ran at once: groups are not parallel on engine 0.8.3"
    assert sorted(order, key=lambda k: runs[k]["start"]) == order, "not in enqueue order"


async def test_delay_seconds_is_ignored(tester: MotiaTester) -> None:
    t0 = time.time()
    await tester.enqueue("qc.delayed", {"key": "d1"})
    for _ in range(40):
        if await tester.state_get("qc.delayed", "d1") is not None:
            break
        await asyncio.sleep(0.05)
    done = await tester.state_get("qc.delayed", "d1")
    assert done is not None and done["at"] - t0 < 0.8, "the first delivery waited for delaySeconds"


async def test_concurrency_limits_parallel_deliveries(tester: MotiaTester) -> None:
    for i in range(6):
        await tester.enqueue("qc.limited", {"key": f"k{i}"})
    await tester.wait_idle()
    runs = list((await tester.state_list("qc.limited")).values())
    assert len(runs) == 6
    assert _overlaps(runs) == 2
