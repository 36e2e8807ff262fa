"""Queue throughput: messages/s from enqueue to a no-op handler through engine + real worker.

Messages are enqueued through the engine's console API in batches from several clients
(the same `enqueue` path a step's ctx.enqueue takes inside the engine); the clock stops
when every message has been delivered and acknowledged. A report of the stand-in's speed
(production runs the real engine), not a goal.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, session  # noqa: E402

from iii_local.testing import MotiaTester  # noqa: E402

WRITE = {"X-Console-Request": "1"}
"""The console API takes writes only with this header (and JSON): iii_local/console_guard.py."""


async def main(total: int = 10000, clients: int = 16) -> None:
    tester = MotiaTester(Path(__file__).parent / "steps")
    await tester.start(wait_functions=2)
    try:
        async with session() as s:
            url = tester.base_url + "/_console/enqueue"
            per = total // clients

            async def client(c: int) -> None:
                for i in range(per):
                    async with s.post(url, json={"topic": "bench.ingested", "data": {"c": c, "i": i}}, headers=WRITE) as r:
                        if r.status != 200:  # a refused enqueue would leave the count waiting forever
                            raise SystemExit(f"enqueue refused: {r.status} {await r.text()}")
                        await r.read()

            before = (await tester.console("GET", "/_console/queues"))["delivered"]
            t0 = time.perf_counter()
            await asyncio.gather(*(client(c) for c in range(clients)))
            enqueued_at = time.perf_counter()
            while (await tester.console("GET", "/_console/queues"))["delivered"] - before < per * clients:
                await asyncio.sleep(0.02)
            t1 = time.perf_counter()
        n = per * clients
        emit("queue_throughput", {
            "messages": n,
            "enqueue_rate_per_s": n / (enqueued_at - t0),
            "end_to_end_msgs_per_s": n / (t1 - t0),
            "target": "report (the stand-in engine)",
        })
    finally:
        await tester.stop()


if __name__ == "__main__":
    asyncio.run(main())
