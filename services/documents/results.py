"""What a document sync run reports (`SyncOutcome`, `SyncResult`) and how it writes its
result back to EspoCRM (`write_back`: one PUT in the common case, see its docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from services.clients.errors import NotFoundError
from services.documents.plan import same_hash
from services.platform.models import DocumentRecord, EntityType, FileStatus, XAISyncStatus, espo_datetime, utc_now

REPLACED_MEANWHILE = "file replaced during the sync: marked unclean"


class SyncOutcome(StrEnum):
    SKIPPED_ECHO = "skipped_echo"
    UP_TO_DATE = "up_to_date"
    MIGRATED = "migrated"  # a legacy SHA-256 xaiSyncedHash became the MD5, nothing uploaded
    WAITING = "waiting_for_collections"
    NO_SYNC = "no_sync"
    SYNCED = "synced"
    DELETED = "deleted"
    GONE = "gone"  # the document no longer exists in EspoCRM
    DELETE_HELD = "delete_held"  # a delete event EspoCRM's list did not confirm: nothing removed
    FAILED = "failed"  # permanently: marked failed, not retried


@dataclass
class SyncResult:
    outcome: SyncOutcome
    events: list[dict[str, Any]] = field(default_factory=list)
    """Follow-up events for the step to enqueue."""
    uploaded: bool = False
    file_id: str | None = None
    collections: list[str] = field(default_factory=list)
    detail: str = ""


async def write_back(
    espocrm: Any, doc: DocumentRecord, file_id: str, in_collections: list[str], md5: str, sha: str | None, uploaded: bool
) -> SyncResult:
    """Write the result once. When EspoCRM's `md5sum` as read names the synced bytes, the
    record is written at once and the PUT's answer (the record after the write) checked:
    another file or hash there means the file was replaced while we worked, and a second
    write takes the claim back (unclean, fileStatus changed; the replacement's own update
    webhook syncs the new file). Otherwise the sync writes `md5sum` itself, so it reads the
    record first and claims nothing for a file replaced meanwhile."""
    update: dict[str, Any] = {
        "xaiId": file_id,
        "xaiCollections": in_collections,
        "xaiSyncedHash": md5,
        "xaiSyncError": None,
        "xaiLastSync": espo_datetime(utc_now()),
    }
    clean = {"fileStatus": FileStatus.SYNCED, "xaiSyncStatus": XAISyncStatus.CLEAN}
    done = SyncResult(SyncOutcome.SYNCED, uploaded=uploaded, file_id=file_id, collections=in_collections)
    if same_hash(doc.md5sum, md5):
        update.update(clean)
        if sha and not same_hash(doc.sha256, sha):
            update["sha256"] = sha
        written = await espocrm.update_entity(EntityType.DOKUMENTE.value, doc.id, update)
        if _replaced_meanwhile(written, doc, md5):
            undo: dict[str, Any] = {"xaiSyncStatus": XAISyncStatus.UNCLEAN, "fileStatus": FileStatus.CHANGED}
            if "sha256" in update:
                undo["sha256"] = None  # ours was the old file's
            await espocrm.update_entity(EntityType.DOKUMENTE.value, doc.id, undo)
            return replace(done, detail=REPLACED_MEANWHILE)
    else:
        try:
            current = DocumentRecord.model_validate(await espocrm.get_entity(EntityType.DOKUMENTE.value, doc.id))
        except NotFoundError:
            return SyncResult(SyncOutcome.GONE, uploaded=uploaded, file_id=file_id, detail="document deleted during sync")
        if current.fileId == doc.fileId and (not current.md5sum or same_hash(current.md5sum, doc.md5sum) or same_hash(current.md5sum, md5)):
            update.update(clean)
            if not same_hash(current.md5sum, md5):
                update["md5sum"] = md5  # EspoCRM had none (or an older one): the bytes' MD5
            if sha and not same_hash(current.sha256, sha):
                update["sha256"] = sha
        else:
            update["xaiSyncStatus"] = XAISyncStatus.UNCLEAN  # the file changed meanwhile
        await espocrm.update_entity(EntityType.DOKUMENTE.value, doc.id, update)
        if update["xaiSyncStatus"] == XAISyncStatus.UNCLEAN:
            return replace(done, detail=REPLACED_MEANWHILE)
    return done


def _replaced_meanwhile(written: Any, doc: DocumentRecord, md5: str) -> bool:
    """The record EspoCRM answered the write-back with has another file or another `md5sum`
    than the bytes just synced (a missing `md5sum` counts as another)."""
    if not isinstance(written, Mapping):
        return False
    return bool(written.get("fileId", doc.fileId) != doc.fileId or not same_hash(written.get("md5sum", md5), md5))
