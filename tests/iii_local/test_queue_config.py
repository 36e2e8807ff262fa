"""The step's queue config, honoured by the stand-in: fifo per messageGroupId, delaySeconds,
concurrency (retries and backoff are in test_compat.py)."""

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


async def test_fifo_one_at_a_time_per_group_in_order_groups_in_parallel(tester: MotiaTester) -> None:
    for n in range(8):
        for group in ("g1", "g2"):
            await tester.enqueue("qc.fifo", {"group": group, "n": n}, group_id=group)
    await tester.wait_idle()
    runs = await tester.state_list("qc.fifo")
    for group in ("g1", "g2"):
        mine = [runs[f"{group}:{n:03d}"] for n in range(8)]
        assert _overlaps(mine) == 1, f"{group}: two messages of one group ran at once"
        assert [r["start"] for r in mine] == sorted(r["start"] for r in mine), f"{group}: out of order"
    assert _overlaps(list(runs.values())) == 2, "groups did not run in parallel"
    r = await tester.post("/_console/enqueue", json_body={"topic": "qc.fifo", "data": {"group": "x", "n": 0}})
    assert r.status == 400 and "messageGroupId" in r.text


async def test_delay_seconds_holds_the_first_delivery(tester: MotiaTester) -> None:
    t0 = time.time()
    await tester.enqueue("qc.delayed", {"key": "d1"})
    await asyncio.sleep(0.5)
    assert await tester.state_get("qc.delayed", "d1") is None
    await tester.wait_idle()
    assert (await tester.state_get("qc.delayed", "d1"))["at"] - t0 >= 0.95


async def test_concurrency_limits_parallel_deliveries(tester: MotiaTester) -> None:
    for i in range(6):
        await tester.enqueue("qc.limited", {"key": f"k{i}"})
    await tester.wait_idle()
    runs = list((await tester.state_list("qc.limited")).values())
    assert len(runs) == 6
    assert _overlaps(runs) == 2
