"""The party cron's sweep: what changed without a webhook, as sync events (the step marks
them in the sync ledger and enqueues them; the sync handler decides what to do).

Rules (`reconcile`):
1. Parties changed in Advoware since the bookmark (`next_bookmark`) → a sync of their
   EspoCRM record (via `ExterneId`, else `advowareId`); unknown ones are imported into
   EspoCRM (services.parties.imports).
2. EspoCRM records with syncStatus failed/pending_sync → re-queued.
3. Snapshots whose record is missing on either side, or not verified for `stale_after`
   → re-queued (the sync handler decides: delete, or re-check).
Each entity is queued once per sweep and topic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.clients.advoware import paths as P
from services.parties import mapping as M
from services.parties.events import TOPIC_BANK, TOPIC_PARTY, sync_event
from services.parties.imports import find_or_import_party
from services.parties.plan import int_or_none
from services.parties.state import BANK_SNAPSHOT_SCOPE, BOOKMARK_KEY, META_SCOPE, PARTY_SNAPSHOT_SCOPE, StateStore
from services.platform.logging import ServiceLogger, get_service_logger
from services.platform.models import EntityAction, EntityType, SyncSource, SyncStatus

DEFAULT_STALE_AFTER = timedelta(hours=24)


@dataclass
class ReconcileReport:
    events: list[dict[str, Any]] = field(default_factory=list)
    changed_in_advoware: int = 0
    imported: int = 0
    requeued_failed: int = 0
    requeued_stale: int = 0
    missing: int = 0
    bookmark: str | None = None

    _seen: set[tuple[str, str]] = field(default_factory=set)

    def add(self, event: dict[str, Any]) -> None:
        """Queue an event once per (topic, entity)."""
        key = (event["topic"], event["data"]["entity_id"])
        if key not in self._seen:
            self._seen.add(key)
            self.events.append(event)

    def summary(self) -> dict[str, Any]:
        return {
            "events": len(self.events),
            "changed_in_advoware": self.changed_in_advoware,
            "imported": self.imported,
            "requeued_failed": self.requeued_failed,
            "requeued_stale": self.requeued_stale,
            "missing": self.missing,
            "bookmark": self.bookmark,
        }


def next_bookmark(
    bookmark: Mapping[str, Any] | None, parties: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any] | None, list[Mapping[str, Any]]]:
    """Singer-style bookmark: the max `GeaendertAm` seen and the BetNrs at exactly that time.

    Returns the new bookmark and the parties that are new since the old one (those at the
    old bookmark time already handled are left out, since the API filter is `>=`)."""
    old_ts = (bookmark or {}).get("geaendertAm")
    old_at = P.parse_utc(old_ts) if old_ts else None
    seen_at_old = set((bookmark or {}).get("betnrs") or [])
    fresh: list[Mapping[str, Any]] = []
    best_at, best_ids = old_at, set(seen_at_old)
    for party in parties:
        at = M.advoware_modified_at(party)
        betnr = int_or_none(party.get(P.BeteiligterField.BETNR.value))
        if at is None or betnr is None:
            continue
        if old_at is not None and at < old_at:
            continue
        if old_at is not None and at == old_at and betnr in seen_at_old:
            continue
        fresh.append(party)
        if best_at is None or at > best_at:
            best_at, best_ids = at, {betnr}
        elif at == best_at:
            best_ids.add(betnr)
    if best_at is None:
        return (dict(bookmark) if bookmark else None), fresh
    return {"geaendertAm": P.format_utc(best_at), "betnrs": sorted(best_ids)}, fresh


async def reconcile(
    espocrm: Any,
    advoware: Any,
    state: StateStore,
    *,
    logger: ServiceLogger | None = None,
    now: datetime | None = None,
    stale_after: timedelta = DEFAULT_STALE_AFTER,
    import_new: bool = True,
) -> ReconcileReport:
    """One cron sweep (rules: module docstring); returns the events to enqueue."""
    log = logger or get_service_logger("beteiligte_sync_cron")
    now = now or datetime.now(UTC)
    report = ReconcileReport()

    # 1. changed in Advoware
    bookmark = await state.get(META_SCOPE, BOOKMARK_KEY)
    since = bookmark.get("geaendertAm") if isinstance(bookmark, dict) else None
    changed: list[dict[str, Any]] = []
    async for page in advoware.list_parties(changed_since=since):
        changed.extend(page)
    new_bookmark, fresh = next_bookmark(bookmark if isinstance(bookmark, dict) else None, changed)
    for party in fresh:
        espo_id, imported = await find_or_import_party(espocrm, state, party, import_new=import_new, log=log)
        report.imported += int(imported)
        if espo_id:
            report.changed_in_advoware += 1
            report.add(sync_event(TOPIC_PARTY, espo_id, EntityAction.UPDATE, SyncSource.CRON, "changed in Advoware"))
    if new_bookmark is not None and new_bookmark != bookmark:
        await state.set(META_SCOPE, BOOKMARK_KEY, new_bookmark)
    report.bookmark = (new_bookmark or {}).get("geaendertAm") if new_bookmark else None

    # 2. failed / pending
    retry_where = [{"type": "in", "attribute": "syncStatus", "value": [SyncStatus.FAILED.value, SyncStatus.PENDING_SYNC.value]}]
    for entity_type, base in ((EntityType.BETEILIGTE, TOPIC_PARTY), (EntityType.BANKVERBINDUNGEN, TOPIC_BANK)):
        async for rec in espocrm.iter_entities(entity_type.value, where=retry_where, select="id"):
            report.requeued_failed += 1
            report.add(sync_event(base, rec["id"], EntityAction.UPDATE, SyncSource.CRON, "retry failed/pending"))

    # 3. deleted on either side, or stale
    party_snaps = [s for s in await state.list(PARTY_SNAPSHOT_SCOPE) if isinstance(s, dict)]
    bank_snaps = [s for s in await state.list(BANK_SNAPSHOT_SCOPE) if isinstance(s, dict)]
    if party_snaps:
        betnrs: set[int] = set()
        async for page in advoware.list_parties():
            betnrs.update(int(p[P.BeteiligterField.BETNR.value]) for p in page)
        espo_ids = {r["id"] async for r in espocrm.iter_entities(EntityType.BETEILIGTE.value, select="id")}
        for snap in party_snaps:
            espo_id = snap.get("espoId")
            if not espo_id:
                continue
            if int_or_none(snap.get("advowareId")) not in betnrs or espo_id not in espo_ids:
                report.missing += 1
                report.add(sync_event(TOPIC_PARTY, espo_id, EntityAction.UPDATE, SyncSource.CRON, "missing on one side"))
            elif is_stale(snap, now, stale_after):
                report.requeued_stale += 1
                report.add(sync_event(TOPIC_PARTY, espo_id, EntityAction.UPDATE, SyncSource.CRON, "stale"))
    for snap in bank_snaps:
        espo_id = snap.get("espoId")
        if espo_id and is_stale(snap, now, stale_after):
            report.requeued_stale += 1
            report.add(sync_event(TOPIC_BANK, espo_id, EntityAction.UPDATE, SyncSource.CRON, "stale"))
    log.info("Beteiligte reconcile sweep done", **report.summary())
    return report


def is_stale(snap: Mapping[str, Any], now: datetime, stale_after: timedelta) -> bool:
    """Not verified (synced) for `stale_after`, or never."""
    raw = snap.get("verifiedAt")
    if not raw:
        return True
    try:
        at = datetime.fromisoformat(str(raw))
    except ValueError:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return now - at >= stale_after
