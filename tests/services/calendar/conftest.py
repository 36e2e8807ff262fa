"""The `env` fixture: the Advoware and Google simulators in this process (tests/services/calendar/sims.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.clients.advoware.api import AdvowareAPI
from services.clients.google_calendar import GoogleCalendarAPI, StaticTokenProvider
from services.platform.container import advoware_login
from services.platform.settings import load_settings
from simulators import advoware as advoware_sim
from simulators import google_calendar as google_sim
from simulators.runner import start_app
from tests.services.calendar.sims import CAL, FAST, Env


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    s = load_settings({"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env"})
    a = s.advoware
    a_app = await start_app(
        advoware_sim.create_app(a.api_key.get_secret_value(), a.app_id, a.kanzlei, a.database, a.user, a.password.get_secret_value()),
        "127.0.0.1",
        0,
    )
    token = s.google.static_token.get_secret_value()  # type: ignore[union-attr]
    g_app = await start_app(google_sim.create_app({token}, seed={"calendars": [{"id": CAL}]}), "127.0.0.1", 0)
    advo = AdvowareAPI(a_app.url + "/", a_app.url + "/api/v1/Token", retry_policy=FAST, **advoware_login(s))
    google = GoogleCalendarAPI(g_app.url + "/calendar/v3", token_provider=StaticTokenProvider(token), retry_policy=FAST)
    yield Env(advo, google, a_app, g_app)
    await advo.close()
    await google.close()
    await a_app.stop()
    await g_app.stop()
