"""Google Calendar simulator: constants, RFC 3339 times, Google-style errors, calendars, stored events and list cursors."""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

BASE = "/calendar/v3"


JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


DEFAULT_MAX_RESULTS = 250


MAX_MAX_RESULTS = 2500


MAX_INSTANCES = 1000


CURSOR_TTL = 3600.0


EVENT_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")


SEED_DATE_RE = re.compile(r"\{\{today(?:([+-])(\d+))?\}\}")


INCOMPATIBLE_WITH_SYNC = ("timeMin", "timeMax", "updatedMin", "q", "privateExtendedProperty", "sharedExtendedProperty", "orderBy", "iCalUID")


class EventStatus(str, enum.Enum):
    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def zone_of(name: str | None) -> ZoneInfo | timezone:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _parse_rfc3339(value: str) -> datetime:
    """An RFC 3339 timestamp with offset; raises ValueError otherwise."""
    dt = datetime.fromisoformat(value.replace("z", "Z"))
    if dt.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone offset")
    return dt


def google_error(status: int, message: str, reason: str, *, extra: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> web.Response:
    """Google's error body: `{"error": {"code", "message", "errors": [{domain, reason, message}], "status"}}`."""
    status_names = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        410: "FAILED_PRECONDITION",
    }
    item = {"domain": "global", "reason": reason, "message": message, **(extra or {})}
    body: dict[str, Any] = {"error": {"code": status, "message": message, "errors": [item]}}
    if status in status_names:
        body["error"]["status"] = status_names[status]
    return web.json_response(body, status=status, headers=headers)


def bad_request(message: str) -> web.Response:
    return google_error(400, message, "invalid")


def not_found() -> web.Response:
    return google_error(404, "Not Found", "notFound")


class InvalidEvent(ValueError):
    """An event body that Google would reject with 400."""


@dataclass
class StoredEvent:
    data: dict[str, Any]
    seq: int
    order: int

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def cancelled(self) -> bool:
        return self.data.get("status") == EventStatus.CANCELLED.value

    def tombstone(self) -> dict[str, Any]:
        return {k: self.data[k] for k in ("kind", "etag", "id", "status", "updated") if k in self.data}


@dataclass
class Calendar:
    id: str
    summary: str
    time_zone: str
    events: dict[str, StoredEvent] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "kind": "calendar#calendar",
            "etag": f'"{hashlib.md5(self.id.encode()).hexdigest()[:16]}"',
            "id": self.id,
            "summary": self.summary,
            "timeZone": self.time_zone,
        }


@dataclass
class Cursor:
    fingerprint: str
    calendar_id: str
    items: list[dict[str, Any]]
    next_sync_token: str | None
    created: float


