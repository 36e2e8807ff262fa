"""What the document sync decides: pure functions, no I/O (the executor in
services.documents.executor reads, calls `plan_document_sync`, then applies the plan).

Data model (EspoCRM): a `CDokumente` record has an attachment (`fileId`) and is linked to
entities through `beteiligte` (CBeteiligte), `raeumungsklagen` (Raeumungsklage) and
`accounts` (Account). An entity owns an xAI collection (`xaiCollectionId`) when
`settings.xai.should_have_collection(type, record)` says so. A document belongs in the
collections of its collection-bearing linked entities; the sync keeps the xAI file and
its collection memberships in line with that and writes the result back (`xaiId`,
`xaiCollections`, `xaiSyncedHash`, `xaiSyncStatus`, ...).

Hashes (the firm's guide): `md5sum` is EspoCRM's MD5 of the current file, `xaiSyncedHash`
the MD5 of the bytes in the xAI file `xaiId` at the last sync, `sha256` the SHA-256 the sync
also writes (kept for the xAI document fields and for the migration). A `xaiSyncedHash` of 64
hex digits is a SHA-256 written before the MD5 rule (LEGACY_HASH_LENGTH).

Rules (`plan_document_sync`):
- a linked entity should have a collection but has none yet → WAIT_FOR_COLLECTIONS (ask the
  collection manager, write nothing);
- no collection-bearing linked entity, or no file → NO_SYNC (take the file out of every
  recorded collection, mark no_sync), or UP_TO_DATE when already marked so with none left;
- content synced (`fileStatus` synced, status clean, an `xaiId`, `md5sum == xaiSyncedHash`,
  both set) and recorded collections == required → UP_TO_DATE (no download, no write). A file
  change that updates `md5sum` while `fileStatus` stays synced is therefore a change;
- never UP_TO_DATE while the journal (services.documents.journal: the collections xAI may
  hold the file in, written before xAI changes) is ahead of EspoCRM's record (`xai_ahead`:
  other collections for `xaiId`, or another file in any): a run stopped between xAI and its
  write-back. This is what a `pending_sync` status written before the work used to say, at
  the price of one more call;
- clean and in the right collections but `xaiSyncedHash` is a legacy SHA-256 → MIGRATE_HASH:
  the executor proves the MD5 (one download of the EspoCRM file, hashed both ways: its
  SHA-256 equal to the legacy hash proves `xaiId` holds these bytes) and rewrites
  `xaiSyncedHash` to their MD5 without uploading or touching xAI; different bytes → a sync;
- otherwise SYNC: download only when the content is not proven synced, add to the required
  collections, remove from the recorded ones no longer required.
`reusable_file_candidates`: an xAI file already holding these bytes (EspoCRM's `xaiId` when
`xaiSyncedHash` is their MD5 or, legacy, their SHA-256; the journal's when its md5 or sha256
matches) is reused instead of uploading again. `collections_to_clean`: the file leaves
collections it no longer belongs to, and older versions of the document leave every
collection they may be in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
    MIGRATE_HASH = "migrate_hash"  # clean, but xaiSyncedHash is a legacy SHA-256: prove and store the MD5
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
    linked: list[LinkedEntity] = field(default_factory=list)
    """The linked entities the plan was made from."""


LEGACY_HASH_LENGTH = 64
"""A `xaiSyncedHash` of this many hex digits is a SHA-256 (before the MD5 rule); an MD5 has 32."""
_HEX = frozenset("0123456789abcdef")


def normal_hash(value: str | None) -> str:
    """A hex digest as compared: trimmed, lower case ("" when missing)."""
    return (value or "").strip().lower()


def same_hash(a: str | None, b: str | None) -> bool:
    """Both set and equal as hex digests (EspoCRM may store upper case)."""
    return bool(normal_hash(a)) and normal_hash(a) == normal_hash(b)


def is_legacy_hash(value: str | None) -> bool:
    """A SHA-256 hex digest, as `xaiSyncedHash` held before it became the MD5."""
    text = normal_hash(value)
    return len(text) == LEGACY_HASH_LENGTH and set(text) <= _HEX


def _clean_with_file(doc: DocumentRecord) -> bool:
    return bool(doc.fileStatus == FileStatus.SYNCED and doc.xaiSyncStatus == XAISyncStatus.CLEAN and doc.xaiId)


def content_is_synced(doc: DocumentRecord) -> bool:
    """EspoCRM's own fields say the synced xAI file holds the current content: synced,
    clean, an `xaiId`, and EspoCRM's `md5sum` equal to `xaiSyncedHash` (the MD5 at last sync)."""
    return _clean_with_file(doc) and same_hash(doc.md5sum, doc.xaiSyncedHash)


def needs_hash_migration(doc: DocumentRecord) -> bool:
    """Clean on a legacy SHA-256 `xaiSyncedHash`. When the record's own `sha256` is set and
    differs, the file changed since (EspoCRM keeps it): that is a sync, not a migration."""
    return (
        _clean_with_file(doc)
        and is_legacy_hash(doc.xaiSyncedHash)
        and (not doc.sha256 or same_hash(doc.sha256, doc.xaiSyncedHash))
    )


def xai_ahead(doc: DocumentRecord, journal: Mapping[str, Any] | None) -> bool:
    """The journal says xAI may hold memberships EspoCRM's record does not tell: another file
    in some collection, or `xaiId` in other collections than `xaiCollections` (no journal:
    nothing known). A file in no collection (an upload whose run stopped) is harmless."""
    j = journal or {}
    collections = set(j.get("collections") or [])
    if j.get("file_id") and j["file_id"] != doc.xaiId:
        return bool(collections)
    return "collections" in j and collections != set(doc.xaiCollections)


def plan_document_sync(doc: DocumentRecord, linked: Iterable[LinkedEntity], journal: Mapping[str, Any] | None = None) -> SyncPlan:
    """Decide what syncing `doc` means, given the entities it is linked to and its journal
    entry (what xAI holds, as far as the sync wrote it down)."""
    linked = list(linked)
    plan = _decide(doc, linked)
    if plan.decision == SyncDecision.UP_TO_DATE and xai_ahead(doc, journal):
        required = plan.required
        if not required or not doc.fileId:
            plan = SyncPlan(SyncDecision.NO_SYNC, reason="xAI ahead of EspoCRM (a run stopped before its write-back)")
        else:
            plan = SyncPlan(SyncDecision.SYNC, required=required, needs_download=False,
                            reason="xAI ahead of EspoCRM (a run stopped before its write-back)")
    plan.linked = linked
    return plan


def _decide(doc: DocumentRecord, linked: list[LinkedEntity]) -> SyncPlan:
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
    if needs_hash_migration(doc) and current == set(required):
        return SyncPlan(SyncDecision.MIGRATE_HASH, required=required, reason="xaiSyncedHash is a legacy SHA-256")
    return SyncPlan(
        SyncDecision.SYNC,
        required=required,
        remove_from=sorted(current - set(required)),
        needs_download=not content_is_synced(doc),
        reason="collections differ" if content_is_synced(doc) else "content not synced",
    )


def reusable_file_candidates(
    doc: DocumentRecord, md5: str, sha256: str | None, journal: dict[str, Any] | None
) -> list[str]:
    """xAI file ids that already hold these bytes (to verify, then reuse): EspoCRM's `xaiId`
    when `xaiSyncedHash` is their MD5 (or, legacy, their SHA-256), the journal's file when its
    md5 or sha256 is theirs."""
    out: list[str] = []
    if doc.xaiId and (same_hash(doc.xaiSyncedHash, md5) or same_hash(doc.xaiSyncedHash, sha256)):
        out.append(doc.xaiId)
    j = journal or {}
    if j.get("file_id") and (same_hash(j.get("md5"), md5) or same_hash(j.get("sha256"), sha256)) and j["file_id"] not in out:
        out.append(str(j["file_id"]))
    return out


def migrated_hash(doc: DocumentRecord, journal: dict[str, Any] | None, md5: str, sha256: str) -> bool:
    """Whether bytes hashed to (`md5`, `sha256`) prove a legacy record's xAI file holds them:
    their SHA-256 is the legacy `xaiSyncedHash`, and the journal, when it names the same file,
    recorded the same SHA-256 (and MD5, when it has one). Then `xaiSyncedHash` may become `md5`."""
    if not is_legacy_hash(doc.xaiSyncedHash) or not same_hash(doc.xaiSyncedHash, sha256):
        return False
    j = journal or {}
    if j.get("file_id") and j.get("file_id") == doc.xaiId:
        if not same_hash(j.get("sha256"), sha256):
            return False
        if j.get("md5") and not same_hash(j.get("md5"), md5):
            return False
    return True


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
