"""Google Calendar simulator: the calendars of one simulator, sync tokens, issued access tokens and seed loading."""

from __future__ import annotations

import base64
import copy
import itertools
import re
import secrets
import time
import uuid
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from simulators.base import SimulatorState
from simulators.google_calendar.events import validate_event
from simulators.google_calendar.model import (
    EVENT_ID_RE,
    SEED_DATE_RE,
    Calendar,
    Cursor,
    EventStatus,
    InvalidEvent,
    StoredEvent,
    _rfc3339,
)


class GoogleState(SimulatorState):
    """Calendars, events (with tombstones), sync tokens, page cursors and access tokens."""

    def __init__(self, valid_tokens: set[str]) -> None:
        super().__init__()
        self.valid_tokens = valid_tokens
        self.issued_tokens: dict[str, float] = {}
        self.calendars: dict[str, Calendar] = {}
        self.sync_tokens: dict[str, tuple[str, int]] = {}
        self.cursors: dict[str, Cursor] = {}
        self.seq = 0
        self._order = itertools.count(1)

    def drop_data(self) -> None:
        self.calendars.clear()
        self.sync_tokens.clear()
        self.cursors.clear()
        self.issued_tokens.clear()

    def reset(self) -> None:
        super().reset()
        self.drop_data()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def token_ok(self, token: str) -> bool:
        if token in self.valid_tokens:
            return True
        expires = self.issued_tokens.get(token)
        return expires is not None and expires > time.time()

    def new_sync_token(self, calendar_id: str, seq: int) -> str:
        token = "CP" + base64.urlsafe_b64encode(secrets.token_bytes(18)).decode().rstrip("=")
        self.sync_tokens[token] = (calendar_id, seq)
        return token

    # -- events --------------------------------------------------------------------------

    def calendar(self, calendar_id: str) -> Calendar | None:
        return self.calendars.get(calendar_id)

    def ensure_calendar(self, calendar_id: str, summary: str | None = None, time_zone: str = "Europe/Berlin") -> Calendar:
        cal = self.calendars.get(calendar_id)
        if cal is None:
            cal = Calendar(id=calendar_id, summary=summary or calendar_id, time_zone=time_zone)
            self.calendars[calendar_id] = cal
        return cal

    def _stamp(self, data: dict[str, Any], seq: int) -> None:
        now = time.time()
        data["updated"] = _rfc3339(now)
        data["etag"] = f'"{int(now * 1000)}{seq:06d}"'

    def insert(self, cal: Calendar, body: dict[str, Any]) -> StoredEvent:
        data = copy.deepcopy(body)
        event_id = data.get("id") or uuid.uuid4().hex
        if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
            raise InvalidEvent("Invalid resource id value.")
        if event_id in cal.events:
            raise KeyError(event_id)
        data["id"] = event_id
        data["kind"] = "calendar#event"
        data.setdefault("status", EventStatus.CONFIRMED.value)
        data["created"] = _rfc3339(time.time())
        data.setdefault("iCalUID", f"{event_id}@google.com")
        data["htmlLink"] = f"https://www.google.com/calendar/event?eid={event_id}"
        data.setdefault("sequence", 0)
        data["creator"] = {"email": cal.id}
        data["organizer"] = {"email": cal.id, "self": True}
        data.setdefault("reminders", {"useDefault": True})
        data.setdefault("eventType", "default")
        validate_event(data, cal)
        seq = self.next_seq()
        self._stamp(data, seq)
        stored = StoredEvent(data=data, seq=seq, order=next(self._order))
        cal.events[event_id] = stored
        return stored

    def replace(self, cal: Calendar, stored: StoredEvent, new_data: dict[str, Any]) -> None:
        keep = {k: stored.data[k] for k in ("id", "kind", "created", "iCalUID", "htmlLink", "creator", "organizer") if k in stored.data}
        data = {**copy.deepcopy(new_data), **keep}
        data.setdefault("status", EventStatus.CONFIRMED.value)
        data.setdefault("reminders", {"useDefault": True})
        data.setdefault("eventType", "default")
        data["sequence"] = int(stored.data.get("sequence", 0))
        if data.get("start") != stored.data.get("start") or data.get("end") != stored.data.get("end"):
            data["sequence"] += 1
        validate_event(data, cal)
        stored.seq = self.next_seq()
        self._stamp(data, stored.seq)
        stored.data = data

    def delete(self, stored: StoredEvent) -> None:
        stored.data["status"] = EventStatus.CANCELLED.value
        stored.seq = self.next_seq()
        self._stamp(stored.data, stored.seq)

    # -- seed ----------------------------------------------------------------------------

    def load(self, doc: dict[str, Any]) -> None:
        today = date.today()

        def expand(value: Any) -> Any:
            if isinstance(value, str):
                def repl(m: re.Match[str]) -> str:
                    days = int(m.group(2) or 0) * (-1 if m.group(1) == "-" else 1)
                    return (today + timedelta(days=days)).isoformat()

                return SEED_DATE_RE.sub(repl, value)
            if isinstance(value, list):
                return [expand(v) for v in value]
            if isinstance(value, dict):
                return {k: expand(v) for k, v in value.items()}
            return value

        for spec in doc.get("calendars", []):
            cal = self.ensure_calendar(spec["id"], spec.get("summary"), spec.get("timeZone", "Europe/Berlin"))
            for event in spec.get("events", []):
                body = expand(event)
                if body.get("id") in cal.events:
                    continue
                self.insert(cal, body)


STATE = web.AppKey("google_state", GoogleState)


