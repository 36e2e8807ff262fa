"""What the document sync does: `DocumentSyncService` applies a plan
(services.documents.plan) through the EspoCRM and xAI clients, idempotently.

It knows nothing of Motia: it takes the clients, an optional `SyncJournal`
(services.documents.journal; Motia state in the step) and returns the follow-up events
for the step to enqueue. Attachments are streamed to a temporary file and hashed on the
way (`download_to_tempfile`, MD5 and SHA-256); an upload is journalled before EspoCRM hears
of it. `xaiSyncedHash` is written as the MD5 of the synced bytes (the guide's rule, see
services.documents.plan); a record still holding a legacy SHA-256 there is migrated by
`_migrate_hash` with one download and no upload.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from services.clients.errors import (
    IntegrationError,
    NotFoundError,
    ValidationError,
    is_retryable,
)
from services.documents.events import collection_event, is_own_write_echo
from services.documents.journal import UPLOAD_PENDING_KEY, MemoryJournal, SyncJournal
from services.documents.plan import (
    DOCUMENT_LINKS,
    LinkedEntity,
    SyncDecision,
    SyncPlan,
    collections_to_clean,
    failure_message,
    migrated_hash,
    plan_document_sync,
    reusable_file_candidates,
    same_hash,
)
from services.platform.deletion_guard import espocrm_doubt
from services.platform.logging import ServiceLogger, get_service_logger
from services.platform.models import (
    DocumentRecord,
    EntityAction,
    EntityRecord,
    EntityType,
    FileStatus,
    SyncEvent,
    XAISyncStatus,
    espo_datetime,
    utc_now,
)

DOCUMENT_SYNC_LOCK_STEP = "document_sync"
"""Lock key `document_sync:CDokumente:{id}`, taken by the step glue (src/glue/locking.py)
around `handle` when `precheck` found real work."""

DOCUMENT_FIELD_ID = "espocrm_document_id"
"""xAI document field naming the EspoCRM document (used to find files when a record is gone)."""

MAX_FILE_BYTES = 50 * 1024 * 1024
DOWNLOAD_CHUNK = 64 * 1024


@dataclass
class DownloadedFile:
    path: str
    size: int
    md5: str
    sha256: str

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


async def download_to_tempfile(espocrm: Any, attachment_id: str, max_bytes: int = MAX_FILE_BYTES) -> DownloadedFile:
    """Stream an attachment into a temporary file, hashing (MD5, SHA-256) on the way.

    Never holds more than one chunk in memory. Raises ValidationError (permanent) when
    the file is larger than xAI accepts. The caller removes the file (`remove()`).
    """
    md5, sha = hashlib.md5(), hashlib.sha256()
    size = 0
    fd, path = tempfile.mkstemp(prefix="docsync-")
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in espocrm.download_attachment_stream(attachment_id, chunk_size=DOWNLOAD_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise ValidationError(f"attachment {attachment_id} exceeds {max_bytes} bytes (xAI limit)")
                md5.update(chunk)
                sha.update(chunk)
                fh.write(chunk)
    except BaseException:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        raise
    return DownloadedFile(path, size, md5.hexdigest(), sha.hexdigest())


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


class DocumentSyncService:
    """Syncs one CDokumente record to xAI (idempotent; see the module docstring)."""

    def __init__(
        self,
        espocrm: Any,
        xai: Any,
        xai_settings: Any,
        *,
        journal: SyncJournal | None = None,
        ctx: Any = None,
    ) -> None:
        self.espocrm = espocrm
        self.xai = xai
        self.xai_settings = xai_settings
        self.journal: SyncJournal = journal if journal is not None else MemoryJournal()
        self.log: ServiceLogger = get_service_logger("document_sync", ctx)

    # -- reading ------------------------------------------------------------------------

    async def load_document(self, doc_id: str) -> DocumentRecord | None:
        try:
            return DocumentRecord.model_validate(await self.espocrm.get_entity(EntityType.DOKUMENTE.value, doc_id))
        except NotFoundError:
            return None

    async def load_linked_entities(self, doc_id: str) -> list[LinkedEntity]:
        out: list[LinkedEntity] = []
        for link, entity_type in DOCUMENT_LINKS:
            async for raw in self.espocrm.iter_related(EntityType.DOKUMENTE.value, doc_id, link):
                rec = EntityRecord.model_validate(raw)
                out.append(
                    LinkedEntity(
                        entity_type=entity_type,
                        entity_id=rec.id,
                        should_have_collection=self.xai_settings.should_have_collection(entity_type.value, raw),
                        collection_id=rec.xaiCollectionId or None,
                    )
                )
        return out

    async def _plan(self, doc_id: str) -> tuple[DocumentRecord | None, list[LinkedEntity], SyncPlan | None]:
        doc = await self.load_document(doc_id)
        if doc is None:
            return None, [], None
        linked = await self.load_linked_entities(doc_id)
        return doc, linked, plan_document_sync(doc, linked)

    # -- entry points -------------------------------------------------------------------

    async def handle(self, event: SyncEvent) -> SyncResult:
        """Process one queue event (create/update/link/unlink/cron → sync; delete → remove)."""
        if event.action == EntityAction.DELETE:
            return await self.remove_document(event.entity_id, extra_collections=_str_list(getattr(event, "xaiCollections", None)))
        if is_own_write_echo(event):
            return SyncResult(SyncOutcome.SKIPPED_ECHO, detail="update only touched sync fields")
        return await self.sync_document(event.entity_id)

    async def precheck(self, event: SyncEvent) -> SyncResult | None:
        """The cheap answer that needs no lock, or None when the event needs real work (then
        the caller takes the entity lock and calls `handle`): an echo of our own write, a
        document that is gone, up to date or waiting for its collections (neither writes
        anything). The common case for redundant events, so an unchanged document never
        takes the lock."""
        if event.action == EntityAction.DELETE:
            return None
        if is_own_write_echo(event):
            return SyncResult(SyncOutcome.SKIPPED_ECHO, detail="update only touched sync fields")
        doc, linked, plan = await self._plan(event.entity_id)
        if doc is None or plan is None:
            return SyncResult(SyncOutcome.GONE, detail="document not found")
        if plan.decision in (SyncDecision.UP_TO_DATE, SyncDecision.WAIT_FOR_COLLECTIONS):
            return await self._execute(doc, plan)
        return None

    async def sync_document(self, doc_id: str) -> SyncResult:
        """Plan and apply one document's sync. The caller holds the entity lock
        `document_sync:CDokumente:{id}` (src/glue/locking.py); the plan is made here, after the
        lock was taken, because things may have changed while the caller waited."""
        doc, linked, plan = await self._plan(doc_id)
        if doc is None or plan is None:
            return SyncResult(SyncOutcome.GONE, detail="document not found")
        try:
            return await self._execute(doc, plan)
        except IntegrationError as exc:
            if isinstance(exc, NotFoundError) and await self.load_document(doc_id) is None:
                return SyncResult(SyncOutcome.GONE, detail="document deleted during sync")
            await self._mark_failed(doc, exc, plan)
            if is_retryable(exc):
                raise
            return SyncResult(SyncOutcome.FAILED, detail=failure_message(exc))
        except Exception as exc:  # a bug or an unknown library error: record it, let the queue retry
            await self._mark_failed(doc, exc, plan)
            raise

    async def _execute(self, doc: DocumentRecord, plan: SyncPlan) -> SyncResult:
        if plan.decision == SyncDecision.UP_TO_DATE:
            return SyncResult(SyncOutcome.UP_TO_DATE, collections=plan.required, file_id=doc.xaiId, detail=plan.reason)
        if plan.decision == SyncDecision.WAIT_FOR_COLLECTIONS:
            self.log.info(f"Document {doc.id}: waiting for collections", document_id=doc.id, reason=plan.reason)
            events = [
                collection_event(e.entity_type, e.entity_id, reason=f"document {doc.id} needs its collection", related_entity_type=EntityType.DOKUMENTE, related_entity_id=doc.id)
                for e in plan.missing
            ]
            return SyncResult(SyncOutcome.WAITING, events=events, detail=plan.reason)
        journal = await self.journal.get(doc.id)
        if plan.decision == SyncDecision.NO_SYNC:
            file_ids = {doc.xaiId, (journal or {}).get("file_id")} - {None, ""}
            known = set(plan.remove_from) | set((journal or {}).get("collections") or [])
            for fid in sorted(file_ids):  # type: ignore[type-var]
                for cid in sorted(known):
                    await self.xai.remove_from_collection(cid, fid)
            if journal is not None:
                await self.journal.set(doc.id, {**journal, "collections": []})
            await self.espocrm.update_entity(
                EntityType.DOKUMENTE.value, doc.id,
                {"xaiSyncStatus": XAISyncStatus.NO_SYNC, "xaiCollections": [], "xaiSyncError": None},
            )
            self.log.info(f"Document {doc.id}: no_sync ({plan.reason})", document_id=doc.id, removed_from=sorted(known))
            return SyncResult(SyncOutcome.NO_SYNC, detail=plan.reason)
        if plan.decision == SyncDecision.MIGRATE_HASH:
            return await self._migrate_hash(doc, plan, journal)
        return await self._sync(doc, plan, journal)

    async def _migrate_hash(self, doc: DocumentRecord, plan: SyncPlan, journal: dict[str, Any] | None) -> SyncResult:
        """Rewrite a legacy SHA-256 `xaiSyncedHash` to the MD5, without uploading.

        An MD5 cannot be computed from a SHA-256, xAI reports no MD5, and EspoCRM's `md5sum` is
        exactly the field that changes when the file does, so it proves nothing about the bytes
        in xAI. The cheapest honest proof is one streamed download of the EspoCRM file, hashed
        both ways: its SHA-256 equal to the legacy hash (and to the journal's, when the journal
        names the same file) proves `xaiId` holds these bytes, and their MD5 is written. No xAI
        call, no `pending_sync`. Other bytes → the normal sync, reusing this download. A file
        replaced meanwhile → `unclean` (its own update syncs it)."""
        assert doc.fileId, "plan_document_sync guarantees a file"
        downloaded = await download_to_tempfile(self.espocrm, doc.fileId)
        try:
            if not migrated_hash(doc, journal, downloaded.md5, downloaded.sha256):
                self.log.info(f"Document {doc.id}: content differs from the legacy hash, syncing", document_id=doc.id)
                sync_plan = replace(plan, decision=SyncDecision.SYNC, needs_download=True, reason="content differs from the legacy hash")
                return await self._sync(doc, sync_plan, journal, downloaded=downloaded)
        finally:
            downloaded.remove()
        md5, sha = downloaded.md5, downloaded.sha256
        entry = journal if journal and journal.get("file_id") == doc.xaiId else {"file_id": doc.xaiId, "collections": list(plan.required)}
        await self.journal.set(doc.id, {**entry, "sha256": sha, "md5": md5})
        current = await self.load_document(doc.id)
        if current is None:
            return SyncResult(SyncOutcome.GONE, file_id=doc.xaiId, detail="document deleted during the hash migration")
        update: dict[str, Any] = {"xaiSyncedHash": md5}
        if current.fileId != doc.fileId:
            update["xaiSyncStatus"] = XAISyncStatus.UNCLEAN
        else:
            if not current.md5sum:
                update["md5sum"] = md5
            if not same_hash(current.sha256, sha):
                update["sha256"] = sha
        await self.espocrm.update_entity(EntityType.DOKUMENTE.value, doc.id, update)
        self.log.info(f"Document {doc.id}: xaiSyncedHash migrated to MD5 (no upload)", document_id=doc.id, file_id=doc.xaiId)
        return SyncResult(SyncOutcome.MIGRATED, file_id=doc.xaiId, collections=plan.required, detail="legacy SHA-256 replaced by the MD5")

    async def _find_orphan_upload(self, filename: str, size: int, started_at: float, sha256: str) -> str | None:
        """The file an interrupted run uploaded: same name and size, created after it started,
        and - read back from xAI - the same SHA-256.

        Only called after a crash inside the upload window (an `upload_pending` journal entry),
        so walking the file list (and reading a candidate back) is rare. Name, size and time
        alone are not enough: an earlier version of the same document with the same size,
        uploaded seconds before (xAI's `created_at` has whole seconds), matches them too."""
        async for f in self.xai.list_files():
            created = f.get("created_at")
            try:
                created_ts = float(created) if created is not None else 0.0
            except (TypeError, ValueError):
                created_ts = 0.0
            if f.get("filename") == filename and int(f.get("bytes") or -1) == size and created_ts >= started_at - 5:
                digest = hashlib.sha256()
                async for chunk in self.xai.iter_file_content(str(f["id"])):
                    digest.update(chunk)
                if digest.hexdigest() == sha256:
                    return str(f["id"])
        return None

    async def _sync(
        self, doc: DocumentRecord, plan: SyncPlan, journal: dict[str, Any] | None, *, downloaded: DownloadedFile | None = None
    ) -> SyncResult:
        """Upload when needed, fix the memberships, write back (`xaiSyncedHash` = the MD5).
        `downloaded`: the file already fetched (and hashed) by the caller, who removes it."""
        assert doc.fileId, "plan_document_sync guarantees a file"
        if doc.xaiSyncStatus != XAISyncStatus.PENDING_SYNC:
            await self.espocrm.update_entity(EntityType.DOKUMENTE.value, doc.id, {"xaiSyncStatus": XAISyncStatus.PENDING_SYNC})
        given = downloaded
        try:
            sha: str | None
            if downloaded is None and plan.needs_download:
                downloaded = await download_to_tempfile(self.espocrm, doc.fileId)
            if downloaded is not None:
                sha, md5 = downloaded.sha256, downloaded.md5
            else:
                # Proven synced (md5sum == xaiSyncedHash): the SHA-256 written with it, or the journal's.
                md5 = str(doc.md5sum)
                j = journal or {}
                sha = doc.sha256 or (str(j["sha256"]) if j.get("sha256") and j.get("file_id") == doc.xaiId else None)
            file_id: str | None = None
            for candidate in reusable_file_candidates(doc, md5, sha, journal):
                if await self.xai.get_file(candidate) is not None:
                    file_id = candidate
                    break
            uploaded = False
            if file_id is None:
                if downloaded is None:
                    downloaded = await download_to_tempfile(self.espocrm, doc.fileId)
                    sha, md5 = downloaded.sha256, downloaded.md5
                filename = doc.fileName or doc.name or f"{doc.id}.bin"
                pending = (journal or {}).get(UPLOAD_PENDING_KEY)
                if pending and pending.get("sha256") == sha:
                    assert sha is not None
                    # A run died between xAI accepting an upload and the journal entry.
                    file_id = await self._find_orphan_upload(
                        filename, downloaded.size, float(pending.get("started_at") or 0), sha
                    )
                    if file_id:
                        self.log.warn(f"Document {doc.id}: adopted upload {file_id} of a run that died", document_id=doc.id, file_id=file_id)
            if file_id is None:
                assert downloaded is not None
                await self.journal.set(doc.id, {**(journal or {}), UPLOAD_PENDING_KEY: {"sha256": sha, "md5": md5, "started_at": time.time()}})
                mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
                file_id = await self.xai.upload_file(filename, downloaded.path, mime)
                uploaded = True
                # Remember the upload BEFORE EspoCRM knows of it: a retry after a crash reuses it.
                journal = {"file_id": file_id, "sha256": sha, "md5": md5, "collections": list((journal or {}).get("collections") or []),
                           "previous_file_id": (journal or {}).get("file_id") or doc.xaiId}
                await self.journal.set(doc.id, journal)
                self.log.info(f"Document {doc.id}: uploaded to xAI as {file_id}", document_id=doc.id, file_id=file_id, size=downloaded.size)
        finally:
            if downloaded is not None and downloaded is not given:
                downloaded.remove()

        fields = {DOCUMENT_FIELD_ID: doc.id, "espocrm_document_name": doc.name or "", "md5": md5, **({"sha256": sha} if sha else {})}
        gone: list[str] = []
        for cid in plan.required:
            try:
                await self.xai.add_to_collection(cid, file_id, fields)
            except NotFoundError:
                gone.append(cid)
        for cid, fid in collections_to_clean(doc, journal, file_id, plan.required):
            await self.xai.remove_from_collection(cid, fid)
        in_collections = [c for c in plan.required if c not in gone]
        await self.journal.set(doc.id, {"file_id": file_id, "sha256": sha, "md5": md5, "collections": in_collections})

        if gone:
            # A stored collection id points at a deleted collection: let the manager recreate it.
            linked = await self.load_linked_entities(doc.id)
            events = [
                collection_event(e.entity_type, e.entity_id, reason=f"collection {e.collection_id} is gone")
                for e in linked
                if e.collection_id in gone
            ]
            await self.espocrm.update_entity(
                EntityType.DOKUMENTE.value, doc.id,
                {"xaiId": file_id, "xaiCollections": in_collections, "xaiSyncedHash": md5,
                 "xaiSyncStatus": XAISyncStatus.UNCLEAN, "xaiSyncError": f"collections missing in xAI: {', '.join(gone)}"},
            )
            self.log.warn(f"Document {doc.id}: collections gone, asked the collection manager", document_id=doc.id, gone=gone)
            return SyncResult(SyncOutcome.WAITING, events=events, uploaded=uploaded, file_id=file_id, collections=in_collections)

        # The file may have been replaced while we worked: then do not claim this content is synced.
        current = await self.load_document(doc.id)
        if current is None:
            return SyncResult(SyncOutcome.GONE, uploaded=uploaded, file_id=file_id, detail="document deleted during sync")
        update: dict[str, Any] = {
            "xaiId": file_id,
            "xaiCollections": in_collections,
            "xaiSyncedHash": md5,
            "xaiSyncError": None,
            "xaiLastSync": espo_datetime(utc_now()),
        }
        if current.fileId == doc.fileId and (not current.md5sum or same_hash(current.md5sum, doc.md5sum) or same_hash(current.md5sum, md5)):
            update.update({"fileStatus": FileStatus.SYNCED, "xaiSyncStatus": XAISyncStatus.CLEAN})
            if not same_hash(current.md5sum, md5):
                update["md5sum"] = md5  # EspoCRM had none (or an older one): the bytes' MD5
            if sha and not same_hash(current.sha256, sha):
                update["sha256"] = sha
        else:
            update["xaiSyncStatus"] = XAISyncStatus.UNCLEAN  # the file changed meanwhile
        await self.espocrm.update_entity(EntityType.DOKUMENTE.value, doc.id, update)
        self.log.info(
            f"Document {doc.id}: synced to {len(in_collections)} collection(s)",
            document_id=doc.id, file_id=file_id, uploaded=uploaded, collections=in_collections,
        )
        return SyncResult(SyncOutcome.SYNCED, uploaded=uploaded, file_id=file_id, collections=in_collections)

    async def _mark_failed(self, doc: DocumentRecord, exc: BaseException, plan: SyncPlan | None) -> None:
        message = failure_message(exc)
        self.log.error(
            f"Document {doc.id}: xAI sync failed: {message}",
            document_id=doc.id, file_id=doc.fileId, xai_id=doc.xaiId, xai_collections=list(doc.xaiCollections),
            required_collections=list(plan.required) if plan else None, retryable=is_retryable(exc),
            error_type=type(exc).__name__,
        )
        try:
            await self.espocrm.update_entity(
                EntityType.DOKUMENTE.value, doc.id, {"xaiSyncStatus": XAISyncStatus.FAILED, "xaiSyncError": message}
            )
        except Exception as write_exc:  # noqa: BLE001 - already failing; the log line above has the context
            self.log.error(f"Document {doc.id}: could not record the failure: {write_exc}", document_id=doc.id)

    # -- delete -------------------------------------------------------------------------

    async def remove_document(self, doc_id: str, extra_collections: Iterable[str] = ()) -> SyncResult:
        """The document was deleted in EspoCRM: take its file out of every collection (keep the
        file), but only once EspoCRM confirms it is gone: a 404 on read and absent from its list
        (services.platform.deletion_guard.espocrm_doubt; a list answering 404 means a wrong path
        or a lost permission). A delete event for a document EspoCRM still has syncs it instead;
        an error on the reads (an outage) is raised and removes nothing. The caller holds the
        entity lock."""
        if await self.load_document(doc_id) is not None:
            self.log.warn(f"Document {doc_id}: delete event, but EspoCRM still has it: synced, not removed", document_id=doc_id)
            return await self.sync_document(doc_id)
        doubt = await espocrm_doubt(self.espocrm, EntityType.DOKUMENTE.value, doc_id)
        if doubt:
            self.log.warn(f"Document {doc_id}: delete not confirmed, nothing removed: {doubt}", document_id=doc_id)
            return SyncResult(SyncOutcome.DELETE_HELD, detail=doubt)
        journal = await self.journal.get(doc_id)
        pairs: set[tuple[str, str]] = set()
        if journal and journal.get("file_id"):
            for cid in set(journal.get("collections") or []) | set(extra_collections):
                pairs.add((cid, str(journal["file_id"])))
        else:
            # Nothing remembered: find the document's files by their xAI field.
            async for col in self.xai.list_collections():
                cid = col.get("collection_id")
                if not cid:
                    continue
                async for d in self.xai.list_documents(cid):
                    if str((d.get("fields") or {}).get(DOCUMENT_FIELD_ID)) == doc_id:
                        fid = (d.get("file_metadata") or {}).get("file_id")
                        if fid:
                            pairs.add((cid, fid))
        for cid, fid in sorted(pairs):
            await self.xai.remove_from_collection(cid, fid)
        await self.journal.delete(doc_id)
        self.log.info(f"Document {doc_id} deleted: removed from {len(pairs)} collection(s), file kept", document_id=doc_id)
        return SyncResult(SyncOutcome.DELETED, collections=sorted({c for c, _ in pairs}))


def _str_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v]
    return []
