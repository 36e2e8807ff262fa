"""The per-worker client container closes its clients when the worker's event loop ends.

motia runs the worker with `asyncio.run`; at its end every task is cancelled, and the
container's closer task then closes each client it built on that loop (aiohttp sessions
closed, no "Unclosed client session" at shutdown)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.platform import container


def test_clients_are_closed_when_the_worker_loop_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_MODE", "sandbox")
    monkeypatch.setenv("APP_ENV_FILE", "/nonexistent/.env")
    container.get_settings.cache_clear()
    sessions: list[Any] = []

    async def worker() -> None:
        espocrm = container.get_espocrm()
        sessions.append(await espocrm._get_session())
        assert container.get_espocrm() is espocrm  # one client per loop

    try:
        asyncio.run(worker())
    finally:
        container.get_settings.cache_clear()
    assert sessions and sessions[0].closed, "the client's aiohttp session outlived the worker loop"
