"""The mapping between Google Calendar events and the canonical form
(`services.calendar.advoware_mapping.CalendarItem`). Pure functions, no I/O.

Rules (the shared ones are in advoware_mapping's docstring):
- Google events are written as `{"dateTime": "<Berlin wall clock with its UTC offset>",
  "timeZone": "Europe/Berlin"}` or `{"date"}` (all-day, end exclusive); times in any other
  zone (or UTC) are converted to Berlin wall clock when read.
- Visibility `private` or `confidential` reads as private; private is written as `private`,
  not private as `default`.
- Series: one `RRULE:FREQ=DAILY|WEEKLY|MONTHLY|YEARLY;INTERVAL=n[;UNTIL=...]` (UNTIL = end
  of the last day in Berlin, as UTC; a bare date for all-day series). `COUNT` is turned into
  the date of the last occurrence. A rule Advoware cannot express (several BYDAY, BYSETPOS,
  EXDATE/RDATE, ...) is synced as a single appointment (its first occurrence) and kept in
  `unsupported_rule` so that changes to it are still noticed.
- The pair is remembered in the event's private extended property `advowareFrNr`; only
  plain events and series masters are synced (no occurrence exceptions, no
  out-of-office/focus-time/birthday entries).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from services.calendar.advoware_mapping import (
    BERLIN_TZ_NAME,
    CalendarItem,
    Freq,
    Recurrence,
    add_months,
    berlin_aware,
    berlin_iso,
    clean_text,
    to_berlin,
)
from services.clients.advoware import paths as P
from services.clients.google_calendar import EventType, Visibility, private_property

FRNR_PROPERTY = "advowareFrNr"
"""Private extended property of a Google event holding the Advoware FrNr."""
_LAST_SECOND = time(23, 59, 59)
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def parse_google_timestamp(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp (`updated`) → aware UTC datetime; None when absent/invalid."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)



def event_frnr(event: Mapping[str, Any]) -> int | None:
    """The Advoware FrNr kept in the event's private extended property, or None."""
    raw = private_property(event, FRNR_PROPERTY)
    if raw is None:
        return None
    try:
        return int(str(raw).strip())
    except ValueError:
        return None


def is_syncable_event(event: Mapping[str, Any]) -> bool:
    """Events the sync handles: plain events and series masters (not single-occurrence
    exceptions of a series, not out-of-office/focus-time/birthday entries)."""
    if event.get("recurringEventId"):
        return False
    kind = event.get("eventType")
    return kind in (None, EventType.DEFAULT)


def _google_when(obj: Any, default_tz: str) -> datetime | date | None:
    if not isinstance(obj, Mapping):
        return None
    if obj.get("dateTime"):
        dt = datetime.fromisoformat(str(obj["dateTime"]).replace("Z", "+00:00").replace("z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=ZoneInfo(str(obj.get("timeZone") or default_tz)))
        return to_berlin(dt).replace(microsecond=0)
    if obj.get("date"):
        return date.fromisoformat(str(obj["date"])[:10])
    return None


def _parse_until(value: str) -> date:
    """RRULE UNTIL → the Berlin day of the last allowed start."""
    v = value.strip().upper()
    if "T" not in v:
        return date(int(v[0:4]), int(v[4:6]), int(v[6:8]))
    dt = datetime(int(v[0:4]), int(v[4:6]), int(v[6:8]), int(v[9:11]), int(v[11:13]), int(v[13:15] or 0))
    if v.endswith("Z"):
        return to_berlin(dt.replace(tzinfo=UTC)).date()
    return dt.date()  # floating time: already local


def _nth_start(first: date, freq: Freq, steps: int) -> date:
    if freq is Freq.DAILY:
        return first + timedelta(days=steps)
    if freq is Freq.WEEKLY:
        return first + timedelta(weeks=steps)
    if freq is Freq.MONTHLY:
        return add_months(first, steps)
    return add_months(first, 12 * steps)


def parse_recurrence(lines: Any, first: date) -> tuple[Recurrence | None, str | None]:
    """Google `recurrence` lines → (Recurrence, None), or (None, raw rule) when Advoware
    cannot express the rule (fallback: single appointment), or (None, None) without a rule."""
    if not lines:
        return None, None
    raw = "\n".join(str(line) for line in lines)
    rrules = [str(line) for line in lines if str(line).upper().startswith("RRULE:")]
    if len(rrules) != 1 or len(rrules) != len(lines):
        return None, raw
    parts: dict[str, str] = {}
    for part in rrules[0][6:].split(";"):
        if "=" not in part:
            return None, raw
        key, value = part.split("=", 1)
        parts[key.strip().upper()] = value.strip().upper()
    try:
        freq = Freq(parts.pop("FREQ", ""))
        interval = int(parts.pop("INTERVAL", "1"))
        if interval < 1:
            return None, raw
        until_raw = parts.pop("UNTIL", None)
        count_raw = parts.pop("COUNT", None)
        parts.pop("WKST", None)
        byday = parts.pop("BYDAY", None)
        if byday is not None and not (freq is Freq.WEEKLY and byday == _WEEKDAYS[first.weekday()]):
            return None, raw
        bymonthday = parts.pop("BYMONTHDAY", None)
        if bymonthday is not None and not (freq in (Freq.MONTHLY, Freq.YEARLY) and int(bymonthday) == first.day):
            return None, raw
        bymonth = parts.pop("BYMONTH", None)
        if bymonth is not None and not (freq is Freq.YEARLY and int(bymonth) == first.month):
            return None, raw
        if parts:
            return None, raw
        until: date | None = None
        if until_raw is not None:
            until = _parse_until(until_raw)
        elif count_raw is not None:
            count = int(count_raw)
            if count < 1:
                return None, raw
            until = _nth_start(first, freq, interval * (count - 1))
    except (ValueError, IndexError):
        return None, raw
    if until is not None:
        until = max(until, first)
        if until.year >= P.SERIES_FOREVER_YEAR:
            until = None
    return Recurrence(freq, interval, until), None


def item_from_google(event: Mapping[str, Any], *, default_tz: str = BERLIN_TZ_NAME) -> CalendarItem:
    """The canonical form of a (not cancelled) Google event."""
    start = _google_when(event.get("start"), default_tz)
    end = _google_when(event.get("end"), default_tz)
    if start is None:
        raise ValueError(f"event {event.get('id')!r} has no start")
    all_day = not isinstance(start, datetime)
    if all_day:
        if not isinstance(end, date) or isinstance(end, datetime) or end <= start:
            end = start + timedelta(days=1)
    else:
        if not isinstance(end, datetime) or end < start:
            end = start
    first = start if not isinstance(start, datetime) else start.date()
    recurrence, unsupported = parse_recurrence(event.get("recurrence"), first)
    visibility = event.get("visibility") or Visibility.DEFAULT
    return CalendarItem(
        summary=clean_text(event.get("summary")),
        description=clean_text(event.get("description")),
        location=clean_text(event.get("location")),
        all_day=all_day,
        start=start,
        end=end,
        private=visibility in (Visibility.PRIVATE, Visibility.CONFIDENTIAL),
        recurrence=recurrence,
        unsupported_rule=unsupported,
    )


def to_rrule(rec: Recurrence, *, all_day: bool) -> str:
    """`RRULE:FREQ=..;INTERVAL=n[;UNTIL=..]` (UNTIL: end of the last day in Berlin, as UTC)."""
    rule = f"RRULE:FREQ={rec.freq.value};INTERVAL={rec.interval}"
    if rec.until is not None:
        if all_day:
            rule += f";UNTIL={rec.until.strftime('%Y%m%d')}"
        else:
            last = berlin_aware(datetime.combine(rec.until, _LAST_SECOND)).astimezone(UTC)
            rule += f";UNTIL={last.strftime('%Y%m%dT%H%M%SZ')}"
    return rule


def google_body(item: CalendarItem, frnr: int | None = None) -> dict[str, Any]:
    """The Google event fields for `item` (for insert and for patch: every mapped field is set)."""
    if item.all_day:
        start: dict[str, Any] = {"date": item.start.isoformat()}
        end: dict[str, Any] = {"date": item.end.isoformat()}
    else:
        start = {"dateTime": berlin_iso(item.start), "timeZone": BERLIN_TZ_NAME}  # type: ignore[arg-type]
        end = {"dateTime": berlin_iso(item.end), "timeZone": BERLIN_TZ_NAME}  # type: ignore[arg-type]
    body: dict[str, Any] = {
        "summary": item.summary,
        "description": item.description,
        "location": item.location,
        "start": start,
        "end": end,
        "visibility": (Visibility.PRIVATE if item.private else Visibility.DEFAULT).value,
        "recurrence": [to_rrule(item.recurrence, all_day=item.all_day)] if item.recurrence else [],
    }
    if frnr is not None:
        body["extendedProperties"] = frnr_property(frnr)
    return body


def frnr_property(frnr: int) -> dict[str, Any]:
    """The `extendedProperties` patch that pairs an event with appointment `frnr`."""
    return {"private": {FRNR_PROPERTY: str(frnr)}}



def google_hash(event: Mapping[str, Any]) -> str:
    return item_from_google(event).fingerprint()
