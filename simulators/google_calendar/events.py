"""Google Calendar simulator: event validation, times, RRULE expansion (singleEvents) and PATCH merging."""

from __future__ import annotations

import calendar as calendar_mod
import copy
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from simulators.google_calendar.model import (
    MAX_INSTANCES,
    Calendar,
    EventStatus,
    InvalidEvent,
    StoredEvent,
    zone_of,
)


def event_time(obj: Any, cal: Calendar, which: str) -> datetime:
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
            dt = dt.replace(tzinfo=zone_of(obj["timeZone"]))
        return dt
    if obj.get("date"):
        try:
            d = date.fromisoformat(str(obj["date"]))
        except ValueError as exc:
            raise InvalidEvent(f"Invalid {which} time.") from exc
        return datetime(d.year, d.month, d.day, tzinfo=zone_of(obj.get("timeZone") or cal.time_zone))
    raise InvalidEvent(f"Missing {which} time.")


def validate_event(data: dict[str, Any], cal: Calendar) -> None:
    """Raise InvalidEvent for what Google rejects with 400."""
    start = event_time(data.get("start"), cal, "start")
    end = event_time(data.get("end"), cal, "end")
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
    return event_time(data["start"], cal, "start"), event_time(data["end"], cal, "end")


def parse_rrule(data: dict[str, Any]) -> dict[str, str] | None:
    for line in data.get("recurrence") or []:
        if line.upper().startswith("RRULE:"):
            parts = dict(p.split("=", 1) for p in line[6:].split(";") if "=" in p)
            return {k.upper(): v.upper() for k, v in parts.items()}
    return None


_WEEKDAYS = {"MO": 0, "TU": 1, "WE": 2, "TH": 3, "FR": 4, "SA": 5, "SU": 6}


def _occurrences(data: dict[str, Any], cal: Calendar, until: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Start/end of each instance (the event itself when not recurring), up to `until`."""
    start, end = _bounds(data, cal)
    rule = parse_rrule(data)
    if rule is None:
        yield start, end
        return
    duration = end - start
    # Recur in wall-clock time of the event's time zone, so 10:00 stays 10:00 across DST.
    zone: Any = zone_of(data["start"].get("timeZone")) if data["start"].get("timeZone") else (start.tzinfo or UTC)
    local = start.astimezone(zone).replace(tzinfo=None)
    freq = rule.get("FREQ", "DAILY")
    interval = max(1, int(rule.get("INTERVAL", "1") or 1))
    count = int(rule["COUNT"]) if rule.get("COUNT", "").isdigit() else None
    rule_until: datetime | None = None
    if rule.get("UNTIL"):
        raw = rule["UNTIL"]
        try:
            if "T" in raw:
                rule_until = datetime.strptime(raw.rstrip("Z"), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
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


def expand_instances(stored: StoredEvent, cal: Calendar, tmin: datetime | None, tmax: datetime | None) -> list[dict[str, Any]]:
    data = stored.data
    horizon = tmax or (datetime.now(UTC) + timedelta(days=730))
    out = []
    for start, end in _occurrences(data, cal, horizon):
        if tmin is not None and end <= tmin:
            continue
        suffix = start.strftime("%Y%m%d") if data["start"].get("date") else start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        inst = {k: copy.deepcopy(v) for k, v in data.items() if k != "recurrence"}
        inst["id"] = f"{stored.id}_{suffix}"
        inst["recurringEventId"] = stored.id
        inst["originalStartTime"] = _time_obj(data["start"], start)
        inst["start"] = _time_obj(data["start"], start)
        inst["end"] = _time_obj(data["end"], end)
        out.append(inst)
    return out


def overlaps_window(stored: StoredEvent, cal: Calendar, tmin: datetime | None, tmax: datetime | None) -> bool:
    horizon = tmax or datetime.max.replace(tzinfo=UTC)
    if parse_rrule(stored.data) is None:
        start, end = _bounds(stored.data, cal)
        return (tmin is None or end > tmin) and (tmax is None or start < tmax)
    for _start, end in _occurrences(stored.data, cal, horizon):
        if tmin is None or end > tmin:
            return True
    return False


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in ("start", "end"):
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


