"""Calendar deletes caused by a counterpart that is gone, under the deletion guard
(services.platform.deletion_guard). services.calendar.sync calls these for the plan's
`gone` actions; a delete that may not happen raises `DeleteHeld` (a permanent item error:
recorded in the run's `item_errors` and the status record, the pair kept, planned again
next run).

Rules:
- A Google event whose appointment answered 404 (`get_appointment`) is deleted only when the
  appointment is also missing from the employee's list of the event's first day (the second,
  independent read), Advoware's window list was not empty while more pairs are known than
  the hourly budget, and the guard admits it. The event's last state is the tombstone; an
  event already gone is left alone.
- An Advoware appointment whose event is gone (a cancelled tombstone, or 404) is deleted only
  when a fresh read of the event still finds it gone and no other live event carries its
  `advowareFrNr` (such an event is paired instead), a full Google list was not empty while
  more pairs are known than the budget, and the guard admits it. The appointment's last
  state is the tombstone.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from services.calendar.google_mapping import FRNR_PROPERTY, google_hash, is_syncable_event, item_from_google
from services.calendar.jobs import TOPIC_SYNC_EMPLOYEE, EmployeeSyncJob
from services.calendar.plan import Action, Pair
from services.clients.advoware.paths import TerminField as F
from services.clients.errors import NotFoundError
from services.clients.google_calendar import is_cancelled
from services.platform.deletion_guard import DeleteHeld, Deletion, DeletionGuard, System, Tombstoned, gated_delete
from services.platform.models import SyncSource


class Done(StrEnum):
    DELETED = "deleted"
    ALREADY_GONE = "already_gone"
    PAIRED = "paired"
    """Another live event carries the FrNr: paired with it, nothing deleted."""


class CalendarDeletes:
    """The guarded deletes of one employee's run."""

    def __init__(self, kuerzel: str, calendar_id: str, *, advoware: Any, google: Any, guard: DeletionGuard) -> None:
        self.kuerzel = kuerzel
        self.calendar_id = calendar_id
        self.advoware = advoware
        self.google = google
        self.guard = guard

    def _deletion(self, system: System, entity_type: Tombstoned, entity_id: str, reason: str, record: Any, **context: Any) -> Deletion:
        job = EmployeeSyncJob(kuerzel=self.kuerzel, full=False, source=SyncSource.MANUAL)
        return Deletion(
            system, entity_type.value, entity_id, reason, record=dict(record),
            context={"calendar_id": self.calendar_id, "kuerzel": self.kuerzel, **context},
            retry={"topic": TOPIC_SYNC_EMPLOYEE, "data": job.to_queue()},
        )

    def _check_list(self, listed_empty: bool, pairs: int, where: str) -> None:
        if listed_empty and pairs > self.guard.max_per_hour:
            raise DeleteHeld(f"{where} listed nothing for {self.kuerzel} although {pairs} pairs are known: nothing deleted")

    async def google_event(self, action: Action, *, pairs: int, advoware_listed_empty: bool) -> Done:
        """The appointment `action.frnr` answered 404: delete its event (rules: module docstring)."""
        assert action.event_id is not None and action.frnr is not None
        self._check_list(advoware_listed_empty, pairs, "Advoware's appointment list")
        event = await self.google.get_event(self.calendar_id, action.event_id)
        if event is None or is_cancelled(event):
            return Done.ALREADY_GONE
        try:
            day = item_from_google(event).first_day()
        except (ValueError, TypeError, KeyError) as exc:
            raise DeleteHeld(f"event {action.event_id}: its day cannot be read for the second read ({exc}): nothing deleted") from exc
        listed = await self.advoware.list_appointments(self.kuerzel, day, day)
        if any(str(r.get(F.FRNR)) == str(action.frnr) for r in listed):
            raise DeleteHeld(f"appointment {action.frnr} answered 404 but is listed on {day}: nothing deleted")
        reason = f"Advoware appointment {action.frnr} not found (404 by FrNr, not listed on {day})"
        deletion = self._deletion(System.GOOGLE, Tombstoned.GOOGLE_EVENT, action.event_id, reason, event, frnr=action.frnr)
        await gated_delete(self.guard, deletion, lambda: self.google.delete_event(self.calendar_id, action.event_id))
        return Done.DELETED

    async def advoware_appointment(
        self, action: Action, record: Mapping[str, Any] | None, pairs: dict[int, Pair], *, google_listed_empty: bool
    ) -> Done:
        """The event `action.event_id` is gone: delete its appointment (rules: module docstring)."""
        assert action.event_id is not None and action.frnr is not None
        frnr = action.frnr
        self._check_list(google_listed_empty, len(pairs), "Google's event list")
        event = await self.google.get_event(self.calendar_id, action.event_id)
        if event is not None and not is_cancelled(event):
            raise DeleteHeld(f"event {action.event_id} is readable again: appointment {frnr} not deleted")
        carriers = await self.google.find_by_private_property(self.calendar_id, FRNR_PROPERTY, str(frnr))
        live = [e for e in carriers if not is_cancelled(e) and is_syncable_event(e) and e.get("id") != action.event_id]
        if live:
            old = pairs.get(frnr)
            pairs[frnr] = Pair(frnr, str(live[0]["id"]), old.a_hash if old else "", google_hash(live[0]))
            return Done.PAIRED
        if record is None:
            raise DeleteHeld(f"appointment {frnr} was not read this run: nothing deleted")
        reason = f"Google event {action.event_id} deleted, no other event carries FrNr {frnr}"
        deletion = self._deletion(System.ADVOWARE, Tombstoned.ADVOWARE_APPOINTMENT, str(frnr), reason, record, event_id=action.event_id)

        async def delete() -> None:
            try:
                await self.advoware.delete_appointment(frnr)
            except NotFoundError:
                pass

        await gated_delete(self.guard, deletion, delete)
        return Done.DELETED
