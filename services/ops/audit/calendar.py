"""The drift audit's rules for calendar pairs: pure functions over what was read, no I/O.

A pair (services.calendar.plan.Pair: Advoware FrNr ↔ Google event id, stored per employee in
state `calendar_sync`) is broken (CALENDAR_PAIR_BROKEN) when, after the executor listed the
employee's Advoware window and Google window and fetched the missing ones one by one:
- the appointment is gone (404) while the event is still there, or the event is gone or
  cancelled while the appointment is still there, or both are gone (a stale pair);
- the event carries another `advowareFrNr` than the pair's FrNr;
- two pairs name the same event.
A pair whose sides were not all read (budget) is left out; an appointment or event that only
left the window is not broken. The repair queues the employee's full calendar sync through the
ledger (`calendar.sync.employee`, `full`): it re-reads both sides and applies its rules, with
every delete confirmed by a second read and admitted by the deletion guard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.calendar.google_mapping import event_frnr
from services.calendar.jobs import TOPIC_SYNC_EMPLOYEE, EmployeeSyncJob
from services.calendar.plan import Pair
from services.clients.google_calendar import is_cancelled
from services.ops.audit.model import Finding, FindingType, Repair, RepairAction
from services.ops.entities import EntityRef, OpsEntityType
from services.platform.models import SyncSource


def employee_repair(kuerzel: str) -> Repair:
    job = EmployeeSyncJob(kuerzel=kuerzel, full=True, source=SyncSource.MANUAL)
    return Repair(RepairAction.RESYNC, f"queue a full calendar sync of {kuerzel} (calendar.sync.employee) through the ledger",
                  ({"topic": TOPIC_SYNC_EMPLOYEE, "data": job.to_queue()},))


def pair_findings(kuerzel: str, calendar_id: str, pairs: Mapping[int, Pair], *,
                  appointments: Mapping[int, Mapping[str, Any]], appointments_gone: set[int],
                  events: Mapping[str, Mapping[str, Any] | None]) -> list[Finding]:
    """CALENDAR_PAIR_BROKEN per broken pair. `appointments`: every appointment read (listed or
    fetched) by FrNr; `appointments_gone`: FrNrs that answered 404; `events`: every event read by
    id, None for an event Google does not know (ids not read are absent)."""
    ref = EntityRef(OpsEntityType.EMPLOYEE, kuerzel)
    by_event: dict[str, list[int]] = {}
    for frnr, pair in pairs.items():
        by_event.setdefault(pair.event_id, []).append(frnr)
    out: list[Finding] = []
    for frnr, pair in sorted(pairs.items()):
        a_known = frnr in appointments or frnr in appointments_gone
        if not a_known or pair.event_id not in events:
            continue
        a_gone = frnr in appointments_gone
        event = events[pair.event_id]
        g_gone = event is None or is_cancelled(event)
        problems: list[str] = []
        if a_gone and g_gone:
            problems.append("both the appointment and the event are gone: the pair is stale")
        elif a_gone:
            problems.append(f"Advoware answers 404 for appointment {frnr}, but its Google event {pair.event_id} is still there")
        elif g_gone:
            problems.append(f"Google event {pair.event_id} is {'cancelled' if event is not None else 'gone'}, "
                            f"but appointment {frnr} is still in Advoware")
        if event is not None and not g_gone:
            tagged = event_frnr(event)
            if tagged is not None and tagged != frnr:
                problems.append(f"the event is tagged with advowareFrNr {tagged}, not {frnr}")
        others = [f for f in by_event.get(pair.event_id, []) if f != frnr]
        if others:
            problems.append(f"event {pair.event_id} is also paired with appointment(s) {', '.join(map(str, sorted(others)))}")
        if not problems:
            continue
        out.append(Finding(
            FindingType.CALENDAR_PAIR_BROKEN, f"calendar pair of {kuerzel}: appointment {frnr} ↔ event {pair.event_id}",
            "; ".join(problems) + ".",
            "a change on one side did not reach the other (a failed or skipped run, a delete held by the guard, an edit by hand); "
            "a full sync re-reads both sides and applies the calendar rules",
            f"{frnr}:{pair.event_id}", ref,
            {"calendar_id": calendar_id, "frnr": frnr, "event_id": pair.event_id, "appointment_gone": a_gone,
             "event_gone": g_gone, "event_status": (event or {}).get("status")},
            employee_repair(kuerzel)))
    return out


__all__ = ["employee_repair", "pair_findings"]
