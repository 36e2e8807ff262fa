"""The tester the queue conformance tests share: MotiaTester plus the steps' delivery log."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from iii_local.testing import MotiaTester
from tests.iii_local.conformance.queue_steps.deliveries import read, release_path


class QueueTester(MotiaTester):
    log: Path

    def deliveries(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return read(self.log, event, **match)

    def release(self, key: str) -> None:
        release_path(self.log, key).touch()

    async def wait_for(self, event: str, count: int = 1, timeout: float = 10.0, **match: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.deliveries(event, **match)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} {event} {match}, saw {len(found)}")
            await asyncio.sleep(0.05)

    async def emit(self, topic: str, data: Any, **extra: Any) -> dict[str, Any]:
        r = await self.post("/cf/emit", {"topic": topic, "data": data, **extra})
        assert r.status == 200, (r.status, r.text)
        return r.json()

    async def queue_row(self, topic: str) -> dict[str, Any]:
        rows = (await self.console("GET", "/_console/queues"))["queues"]
        return next(r for r in rows if r["topic"] == topic)


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of runs in progress at one time."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    cur = best = 0
    for _, d in edges:
        cur += d
        best = max(best, cur)
    return best
