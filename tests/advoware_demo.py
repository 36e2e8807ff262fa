"""The Advoware simulator with its demo seed and the credentials it accepts, shared by the
simulator's own tests (tests/simulators) and the client's (tests/services)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from simulators.advoware import create_app, load_demo_seed
from simulators.runner import RunningApp, start_app

API_KEY = base64.b64encode(b"test-secret-key").decode()
APP_ID = "app-123"
KANZLEI = "Kanzlei-Demo"
DATABASE = "DEMO"
USER = "MM"
PASSWORD = "geheim"


@asynccontextmanager
async def advoware_demo() -> AsyncIterator[RunningApp]:
    """A running Advoware simulator seeded with the demo data; stopped on exit."""
    running = await start_app(create_app(API_KEY, APP_ID, KANZLEI, DATABASE, USER, PASSWORD, seed=load_demo_seed()))
    try:
        yield running
    finally:
        await running.stop()
