"""The document sync's reconciler: EspoCRM queries for what is out of line and the events
that set it right (`iter_reconcile_events`, run by the cron step).

Rules: entities missing a collection their rule wants, or keeping one it no longer wants,
get a collection check first; then documents not clean (file new/changed unless no_sync,
unclean/failed, or pending_sync for longer than a lock can live) get a sync; then clean
documents whose hash says otherwise: every one still holding a legacy SHA-256 in
`xaiSyncedHash` (the hash migration, services.documents.plan), and those modified within
`hash_window` whose `md5sum` differs from `xaiSyncedHash` (a file replaced while `fileStatus`
stayed synced, its webhook lost). EspoCRM's `where` cannot compare two attributes, so that
last pass reads `id, md5sum, xaiSyncedHash` of the recently modified clean documents and
compares them here; the window keeps it cheap (a change is seen by every run for a day).
At most `limit` events per run, read page by page, each document once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.documents.events import collection_event, document_event
from services.documents.plan import LEGACY_HASH_LENGTH, is_legacy_hash, same_hash
from services.platform.locks import DEFAULT_LOCK_TTL_SECONDS
from services.platform.models import (
    EntityType,
    FileStatus,
    SyncSource,
    XAISyncStatus,
    espo_datetime,
    utc_now,
)

RECONCILE_LIMIT = 500
RECONCILE_PAGE_SIZE = 200
HASH_CHECK_WINDOW = timedelta(days=1)
"""How far back the reconciler compares `md5sum` with `xaiSyncedHash` of clean documents."""


def _rule_where(field_name: str, value: str, *, matches: bool) -> dict[str, Any]:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        truthy = (lowered == "true") == matches
        return {"type": "isTrue" if truthy else "isFalse", "attribute": field_name}
    if matches:
        return {"type": "equals", "attribute": field_name, "value": value}
    return {"type": "or", "value": [
        {"type": "notEquals", "attribute": field_name, "value": value},
        {"type": "isNull", "attribute": field_name},
    ]}


def entity_missing_collection_where(field_name: str, value: str) -> list[dict[str, Any]]:
    """Entities that should have a collection and have no id stored."""
    return [_rule_where(field_name, value, matches=True), {"type": "isNull", "attribute": "xaiCollectionId"}]


def entity_obsolete_collection_where(field_name: str, value: str) -> list[dict[str, Any]]:
    """Entities with a collection id that should not have one any more."""
    return [{"type": "isNotNull", "attribute": "xaiCollectionId"}, _rule_where(field_name, value, matches=False)]


def unsynced_documents_where(pending_before: str) -> list[dict[str, Any]]:
    """Documents not clean: file new/changed (unless no_sync), unclean/failed, or
    pending_sync for longer than a lock can live (the sync no longer writes it; one set by
    hand or left by an older version)."""
    return [{"type": "or", "value": [
        {"type": "and", "value": [
            {"type": "in", "attribute": "fileStatus", "value": [FileStatus.NEW.value, FileStatus.CHANGED.value]},
            {"type": "or", "value": [
                {"type": "notEquals", "attribute": "xaiSyncStatus", "value": XAISyncStatus.NO_SYNC.value},
                {"type": "isNull", "attribute": "xaiSyncStatus"},
            ]},
        ]},
        {"type": "in", "attribute": "xaiSyncStatus", "value": [XAISyncStatus.UNCLEAN.value, XAISyncStatus.FAILED.value]},
        {"type": "and", "value": [
            {"type": "equals", "attribute": "xaiSyncStatus", "value": XAISyncStatus.PENDING_SYNC.value},
            {"type": "lessThan", "attribute": "modifiedAt", "value": pending_before},
        ]},
    ]}]


def legacy_hash_documents_where() -> list[dict[str, Any]]:
    """Clean documents whose `xaiSyncedHash` has 64 characters (a SHA-256 from before the MD5
    rule): EspoCRM's `like` (SQL LIKE) with one `_` per character."""
    return [
        {"type": "equals", "attribute": "xaiSyncStatus", "value": XAISyncStatus.CLEAN.value},
        {"type": "like", "attribute": "xaiSyncedHash", "value": "_" * LEGACY_HASH_LENGTH},
    ]


def recently_clean_documents_where(since: str) -> list[dict[str, Any]]:
    """Clean documents with an `xaiSyncedHash`, modified at or after `since` (their hashes are
    compared by the caller)."""
    return [
        {"type": "equals", "attribute": "xaiSyncStatus", "value": XAISyncStatus.CLEAN.value},
        {"type": "isNotNull", "attribute": "xaiSyncedHash"},
        {"type": "greaterThanOrEquals", "attribute": "modifiedAt", "value": since},
    ]


def hash_mismatch(record: dict[str, Any]) -> bool:
    """A clean document whose EspoCRM `md5sum` is not the MD5 at last sync (`xaiSyncedHash`)."""
    return not same_hash(record.get("md5sum"), record.get("xaiSyncedHash"))


async def iter_reconcile_events(
    espocrm: Any,
    xai_settings: Any,
    *,
    lock_ttl: float = DEFAULT_LOCK_TTL_SECONDS,
    limit: int = RECONCILE_LIMIT,
    page_size: int = RECONCILE_PAGE_SIZE,
    now: Any = None,
    hash_window: timedelta = HASH_CHECK_WINDOW,
) -> Any:
    """Yield (at most `limit`) events for everything out of line: entities missing or
    keeping a collection against their rule first, then documents not clean, then clean
    documents whose hashes disagree (see the module docstring). Reads page by page."""
    from services.platform.models import LINKABLE_ENTITY_TYPES

    count = 0
    for type_name, rule in sorted(getattr(xai_settings, "collection_rules", {}).items()):
        try:
            etype = EntityType(type_name)
        except ValueError:
            continue
        if etype not in LINKABLE_ENTITY_TYPES:
            continue
        for reason, where in (
            ("missing collection", entity_missing_collection_where(rule.field, rule.value)),
            ("collection no longer wanted", entity_obsolete_collection_where(rule.field, rule.value)),
        ):
            async for rec in espocrm.iter_entities(etype.value, where=where, select="id", page_size=page_size):
                if count >= limit:
                    return
                count += 1
                yield collection_event(etype, str(rec["id"]), source=SyncSource.CRON, reason=reason)
    now = now or utc_now()
    cutoff = espo_datetime(now - timedelta(seconds=lock_ttl))
    passes: list[tuple[str, list[dict[str, Any]], str, Any]] = [
        ("not clean", unsynced_documents_where(cutoff), "id", None),
        ("xaiSyncedHash is a legacy SHA-256", legacy_hash_documents_where(), "id,xaiSyncedHash",
         lambda r: is_legacy_hash(r.get("xaiSyncedHash"))),
        ("md5sum differs from xaiSyncedHash", recently_clean_documents_where(espo_datetime(now - hash_window)),
         "id,md5sum,xaiSyncedHash", hash_mismatch),
    ]
    seen: set[str] = set()
    for reason, where, select, keep in passes:
        async for rec in espocrm.iter_entities(EntityType.DOKUMENTE.value, where=where, select=select, page_size=page_size):
            doc_id = str(rec["id"])
            if doc_id in seen or (keep is not None and not keep(rec)):
                continue
            if count >= limit:
                return
            count += 1
            seen.add(doc_id)
            yield document_event(doc_id, source=SyncSource.CRON, reason=f"reconciler: {reason}")
