"""`python -m simulators`: the sandbox — all four simulators with demo data on their ports."""

from __future__ import annotations

import asyncio
import os
import signal

from services.platform.settings import load_settings
from simulators.sandbox import start_simulators


async def main() -> None:
    settings = load_settings()
    engine_url = os.environ.get("SANDBOX_ENGINE_URL", f"http://127.0.0.1:{os.environ.get('III_REST_PORT', '3111')}")
    sims = await start_simulators(settings, demo=True, engine_url=engine_url)
    print(
        f"simulators up: EspoCRM {sims.espocrm.url}, Advoware {sims.advoware.url}, xAI {sims.xai.url}, Google {sims.google.url}",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sims.stop()


if __name__ == "__main__":
    asyncio.run(main())
