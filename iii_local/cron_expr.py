"""Cron expressions exactly as the real engine reads them: the Rust `cron` crate 0.15.

The engine (engine/src/modules/cron/structs.rs 69-73) parses with `cron::Schedule::from_str`
and asks `schedule.upcoming(Utc).next()`. This module ports that crate (zslayton/cron
v0.15.0, src/parsing.rs, src/time_unit/*.rs, src/schedule.rs `next_after`, src/queries.rs):

- 6 fields (sec min hour day-of-month month day-of-week) or 7 (plus year), separated by
  whitespace, or one of `@yearly @monthly @weekly @daily @hourly`. 5 fields are an error.
- Each field is a comma list of `*`, `N`, `A-B`, names (`JAN`, `MON-FRI`), periods `X/S`
  (`*/S`, `N/S` = N..max step S, `A-B/S`); `?` only in day-of-month and day-of-week.
- Ranges: seconds/minutes 0-59, hours 0-23, days 1-31, months 1-12, weekdays 1-7 with
  **Sunday = 1** (names sun..sat), years 1970-2100.
- Day-of-month and day-of-week must **both** match (AND, unlike Vixie cron's OR).
- Times are UTC; the next time is the first whole second strictly after `after`.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class CronExpressionError(ValueError):
    """The `cron` crate would reject this expression (the trigger registration fails)."""


_DOW_NAMES = {"sun": 1, "sunday": 1, "mon": 2, "monday": 2, "tue": 3, "tues": 3, "tuesday": 3, "wed": 4,
              "wednesday": 4, "thu": 5, "thurs": 5, "thursday": 5, "fri": 6, "friday": 6, "sat": 7, "saturday": 7}
_MONTH_NAMES = {"jan": 1, "january": 1, "feb": 2, "february": 2, "mar": 3, "march": 3, "apr": 4, "april": 4,
                "may": 5, "jun": 6, "june": 6, "jul": 7, "july": 7, "aug": 8, "august": 8, "sep": 9,
                "september": 9, "oct": 10, "october": 10, "nov": 11, "november": 11, "dec": 12, "december": 12}


@dataclass(frozen=True)
class _Unit:
    name: str
    lo: int
    hi: int
    names: dict[str, int] | None = None
    any_ok: bool = False  # accepts `?`


_SECONDS = _Unit("Seconds", 0, 59)
_MINUTES = _Unit("Minutes", 0, 59)
_HOURS = _Unit("Hours", 0, 23)
_DOM = _Unit("Days of Month", 1, 31, any_ok=True)
_MONTHS = _Unit("Months", 1, 12, _MONTH_NAMES)
_DOW = _Unit("Days of Week", 1, 7, _DOW_NAMES, any_ok=True)
_YEARS = _Unit("Years", 1970, 2100)
_UNITS = (_SECONDS, _MINUTES, _HOURS, _DOM, _MONTHS, _DOW, _YEARS)

_NUM = re.compile(r"\d+")
_NAME = re.compile(r"[A-Za-z]+")


def _validate(unit: _Unit, n: int) -> int:
    if n < unit.lo:
        raise CronExpressionError(f"{unit.name} must be greater than or equal to {unit.lo}. ('{n}' specified.)")
    if n > unit.hi:
        raise CronExpressionError(f"{unit.name} must be less than {unit.hi}. ('{n}' specified.)")
    return n


def _named(unit: _Unit, name: str) -> int:
    if unit.names is None:
        raise CronExpressionError(f"The '{unit.name}' field does not support using names. '{name}' specified.")
    try:
        return unit.names[name.lower()]
    except KeyError:
        raise CronExpressionError(f"'{name}' is not a valid name for {unit.name}.") from None


def _specifier(unit: _Unit, text: str, *, in_period: bool) -> tuple[str, set[int] | int]:
    """One specifier: ('all', set) | ('point', n) | ('range', set). Points are validated later."""
    if text == "*" or (text == "?" and unit.any_ok):
        return "all", set(range(unit.lo, unit.hi + 1))
    if "-" in text:
        a, b = text.split("-", 1)
        if _NUM.fullmatch(a) and _NUM.fullmatch(b):
            start, end = int(a), int(b)
        elif _NAME.fullmatch(a) and _NAME.fullmatch(b):
            start, end = _named(unit, a), _named(unit, b)
        else:
            raise CronExpressionError(f"invalid {unit.name} specifier {text!r}")
        try:
            start, end = _validate(unit, start), _validate(unit, end)
        except CronExpressionError:
            start, end = 1, 0
        if start > end:
            raise CronExpressionError(f"Invalid range for {unit.name}: {a}-{b}")
        return "range", set(range(start, end + 1))
    if _NUM.fullmatch(text):
        return "point", int(text)
    if _NAME.fullmatch(text) and not in_period:
        return "point", _named(unit, text)
    raise CronExpressionError(f"invalid {unit.name} specifier {text!r}")


def _field(unit: _Unit, text: str) -> frozenset[int]:
    """A comma list of root specifiers → the set of ordinals (crate: `FromField`)."""
    ordinals: set[int] = set()
    for part in text.split(","):
        if "/" in part:
            start_text, step_text = part.split("/", 1)
            if not _NUM.fullmatch(step_text):
                raise CronExpressionError(f"invalid step in {part!r}")
            step = int(step_text)
            if step == 0:
                raise CronExpressionError("range step cannot be zero")
            if step > unit.hi:
                raise CronExpressionError(f"{unit.name} must be between 1 and {unit.hi}. ('{step}' specified.)")
            kind, value = _specifier(unit, start_text, in_period=True)
            base = list(range(_validate(unit, value), unit.hi + 1)) if kind == "point" else sorted(value)  # type: ignore[arg-type]
            ordinals.update(base[::step])
        else:
            kind, value = _specifier(unit, part, in_period=False)
            ordinals.update({value} if kind == "point" else value)  # type: ignore[arg-type]
    for n in ordinals:
        _validate(unit, n)
    return frozenset(ordinals)


_SHORTHANDS = {
    "@yearly": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 1",
    "@daily": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}


@dataclass(frozen=True)
class CronSchedule:
    """A parsed expression: one ordinal set per unit (seconds … years)."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    years: frozenset[int]

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        text = _SHORTHANDS.get(expression.strip(), expression)
        fields = text.split()
        if len(fields) not in (6, 7):
            raise CronExpressionError(
                f"Invalid cron expression '{expression}': 6 or 7 fields expected (seconds first), got {len(fields)}"
            )
        if len(fields) == 6:
            fields.append("*")
        sets = [_field(unit, f) for unit, f in zip(_UNITS, fields)]
        return cls(expression, *sets)

    def next_after(self, after: float) -> float | None:
        """The first scheduled time strictly after `after` (epoch seconds, UTC), or None."""
        start = datetime.fromtimestamp(after, UTC)
        nxt = _next_after(self, start)
        return None if nxt is None else nxt.timestamp()


class _Query:
    """`NextAfterQuery`: the first bound of each unit is the start time's, later ones the unit's minimum."""

    def __init__(self, after: datetime) -> None:
        self.initial = after + timedelta(seconds=1)
        self.first = {"month": True, "day": True, "hour": True, "minute": True, "second": True}

    def lower(self, unit: str, initial: int, minimum: int) -> int:
        if self.first[unit]:
            self.first[unit] = False
            return initial
        return minimum

    def reset(self, unit: str) -> None:
        order = ("month", "day", "hour", "minute", "second")
        for u in order[order.index(unit):]:
            self.first[u] = False

    def start(self, unit: str, initial: int, minimum: int, allowed: frozenset[int]) -> int:
        """The unit's lower bound; one the schedule does not allow resets this unit and the smaller ones."""
        value = self.lower(unit, initial, minimum)
        if value not in allowed:
            self.reset(unit)
        return value


def _next_after(s: CronSchedule, after: datetime) -> datetime | None:
    """Port of `Schedule::next_after` (cron 0.15 src/schedule.rs), loop for loop."""
    q = _Query(after)
    ini = q.initial
    for year in sorted(y for y in s.years if y >= ini.year):
        if year > after.year:
            q.reset("month")
        month_start = q.start("month", ini.month, 1, s.months)
        for month in sorted(m for m in s.months if m >= month_start):
            dom_start = q.start("day", ini.day, 1, s.days_of_month)
            dom_end = calendar.monthrange(year, month)[1]
            for day in sorted(d for d in s.days_of_month if min(dom_start, dom_end) <= d <= dom_end):
                found = _in_day(s, q, year, month, day)
                if found is not None:
                    return found
            q.reset("month")
    return None


def _in_day(s: CronSchedule, q: _Query, year: int, month: int, day: int) -> datetime | None:
    """The hours/minutes/seconds loops of one day; None moves on to the next day.

    The weekday is checked on the first candidate time of the day (crate: `continue 'day_loop`).
    """
    ini = q.initial
    hour_start = q.start("hour", ini.hour, 0, s.hours)
    for hour in sorted(h for h in s.hours if h >= hour_start):
        minute_start = q.start("minute", ini.minute, 0, s.minutes)
        for minute in sorted(m for m in s.minutes if m >= minute_start):
            second_start = q.start("second", ini.second, 0, s.seconds)
            for second in sorted(x for x in s.seconds if x >= second_start):
                candidate = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
                if (candidate.isoweekday() % 7) + 1 not in s.days_of_week:  # Sunday = 1
                    return None
                return candidate
            q.reset("minute")
        q.reset("hour")
    q.reset("day")
    return None
