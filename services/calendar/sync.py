"""One calendar sync run for one employee: read both sides, plan (services.calendar.plan),
write, remember. Knows Motia only through the `state` object it is given (`ctx.state`:
async get/set(scope, key[, value])).

Reading: Advoware has no change feed, so the window (today in Berlin − past days ..
+ future days) is listed every run; Google is read incrementally with the stored sync
token (none, `full=True`, or 410 → a full list of the window). Pairs whose appointment is
not in the list are fetched one by one (`get_appointment`: 404 = certainly deleted,
found = moved out of the window or reassigned); one found out there is *parked* and read
again once a day, or when Google reports a change of its event (plan.parked_this_run), so
an idle run reads the window and the token's changes only and writes nothing. After a full
Google list, paired events missing from it are fetched too. Deletes caused by a gone counterpart are confirmed by a
second read and pass the deletion guard first (services.calendar.deletes).

State per employee (scope `calendar_sync`, key = Kürzel): the Google sync token, the pairs
`{FrNr: [eventId, advowareFingerprint, googleFingerprint]}`, the ids of events whose
change could not be applied (re-read next run) and the parked pairs `{FrNr: day read}`. Progress is saved also when a run fails,
with the old sync token, so a retry neither repeats nor loses work. Status per employee
(scope `calendar_sync_status`): last run, result, counts, error.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NotRequired, Protocol, TypedDict, TypeVar, Unpack

from services.calendar.advoware_mapping import BERLIN, advoware_fields, advoware_hash
from services.calendar.deletes import CalendarDeletes, Done
from services.calendar.google_mapping import (
    FRNR_PROPERTY,
    frnr_property,
    google_body,
    google_hash,
    is_syncable_event,
)
from services.calendar.plan import Action, ActionKind, Pair, SyncInput, SyncPlan, parked_this_run, plan_sync, verification_needed
from services.calendar.run_state import EmployeeState, GoogleReadMode, RunResult, SyncReport
from services.clients.advoware.paths import TerminField as F
from services.clients.errors import IntegrationError, NotFoundError, ValidationError, is_retryable
from services.clients.google_calendar import EventStatus, SyncTokenExpired, is_cancelled
from services.platform.deletion_guard import DeletionGuard, LocalDeletionGuard
from services.platform.settings import CalendarSettings
from services.platform.state import ReadWriteState

STATE_SCOPE = "calendar_sync"
STATUS_SCOPE = "calendar_sync_status"
LOCK_STEP = "calendar_sync"
LOCK_ENTITY_TYPE = "Mitarbeiter"
READ_CONCURRENCY = 8

T = TypeVar("T")


class Logger(Protocol):
    def info(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None: ...

    def warn(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None: ...

    def error(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None: ...


def berlin_today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).astimezone(BERLIN).date()


def sync_window(settings: CalendarSettings, today: date) -> tuple[date, date]:
    return today - timedelta(days=settings.sync_past_days), today + timedelta(days=settings.sync_future_days)


def google_range(window: tuple[date, date]) -> tuple[datetime, datetime]:
    """The window's Berlin days as Google's `time_min`, `time_max` (its last day included)."""
    start, end = window
    return datetime.combine(start, time(0, 0), tzinfo=BERLIN), datetime.combine(end + timedelta(days=1), time(0, 0), tzinfo=BERLIN)


async def _gather_limited(items: Iterable[T], fn: Callable[[T], Awaitable[Any]], limit: int = READ_CONCURRENCY) -> None:
    sem = asyncio.Semaphore(limit)

    async def run(item: T) -> None:
        async with sem:
            await fn(item)

    await asyncio.gather(*(run(i) for i in items))


class SyncOptions(TypedDict):
    """The keywords of one employee's run, shared by `EmployeeSync` and `run_employee_sync`:
    the two API clients, the state store, the calendar settings, the logger, `full` (ignore the
    sync token and read everything; default False), `today` (default: today in Berlin) and
    `guard` (the deletion guard; default: one of this process only)."""

    advoware: Any
    google: Any
    state: ReadWriteState
    settings: CalendarSettings
    logger: Logger
    full: NotRequired[bool]
    today: NotRequired[date | None]
    guard: NotRequired[DeletionGuard]


class EmployeeSync:
    """One run (see module docstring). Use `run()`."""

    def __init__(self, kuerzel: str, calendar_id: str, **options: Unpack[SyncOptions]) -> None:
        self.kuerzel = kuerzel
        self.calendar_id = calendar_id
        self.advoware = options["advoware"]
        self.google = options["google"]
        self.state = options["state"]
        self.settings = options["settings"]
        self.log = options["logger"]
        self.full = options.get("full", False)
        self.today = options.get("today") or berlin_today()
        self.window = sync_window(self.settings, self.today)
        self.parked: dict[int, str] = {}
        self.emp = EmployeeState()
        self.report = SyncReport(kuerzel, calendar_id, GoogleReadMode.INCREMENTAL, self.window)
        guard = options.get("guard") or LocalDeletionGuard()
        self.deletes = CalendarDeletes(kuerzel, calendar_id, advoware=self.advoware, google=self.google, guard=guard)
        self.listed_empty = {"advoware": False, "google": False}
        self.appointments: Mapping[int, Mapping[str, Any]] = {}

    # -- reading ---------------------------------------------------------------------------
    async def _list_google(self) -> tuple[dict[str, dict[str, Any]], str | None, bool]:
        token = None if self.full else self.emp.sync_token
        if token:
            try:
                items, new_token = await self.google.list_all(self.calendar_id, sync_token=token)
                self.report.google_mode = GoogleReadMode.INCREMENTAL
                return {str(e["id"]): e for e in items if e.get("id")}, new_token or token, False
            except SyncTokenExpired:
                self.log.warn(
                    f"calendar sync {self.kuerzel}: Google sync token expired (410); full resync of the window",
                    {"kuerzel": self.kuerzel, "calendar_id": self.calendar_id},
                )
                self.report.google_mode = GoogleReadMode.FULL_AFTER_410
        else:
            self.report.google_mode = GoogleReadMode.FULL
        time_min, time_max = google_range(self.window)
        items, new_token = await self.google.list_all(self.calendar_id, time_min=time_min, time_max=time_max, show_deleted=False)
        return {str(e["id"]): e for e in items if e.get("id") and not is_cancelled(e)}, new_token, True

    async def _read(self) -> tuple[SyncInput, str | None]:
        self.emp = EmployeeState.from_state(await self.state.get(STATE_SCOPE, self.kuerzel))
        start, end = self.window
        records = await self.advoware.list_appointments(self.kuerzel, start, end)
        appointments: dict[int, dict[str, Any]] = {}
        for rec in records:
            try:
                appointments[int(rec[F.FRNR])] = rec
            except (KeyError, TypeError, ValueError):
                continue
        self.report.advoware_listed = len(appointments)
        events, new_token, google_full = await self._list_google()
        self.report.google_seen = len(events)
        self.listed_empty = {"advoware": not records, "google": google_full and not events}

        frnrs, event_ids = verification_needed(self.emp.pairs, appointments.keys(), events, google_full=google_full)
        event_ids |= {e for e in self.emp.pending_events if e not in events}
        today = self.today.isoformat()
        parked = parked_this_run(self.emp.pairs, self.emp.parked, today, events, self.emp.pending_events)
        frnrs -= parked
        deleted: set[int] = set()

        async def fetch_appointment(frnr: int) -> None:
            try:
                appointments[frnr] = await self.advoware.get_appointment(frnr)
            except NotFoundError:
                deleted.add(frnr)

        async def fetch_event(event_id: str) -> None:
            event = await self.google.get_event(self.calendar_id, event_id)
            events[event_id] = event if event is not None else {"id": event_id, "status": EventStatus.CANCELLED.value}

        await _gather_limited(sorted(frnrs), fetch_appointment)
        await _gather_limited(sorted(event_ids), fetch_event)
        # An event fetched for verification may reference an appointment we have not seen yet.
        more, _ = verification_needed(self.emp.pairs, appointments.keys(), {e: events[e] for e in event_ids}, google_full=False)
        more -= parked
        await _gather_limited(sorted(more - frnrs - deleted), fetch_appointment)
        self.report.verified_appointments = len(frnrs | more)
        self.parked = {f: today for f in frnrs | more if f in appointments} | {f: self.emp.parked[f] for f in parked}
        self.report.verified_events = len(event_ids)
        inp = SyncInput(
            kuerzel=self.kuerzel,
            pairs=self.emp.pairs,
            appointments=appointments,
            advoware_deleted=frozenset(deleted),
            events=events,
            google_full=google_full,
            window=self.window,
            conflict_rule=self.settings.conflict_rule,
        )
        return inp, new_token

    # -- writing ---------------------------------------------------------------------------
    def _count(self, what: str) -> None:
        self.report.writes[what] = self.report.writes.get(what, 0) + 1

    async def _insert_or_reuse(self, frnr: int, body: dict[str, Any], lookup: bool) -> dict[str, Any]:
        if lookup:
            for existing in await self.google.find_by_private_property(self.calendar_id, FRNR_PROPERTY, str(frnr)):
                if not is_cancelled(existing) and is_syncable_event(existing):
                    self._count("google_patch")
                    result: dict[str, Any] = await self.google.patch_event(self.calendar_id, str(existing["id"]), body)
                    return result
        self._count("google_insert")
        inserted: dict[str, Any] = await self.google.insert_event(self.calendar_id, body)
        return inserted

    async def _tag(self, event_id: str, frnr: int) -> dict[str, Any]:
        self._count("google_patch")
        result: dict[str, Any] = await self.google.patch_event(self.calendar_id, event_id, {"extendedProperties": frnr_property(frnr)})
        return result

    async def _create_advoware(self, action: Action) -> None:
        assert action.item is not None and action.event_id is not None
        self._count("advoware_create")
        rec = await self.advoware.create_appointment(advoware_fields(action.item, kuerzel=self.kuerzel))
        frnr = int(rec[F.FRNR])
        pairs = self.emp.pairs
        if action.frnr is not None:
            pairs.pop(action.frnr, None)
        # Remember at once: if tagging fails, the next run tags instead of creating again.
        pairs[frnr] = Pair(frnr, action.event_id, advoware_hash(rec), action.g_hash or "")
        event = await self._tag(action.event_id, frnr)
        pairs[frnr] = Pair(frnr, action.event_id, pairs[frnr].a_hash, google_hash(event))

    async def _apply(self, action: Action, lookup_before_insert: bool) -> None:
        pairs = self.emp.pairs
        kind = action.kind
        cal = self.calendar_id
        if kind is ActionKind.REMEMBER:
            assert action.frnr is not None and action.event_id is not None
            pairs[action.frnr] = Pair(action.frnr, action.event_id, action.a_hash or "", action.g_hash or "")
        elif kind is ActionKind.FORGET:
            pairs.pop(action.frnr, None)  # type: ignore[arg-type]
        elif kind is ActionKind.CREATE_GOOGLE:
            assert action.frnr is not None and action.item is not None
            event = await self._insert_or_reuse(action.frnr, google_body(action.item, action.frnr), lookup_before_insert)
            pairs[action.frnr] = Pair(action.frnr, str(event["id"]), action.a_hash or "", google_hash(event))
        elif kind is ActionKind.UPDATE_GOOGLE:
            assert action.frnr is not None and action.item is not None and action.event_id is not None
            body = google_body(action.item, action.frnr)
            try:
                self._count("google_patch")
                event = await self.google.patch_event(cal, action.event_id, body)
                if is_cancelled(event):
                    raise NotFoundError("google-calendar", 404, "event was deleted")
            except NotFoundError:
                event = await self._insert_or_reuse(action.frnr, body, False)
            pairs[action.frnr] = Pair(action.frnr, str(event["id"]), action.a_hash or "", google_hash(event))
        elif kind is ActionKind.DELETE_GOOGLE:
            assert action.event_id is not None
            if not action.gone:
                self._count("google_delete")
                await self.google.delete_event(cal, action.event_id)
            elif await self.deletes.google_event(action, pairs=len(pairs), advoware_listed_empty=self.listed_empty["advoware"]) is Done.DELETED:
                self._count("google_delete")
            if action.frnr is not None and action.frnr in pairs and pairs[action.frnr].event_id == action.event_id:
                del pairs[action.frnr]
        elif kind is ActionKind.TAG_GOOGLE:
            assert action.frnr is not None and action.event_id is not None
            event = await self._tag(action.event_id, action.frnr)
            pairs[action.frnr] = Pair(action.frnr, action.event_id, action.a_hash or "", google_hash(event))
        elif kind is ActionKind.CREATE_ADVOWARE:
            await self._create_advoware(action)
        elif kind is ActionKind.UPDATE_ADVOWARE:
            assert action.frnr is not None and action.item is not None and action.event_id is not None
            try:
                self._count("advoware_update")
                rec = await self.advoware.update_appointment(action.frnr, advoware_fields(action.item))
            except NotFoundError:
                await self._create_advoware(Action(ActionKind.CREATE_ADVOWARE, action.frnr, action.event_id, action.item, g_hash=action.g_hash))
                return
            pair = Pair(action.frnr, action.event_id, advoware_hash(rec), action.g_hash or "")
            pairs[action.frnr] = pair
            if action.tag:
                event = await self._tag(action.event_id, action.frnr)
                pairs[action.frnr] = Pair(action.frnr, action.event_id, pair.a_hash, google_hash(event))
        elif kind is ActionKind.DELETE_ADVOWARE:
            assert action.frnr is not None
            record = self.appointments.get(action.frnr)
            done = await self.deletes.advoware_appointment(action, record, pairs, google_listed_empty=self.listed_empty["google"])
            if done is Done.PAIRED:
                return
            self._count("advoware_delete")
            pairs.pop(action.frnr, None)
        else:  # pragma: no cover - exhaustive
            raise ValidationError(f"unknown action {kind}")

    async def _save(self) -> None:
        self.report.pairs = len(self.emp.pairs)
        await self.state.set(STATE_SCOPE, self.kuerzel, self.emp.to_state())

    async def run(self) -> SyncReport:
        started = _time.monotonic()
        inp, new_token = await self._read()
        self.appointments = inp.appointments
        plan: SyncPlan = plan_sync(inp)
        self.report.planned = plan.summary()
        self.report.notes = list(plan.notes)
        for c in plan.conflicts:
            entry = {
                "frnr": c.frnr,
                "event_id": c.event_id,
                "winner": c.winner.value,
                "reason": c.reason,
                "advoware_modified": c.advoware_modified,
                "google_updated": c.google_updated,
            }
            self.report.conflicts.append(entry)
            self.log.warn(f"calendar sync {self.kuerzel}: conflict on FrNr {c.frnr} → {c.winner.value} wins ({c.reason})", entry)
        lookup = not inp.google_full
        pending: set[str] = set()
        try:
            for action in plan.actions:
                try:
                    await self._apply(action, lookup)
                except IntegrationError as exc:
                    if is_retryable(exc):
                        raise
                    # A permanent error of one item: record it, keep going, try again next run.
                    self.report.item_errors.append(
                        {"action": action.kind.value, "frnr": action.frnr, "event_id": action.event_id, "error": str(exc)}
                    )
                    self.log.error(
                        f"calendar sync {self.kuerzel}: {action.kind.value} failed for FrNr {action.frnr} / event {action.event_id}: {exc}",
                        {"kuerzel": self.kuerzel, "action": action.kind.value, "frnr": action.frnr, "event_id": action.event_id},
                    )
                    if action.event_id and action.kind in (ActionKind.UPDATE_ADVOWARE, ActionKind.CREATE_ADVOWARE, ActionKind.DELETE_ADVOWARE):
                        pending.add(action.event_id)
        except BaseException:
            # Keep what was done; the old sync token makes the retry see Google's changes again.
            await self._save()
            raise
        self.emp.sync_token = new_token
        self.emp.pending_events = pending
        self.emp.parked = {f: day for f, day in self.parked.items() if f in self.emp.pairs}
        await self._save()
        self.report.seconds = _time.monotonic() - started
        return self.report


async def run_employee_sync(
    kuerzel: str, calendar_id: str, *, attempt: int | None = None, **options: Unpack[SyncOptions]
) -> SyncReport:
    """Run one employee's sync, log it and record the outcome in `calendar_sync_status`.

    Failures are recorded and re-raised (the queue retries the run)."""
    sync = EmployeeSync(kuerzel, calendar_id, **options)
    state, logger = options["state"], options["logger"]
    at = datetime.now(UTC).isoformat()
    previous = await state.get(STATUS_SCOPE, kuerzel)
    failures = int(previous.get("consecutive_failures", 0)) if isinstance(previous, Mapping) else 0
    try:
        report = await sync.run()
    except Exception as exc:
        status = {
            "kuerzel": kuerzel,
            "calendar_id": calendar_id,
            "result": RunResult.FAILED.value,
            "at": at,
            "error": f"{type(exc).__name__}: {exc}",
            "retryable": is_retryable(exc),
            "consecutive_failures": failures + 1,
            "last_success_at": previous.get("last_success_at") if isinstance(previous, Mapping) else None,
        }
        await state.set(STATUS_SCOPE, kuerzel, status)
        logger.error(f"calendar sync {kuerzel} failed: {exc}", status)
        raise
    summary = report.as_dict()
    await state.set(
        STATUS_SCOPE,
        kuerzel,
        {**summary, "at": at, "error": None, "consecutive_failures": 0, "last_success_at": at},
    )
    logger.info(
        f"calendar sync {kuerzel}: {report.write_count} write(s), {len(report.conflicts)} conflict(s), "
        f"google {report.google_mode.value}",
        {k: summary[k] for k in ("kuerzel", "result", "google_mode", "planned", "writes", "pairs", "seconds")},
    )
    return report


__all__ = [
    "EmployeeState",
    "EmployeeSync",
    "GoogleReadMode",
    "LOCK_ENTITY_TYPE",
    "LOCK_STEP",
    "RunResult",
    "STATE_SCOPE",
    "STATUS_SCOPE",
    "SyncReport",
    "berlin_today",
    "google_range",
    "run_employee_sync",
    "sync_window",
]
