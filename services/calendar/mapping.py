"""Field mapping between Advoware appointments (TermineActiveSync) and Google Calendar
events, through one canonical form (`CalendarItem`). Pure functions, no I/O.

Decisions (see also src/steps/advoware_cal_sync/README.md):
- Time zone: Advoware's `Datum`/`DatumBis`/`UhrzeitBis` are the firm's WALL-CLOCK time in
  Europe/Berlin, although `Datum` is written with a `Z` (the `Z` is ignored). The canonical
  form keeps naive Berlin wall-clock datetimes. Google events are written as
  `{"dateTime": "<Berlin wall clock with its UTC offset>", "timeZone": "Europe/Berlin"}`;
  Google times in any other zone (or UTC) are converted to Berlin wall clock when read.
  A wall-clock time that does not exist (the skipped hour on the last Sunday of March)
  gets the pre-transition offset, so Google shows it one hour later, as Google itself does.
  In the repeated hour in October the first occurrence (CEST) is meant.
- All-day (`Abwesenheit=1`) ↔ Google `{date}`: Advoware keeps the end one minute before
  midnight of the LAST day (`DatumBis` = last day, `UhrzeitBis` = 23:59:00); Google's end
  date is exclusive, i.e. the day after. An Advoware end of `00:00:00` on a later day is
  read as "until midnight" (exclusive end that day).
- `Privat=1` ↔ visibility `private` (Google `confidential` also reads as private);
  `Privat=0` is written as visibility `default`.
- Series (`Dauertermin=1`, `Turnus`=interval, `TurnusArt` 1-4) ↔
  `RRULE:FREQ=DAILY|WEEKLY|MONTHLY|YEARLY;INTERVAL=n[;UNTIL=...]`. `DatumBis` is the last
  day of the series (UNTIL = end of that day in Berlin, as UTC; a bare date for all-day
  series); a `DatumBis` in 2037 or later means "no end" (no UNTIL). Google `COUNT` is turned
  into the date of the last occurrence. Fallback: a Google rule Advoware cannot express
  (several BYDAY, BYSETPOS, EXDATE/RDATE, ...) is synced as a single appointment (its first
  occurrence); the rule is kept in `unsupported_rule` so changes to it are still noticed.
  Occurrences crossing midnight are cut at 23:59 (Advoware cannot express them).
- Empty values: `None` and `""` are the same; texts are stripped, line ends normalised.
"""

from __future__ import annotations

import calendar as _calendar
import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from services.clients.advoware import paths as P
from services.clients.advoware.paths import TerminField as F

BERLIN = ZoneInfo("Europe/Berlin")
BERLIN_TZ_NAME = "Europe/Berlin"
FRNR_PROPERTY = "advowareFrNr"
"""Private extended property of a Google event holding the Advoware FrNr."""
SERIES_FOREVER = date(P.SERIES_FOREVER_YEAR, 12, 31)
ALL_DAY_END = time(23, 59, 0)
_MIDNIGHT = time(0, 0, 0)
_LAST_SECOND = time(23, 59, 59)


class Freq(StrEnum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"
    YEARLY = "YEARLY"


class Visibility(StrEnum):
    DEFAULT = "default"
    PUBLIC = "public"
    PRIVATE = "private"
    CONFIDENTIAL = "confidential"


class EventStatus(StrEnum):
    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"


class GoogleEventType(StrEnum):
    DEFAULT = "default"


TURNUS_TO_FREQ: dict[int, Freq] = {
    P.TurnusArt.TAEGLICH: Freq.DAILY,
    P.TurnusArt.WOECHENTLICH: Freq.WEEKLY,
    P.TurnusArt.MONATLICH: Freq.MONTHLY,
    P.TurnusArt.JAEHRLICH: Freq.YEARLY,
}
FREQ_TO_TURNUS: dict[Freq, P.TurnusArt] = {v: P.TurnusArt(k) for k, v in TURNUS_TO_FREQ.items()}
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True, slots=True)
class Recurrence:
    """Every `interval` days/weeks/months/years from the start, last start on `until` (None: no end)."""

    freq: Freq
    interval: int = 1
    until: date | None = None


@dataclass(frozen=True, slots=True)
class CalendarItem:
    """An appointment in the canonical form both sides are mapped to.

    Timed: `start`/`end` are naive Berlin wall-clock datetimes (`end` of the first
    occurrence). All-day: `start`/`end` are dates, `end` exclusive.
    """

    summary: str
    description: str
    location: str
    all_day: bool
    start: datetime | date
    end: datetime | date
    private: bool = False
    recurrence: Recurrence | None = None
    unsupported_rule: str | None = None

    def last_day(self) -> date:
        """The last day the item (or its series) covers, or `date.max` for an endless series."""
        if self.recurrence is not None:
            return self.recurrence.until or date.max
        if self.all_day:
            return self.end - timedelta(days=1)  # type: ignore[operator,return-value]
        end = self.end
        return end.date() if isinstance(end, datetime) else end

    def first_day(self) -> date:
        return self.start.date() if isinstance(self.start, datetime) else self.start

    def fingerprint(self) -> str:
        """A stable hash of the content (what a change of either side is measured by)."""
        rec = self.recurrence
        parts = (
            self.summary,
            self.description,
            self.location,
            "1" if self.all_day else "0",
            self.start.isoformat(),
            self.end.isoformat(),
            "1" if self.private else "0",
            f"{rec.freq}/{rec.interval}/{rec.until.isoformat() if rec.until else ''}" if rec else "",
            self.unsupported_rule or "",
        )
        return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=12).hexdigest()


# --- small helpers ---------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.strip()


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "ja", "yes")
    return bool(value)


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def add_months(d: date, months: int) -> date:
    """`d` plus `months` calendar months, the day clamped to the month's length."""
    total = d.year * 12 + (d.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(d.day, _calendar.monthrange(year, month)[1])
    return date(year, month, day)


def to_berlin(dt: datetime) -> datetime:
    """An aware datetime → naive Berlin wall clock."""
    return dt.astimezone(BERLIN).replace(tzinfo=None)


def berlin_aware(wall: datetime) -> datetime:
    """A naive Berlin wall-clock datetime → aware (fold=0: before the DST change)."""
    return wall.replace(tzinfo=BERLIN)


def berlin_iso(wall: datetime) -> str:
    """Google `dateTime` for a Berlin wall-clock time: `YYYY-MM-DDTHH:MM:SS+HH:MM`."""
    return berlin_aware(wall.replace(microsecond=0)).isoformat()


def parse_google_timestamp(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp (`updated`) → aware UTC datetime; None when absent/invalid."""
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def advoware_modified(record: Mapping[str, Any]) -> datetime | None:
    """`ZuletztGeaendertAm` (UTC) as an aware datetime, or None."""
    raw = record.get(F.ZULETZT_GEAENDERT_AM)
    if not raw:
        return None
    try:
        return P.parse_utc(str(raw))
    except ValueError:
        return None


def event_frnr(event: Mapping[str, Any]) -> int | None:
    """The Advoware FrNr kept in the event's private extended property, or None."""
    raw = ((event.get("extendedProperties") or {}).get("private") or {}).get(FRNR_PROPERTY)
    if raw is None:
        return None
    try:
        return int(str(raw).strip())
    except ValueError:
        return None


def is_cancelled(event: Mapping[str, Any]) -> bool:
    return event.get("status") == EventStatus.CANCELLED


def is_syncable_event(event: Mapping[str, Any]) -> bool:
    """Events the sync handles: plain events and series masters (not single-occurrence
    exceptions of a series, not out-of-office/focus-time/birthday entries)."""
    if event.get("recurringEventId"):
        return False
    kind = event.get("eventType")
    return kind in (None, GoogleEventType.DEFAULT)


def belongs_to(record: Mapping[str, Any], kuerzel: str) -> bool:
    """Whether the appointment is the employee's (`Anwalt` or `Sb`, case-insensitive)."""
    k = kuerzel.upper()
    return _text(record.get(F.ANWALT)).upper() == k or _text(record.get(F.SB)).upper() == k


# --- Advoware → canonical ----------------------------------------------------------------


def _series_until(last: date) -> date | None:
    return None if last.year >= P.SERIES_FOREVER_YEAR else last


def item_from_advoware(record: Mapping[str, Any]) -> CalendarItem:
    """The canonical form of an Advoware appointment (keys in canonical casing)."""
    start = P.parse_wall_clock(str(record[F.DATUM])).replace(microsecond=0)
    raw_bis = record.get(F.DATUM_BIS)
    last_day = P.parse_wall_clock(str(raw_bis)).date() if raw_bis else start.date()
    raw_time = record.get(F.UHRZEIT_BIS)
    if raw_time:
        h, m, s = P.parse_time(str(raw_time))
        end_time = time(h, m, s)
    else:
        end_time = start.time()
    all_day = _flag(record.get(F.ABWESENHEIT))
    recurrence: Recurrence | None = None
    freq = TURNUS_TO_FREQ.get(_int(record.get(F.TURNUS_ART)))
    interval = _int(record.get(F.TURNUS))
    if _flag(record.get(F.DAUERTERMIN)) and freq is not None and interval >= 1:
        recurrence = Recurrence(freq, interval, _series_until(max(last_day, start.date())))

    s_date = start.date()
    if all_day:
        begin: datetime | date = s_date
        if recurrence is not None:
            end: datetime | date = s_date + timedelta(days=1)
        else:
            if end_time == _MIDNIGHT and last_day > s_date:
                last_day -= timedelta(days=1)  # "until midnight" written as 00:00 of the next day
            end = max(last_day, s_date) + timedelta(days=1)
    else:
        begin = start
        end_day = s_date if recurrence is not None else last_day
        end = datetime.combine(end_day, end_time)
        if end < start:
            end = start
    return CalendarItem(
        summary=_text(record.get(F.TEXT)),
        description=_text(record.get(F.NOTIZ)),
        location=_text(record.get(F.ORT)),
        all_day=all_day,
        start=begin,
        end=end,
        private=_flag(record.get(F.PRIVAT)),
        recurrence=recurrence,
    )


def advoware_fields(item: CalendarItem, *, kuerzel: str | None = None) -> dict[str, Any]:
    """The Advoware fields for `item` (create: pass `kuerzel` to set `Anwalt`).

    Values are formatted as the API writes them (`Datum` `YYYY-MM-DDTHH:MM:SSZ` wall clock).
    """
    rec = item.recurrence
    if item.all_day:
        first: date = item.start  # type: ignore[assignment]
        datum = datetime.combine(first, _MIDNIGHT)
        if rec is not None:
            last = rec.until or SERIES_FOREVER
        else:
            last = max(first, item.end - timedelta(days=1))  # type: ignore[operator]
        end_time = ALL_DAY_END
    else:
        start: datetime = item.start  # type: ignore[assignment]
        end: datetime = item.end  # type: ignore[assignment]
        datum = start
        if rec is not None:
            last = rec.until or SERIES_FOREVER
            end_time = end.time() if end.date() == start.date() else ALL_DAY_END
        else:
            last = end.date()
            end_time = end.time()
    out: dict[str, Any] = {
        F.TEXT.value: item.summary,
        F.NOTIZ.value: item.description,
        F.ORT.value: item.location,
        F.DATUM.value: P.format_datetime(datum),
        F.DATUM_BIS.value: P.format_datetime(datetime.combine(last, _MIDNIGHT)),
        F.UHRZEIT_BIS.value: end_time.strftime(P.TIME_FORMAT),
        F.ABWESENHEIT.value: int(P.Flag.JA if item.all_day else P.Flag.NEIN),
        F.PRIVAT.value: int(P.Flag.JA if item.private else P.Flag.NEIN),
        F.DAUERTERMIN.value: int(P.Flag.JA if rec else P.Flag.NEIN),
        F.TURNUS.value: rec.interval if rec else 0,
        F.TURNUS_ART.value: int(FREQ_TO_TURNUS[rec.freq] if rec else P.TurnusArt.KEINE),
    }
    if kuerzel:
        out[F.ANWALT.value] = kuerzel
    return out


# --- Google → canonical ------------------------------------------------------------------


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
        return to_berlin(dt.replace(tzinfo=timezone.utc)).date()
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
        summary=_text(event.get("summary")),
        description=_text(event.get("description")),
        location=_text(event.get("location")),
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
            last = berlin_aware(datetime.combine(rec.until, _LAST_SECOND)).astimezone(timezone.utc)
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


def advoware_hash(record: Mapping[str, Any]) -> str:
    return item_from_advoware(record).fingerprint()


def google_hash(event: Mapping[str, Any]) -> str:
    return item_from_google(event).fingerprint()


__all__ = [
    "BERLIN",
    "CalendarItem",
    "FRNR_PROPERTY",
    "Freq",
    "Recurrence",
    "Visibility",
    "add_months",
    "advoware_fields",
    "advoware_hash",
    "advoware_modified",
    "belongs_to",
    "event_frnr",
    "frnr_property",
    "google_body",
    "google_hash",
    "is_cancelled",
    "is_syncable_event",
    "item_from_advoware",
    "item_from_google",
    "parse_google_timestamp",
    "parse_recurrence",
    "to_rrule",
]
