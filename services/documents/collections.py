"""xAI collections of EspoCRM entities (Account, Raeumungsklage, CBeteiligte).

Bidirectional reference: the collection carries `metadata = {espocrm_entity_type,
espocrm_entity_id, created_at}`, the entity carries `xaiCollectionId`. `plan_collection`
decides (pure); `CollectionManager.ensure()` does it and returns the follow-up events
(one `vmh.document.update` per linked document when the collection appeared or went away —
the event storm that brings the documents into / out of it). Right after it stored a new
collection id (or none) in EspoCRM it renews the entity's change token
(services.documents.links), so no document plans with the old id from memory. Knows nothing
of Motia.

- should have one, stored id exists in xAI → keep (nothing to do);
- should have one, no stored id or the stored collection is gone → adopt a collection whose
  metadata names this entity (left over by a crash between create and store), else create;
  then store the id and fan out;
- should not have one but has an id → delete the collection (its files stay), clear the
  id, fan out (the documents' `xaiCollections` get corrected by their sync).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from services.clients.errors import NotFoundError, ValidationError
from services.documents.base import DocumentServiceBase
from services.documents.events import document_event
from services.documents.journal import SyncJournal
from services.documents.links import change_key
from services.documents.plan import ENTITY_DOCUMENTS_LINK
from services.platform.models import LINKABLE_ENTITY_TYPES, EntityRecord, EntityType, SyncSource

COLLECTION_LOCK_STEP = "collection_create"
"""Lock key `collection_create:{entity_type}:{entity_id}`."""

META_ENTITY_TYPE = "espocrm_entity_type"
META_ENTITY_ID = "espocrm_entity_id"
META_CREATED_AT = "created_at"


class CollectionAction(StrEnum):
    KEEP = "keep"
    CREATE = "create"
    ADOPT = "adopt"
    DELETE = "delete"
    NOTHING = "nothing"
    ENTITY_GONE = "entity_gone"


@dataclass(frozen=True)
class CollectionPlan:
    action: CollectionAction
    collection_id: str | None = None
    """KEEP/ADOPT: the collection to use; DELETE: the one to delete."""


def collection_metadata(entity_type: str, entity_id: str, now: datetime | None = None) -> dict[str, str]:
    now = now or datetime.now(UTC)
    return {
        META_ENTITY_TYPE: str(entity_type),
        META_ENTITY_ID: entity_id,
        META_CREATED_AT: now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def collection_name(entity_type: str, record: dict[str, Any]) -> str:
    name = str(record.get("name") or record.get("id") or "").strip()
    return f"{entity_type}: {name}"[:200]


def matching_collections(collections: list[dict[str, Any]], entity_type: str, entity_id: str) -> list[dict[str, Any]]:
    """Collections whose metadata names this entity, oldest first."""
    found = [
        c
        for c in collections
        if str((c.get("metadata") or {}).get(META_ENTITY_TYPE)) == str(entity_type)
        and str((c.get("metadata") or {}).get(META_ENTITY_ID)) == entity_id
    ]
    return sorted(found, key=lambda c: (str(c.get("created_at") or ""), str(c.get("collection_id") or "")))


def plan_collection(
    should_have: bool,
    stored_id: str | None,
    stored_exists: bool,
    adoptable: list[dict[str, Any]],
) -> CollectionPlan:
    """What to do for one entity (see the module docstring)."""
    if not should_have:
        return CollectionPlan(CollectionAction.DELETE, stored_id) if stored_id else CollectionPlan(CollectionAction.NOTHING)
    if stored_id and stored_exists:
        return CollectionPlan(CollectionAction.KEEP, stored_id)
    candidates = [c for c in adoptable if c.get("collection_id") and c.get("collection_id") != stored_id]
    if candidates:
        return CollectionPlan(CollectionAction.ADOPT, str(candidates[0]["collection_id"]))
    return CollectionPlan(CollectionAction.CREATE)


@dataclass
class CollectionResult:
    action: CollectionAction
    collection_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class CollectionManager(DocumentServiceBase):
    """Creates, adopts and deletes entity collections (idempotent; the caller holds the entity
    lock `collection_create:{type}:{id}`, src/glue/locking.py)."""

    def __init__(
        self,
        espocrm: Any,
        xai: Any,
        xai_settings: Any,
        *,
        changes: SyncJournal | None = None,
        ctx: Any = None,
    ) -> None:
        super().__init__(espocrm, xai, xai_settings, changes=changes, ctx=ctx, logger_name="collection_manager")

    async def ensure(self, entity_type: EntityType | str, entity_id: str) -> CollectionResult:
        etype = EntityType(str(entity_type))
        if etype not in LINKABLE_ENTITY_TYPES:
            raise ValidationError(f"{etype} cannot own an xAI collection")
        return await self._ensure(etype, entity_id)

    async def _ensure(self, etype: EntityType, entity_id: str) -> CollectionResult:
        try:
            raw = await self.espocrm.get_entity(etype.value, entity_id)
        except NotFoundError:
            return await self._entity_gone(etype, entity_id)
        record = EntityRecord.model_validate(raw)
        should = self.xai_settings.should_have_collection(etype.value, raw)
        stored = record.xaiCollectionId or None
        stored_exists = bool(stored) and await self.xai.get_collection(stored) is not None
        adoptable: list[dict[str, Any]] = []
        if should and not stored_exists:
            adoptable = matching_collections(
                await self.xai.find_collections_by_metadata(META_ENTITY_ID, entity_id), etype.value, entity_id
            )
        plan = plan_collection(should, stored, stored_exists, adoptable)
        ctx_fields: dict[str, Any] = {"entity_type": etype.value, "entity_id": entity_id, "collection_id": plan.collection_id}
        if plan.action in (CollectionAction.KEEP, CollectionAction.NOTHING):
            return CollectionResult(plan.action, plan.collection_id)
        if plan.action == CollectionAction.DELETE:
            assert plan.collection_id
            await self.xai.delete_collection(plan.collection_id)
            await self.espocrm.update_entity(etype.value, entity_id, {"xaiCollectionId": None})
            await self._changed(etype, entity_id)
            self.log.info(f"{etype}:{entity_id} should no longer have a collection: deleted {plan.collection_id}", **ctx_fields)
            return CollectionResult(plan.action, plan.collection_id, await self._fan_out(etype, entity_id, "collection deleted"))
        if plan.action == CollectionAction.ADOPT:
            cid = str(plan.collection_id)
            self.log.warn(f"{etype}:{entity_id}: adopting existing collection {cid} (id was not stored)", **ctx_fields)
        else:
            created = await self.xai.create_collection(
                collection_name(etype.value, raw),
                collection_metadata(etype.value, entity_id),
                description=f"EspoCRM {etype.value} {entity_id}",
            )
            cid = str(created["collection_id"])
            self.log.info(f"{etype}:{entity_id}: created collection {cid}", **{**ctx_fields, "collection_id": cid})
        await self.espocrm.update_entity(etype.value, entity_id, {"xaiCollectionId": cid})
        await self._changed(etype, entity_id)
        return CollectionResult(plan.action, cid, await self._fan_out(etype, entity_id, f"collection {cid} ready"))

    async def _entity_gone(self, etype: EntityType, entity_id: str) -> CollectionResult:
        """The entity was deleted: delete the collections that name it."""
        for col in matching_collections(
            await self.xai.find_collections_by_metadata(META_ENTITY_ID, entity_id), etype.value, entity_id
        ):
            await self.xai.delete_collection(str(col["collection_id"]))
            self.log.info(f"{etype}:{entity_id} is gone: deleted its collection {col['collection_id']}", entity_id=entity_id)
        return CollectionResult(CollectionAction.ENTITY_GONE)

    async def _changed(self, etype: EntityType, entity_id: str) -> None:
        """A new change token, after EspoCRM holds the new collection id (see the module docstring)."""
        await self.changes.set(change_key(etype, entity_id), {"token": secrets.token_hex(8)})

    async def _fan_out(self, etype: EntityType, entity_id: str, reason: str) -> list[dict[str, Any]]:
        events = []
        async for doc in self.espocrm.iter_related(etype.value, entity_id, ENTITY_DOCUMENTS_LINK, select="id"):
            events.append(
                document_event(str(doc["id"]), source=SyncSource.COLLECTION_MANAGER, reason=reason,
                               related_entity_type=etype, related_entity_id=entity_id)
            )
        return events


__all__ = [
    "COLLECTION_LOCK_STEP",
    "CollectionAction",
    "CollectionManager",
    "CollectionPlan",
    "CollectionResult",
    "collection_metadata",
    "matching_collections",
    "plan_collection",
]
