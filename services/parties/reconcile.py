"""The party cron's sweep: what changed without a webhook, as sync events (the step marks
them in the sync ledger and enqueues them; the sync handler decides what to do).

Its cost grows with what changed, not with the size of the firm. Rules (`reconcile`):
1. Advoware: the parties changed since the bookmark (`geaendertSeit` = the latest
   `GeaendertAm` seen; the BetNrs at exactly that time, already handled, are left out) →
   a sync of their EspoCRM record (via `ExterneId`, else `advowareId`); unknown ones are
   imported into EspoCRM (services.parties.imports). A changed party that equals its
   snapshot (our own write-back, or a change undone) is not queued.
2. EspoCRM, per entity (CBeteiligte, CBankverbindungen): one listing of the records with
   `modifiedAt` >= their bookmark (same rule as 1) or `syncStatus` failed/pending_sync,
   ordered by `modifiedAt`. Failed/pending ones are re-queued; modified ones unless they
   equal their snapshot and are still linked to the same pair (our own write-backs, changes
   of fields the sync does not carry, changes a webhook already synced).
3. Rotation: the `stale_slice` stalest snapshots (parties and bank accounts together,
   neither verified nor queued by the rotation for `stale_after`) are re-queued. Their sync
   reads both sides and so finds what no change filter shows: deletions (a 404 on either
   side, confirmed by a second read and passed through the deletion guard:
   services.parties.deletes), Advoware bank-account changes (they do not move the party's
   `GeaendertAm`; a party's cron sync lists its accounts and queues theirs) and changes a
   lost webhook left behind. Parties go first among equally stale records: a party's sync
   re-verifies its bank accounts too. Every record is re-verified at least every
   max(stale_after, N / stale_slice × interval) + interval, N the linked parties: 5,000
   parties, 20 per 10-minute run → about 42 hours. State reads only, no API call (the
   queued syncs cost about 5-6 calls per party: services.parties.executor).
4. Full reconcile, only when asked (`full=True`: `python -m services.parties
   full-reconcile`) or when `full_every` has passed since the last one: both sides'
   parties are listed entirely and a snapshot whose record is missing from a list is
   queued (its sync decides). A listing that fails, or an empty one while more parties are
   linked than the deletion guard lets go within an hour (`guard_budget`, as in
   services.parties.deletes), queues nothing as missing: absence is never inferred from a
   list that did not answer.
A bookmark moves only after its whole listing answered, so a run that fails reads the same
changes again. Each entity is queued once per sweep and topic.

Calls of a run: rule 1 one Advoware call (+1 per 1,000 changed parties, +1 EspoCRM lookup per
changed party without `ExterneId`), rule 2 one EspoCRM call per entity (+1 per 200 records
listed), rules 3 none; an idle run makes 3. Rule 4 adds N/1,000 Advoware and N/200 EspoCRM
calls. What the queued syncs cost is the sync handler's (services.parties.executor).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.clients.advoware import paths as P
from services.clients.errors import IntegrationError
from services.clients.espocrm import Order
from services.parties import mapping as M
from services.parties.events import TOPIC_PARTY, sync_event
from services.parties.imports import find_or_import_party
from services.parties.plan import BANK, PARTY, PARTY_FK, Kind, int_or_none
from services.parties.state import (
    BOOKMARK_KEY,
    ESPOCRM_BOOKMARK_PREFIX,
    LAST_FULL_KEY,
    META_SCOPE,
    ROTATION_SCOPE,
    Bookmark,
    StateStore,
    parse_iso,
    utc_iso,
)
from services.platform.logging import ServiceLogger, get_service_logger
from services.platform.models import EntityAction, SyncSource, SyncStatus, espo_datetime, parse_espo_datetime

DEFAULT_STALE_AFTER = timedelta(hours=24)
DEFAULT_STALE_SLICE = 20
DEFAULT_FULL_EVERY = timedelta(days=7)
DEFAULT_GUARD_BUDGET = 5
"""The deletion guard's default hourly budget (DELETE_GUARD_MAX_PER_HOUR)."""
FULL_REQUEST_KEY = "beteiligte_sync:full_reconcile_requested"
"""Redis key `python -m services.parties full-reconcile` sets; the cron's next run that lists
both sides entirely deletes it (one whose listing fails leaves it for the next)."""
RETRY_STATUSES = (SyncStatus.FAILED.value, SyncStatus.PENDING_SYNC.value)


@dataclass
class ReconcileReport:
    events: list[dict[str, Any]] = field(default_factory=list)
    changed_in_advoware: int = 0
    changed_in_espocrm: int = 0
    unchanged_skipped: int = 0
    imported: int = 0
    requeued_failed: int = 0
    requeued_stale: int = 0
    missing: int = 0
    full: bool = False
    """Both sides were listed entirely (rule 4 done)."""
    bookmark: str | None = None

    _seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, event: dict[str, Any]) -> bool:
        """Queue an event once per (topic, entity); returns whether it is new."""
        key = (event["topic"], event["data"]["entity_id"])
        if key in self._seen:
            return False
        self._seen.add(key)
        self.events.append(event)
        return True

    def summary(self) -> dict[str, Any]:
        return {
            "events": len(self.events),
            "changed_in_advoware": self.changed_in_advoware,
            "changed_in_espocrm": self.changed_in_espocrm,
            "unchanged_skipped": self.unchanged_skipped,
            "imported": self.imported,
            "requeued_failed": self.requeued_failed,
            "requeued_stale": self.requeued_stale,
            "missing": self.missing,
            "full": self.full,
            "bookmark": self.bookmark,
        }


def _advoware_bookmark(stored: Mapping[str, Any] | None) -> Bookmark:
    raw = (stored or {}).get("geaendertAm")
    return Bookmark(P.parse_utc(raw) if raw else None, frozenset((stored or {}).get("betnrs") or []))


def next_bookmark(
    bookmark: Mapping[str, Any] | None, parties: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any] | None, list[Mapping[str, Any]]]:
    """Advoware's bookmark: the max `GeaendertAm` seen and the BetNrs at exactly that time.

    Returns the new bookmark and the parties that are new since the old one (those at the
    old bookmark time already handled are left out, since the API filter is `>=`)."""
    new, fresh = _advoware_bookmark(bookmark).advance(
        parties, M.advoware_modified_at, lambda p: int_or_none(p.get(P.BeteiligterField.BETNR.value))
    )
    if new.at is None:
        return (dict(bookmark) if bookmark else None), fresh
    return {"geaendertAm": P.format_utc(new.at), "betnrs": sorted(new.ids)}, fresh


def _espocrm_bookmark(stored: Any) -> Bookmark:
    if not isinstance(stored, Mapping) or not stored.get("modifiedAt"):
        return Bookmark()
    try:
        at = parse_espo_datetime(stored["modifiedAt"])
    except ValueError:
        return Bookmark()
    return Bookmark(at, frozenset(stored.get("ids") or []))


def equals_snapshot(kind: Kind, canonical: Mapping[str, Any], snap: Mapping[str, Any] | None, advoware_id: int | None) -> bool:
    """The record holds exactly what the last sync of this pair left (nothing to carry over)."""
    if not snap or int_or_none(snap.get("advowareId")) != advoware_id or advoware_id is None:
        return False
    fields = snap.get("fields")
    return isinstance(fields, Mapping) and all(canonical.get(f) == fields.get(f) for f in kind.fields)


class Sweep:
    """One run of the rules (module docstring); `reconcile` is its entry point."""

    def __init__(self, espocrm: Any, advoware: Any, state: StateStore, log: ServiceLogger, now: datetime) -> None:
        self.espocrm = espocrm
        self.advoware = advoware
        self.state = state
        self.log = log
        self.now = now
        self.report = ReconcileReport()

    def queue(self, topic: str, espo_id: str, reason: str) -> bool:
        return self.report.add(sync_event(topic, espo_id, EntityAction.UPDATE, SyncSource.CRON, reason))

    async def snapshot(self, kind: Kind, espo_id: str) -> dict[str, Any] | None:
        snap = await self.state.get(kind.snapshot_scope, espo_id)
        return snap if isinstance(snap, dict) else None

    # ------------------------------------------------------------------ 1. Advoware changes
    async def advoware_changes(self, *, import_new: bool) -> None:
        stored = await self.state.get(META_SCOPE, BOOKMARK_KEY)
        bookmark = stored if isinstance(stored, dict) else None
        changed: list[dict[str, Any]] = []
        async for page in self.advoware.list_parties(changed_since=(bookmark or {}).get("geaendertAm"), page_size=P.MAX_PAGE_SIZE):
            changed.extend(page)
        new_bookmark, fresh = next_bookmark(bookmark, changed)
        for party in fresh:
            if await self._advoware_echo(party):
                self.report.unchanged_skipped += 1
                continue
            espo_id, imported = await find_or_import_party(self.espocrm, self.state, party, import_new=import_new, log=self.log)
            self.report.imported += int(imported)
            if espo_id:
                self.report.changed_in_advoware += 1
                self.queue(TOPIC_PARTY, espo_id, "changed in Advoware")
        if new_bookmark is not None and new_bookmark != bookmark:
            await self.state.set(META_SCOPE, BOOKMARK_KEY, new_bookmark)
        self.report.bookmark = (new_bookmark or {}).get("geaendertAm")

    async def _advoware_echo(self, party: Mapping[str, Any]) -> bool:
        espo_id = party.get(PARTY.back_reference or "")
        if not espo_id:
            return False
        snap = await self.snapshot(PARTY, str(espo_id))
        return equals_snapshot(PARTY, PARTY.advoware_to_canonical(party), snap, PARTY.advoware_id(party))

    # ------------------------------------------------------------------ 2. EspoCRM changes and retries
    async def espocrm_changes(self, kind: Kind) -> None:
        key = ESPOCRM_BOOKMARK_PREFIX + kind.entity_type.value
        stored = await self.state.get(META_SCOPE, key)
        old = _espocrm_bookmark(stored)
        retry = {"type": "in", "attribute": "syncStatus", "value": list(RETRY_STATUSES)}
        where: list[dict[str, Any]] | None = None  # no bookmark yet: every record once
        if old.at is not None:
            since = {"type": "greaterThanOrEquals", "attribute": "modifiedAt", "value": espo_datetime(old.at)}
            where = [{"type": "or", "value": [since, retry]}]
        rows = [r async for r in self.espocrm.iter_entities(kind.entity_type.value, where=where, order_by="modifiedAt", order=Order.ASC)]
        new, fresh = old.advance(rows, M.espo_modified_at, lambda r: r.get("id"))
        fresh_ids = {r["id"] for r in fresh}
        for rec in rows:
            if rec.get("syncStatus") in RETRY_STATUSES:
                if self.queue(kind.topic, rec["id"], "retry failed/pending"):
                    self.report.requeued_failed += 1
            elif rec["id"] in fresh_ids:
                if await self._espocrm_echo(kind, rec):
                    self.report.unchanged_skipped += 1
                elif self.queue(kind.topic, rec["id"], "changed in EspoCRM"):
                    self.report.changed_in_espocrm += 1
        if new.at is not None and new != old:
            await self.state.set(META_SCOPE, key, {"modifiedAt": espo_datetime(new.at), "ids": sorted(new.ids)})

    async def _espocrm_echo(self, kind: Kind, rec: Mapping[str, Any]) -> bool:
        snap = await self.snapshot(kind, rec["id"])
        if not equals_snapshot(kind, kind.espo_to_canonical(rec), snap, int_or_none(rec.get("advowareId"))):
            return False
        if kind is not BANK:
            return True
        # a bank account moved to another party is a change its fields do not show
        party_id = rec.get(PARTY_FK)
        party_snap = await self.snapshot(PARTY, str(party_id)) if party_id else None
        return party_snap is not None and snap is not None and int_or_none(party_snap.get("advowareId")) == int_or_none(snap.get("betnr"))

    # ------------------------------------------------------------------ 3. rotation
    async def rotation(self, stale_after: timedelta, size: int) -> None:
        queued: dict[str, datetime] = {}
        for entry in await self.state.list(ROTATION_SCOPE):
            at = parse_iso(entry.get("at")) if isinstance(entry, dict) else None
            if at is not None:
                queued[f"{entry.get('topic')}:{entry.get('espoId')}"] = at
        candidates: list[tuple[datetime, bool, str, str]] = []
        known: set[str] = set()
        for kind in (PARTY, BANK):
            for snap in await self.state.list(kind.snapshot_scope):
                espo_id = snap.get("espoId") if isinstance(snap, dict) else None
                if not espo_id:
                    continue
                key = f"{kind.topic}:{espo_id}"
                known.add(key)
                last = max(parse_iso(snap.get("verifiedAt")) or datetime.min.replace(tzinfo=UTC), queued.get(key) or datetime.min.replace(tzinfo=UTC))
                if self.now - last >= stale_after:  # a party first: its sync re-verifies its bank accounts too
                    candidates.append((last, kind is not PARTY, kind.topic, str(espo_id)))
        candidates.sort()
        for _, _, topic, espo_id in candidates[:size]:
            if self.queue(topic, espo_id, "stale"):
                self.report.requeued_stale += 1
            await self.state.set(ROTATION_SCOPE, f"{topic}:{espo_id}", {"topic": topic, "espoId": espo_id, "at": utc_iso(self.now)})
        for key in queued.keys() - known:  # the record's snapshot is gone
            await self.state.delete(ROTATION_SCOPE, key)

    # ------------------------------------------------------------------ 4. full
    async def full_due(self, full_every: timedelta | None) -> bool:
        if full_every is None:
            return False
        stored = await self.state.get(META_SCOPE, LAST_FULL_KEY)
        last = parse_iso(stored.get("at")) if isinstance(stored, dict) else None
        return last is None or self.now - last >= full_every

    async def missing(self, guard_budget: int) -> bool:
        """Snapshots whose record a complete listing of either side lacks; returns whether both
        listings answered (else nothing is queued as missing)."""
        snaps = [s for s in await self.state.list(PARTY.snapshot_scope) if isinstance(s, dict) and s.get("espoId")]
        if not snaps:
            return True
        try:
            betnrs: set[int | None] = set()
            async for page in self.advoware.list_parties(page_size=P.MAX_PAGE_SIZE):
                betnrs.update(PARTY.advoware_id(p) for p in page)
            espo_ids = {r["id"] async for r in self.espocrm.iter_entities(PARTY.entity_type.value, select="id")}
        except IntegrationError as exc:
            self.log.warn(f"Full reconcile: a party listing failed, nothing queued as missing: {exc}")
            return False
        if (not betnrs or not espo_ids) and len(snaps) > guard_budget:
            side = "Advoware" if not betnrs else "EspoCRM"
            self.log.warn(f"Full reconcile: {side} listed no party although {len(snaps)} are linked: not trusted, nothing queued as missing")
            return False
        for snap in snaps:
            if int_or_none(snap.get("advowareId")) not in betnrs or snap["espoId"] not in espo_ids:
                if self.queue(TOPIC_PARTY, str(snap["espoId"]), "missing on one side"):
                    self.report.missing += 1
        return True


async def reconcile(
    espocrm: Any,
    advoware: Any,
    state: StateStore,
    *,
    logger: ServiceLogger | None = None,
    now: datetime | None = None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    stale_slice: int = DEFAULT_STALE_SLICE,
    full: bool = False,
    full_every: timedelta | None = DEFAULT_FULL_EVERY,
    guard_budget: int = DEFAULT_GUARD_BUDGET,
    import_new: bool = True,
) -> ReconcileReport:
    """One cron sweep (rules: module docstring); returns the events to enqueue. `full`: list
    both sides entirely now; `full_every`: also when that long since the last full one
    (None: only when asked); `guard_budget`: DELETE_GUARD_MAX_PER_HOUR."""
    sweep = Sweep(espocrm, advoware, state, logger or get_service_logger("beteiligte_sync_cron"), now or datetime.now(UTC))
    await sweep.advoware_changes(import_new=import_new)
    for kind in (PARTY, BANK):
        await sweep.espocrm_changes(kind)
    if (full or await sweep.full_due(full_every)) and await sweep.missing(guard_budget):
        sweep.report.full = True
        await state.set(META_SCOPE, LAST_FULL_KEY, {"at": utc_iso(sweep.now)})
    await sweep.rotation(stale_after, stale_slice)
    sweep.log.info("Beteiligte reconcile sweep done", **sweep.report.summary())
    return sweep.report


async def request_full(redis: Any, now: datetime | None = None) -> None:
    """Ask the cron's next run for a full reconcile (rule 4)."""
    await redis.set(FULL_REQUEST_KEY, utc_iso(now or datetime.now(UTC)))


async def full_requested(redis: Any) -> bool:
    return bool(await redis.exists(FULL_REQUEST_KEY))


async def full_request_done(redis: Any) -> None:
    await redis.delete(FULL_REQUEST_KEY)
