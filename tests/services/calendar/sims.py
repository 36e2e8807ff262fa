"""The Advoware and Google simulators in this process with their clients and an in-memory state
(`Env`; the `env` fixture is in conftest.py), shared by test_sync.py and test_deletes.py."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import aiohttp

from iii_local.testing import MemoryState, RecordingLogger
from services.calendar.sync import EmployeeSync
from services.clients.advoware.api import AdvowareAPI
from services.clients.google_calendar import GoogleCalendarAPI
from services.clients.retry import RetryPolicy
from services.platform.settings import CalendarSettings
from simulators.runner import RunningApp

CAL = "mm@kanzlei.example"
FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


class Env:
    def __init__(self, advo: AdvowareAPI, google: GoogleCalendarAPI, a_app: RunningApp, g_app: RunningApp) -> None:
        self.advo, self.google, self.a, self.g = advo, google, a_app, g_app
        self.state = MemoryState()
        self.log = RecordingLogger()
        self.settings = CalendarSettings(mapping={"MM": CAL}, sync_past_days=30, sync_future_days=180)

    async def sim(self, app: RunningApp, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as s:
            async with s.request(method, app.url + path, json=body) as resp:
                assert resp.status < 400, await resp.text()
                return await resp.json()

    async def seed(self, *termine: dict[str, Any]) -> None:
        await self.sim(self.a, "POST", "/_sim/seed", {"Termine": list(termine)})

    async def fault(self, app: RunningApp, **spec: Any) -> None:
        await self.sim(app, "POST", "/_sim/faults", spec)

    def sync(self, **kw: Any) -> EmployeeSync:
        settings = kw.pop("settings", self.settings)
        return EmployeeSync("MM", CAL, advoware=self.advo, google=self.google, state=self.state, settings=settings, logger=self.log, **kw)

    async def events(self) -> list[dict[str, Any]]:
        items, _ = await self.google.list_all(CAL, show_deleted=False)
        return items

    async def termine(self) -> list[dict[str, Any]]:
        return await self.advo.list_appointments("MM", date.today() - timedelta(days=30), date.today() + timedelta(days=180))

    async def writes(self) -> int:
        n = 0
        for app, path in ((self.a, "TermineActiveSync"), (self.g, "/calendar/v3/")):
            n += sum(1 for r in await self.sim(app, "GET", f"/_sim/requests?path={path}") if r["method"] != "GET")
        return n


def termin(frnr: int, text: str, day: int = 2, **kw: Any) -> dict[str, Any]:
    return {"FrNr": frnr, "_day": day, "_time": "09:00:00", "UhrzeitBis": "10:00:00", "Text": text, "Anwalt": "MM", **kw}


def new_event(text: str, day: int = 3) -> dict[str, Any]:
    d = (date.today() + timedelta(days=day)).isoformat()
    return {"summary": text, "start": {"dateTime": f"{d}T11:00:00", "timeZone": "Europe/Berlin"}, "end": {"dateTime": f"{d}T12:00:00", "timeZone": "Europe/Berlin"}}
