"""The decision of a calendar sync run: given the stored pairs, what Advoware and Google
look like now, plan the writes. Pure, no I/O (the handler in services.calendar.sync reads,
calls `plan_sync`, then applies the plan).

Each pair remembers the fingerprint (services.calendar.advoware_mapping) of both sides as they were
after the last sync, so a side "changed" when its fingerprint differs. Our own writes are
fingerprinted after writing, so they never come back as changes.

Rules (per pair; A = Advoware appointment, G = Google event):
- A changed only → update G;  G changed only → update A;  neither → nothing.
- Both changed: equal content → just remember the new fingerprints; else the conflict rule
  (`advoware_wins`, or `newest_wins`: `ZuletztGeaendertAm` vs Google `updated`, a tie or a
  missing timestamp → Advoware), recorded as a `Conflict`.
- A deleted (verified with a GET: 404) → delete G; G deleted (tombstone, or verified) →
  delete A. These deletes are `gone` actions: the handler confirms them by a second read and
  under the deletion guard first (services.calendar.deletes). Deleted on one side but changed on the other: the change wins and the item is
  re-created on the deleting side, except that with `advoware_wins` an Advoware deletion
  also deletes the changed G. Both deleted → forget the pair.
- A no longer the employee's (Anwalt/Sb changed) → delete G from this calendar, forget.
- A still exists but lies before the window, nothing changed → forget the pair (it left the
  sync horizon; an edit of G later re-adopts it through its advowareFrNr).
- A not verified (neither listed nor fetched) → skip the pair this run.
Unpaired: a new A → create G (the handler first looks for an event that already carries
its FrNr). A new G with an advowareFrNr of an existing A → adopt (as a conflict of unknown
history); of a deleted A → delete G (orphan); without FrNr → create A (and tag G).
Cancelled unknown events, series exceptions and special event types are ignored;
Advoware entries with FrNr < 0 (derived, read-only) are never synced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from services.calendar.advoware_mapping import CalendarItem, advoware_modified, belongs_to, item_from_advoware
from services.calendar.google_mapping import (
    event_frnr,
    google_hash,
    is_syncable_event,
    item_from_google,
    parse_google_timestamp,
)
from services.clients.advoware.paths import TerminField as F
from services.clients.google_calendar import is_cancelled
from services.platform.settings import ConflictRule


class ActionKind(StrEnum):
    CREATE_GOOGLE = "create_google"
    UPDATE_GOOGLE = "update_google"
    DELETE_GOOGLE = "delete_google"
    TAG_GOOGLE = "tag_google"
    """Only set the advowareFrNr property of the event."""
    CREATE_ADVOWARE = "create_advoware"
    UPDATE_ADVOWARE = "update_advoware"
    DELETE_ADVOWARE = "delete_advoware"
    REMEMBER = "remember"
    """No write: store the pair with new fingerprints."""
    FORGET = "forget"
    """No write: drop the pair from the state."""


WRITE_KINDS = frozenset(
    {
        ActionKind.CREATE_GOOGLE,
        ActionKind.UPDATE_GOOGLE,
        ActionKind.DELETE_GOOGLE,
        ActionKind.TAG_GOOGLE,
        ActionKind.CREATE_ADVOWARE,
        ActionKind.UPDATE_ADVOWARE,
        ActionKind.DELETE_ADVOWARE,
    }
)


class Side(StrEnum):
    ADVOWARE = "advoware"
    GOOGLE = "google"


@dataclass(frozen=True, slots=True)
class Pair:
    """A synced appointment/event pair and both sides' fingerprints after the last sync."""

    frnr: int
    event_id: str
    a_hash: str
    g_hash: str

    def to_state(self) -> list[str]:
        return [self.event_id, self.a_hash, self.g_hash]

    @classmethod
    def from_state(cls, frnr: int | str, value: Any) -> Pair:
        event_id, a_hash, g_hash = value
        return cls(int(frnr), str(event_id), str(a_hash or ""), str(g_hash or ""))


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    frnr: int | None = None
    event_id: str | None = None
    item: CalendarItem | None = None
    """The content to write (create/update)."""
    a_hash: str | None = None
    """Fingerprint of the Advoware side when the action does not write Advoware."""
    g_hash: str | None = None
    """Fingerprint of the Google side when the action does not write Google."""
    tag: bool = False
    """UPDATE_ADVOWARE: the event also lacks its advowareFrNr property."""
    reason: str = ""
    gone: bool = False
    """DELETE_*: caused by the counterpart being gone (guarded: services.calendar.deletes)."""

    @property
    def is_write(self) -> bool:
        return self.kind in WRITE_KINDS


@dataclass(frozen=True, slots=True)
class Conflict:
    frnr: int | None
    event_id: str | None
    winner: Side
    reason: str
    advoware_modified: str | None = None
    google_updated: str | None = None


@dataclass
class SyncPlan:
    actions: list[Action] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        """Planned write calls (creating an appointment from an event counts its tagging too)."""
        n = 0
        for a in self.actions:
            if a.kind is ActionKind.CREATE_ADVOWARE:
                n += 2
            elif a.kind is ActionKind.UPDATE_ADVOWARE and a.tag:
                n += 2
            elif a.is_write:
                n += 1
        return n

    def count(self, kind: ActionKind) -> int:
        return sum(1 for a in self.actions if a.kind is kind)

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for a in self.actions:
            out[a.kind.value] = out.get(a.kind.value, 0) + 1
        out["conflicts"] = len(self.conflicts)
        return out


@dataclass(frozen=True)
class SyncInput:
    """Everything the plan depends on.

    `appointments`: present Advoware records (the window's list plus those fetched one by
    one), by FrNr. `advoware_deleted`: FrNrs a GET answered 404 for. `events`: the Google
    events seen, by id (incremental: what changed since the sync token, with cancelled
    tombstones; full: the window's list plus verified events), `google_full` tells which.
    """

    kuerzel: str
    pairs: Mapping[int, Pair]
    appointments: Mapping[int, Mapping[str, Any]]
    advoware_deleted: frozenset[int] | set[int]
    events: Mapping[str, Mapping[str, Any]]
    google_full: bool
    window: tuple[date, date]
    conflict_rule: ConflictRule = ConflictRule.NEWEST_WINS


def verification_needed(
    pairs: Mapping[int, Pair],
    listed_frnrs: Iterable[int],
    events: Mapping[str, Mapping[str, Any]],
    *,
    google_full: bool,
) -> tuple[set[int], set[str]]:
    """What to fetch one by one before planning: FrNrs of paired (or referenced by a new
    event) appointments missing from the Advoware list, and — after a full Google list —
    paired event ids missing from it (moved out of the window, or deleted?)."""
    listed = set(listed_frnrs)
    frnrs = {frnr for frnr in pairs if frnr not in listed}
    paired_ids = {p.event_id for p in pairs.values()}
    for event_id, event in events.items():
        if event_id in paired_ids or is_cancelled(event) or not is_syncable_event(event):
            continue
        frnr = event_frnr(event)
        if frnr is not None and frnr not in listed and frnr not in pairs:
            frnrs.add(frnr)
    event_ids: set[str] = set()
    if google_full:
        event_ids = {p.event_id for p in pairs.values() if p.event_id not in events}
    return frnrs, event_ids


def parked_this_run(
    pairs: Mapping[int, Pair], parked: Mapping[int, str], today: str, events: Mapping[str, Mapping[str, Any]], pending: Iterable[str]
) -> set[int]:
    """Paired appointments not to read this run: parked (found outside the listed window by a
    read of their own) already `today`, and their Google event neither changed in `events`
    (content other than the pair's fingerprint: our own write-backs do not count) nor
    `pending`. They are read again the next day, when their event changes, or when the
    window lists them; until then their pair is skipped (an Advoware change or deletion out
    there is seen within a day)."""
    waiting = set(pending)

    def unchanged(pair: Pair) -> bool:
        event = events.get(pair.event_id)
        if event is None:
            return pair.event_id not in waiting
        try:
            return not is_cancelled(event) and google_hash(event) == pair.g_hash
        except (ValueError, TypeError, KeyError):
            return False

    return {frnr for frnr, day in parked.items() if day == today and frnr in pairs and unchanged(pairs[frnr])}


def _google_item(plan: SyncPlan, event: Mapping[str, Any]) -> CalendarItem | None:
    return _readable(plan, item_from_google, event, f"event {event.get('id')}")


def _advoware_item(plan: SyncPlan, record: Mapping[str, Any]) -> CalendarItem | None:
    return _readable(plan, item_from_advoware, record, f"FrNr {record.get(F.FRNR)}")


def _readable(
    plan: SyncPlan, parse: Callable[[Mapping[str, Any]], CalendarItem], raw: Mapping[str, Any], label: str
) -> CalendarItem | None:
    """`parse(raw)`, or None with a note on the plan when the record cannot be read (skipped)."""
    try:
        return parse(raw)
    except (ValueError, TypeError, KeyError) as exc:
        plan.notes.append(f"{label}: unreadable ({exc}); skipped")
        return None


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def _resolve(
    rule: ConflictRule, record: Mapping[str, Any], event: Mapping[str, Any] | None, frnr: int | None, event_id: str | None, why: str
) -> Conflict:
    a_mod = advoware_modified(record)
    g_mod = parse_google_timestamp(event.get("updated")) if event else None
    if rule is ConflictRule.ADVOWARE_WINS:
        winner = Side.ADVOWARE
        reason = f"{why}; rule advoware_wins"
    elif a_mod is not None and g_mod is not None and g_mod > a_mod:
        winner = Side.GOOGLE
        reason = f"{why}; Google is newer"
    else:
        winner = Side.ADVOWARE
        reason = f"{why}; Advoware is newer" if a_mod and g_mod else f"{why}; no comparable timestamps, Advoware wins"
    return Conflict(frnr, event_id, winner, reason, _iso(a_mod), _iso(g_mod))


def plan_sync(inp: SyncInput) -> SyncPlan:
    """The actions that bring both sides in line (see the module docstring for the rules)."""
    plan = SyncPlan()
    actions = plan.actions
    window_start = inp.window[0]
    rule = inp.conflict_rule
    events = inp.events
    appointments = inp.appointments
    paired_event_ids: set[str] = set()

    for frnr, pair in inp.pairs.items():
        paired_event_ids.add(pair.event_id)
        record = appointments.get(frnr)
        a_deleted = frnr in inp.advoware_deleted
        if record is None and not a_deleted:
            plan.notes.append(f"FrNr {frnr}: not verified this run, skipped")
            continue
        event = events.get(pair.event_id)
        g_deleted = event is not None and is_cancelled(event)
        g_present = event is not None and not g_deleted

        if record is not None and not belongs_to(record, inp.kuerzel):
            if g_deleted:
                actions.append(Action(ActionKind.FORGET, frnr, pair.event_id, reason="reassigned, event gone"))
            else:
                actions.append(Action(ActionKind.DELETE_GOOGLE, frnr, pair.event_id, reason="appointment reassigned to another employee"))
            continue

        a_item = _advoware_item(plan, record) if record is not None else None
        g_item = _google_item(plan, event) if g_present else None  # type: ignore[arg-type]
        if (record is not None and a_item is None) or (g_present and g_item is None):
            continue
        a_hash = a_item.fingerprint() if a_item is not None else None
        g_hash = g_item.fingerprint() if g_item is not None else None
        a_changed = a_hash is not None and a_hash != pair.a_hash
        g_changed = g_hash is not None and g_hash != pair.g_hash

        if a_deleted:
            if g_deleted:
                actions.append(Action(ActionKind.FORGET, frnr, pair.event_id, reason="deleted on both sides"))
            elif g_changed and rule is not ConflictRule.ADVOWARE_WINS:
                plan.conflicts.append(
                    Conflict(frnr, pair.event_id, Side.GOOGLE, "deleted in Advoware, changed in Google; the change wins")
                )
                actions.append(Action(ActionKind.CREATE_ADVOWARE, frnr, pair.event_id, g_item, g_hash=g_hash, reason="re-create"))
            else:
                if g_changed:
                    plan.conflicts.append(
                        Conflict(frnr, pair.event_id, Side.ADVOWARE, "deleted in Advoware, changed in Google; rule advoware_wins")
                    )
                actions.append(Action(ActionKind.DELETE_GOOGLE, frnr, pair.event_id, reason="deleted in Advoware", gone=True))
            continue

        assert record is not None and a_item is not None and a_hash is not None
        if g_deleted:
            if a_changed:
                plan.conflicts.append(
                    Conflict(frnr, pair.event_id, Side.ADVOWARE, "deleted in Google, changed in Advoware; the change wins")
                )
                actions.append(Action(ActionKind.CREATE_GOOGLE, frnr, None, a_item, a_hash=a_hash, reason="re-create"))
            else:
                actions.append(Action(ActionKind.DELETE_ADVOWARE, frnr, pair.event_id, reason="deleted in Google", gone=True))
            continue

        untagged = g_present and event_frnr(event) != frnr  # type: ignore[arg-type]
        if a_changed and g_changed:
            if a_item == g_item:
                actions.append(Action(ActionKind.REMEMBER, frnr, pair.event_id, a_hash=a_hash, g_hash=g_hash, reason="same change on both sides"))
                if untagged:
                    actions.append(Action(ActionKind.TAG_GOOGLE, frnr, pair.event_id, a_hash=a_hash, reason="tag"))
                continue
            conflict = _resolve(rule, record, event, frnr, pair.event_id, "changed on both sides")
            plan.conflicts.append(conflict)
            if conflict.winner is Side.ADVOWARE:
                actions.append(Action(ActionKind.UPDATE_GOOGLE, frnr, pair.event_id, a_item, a_hash=a_hash, reason="conflict"))
            else:
                actions.append(
                    Action(ActionKind.UPDATE_ADVOWARE, frnr, pair.event_id, g_item, g_hash=g_hash, tag=untagged, reason="conflict")
                )
        elif a_changed:
            actions.append(Action(ActionKind.UPDATE_GOOGLE, frnr, pair.event_id, a_item, a_hash=a_hash, reason="changed in Advoware"))
        elif g_changed:
            actions.append(
                Action(ActionKind.UPDATE_ADVOWARE, frnr, pair.event_id, g_item, g_hash=g_hash, tag=untagged, reason="changed in Google")
            )
        elif untagged:
            actions.append(Action(ActionKind.TAG_GOOGLE, frnr, pair.event_id, a_hash=a_hash, reason="event lacks its advowareFrNr"))
        elif a_item.last_day() < window_start:
            actions.append(Action(ActionKind.FORGET, frnr, pair.event_id, reason="before the sync window"))

    # Unpaired Google events: adoption candidates by FrNr, or new events.
    adoptable: dict[int, tuple[str, Mapping[str, Any]]] = {}
    new_events: list[tuple[str, Mapping[str, Any]]] = []
    for event_id, event in events.items():
        if event_id in paired_event_ids or is_cancelled(event) or not is_syncable_event(event):
            continue
        carried = event_frnr(event)
        if carried is None:
            new_events.append((event_id, event))
        elif carried in inp.pairs:
            plan.notes.append(f"event {event_id}: carries FrNr {carried}, which is paired with another event; ignored")
        elif carried in adoptable:
            plan.notes.append(f"event {event_id}: second event for FrNr {carried}; ignored")
        else:
            adoptable[carried] = (event_id, event)

    for frnr, record in appointments.items():
        if frnr in inp.pairs or frnr < 0 or not belongs_to(record, inp.kuerzel):
            continue
        a_item = _advoware_item(plan, record)
        if a_item is None:
            continue
        a_hash = a_item.fingerprint()
        found = adoptable.pop(frnr, None)
        if found is None:
            actions.append(Action(ActionKind.CREATE_GOOGLE, frnr, None, a_item, a_hash=a_hash, reason="new in Advoware"))
            continue
        event_id, event = found
        g_item = _google_item(plan, event)
        if g_item is None:
            continue
        g_hash = g_item.fingerprint()
        if a_item == g_item:
            actions.append(Action(ActionKind.REMEMBER, frnr, event_id, a_hash=a_hash, g_hash=g_hash, reason="adopted, equal"))
            continue
        conflict = _resolve(rule, record, event, frnr, event_id, "adopting an event that carries the FrNr")
        plan.conflicts.append(conflict)
        if conflict.winner is Side.ADVOWARE:
            actions.append(Action(ActionKind.UPDATE_GOOGLE, frnr, event_id, a_item, a_hash=a_hash, reason="adopted"))
        else:
            actions.append(Action(ActionKind.UPDATE_ADVOWARE, frnr, event_id, g_item, g_hash=g_hash, reason="adopted"))

    for frnr, (event_id, _event) in adoptable.items():
        if frnr in inp.advoware_deleted:
            actions.append(Action(ActionKind.DELETE_GOOGLE, frnr, event_id, reason="orphan: its appointment was deleted", gone=True))
        elif frnr in appointments:
            plan.notes.append(f"event {event_id}: FrNr {frnr} belongs to another employee; ignored")
        else:
            plan.notes.append(f"event {event_id}: FrNr {frnr} not verified this run; skipped")

    for event_id, event in new_events:
        g_item = _google_item(plan, event)
        if g_item is None:
            continue
        actions.append(
            Action(ActionKind.CREATE_ADVOWARE, None, event_id, g_item, g_hash=g_item.fingerprint(), reason="new in Google")
        )
    return plan


__all__ = [
    "Action",
    "ActionKind",
    "Conflict",
    "Pair",
    "Side",
    "SyncInput",
    "SyncPlan",
    "WRITE_KINDS",
    "parked_this_run",
    "plan_sync",
    "verification_needed",
]
