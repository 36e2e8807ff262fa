"""What the document sync decides: pure functions, no I/O (the executor in
services.documents.executor reads, calls `plan_document_sync`, then applies the plan).

Data model (EspoCRM): a `CDokumente` record has an attachment (`fileId`) and is linked to
entities through `beteiligte` (CBeteiligte), `raeumungsklagen` (Raeumungsklage) and
`accounts` (Account). An entity owns an xAI collection (`xaiCollectionId`) when
`settings.xai.should_have_collection(type, record)` says so. A document belongs in the
collections of its collection-bearing linked entities; the sync keeps the xAI file and
its collection memberships in line with that and writes the result back (`xaiId`,
`xaiCollections`, `xaiSyncedHash` = SHA-256 of the synced content, `xaiSyncStatus`, ...).

Rules (`plan_document_sync`):
- a linked entity should have a collection but has none yet → WAIT_FOR_COLLECTIONS (ask the
  collection manager, write nothing);
- no collection-bearing linked entity, or no file → NO_SYNC (take the file out of every
  recorded collection, mark no_sync), or UP_TO_DATE when already marked so with none left;
- content synced (`fileStatus` synced, status clean, `sha256 == xaiSyncedHash`, an `xaiId`)
  and recorded collections == required → UP_TO_DATE (no download, no write);
- otherwise SYNC: download only when the content is not proven synced, add to the required
  collections, remove from the recorded ones no longer required.
`reusable_file_candidates`: an xAI file already holding this SHA-256 (EspoCRM's `xaiId` or the
journal's) is reused instead of uploading again. `collections_to_clean`: the file leaves
collections it no longer belongs to, and older versions of the document leave every
collection they may be in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.platform.models import (
    DocumentRecord,
    EntityType,
    FileStatus,
    XAISyncStatus,
)

DOCUMENT_LINKS: tuple[tuple[str, EntityType], ...] = (
    ("beteiligte", EntityType.BETEILIGTE),
    ("raeumungsklagen", EntityType.RAEUMUNGSKLAGE),
    ("accounts", EntityType.ACCOUNT),
)
"""CDokumente link name → entity type (the simulator's DEFAULT_LINKS)."""

ENTITY_DOCUMENTS_LINK = "dokumente"
"""The link from CBeteiligte / Raeumungsklage / Account back to CDokumente."""


class SyncDecision(StrEnum):
    """What the document sync has to do."""

    UP_TO_DATE = "up_to_date"  # clean, same hash, right collections: nothing to do
    WAIT_FOR_COLLECTIONS = "wait_for_collections"  # a linked entity still lacks its collection
    NO_SYNC = "no_sync"  # no collection-bearing entity (or no file): leave xAI, mark no_sync
    SYNC = "sync"  # upload if needed and fix collection memberships


@dataclass(frozen=True)
class LinkedEntity:
    """An entity a document is linked to, as the sync sees it."""

    entity_type: EntityType
    entity_id: str
    should_have_collection: bool
    collection_id: str | None = None


@dataclass
class SyncPlan:
    decision: SyncDecision
    required: list[str] = field(default_factory=list)
    """Collections the document must be in (sorted)."""
    missing: list[LinkedEntity] = field(default_factory=list)
    """Entities that should have a collection but have none yet."""
    remove_from: list[str] = field(default_factory=list)
    """Collections the document is recorded in but no longer belongs to."""
    needs_download: bool = True
    """False when EspoCRM's hash fields prove the synced content is current."""
    reason: str = ""


def content_is_synced(doc: DocumentRecord) -> bool:
    """EspoCRM's own fields say the synced xAI file holds the current content."""
    return bool(
        doc.fileStatus == FileStatus.SYNCED
        and doc.xaiSyncStatus == XAISyncStatus.CLEAN
        and doc.xaiId
        and doc.sha256
        and doc.xaiSyncedHash
        and doc.sha256 == doc.xaiSyncedHash
    )


def plan_document_sync(doc: DocumentRecord, linked: Iterable[LinkedEntity]) -> SyncPlan:
    """Decide what syncing `doc` means, given the entities it is linked to."""
    linked = list(linked)
    missing = [e for e in linked if e.should_have_collection and not e.collection_id]
    required = sorted({e.collection_id for e in linked if e.should_have_collection and e.collection_id})
    current = set(doc.xaiCollections)
    if missing:
        return SyncPlan(SyncDecision.WAIT_FOR_COLLECTIONS, required=required, missing=missing,
                        reason="linked entity without collection: " + ", ".join(f"{e.entity_type}:{e.entity_id}" for e in missing))
    if not required or not doc.fileId:
        reason = "no file attached" if required else "no linked entity with an xAI collection"
        if doc.xaiSyncStatus == XAISyncStatus.NO_SYNC and not current:
            return SyncPlan(SyncDecision.UP_TO_DATE, reason=reason)
        return SyncPlan(SyncDecision.NO_SYNC, remove_from=sorted(current), reason=reason)
    if content_is_synced(doc) and current == set(required):
        return SyncPlan(SyncDecision.UP_TO_DATE, required=required, needs_download=False, reason="clean")
    return SyncPlan(
        SyncDecision.SYNC,
        required=required,
        remove_from=sorted(current - set(required)),
        needs_download=not content_is_synced(doc),
        reason="collections differ" if content_is_synced(doc) else "content not synced",
    )


def reusable_file_candidates(doc: DocumentRecord, sha256: str, journal: dict[str, Any] | None) -> list[str]:
    """xAI file ids that already hold content with this SHA-256 (to verify, then reuse)."""
    out: list[str] = []
    if doc.xaiId and doc.xaiSyncedHash and doc.xaiSyncedHash == sha256:
        out.append(doc.xaiId)
    if journal and journal.get("file_id") and journal.get("sha256") == sha256 and journal["file_id"] not in out:
        out.append(str(journal["file_id"]))
    return out


def collections_to_clean(
    doc: DocumentRecord, journal: dict[str, Any] | None, file_id: str, required: Iterable[str]
) -> list[tuple[str, str]]:
    """(collection, file) memberships to remove: the file from collections it no longer
    belongs to, and older versions of the document from every collection they may be in."""
    required = set(required)
    known = set(doc.xaiCollections) | set((journal or {}).get("collections") or [])
    pairs: set[tuple[str, str]] = {(cid, file_id) for cid in known - required}
    j = journal or {}
    old_ids = {doc.xaiId, j.get("file_id"), j.get("previous_file_id")} - {None, "", file_id}
    for old in old_ids:
        for cid in known | required:
            pairs.add((cid, str(old)))
    return sorted(pairs)


def failure_message(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:1000]
