"""Simulator of the Google Calendar API v3 (events) plus a tiny OAuth2 token endpoint
(see external-apis.md §4).

- `/calendar/v3/...` needs `Authorization: Bearer <token>`, where the token is one of
  `valid_tokens` or one issued by `POST /token`; otherwise 401 with Google's error JSON
  `{"error": {"code", "message", "errors": [...], "status"}}`.
- `POST /token` takes the JWT-bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
  `assertion=<RS256 JWT with iss/scope/aud/exp>`), verifies the signature when the app was given
  `public_key`, and answers `{access_token, expires_in, token_type: "Bearer"}`.
- `GET /calendars/{cid}/events` supports pageToken, maxResults (default 250, max 2500),
  singleEvents (simple RRULE expansion: DAILY/WEEKLY(+BYDAY)/MONTHLY/YEARLY with INTERVAL,
  COUNT, UNTIL), showDeleted, timeMin, timeMax, updatedMin, q, orderBy, privateExtendedProperty
  and sharedExtendedProperty (repeatable `key=value`, all must match) and syncToken.
  `nextSyncToken` is only on the last page. `syncToken` with timeMin/timeMax/updatedMin/q/
  privateExtendedProperty/sharedExtendedProperty/orderBy, or with showDeleted=false → 400.
  An unknown or expired syncToken → 410 `fullSyncRequired` (`POST /_sim/expire-sync-tokens`
  expires all). `nextSyncToken` covers the whole calendar whatever filters the list used.
  A list is materialised at its first page; later pages slice that snapshot (page tokens
  live an hour and must be used with the same other parameters, else 400).
- Deleted events stay as tombstones with `status: "cancelled"`. In lists (incremental sync,
  updatedMin, showDeleted) they carry only `kind, etag, id, status, updated` (Google only
  guarantees `id`); `events.get` returns the whole event with status cancelled. A second
  DELETE answers 410 "Resource has been deleted"; unknown ids 404.
- PATCH merges objects recursively (null deletes a key), replaces arrays, and replaces
  `start`/`end` as a whole. Insert accepts a client-chosen `id` (base32hex, 5-1024 chars;
  a duplicate → 409), which makes retried inserts idempotent.

Admin extras: `POST /_sim/expire-sync-tokens`, `POST /_sim/revoke-tokens` (drops issued
access tokens, so clients must fetch a new one), `GET /_sim/calendars` (ids and event counts).

Seed document: `{"calendars": [{"id", "summary"?, "timeZone"?, "events": [<event body>]}]}`.
Strings in seeded events may use `{{today}}`, `{{today+3}}`, `{{today-1}}` for dates relative
to the day of loading (YYYY-MM-DD), so a demo seed never goes stale.
"""

from __future__ import annotations

import base64
import calendar as calendar_mod
import copy
import enum
import hashlib
import itertools
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from simulators.base import SimulatorState, make_seeded_app

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
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


def _zone(name: str | None) -> ZoneInfo | timezone:
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


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


def _bad(message: str) -> web.Response:
    return google_error(400, message, "invalid")


def _not_found() -> web.Response:
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


# -- event times ---------------------------------------------------------------------------


def _when(obj: Any, cal: Calendar, which: str) -> datetime:
    if not isinstance(obj, dict):
        raise InvalidEvent(f"Missing {which} time.")
    if obj.get("dateTime"):
        try:
            dt = datetime.fromisoformat(str(obj["dateTime"]).replace("z", "Z"))
        except ValueError as exc:
            raise InvalidEvent(f"Invalid {which} time.") from exc
        if dt.tzinfo is None:
            if not obj.get("timeZone"):
                raise InvalidEvent(f"Missing time zone definition for {which} time.")
            dt = dt.replace(tzinfo=_zone(obj["timeZone"]))
        return dt
    if obj.get("date"):
        try:
            d = date.fromisoformat(str(obj["date"]))
        except ValueError as exc:
            raise InvalidEvent(f"Invalid {which} time.") from exc
        return datetime(d.year, d.month, d.day, tzinfo=_zone(obj.get("timeZone") or cal.time_zone))
    raise InvalidEvent(f"Missing {which} time.")


def validate_event(data: dict[str, Any], cal: Calendar) -> None:
    """Raise InvalidEvent for what Google rejects with 400."""
    start = _when(data.get("start"), cal, "start")
    end = _when(data.get("end"), cal, "end")
    if bool(data["start"].get("date")) != bool(data["end"].get("date")):
        raise InvalidEvent("Start and end times must either both be date or both be dateTime.")
    if end < start:
        raise InvalidEvent("The specified time range is empty.")
    if data.get("status") not in {s.value for s in EventStatus}:
        raise InvalidEvent("Invalid value for: status")
    recurrence = data.get("recurrence")
    if recurrence is not None and (not isinstance(recurrence, list) or not all(isinstance(r, str) for r in recurrence)):
        raise InvalidEvent("Invalid recurrence rule.")
    ext = data.get("extendedProperties")
    if ext is not None:
        if not isinstance(ext, dict):
            raise InvalidEvent("Invalid extendedProperties.")
        for scope in ("private", "shared"):
            props = ext.get(scope)
            if props is not None and (not isinstance(props, dict) or not all(isinstance(v, str) for v in props.values())):
                raise InvalidEvent(f"Invalid extendedProperties.{scope}: values must be strings.")


def _bounds(data: dict[str, Any], cal: Calendar) -> tuple[datetime, datetime]:
    return _when(data["start"], cal, "start"), _when(data["end"], cal, "end")


def _rrule(data: dict[str, Any]) -> dict[str, str] | None:
    for line in data.get("recurrence") or []:
        if line.upper().startswith("RRULE:"):
            parts = dict(p.split("=", 1) for p in line[6:].split(";") if "=" in p)
            return {k.upper(): v.upper() for k, v in parts.items()}
    return None


_WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}


def _occurrences(data: dict[str, Any], cal: Calendar, until: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Start/end of each instance (the event itself when not recurring), up to `until`."""
    start, end = _bounds(data, cal)
    rule = _rrule(data)
    if rule is None:
        yield start, end
        return
    duration = end - start
    # Recur in wall-clock time of the event's time zone, so 10:00 stays 10:00 across DST.
    zone: Any = _zone(data["start"].get("timeZone")) if data["start"].get("timeZone") else (start.tzinfo or timezone.utc)
    local = start.astimezone(zone).replace(tzinfo=None)
    freq = rule.get("FREQ", "DAILY")
    interval = max(1, int(rule.get("INTERVAL", "1") or 1))
    count = int(rule["COUNT"]) if rule.get("COUNT", "").isdigit() else None
    rule_until: datetime | None = None
    if rule.get("UNTIL"):
        raw = rule["UNTIL"]
        try:
            if "T" in raw:
                rule_until = datetime.strptime(raw.rstrip("Z"), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
            else:
                d = datetime.strptime(raw, "%Y%m%d")
                rule_until = datetime(d.year, d.month, d.day, 23, 59, 59, tzinfo=zone)
        except ValueError:
            rule_until = None

    def candidates() -> Iterator[datetime]:
        if freq == "WEEKLY":
            days = sorted({_WEEKDAYS[d[-2:]] for d in rule.get("BYDAY", "").split(",") if d[-2:] in _WEEKDAYS}) or [local.weekday()]
            week_start = local - timedelta(days=local.weekday())
            for n in itertools.count():
                base = week_start + timedelta(weeks=n * interval)
                for wd in days:
                    cand = base + timedelta(days=wd)
                    if cand >= local:
                        yield cand
        elif freq == "MONTHLY":
            for n in itertools.count():
                month_index = local.month - 1 + n * interval
                year, month = local.year + month_index // 12, month_index % 12 + 1
                if local.day <= calendar_mod.monthrange(year, month)[1]:
                    yield local.replace(year=year, month=month)
        elif freq == "YEARLY":
            for n in itertools.count():
                try:
                    yield local.replace(year=local.year + n * interval)
                except ValueError:  # 29 February
                    continue
        else:
            for n in itertools.count():
                yield local + timedelta(days=n * interval)

    for produced, cand in enumerate(candidates()):
        if produced >= MAX_INSTANCES or (count is not None and produced >= count):
            return
        inst_start = cand.replace(tzinfo=zone)
        if (rule_until is not None and inst_start > rule_until) or inst_start >= until:
            return
        yield inst_start, inst_start + duration


def _time_obj(template: dict[str, Any], dt: datetime) -> dict[str, Any]:
    if template.get("date"):
        return {"date": dt.date().isoformat()}
    out = {"dateTime": dt.isoformat()}
    if template.get("timeZone"):
        out["timeZone"] = template["timeZone"]
    return out


def _instances(stored: StoredEvent, cal: Calendar, tmin: datetime | None, tmax: datetime | None) -> list[dict[str, Any]]:
    data = stored.data
    horizon = tmax or (datetime.now(timezone.utc) + timedelta(days=730))
    out = []
    for start, end in _occurrences(data, cal, horizon):
        if tmin is not None and end <= tmin:
            continue
        suffix = start.strftime("%Y%m%d") if data["start"].get("date") else start.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        inst = {k: copy.deepcopy(v) for k, v in data.items() if k != "recurrence"}
        inst["id"] = f"{stored.id}_{suffix}"
        inst["recurringEventId"] = stored.id
        inst["originalStartTime"] = _time_obj(data["start"], start)
        inst["start"] = _time_obj(data["start"], start)
        inst["end"] = _time_obj(data["end"], end)
        out.append(inst)
    return out


def _overlaps(stored: StoredEvent, cal: Calendar, tmin: datetime | None, tmax: datetime | None) -> bool:
    horizon = tmax or datetime.max.replace(tzinfo=timezone.utc)
    if _rrule(stored.data) is None:
        start, end = _bounds(stored.data, cal)
        return (tmin is None or end > tmin) and (tmax is None or start < tmax)
    for _start, end in _occurrences(stored.data, cal, horizon):
        if tmin is None or end > tmin:
            return True
    return False


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in ("start", "end"):
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# -- the token endpoint ----------------------------------------------------------------------


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _check_assertion(assertion: str, public_key: Any) -> dict[str, Any]:
    """Decode and check a JWT-bearer assertion; raises ValueError with the OAuth error text."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise ValueError("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
    try:
        header = json.loads(_b64url_decode(parts[0]))
        payload = json.loads(_b64url_decode(parts[1]))
        signature = _b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("Invalid JWT: cannot decode") from exc
    if not isinstance(header, dict) or header.get("alg") != "RS256":
        raise ValueError("Invalid JWT: alg must be RS256")
    if not isinstance(payload, dict):
        raise ValueError("Invalid JWT: payload is not an object")
    for claim in ("iss", "scope", "aud", "exp"):
        if not payload.get(claim):
            raise ValueError(f"Invalid JWT: missing claim {claim}")
    now = time.time()
    exp = float(payload["exp"])
    iat = float(payload.get("iat", now))
    if exp <= now or exp - iat > 3600 + 300 or iat > now + 300:
        raise ValueError("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.")
    if public_key is not None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            public_key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise ValueError("Invalid JWT Signature.") from exc
    return payload


# -- the app ---------------------------------------------------------------------------------


def _flag(request: web.Request, name: str) -> bool | None | web.Response:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    return _bad(f"Invalid boolean value for {name}: {raw}")


def create_app(
    valid_tokens: set[str],
    *,
    seed: dict[str, Any] | str | Path | None = None,
    public_key: str | bytes | None = None,
    token_ttl: int = 3600,
) -> web.Application:
    """The Google Calendar simulator. `seed` is a seed document or the path of a JSON file;
    `public_key` (PEM) makes `/token` verify assertion signatures."""
    state = GoogleState(valid_tokens)
    verifier: Any = None
    if public_key is not None:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        verifier = load_pem_public_key(public_key.encode() if isinstance(public_key, str) else public_key)

    app = make_seeded_app(state, seed, load=state.load, drop=state.drop_data)
    app[STATE] = state

    @web.middleware
    async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(BASE + "/"):
            header = request.headers.get("Authorization", "")
            token = header[7:].strip() if header[:7].lower() == "bearer " else ""
            if not token or not state.token_ok(token):
                return google_error(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                    "or other valid authentication credential.",
                    "authError",
                    extra={"location": "Authorization", "locationType": "header"},
                    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
                )
        return await handler(request)

    app.middlewares.append(auth_middleware)

    def get_calendar(request: web.Request) -> Calendar | None:
        return state.calendar(request.match_info["calendar_id"])

    async def read_json(request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return google_error(400, "Parse Error", "parseError")
        if not isinstance(body, dict):
            return google_error(400, "Parse Error", "parseError")
        return body

    # -- calendars / events ------------------------------------------------------------------

    async def get_calendar_handler(request: web.Request) -> web.Response:
        cal = get_calendar(request)
        return web.json_response(cal.public()) if cal else _not_found()

    async def list_events(request: web.Request) -> web.Response:
        cal = get_calendar(request)
        if cal is None:
            return _not_found()
        q = request.query
        try:
            max_results = int(q.get("maxResults", DEFAULT_MAX_RESULTS))
        except ValueError:
            return _bad("Invalid value for: maxResults")
        if max_results < 1:
            return _bad("Invalid value for: maxResults")
        max_results = min(max_results, MAX_MAX_RESULTS)

        page_token = q.get("pageToken")
        fingerprint = hashlib.sha256(
            json.dumps(sorted((k, v) for k, v in q.items() if k not in ("pageToken", "maxResults"))).encode()
        ).hexdigest()
        if page_token:
            cursor = state.cursors.get(page_token)
            if cursor is None or cursor.fingerprint != fingerprint or cursor.calendar_id != cal.id:
                return _bad("Invalid page token value.")
            del state.cursors[page_token]
            return respond(cal, cursor.items, cursor.next_sync_token, max_results, fingerprint)

        single = _flag(request, "singleEvents")
        show_deleted = _flag(request, "showDeleted")
        for flag in (single, show_deleted):
            if isinstance(flag, web.Response):
                return flag
        sync_token = q.get("syncToken")
        order_by = q.get("orderBy")
        if sync_token:
            clash = [name for name in INCOMPATIBLE_WITH_SYNC if name in q]
            if clash:
                return _bad(f"Invalid combination of parameters: syncToken cannot be used with {', '.join(clash)}.")
            if show_deleted is False:
                return _bad("Invalid combination of parameters: syncToken cannot be used with showDeleted=false.")
            known = state.sync_tokens.get(sync_token)
            if known is None or known[0] != cal.id:
                return google_error(410, "Sync token is no longer valid, a full sync is required.", "fullSyncRequired")
            since_seq: int | None = known[1]
        else:
            since_seq = None
        if order_by not in (None, "startTime", "updated"):
            return _bad("Invalid value for: orderBy")
        if order_by == "startTime" and not single:
            return _bad("The requested ordering is not available for the particular query.")

        try:
            tmin = _parse_rfc3339(q["timeMin"]) if "timeMin" in q else None
            tmax = _parse_rfc3339(q["timeMax"]) if "timeMax" in q else None
            updated_min = _parse_rfc3339(q["updatedMin"]) if "updatedMin" in q else None
        except ValueError:
            return _bad("Bad Request")
        if tmin is not None and tmax is not None and tmax <= tmin:
            return _bad("The specified time range is empty.")
        filters: list[tuple[str, str, str]] = []
        for scope, param in (("private", "privateExtendedProperty"), ("shared", "sharedExtendedProperty")):
            for raw in q.getall(param, []):
                if "=" not in raw:
                    return _bad(f"Invalid value for: {param}")
                key, value = raw.split("=", 1)
                filters.append((scope, key, value))
        text = (q.get("q") or "").lower()

        include_deleted = since_seq is not None or updated_min is not None or bool(show_deleted)
        upper = state.seq
        chosen: list[StoredEvent] = []
        for stored in sorted(cal.events.values(), key=lambda s: s.order):
            if since_seq is not None and stored.seq <= since_seq:
                continue
            if stored.cancelled and not include_deleted:
                continue
            if updated_min is not None and _parse_rfc3339(stored.data["updated"]) < updated_min:
                continue
            ext = stored.data.get("extendedProperties") or {}
            if any((ext.get(scope) or {}).get(key) != value for scope, key, value in filters):
                continue
            if text and not any(text in str(stored.data.get(f, "")).lower() for f in ("summary", "description", "location")):
                continue
            if (tmin or tmax) and not stored.cancelled and not _overlaps(stored, cal, tmin, tmax):
                continue
            chosen.append(stored)

        items: list[dict[str, Any]] = []
        for stored in chosen:
            if stored.cancelled:
                items.append(stored.tombstone())
            elif single and _rrule(stored.data) is not None:
                items.extend(_instances(stored, cal, tmin, tmax))
            else:
                items.append(copy.deepcopy(stored.data))
        if order_by == "startTime":
            items.sort(key=lambda e: _when(e["start"], cal, "start") if "start" in e else datetime.min.replace(tzinfo=timezone.utc))
        elif order_by == "updated":
            items.sort(key=lambda e: e.get("updated", ""))
        # The token marks "now" for the whole calendar: an incremental list with it returns
        # every change since, whatever filters this list used.
        next_sync = state.new_sync_token(cal.id, upper)
        return respond(cal, items, next_sync, max_results, fingerprint)

    def respond(cal: Calendar, items: list[dict[str, Any]], next_sync: str | None, max_results: int, fingerprint: str) -> web.Response:
        page, rest = items[:max_results], items[max_results:]
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": f'"{state.seq}"',
            "summary": cal.summary,
            "description": "",
            "updated": _rfc3339(time.time()),
            "timeZone": cal.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": page,
        }
        if rest:
            stale = time.time() - CURSOR_TTL
            for key in [k for k, c in state.cursors.items() if c.created < stale]:
                del state.cursors[key]
            token = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")
            state.cursors[token] = Cursor(fingerprint, cal.id, rest, next_sync, time.time())
            body["nextPageToken"] = token
        elif next_sync:
            body["nextSyncToken"] = next_sync
        return web.json_response(body)

    async def insert_event(request: web.Request) -> web.Response:
        cal = get_calendar(request)
        if cal is None:
            return _not_found()
        body = await read_json(request)
        if isinstance(body, web.Response):
            return body
        try:
            stored = state.insert(cal, body)
        except InvalidEvent as exc:
            return _bad(str(exc))
        except KeyError:
            return google_error(409, "The requested identifier already exists.", "duplicate")
        return web.json_response(stored.data)

    def find_event(request: web.Request) -> tuple[Calendar, StoredEvent] | web.Response:
        cal = get_calendar(request)
        if cal is None:
            return _not_found()
        stored = cal.events.get(request.match_info["event_id"])
        if stored is None:
            return _not_found()
        return cal, stored

    async def get_event(request: web.Request) -> web.Response:
        found = find_event(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(found[1].data)

    async def patch_event(request: web.Request) -> web.Response:
        found = find_event(request)
        if isinstance(found, web.Response):
            return found
        cal, stored = found
        body = await read_json(request)
        if isinstance(body, web.Response):
            return body
        merged = _merge(stored.data, body)
        try:
            state.replace(cal, stored, merged)
        except InvalidEvent as exc:
            return _bad(str(exc))
        return web.json_response(stored.data)

    async def put_event(request: web.Request) -> web.Response:
        found = find_event(request)
        if isinstance(found, web.Response):
            return found
        cal, stored = found
        body = await read_json(request)
        if isinstance(body, web.Response):
            return body
        try:
            state.replace(cal, stored, body)
        except InvalidEvent as exc:
            return _bad(str(exc))
        return web.json_response(stored.data)

    async def delete_event(request: web.Request) -> web.Response:
        found = find_event(request)
        if isinstance(found, web.Response):
            return found
        _cal, stored = found
        if stored.cancelled:
            return google_error(410, "Resource has been deleted", "deleted")
        state.delete(stored)
        return web.Response(status=204)

    # -- OAuth2 token endpoint ---------------------------------------------------------------

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: " + str(form.get("grant_type", ""))},
                status=400,
            )
        assertion = form.get("assertion")
        if not isinstance(assertion, str) or not assertion:
            return web.json_response({"error": "invalid_request", "error_description": "Missing required parameter: assertion"}, status=400)
        try:
            _check_assertion(assertion, verifier)
        except ValueError as exc:
            return web.json_response({"error": "invalid_grant", "error_description": str(exc)}, status=400)
        access = "ya29.sim-" + secrets.token_urlsafe(32)
        state.issued_tokens[access] = time.time() + token_ttl
        return web.json_response({"access_token": access, "expires_in": token_ttl, "token_type": "Bearer"})

    # -- admin extras ------------------------------------------------------------------------

    async def expire_sync_tokens(request: web.Request) -> web.Response:
        count = len(state.sync_tokens)
        state.sync_tokens.clear()
        return web.json_response({"expired": count})

    async def revoke_tokens(request: web.Request) -> web.Response:
        count = len(state.issued_tokens)
        state.issued_tokens.clear()
        return web.json_response({"revoked": count})

    async def list_calendars(request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"id": c.id, "summary": c.summary, "events": sum(not e.cancelled for e in c.events.values())}
                for c in state.calendars.values()
            ]
        )

    app.add_routes(
        [
            web.get(BASE + "/calendars/{calendar_id}", get_calendar_handler),
            web.get(BASE + "/calendars/{calendar_id}/events", list_events),
            web.post(BASE + "/calendars/{calendar_id}/events", insert_event),
            web.get(BASE + "/calendars/{calendar_id}/events/{event_id}", get_event),
            web.patch(BASE + "/calendars/{calendar_id}/events/{event_id}", patch_event),
            web.put(BASE + "/calendars/{calendar_id}/events/{event_id}", put_event),
            web.delete(BASE + "/calendars/{calendar_id}/events/{event_id}", delete_event),
            web.post("/token", token),
            web.post("/_sim/expire-sync-tokens", expire_sync_tokens),
            web.post("/_sim/revoke-tokens", revoke_tokens),
            web.get("/_sim/calendars", list_calendars),
        ]
    )
    return app
