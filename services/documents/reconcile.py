"""The document sync's reconciler: EspoCRM queries for what is out of line and the events
that set it right (`iter_reconcile_events`, run by the cron step).

Rules: entities missing a collection their rule wants, or keeping one it no longer wants,
get a collection check first; then documents not clean (file new/changed unless no_sync,
unclean/failed, or pending_sync for longer than a lock can live) get a sync. At most
`limit` events per run, read page by page.
"""

from __future__ import annotations

from typing import Any

from services.documents.events import collection_event, document_event
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
    pending_sync for longer than a lock can live (a worker died)."""
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


async def iter_reconcile_events(
    espocrm: Any,
    xai_settings: Any,
    *,
    lock_ttl: float = DEFAULT_LOCK_TTL_SECONDS,
    limit: int = RECONCILE_LIMIT,
    page_size: int = RECONCILE_PAGE_SIZE,
    now: Any = None,
) -> Any:
    """Yield (at most `limit`) events for everything out of line: entities missing or
    keeping a collection against their rule first, then documents not clean. Reads page by page."""
    from datetime import timedelta

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
    cutoff = espo_datetime((now or utc_now()) - timedelta(seconds=lock_ttl))
    async for rec in espocrm.iter_entities(
        EntityType.DOKUMENTE.value, where=unsynced_documents_where(cutoff), select="id", page_size=page_size
    ):
        if count >= limit:
            return
        count += 1
        yield document_event(str(rec["id"]), source=SyncSource.CRON, reason="reconciler: not clean")
