"""HTTP ingest: a JSON POST to a step that enqueues one message, through engine + real worker,
against the same POST to a bare aiohttp handler, in one run.

Targets: ratio (engine rps / bare rps) ≥ 0.25; p99 < 25 ms at 500 requests/s.
"""

from __future__ import annotations

import asyncio
import sys
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
            engine = await closed_loop(lambda: via(engine_url), total, concurrency)
            bare = await closed_loop(lambda: via(bare_url + "/bench/ingest"), total, concurrency)
            await tester.wait_idle(timeout=120)
            paced = await open_loop(lambda: via(engine_url), 500, 6)
            await tester.wait_idle(timeout=120)
        emit("http_ingest", {
            "engine_rps": engine["rps"],
            "engine_p50_ms": engine["p50_ms"],
            "engine_p99_ms": engine["p99_ms"],
            "bare_rps": bare["rps"],
            "bare_p50_ms": bare["p50_ms"],
            "bare_p99_ms": bare["p99_ms"],
            "ratio_engine_to_bare": engine["rps"] / bare["rps"],
            "p99_at_500rps_ms": paced["p99_ms"],
            "p50_at_500rps_ms": paced["p50_ms"],
            "errors": engine["errors"] + paced["errors"],
            "target": "ratio >= 0.25, p99 < 25 ms at 500 rps",
        })
    finally:
        await runner.cleanup()
        await tester.stop()


if __name__ == "__main__":
    asyncio.run(main())
