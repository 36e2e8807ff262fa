"""What the document sync receives: its queue topics, the events it exchanges with the
collection manager, the webhook `to_events` builders and the echo test.

Rules: an update webhook that only changed attributes the sync itself writes
(`OWN_WRITE_FIELDS`, ignoring EspoCRM's `BOOKKEEPING_FIELDS`) is our own write-back's echo
and yields no event; create/link/cron events never are echoes. A link/unlink webhook yields
the document's sync only: that sync reads the entity and asks the collection manager itself
when the entity lacks the collection its rule wants (WAIT_FOR_COLLECTIONS) or xAI no longer
has it (404 on add), so a collection check per link would only repeat its reads.
"""

from __future__ import annotations

from typing import Any

from services.platform.models import EntityAction, EntityType, SyncEvent, SyncSource

TOPIC_DOCUMENT_CREATE = "vmh.document.create"
TOPIC_DOCUMENT_UPDATE = "vmh.document.update"
TOPIC_DOCUMENT_DELETE = "vmh.document.delete"
TOPIC_COLLECTION_ENSURE = "vmh.collection.ensure"

DOCUMENT_TOPICS: dict[EntityAction, str] = {
    EntityAction.CREATE: TOPIC_DOCUMENT_CREATE,
    EntityAction.UPDATE: TOPIC_DOCUMENT_UPDATE,
    EntityAction.DELETE: TOPIC_DOCUMENT_DELETE,
}

OWN_WRITE_FIELDS: frozenset[str] = frozenset(
    {
        "xaiId",
        "xaiCollections",
        "xaiSyncedHash",
        "xaiSyncStatus",
        "xaiSyncError",
        "xaiLastSync",
        "fileStatus",
        "sha256",
    }
)
"""The attributes the sync writes; an update webhook changing only these is our own echo.
Not `md5sum`: it is EspoCRM's hash of the current file, and a change of it alone (a file
replaced while `fileStatus` stays synced) must reach the sync. The sync writes it only when
EspoCRM had none or another value than the bytes' MD5; that echo costs one read-only run."""

BOOKKEEPING_FIELDS: frozenset[str] = frozenset(
    {"modifiedAt", "modifiedById", "modifiedByName", "modifiedBy", "versionNumber", "isFollowed"}
)
"""Attributes EspoCRM changes on every save; they say nothing about who changed what."""


def is_own_write_echo(event: SyncEvent) -> bool:
    """An update webhook that only reports attributes the sync itself writes.

    EspoCRM sends an `update` webhook for our own write-back (ping-pong); such an event
    can be dropped without reading anything. Create/link/cron events never are echoes.
    """
    if event.action != EntityAction.UPDATE or event.source != SyncSource.WEBHOOK:
        return False
    changed = set(event.changed_fields) - BOOKKEEPING_FIELDS
    return bool(changed) and changed <= OWN_WRITE_FIELDS


def document_event(
    doc_id: str,
    action: EntityAction = EntityAction.UPDATE,
    *,
    source: SyncSource = SyncSource.SYNC,
    reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A `{"topic", "data"}` event asking the document sync to look at `doc_id`."""
    topic = DOCUMENT_TOPICS.get(action, TOPIC_DOCUMENT_UPDATE)
    data = SyncEvent(entity_type=EntityType.DOKUMENTE, entity_id=doc_id, action=action, source=source, reason=reason, **extra)
    return {"topic": topic, "data": data.to_queue()}


def collection_event(
    entity_type: EntityType | str,
    entity_id: str,
    *,
    action: EntityAction = EntityAction.UPDATE,
    source: SyncSource = SyncSource.SYNC,
    reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A `{"topic", "data"}` event asking the collection manager to check an entity."""
    data = SyncEvent(entity_type=EntityType(str(entity_type)), entity_id=entity_id, action=action, source=source, reason=reason, **extra)
    return {"topic": TOPIC_COLLECTION_ENSURE, "data": data.to_queue()}


def document_webhook_events(action: EntityAction) -> Any:
    """`to_events` for services.webhooks.intake.accept_webhook on a CDokumente webhook.

    The echo of our own write-back (an update touching only sync fields, is_own_write_echo)
    yields no event: it needs no sync, and as the latest payload of the document's ledger
    mark it would make a pending retry of a real change skip as an echo."""

    def to_events(item: Any, webhook_id: str | None) -> list[dict[str, Any]]:
        extra: dict[str, Any] = {}
        if action == EntityAction.UPDATE:
            extra["changed_fields"] = sorted(item.attributes)
        event = document_event(item.id, action, source=SyncSource.WEBHOOK, webhook_id=webhook_id, **extra)
        if is_own_write_echo(SyncEvent.from_queue(event["data"])):
            return []
        return [event]

    return to_events


def link_webhook_events(action: EntityAction) -> Any:
    """`to_events` for the link/unlink webhook: the document's sync (see the module docstring:
    it asks for the entity's collection when one is missing or gone)."""

    def to_events(item: Any, webhook_id: str | None) -> list[dict[str, Any]]:
        return [
            document_event(
                item.documentId, EntityAction.UPDATE, source=SyncSource.WEBHOOK, webhook_id=webhook_id,
                reason=f"{action} {item.entityType}:{item.entityId}",
                related_entity_type=item.entityType, related_entity_id=item.entityId, link_change=action.value,
            ),
        ]

    return to_events


def link_item_key(item: Any) -> tuple[str, str, str]:
    return (str(item.entityType), item.entityId, item.documentId)
