"""HTTP ingest: a JSON POST to a step that enqueues one message, through engine + real worker,
against the same POST to a bare aiohttp handler, in one run.

Reports, not goals (the stand-in engine's own speed; production runs the real engine): the
ratio engine rps / bare rps and the p99 at 500 requests/s.
`engine_rps` counts answered requests; the queue deliveries they caused may finish a little
later (`engine_queue_drain_s`, folded into `engine_rps_incl_drain`). Every phase starts with
the engine idle, so the bare run does not share the CPU with leftover deliveries.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import closed_loop, emit, open_loop, session  # noqa: E402

from iii_local.testing import MotiaTester, free_port  # noqa: E402

BODY = {"id": "5f1e2d3c4b5a69788", "name": "Mietvertrag.pdf", "fileStatus": "new"}


async def bare_server() -> tuple[web.AppRunner, str]:
    async def ingest(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response({"queued": True}, status=202)

    app = web.Application()
    app.router.add_post("/bench/ingest", ingest)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def main(total: int = 4000, concurrency: int = 32) -> None:
    tester = MotiaTester(Path(__file__).parent / "steps")
    await tester.start(wait_functions=2)
    runner, bare_url = await bare_server()
    try:
        async with session() as s:
            async def via(url: str) -> int:
                async with s.post(url, json=BODY) as r:
                    await r.read()
                    return r.status

            engine_url = tester.base_url + "/bench/ingest"
            await closed_loop(lambda: via(engine_url), 300, 8)  # warm-up
            await tester.wait_idle(timeout=120, settle=0.02)
            engine = await closed_loop(lambda: via(engine_url), total, concurrency)
            # The queue deliveries may still run after the last HTTP answer: time them, and
            # let them finish before the bare run so that it does not share the CPU with them.
            answered = time.perf_counter()
            await tester.wait_idle(timeout=120, settle=0.02)
            drain_s = max(0.0, time.perf_counter() - answered - 0.02)
            bare = await closed_loop(lambda: via(bare_url + "/bench/ingest"), total, concurrency)
            paced = await open_loop(lambda: via(engine_url), 500, 6)
            await tester.wait_idle(timeout=120)
        emit("http_ingest", {
            "engine_rps": engine["rps"],
            "engine_p50_ms": engine["p50_ms"],
            "engine_p99_ms": engine["p99_ms"],
            "engine_queue_drain_s": drain_s,
            "engine_rps_incl_drain": total / (total / engine["rps"] + drain_s),
            "bare_rps": bare["rps"],
            "bare_p50_ms": bare["p50_ms"],
            "bare_p99_ms": bare["p99_ms"],
            "ratio_engine_to_bare": engine["rps"] / bare["rps"],
            "p99_at_500rps_ms": paced["p99_ms"],
            "p50_at_500rps_ms": paced["p50_ms"],
            "errors": engine["errors"] + paced["errors"],
            "target": "report (the stand-in engine)",
        })
    finally:
        await runner.cleanup()
        await tester.stop()


if __name__ == "__main__":
    asyncio.run(main())
