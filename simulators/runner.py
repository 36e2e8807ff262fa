"""Start simulator apps on loopback (used by `python -m simulators`, tests and benchmarks)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from aiohttp import web


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class RunningApp:
    runner: web.AppRunner
    url: str
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> RunningApp:
    """Serve `app` on host:port (a free port when 0); returns its base URL without trailing slash."""
    # A simulator answering with injected latency must not hold up its own shutdown for a minute.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port or free_port(host), reuse_address=True)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    actual = int(sock.getsockname()[1])
    return RunningApp(runner=runner, url=f"http://{host}:{actual}", port=actual)
