"""A plain-HTTP stand-in for what the shipped nginx does to EspoCRM webhooks, for the e2e stack.

The real engine (and the faithful stand-in) hands a JSON request to the handler only as a
parsed, key-sorted `body` and never streams its bytes (semantics row H1), so EspoCRM's
signature over the raw bytes cannot be checked behind it. Production puts nginx in front
(deploy/nginx/bitbylaw-motia-locations.conf): webhook paths are forwarded with
`Content-Type: application/octet-stream` and the original type in `X-Original-Content-Type`,
so the engine streams the exact bytes (row H2). This relay does the same for the simulators'
webhooks in tests (plain HTTP, no TLS); tests/deploy/test_nginx.py checks nginx itself.
Everything else passes through unchanged.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from iii_local.testing import free_port

WEBHOOK_PREFIX = "/vmh/webhook/"
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class WebhookRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        if request.path.startswith(WEBHOOK_PREFIX):
            headers.pop("Content-Type", None)
            headers["X-Original-Content-Type"] = request.headers.get("Content-Type", "")
            headers["Content-Type"] = "application/octet-stream"
        body = await request.read()
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body, headers=headers) as resp:
            payload = await resp.read()
            out: dict[str, Any] = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            return web.Response(status=resp.status, body=payload, headers=out)

    async def start(self) -> WebhookRelay:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
