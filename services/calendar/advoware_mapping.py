"""The canonical form of an appointment (`CalendarItem`) and the mapping between Advoware
appointments (TermineActiveSync) and it. Pure functions, no I/O. The Google side is
`services.calendar.google_mapping`; a change on either side is measured by the canonical
form's `fingerprint()`.

The canonical form holds what Advoware can express (one text, note, place, a start and end,
all-day, private, a simple series); Google events are mapped onto it.

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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from services.clients.advoware import paths as P
from services.clients.advoware.paths import TerminField as F

BERLIN = ZoneInfo("Europe/Berlin")
BERLIN_TZ_NAME = "Europe/Berlin"
SERIES_FOREVER = date(P.SERIES_FOREVER_YEAR, 12, 31)
ALL_DAY_END = time(23, 59, 0)
_MIDNIGHT = time(0, 0, 0)


class Freq(StrEnum):
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"
    YEARLY = "YEARLY"



TURNUS_TO_FREQ: dict[int, Freq] = {
    P.TurnusArt.TAEGLICH: Freq.DAILY,
    P.TurnusArt.WOECHENTLICH: Freq.WEEKLY,
    P.TurnusArt.MONATLICH: Freq.MONTHLY,
    P.TurnusArt.JAEHRLICH: Freq.YEARLY,
}
FREQ_TO_TURNUS: dict[Freq, P.TurnusArt] = {v: P.TurnusArt(k) for k, v in TURNUS_TO_FREQ.items()}


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
            return self.end - timedelta(days=1)
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


def clean_text(value: Any) -> str:
    """A text field as compared and written: None → "", line ends normalised, stripped."""
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



def advoware_modified(record: Mapping[str, Any]) -> datetime | None:
    """`ZuletztGeaendertAm` (UTC) as an aware datetime, or None."""
    raw = record.get(F.ZULETZT_GEAENDERT_AM)
    if not raw:
        return None
    try:
        return P.parse_utc(str(raw))
    except ValueError:
        return None



def belongs_to(record: Mapping[str, Any], kuerzel: str) -> bool:
    """Whether the appointment is the employee's (`Anwalt` or `Sb`, case-insensitive)."""
    k = kuerzel.upper()
    return clean_text(record.get(F.ANWALT)).upper() == k or clean_text(record.get(F.SB)).upper() == k


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
        summary=clean_text(record.get(F.TEXT)),
        description=clean_text(record.get(F.NOTIZ)),
        location=clean_text(record.get(F.ORT)),
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
        first: date = item.start
        datum = datetime.combine(first, _MIDNIGHT)
        if rec is not None:
            last = rec.until or SERIES_FOREVER
        else:
            last = max(first, item.end - timedelta(days=1))
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


def advoware_hash(record: Mapping[str, Any]) -> str:
    return item_from_advoware(record).fingerprint()

