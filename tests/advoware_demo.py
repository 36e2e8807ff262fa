"""The Advoware simulator with its demo seed, the credentials it accepts and a client that logs
in with them, shared by the simulator's own tests (tests/simulators), the client's and the
proxy's (tests/services) and the token attacks (tests/security)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from services.clients.advoware.api import AdvowareAPI
from services.clients.advoware.token import AdvowareLogin
from simulators.advoware import create_app, load_demo_seed
from simulators.runner import RunningApp, start_app

API_KEY = base64.b64encode(b"test-secret-key").decode()
APP_ID = "app-123"
KANZLEI = "Kanzlei-Demo"
DATABASE = "DEMO"
USER = "MM"
PASSWORD = "geheim"
DEMO_LOGIN = AdvowareLogin(app_id=APP_ID, api_key_b64=API_KEY, kanzlei=KANZLEI, database=DATABASE, user=USER, password=PASSWORD)
"""The demo credentials as the client takes them."""


def demo_client(api_url: str, token_url: str, **options: Any) -> AdvowareAPI:
    """An Advoware client logging in with the demo credentials; `options` are AdvowareAPI's
    (retry policy, Redis cache, timeouts) and may replace a credential (a wrong `password`)."""
    return AdvowareAPI(api_url, token_url, **(dict(DEMO_LOGIN) | options))


@asynccontextmanager
async def advoware_demo() -> AsyncIterator[RunningApp]:
    """A running Advoware simulator seeded with the demo data; stopped on exit."""
    running = await start_app(create_app(API_KEY, APP_ID, KANZLEI, DATABASE, USER, PASSWORD, seed=load_demo_seed()))
    try:
        yield running
    finally:
        await running.stop()
