"""What the document sync does: `DocumentSyncService` applies a plan
(services.documents.plan) through the EspoCRM and xAI clients, idempotently.

It knows nothing of Motia: it takes the clients, an optional `SyncJournal`
(services.documents.journal; Motia state in the step), an optional link memory
(services.documents.links) and returns the follow-up events for the step to enqueue.
Attachments are streamed to a temporary file and hashed on the way
(services.documents.files, MD5 and SHA-256); an upload is journalled before EspoCRM hears
of it. `xaiSyncedHash` is written as the MD5 of the synced bytes (the guide's rule, see
services.documents.plan); a record still holding a legacy SHA-256 there is migrated by
`_migrate_hash` with one download and no upload.

Calls (bench/call_budget.py counts them): a redundant event costs one read (`precheck`: the
document, planned with the remembered linked entities); a sync reads the document, lists
only the links its read names ids on, and writes back once: no `pending_sync` write first
(the ledger brings a crashed run back, and the journal, written ahead of every xAI change,
keeps its plan from calling the record up to date: services.documents.plan.xai_ahead), no
read before the write-back (the PUT's answer shows a file replaced meanwhile, then one more
write marks it unclean). Only when EspoCRM's `md5sum` does not name the synced bytes is the
record read again first, since the sync then writes `md5sum` itself.
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from services.clients.errors import (
    IntegrationError,
    NotFoundError,
    is_retryable,
)
from services.documents.base import DocumentServiceBase
from services.documents.events import collection_event, is_own_write_echo
from services.documents.files import DownloadedFile, download_to_tempfile, find_orphan_upload
from services.documents.journal import UPLOAD_PENDING_KEY, MemoryJournal, SyncJournal
from services.documents.links import change_key, change_token, contradicts, link_ids, linked_keys, recall, remember
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
from services.documents.results import SyncOutcome, SyncResult, write_back
from services.platform.deletion_guard import espocrm_doubt
from services.platform.models import (
    DocumentRecord,
    EntityAction,
    EntityRecord,
    EntityType,
    SyncEvent,
    XAISyncStatus,
)

DOCUMENT_SYNC_LOCK_STEP = "document_sync"
"""Lock key `document_sync:CDokumente:{id}`, taken by the step glue (src/glue/locking.py)
around `handle` when `precheck` found real work."""

DOCUMENT_FIELD_ID = "espocrm_document_id"
"""xAI document field naming the EspoCRM document (used to find files when a record is gone)."""


class DocumentSyncService(DocumentServiceBase):
    """Syncs one CDokumente record to xAI (idempotent; see the module docstring)."""

    def __init__(
        self,
        espocrm: Any,
        xai: Any,
        xai_settings: Any,
        *,
        journal: SyncJournal | None = None,
        links: SyncJournal | None = None,
        changes: SyncJournal | None = None,
        ctx: Any = None,
    ) -> None:
        super().__init__(espocrm, xai, xai_settings, changes=changes, ctx=ctx, logger_name="document_sync")
        self.journal: SyncJournal = journal if journal is not None else MemoryJournal()
        self.links: SyncJournal = links if links is not None else MemoryJournal()
        """The link memory (services.documents.links), written under the lock only."""

    # -- reading ------------------------------------------------------------------------

    async def load_document(self, doc_id: str) -> DocumentRecord | None:
        try:
            return DocumentRecord.model_validate(await self.espocrm.get_entity(EntityType.DOKUMENTE.value, doc_id))
        except NotFoundError:
            return None

    async def load_linked_entities(self, doc_id: str, doc: DocumentRecord | None = None) -> list[LinkedEntity]:
        """The linked entities, one related list per link; a link on which `doc` (the read)
        names no ids is not listed (services.documents.links)."""
        out: list[LinkedEntity] = []
        for link, entity_type in DOCUMENT_LINKS:
            if doc is not None and link_ids(doc, link) == []:
                continue
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

    async def _plan(self, doc_id: str) -> tuple[DocumentRecord | None, SyncPlan | None, dict[str, Any] | None]:
        """Read the document, its linked entities and its journal entry (under the lock) and
        plan; the entities go to the link memory when the read names every link's ids.
        Returns the journal entry too: nothing else writes it while the lock is held."""
        doc = await self.load_document(doc_id)
        if doc is None:
            return None, None, None
        keys = linked_keys(doc)
        tokens = await self._tokens(keys or ())  # before the entities: services.documents.links
        linked = await self.load_linked_entities(doc_id, doc)
        if keys is not None and {(e.entity_type.value, e.entity_id) for e in linked} == keys:
            await self.links.set(doc_id, remember(linked, tokens))
        elif keys is not None:
            await self.links.delete(doc_id)  # linked between the two reads: nothing to remember
        journal = await self.journal.get(doc_id)
        return doc, plan_document_sync(doc, linked, journal), journal

    async def _tokens(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        return {k: change_token(await self.changes.get(change_key(*k))) for k in keys}

    # -- entry points -------------------------------------------------------------------

    async def handle(self, event: SyncEvent) -> SyncResult:
        """Process one queue event (create/update/link/unlink/cron → sync; delete → remove)."""
        if event.action == EntityAction.DELETE:
            return await self.remove_document(event.entity_id, extra_collections=_str_list(getattr(event, "xaiCollections", None)))
        if is_own_write_echo(event):
            return SyncResult(SyncOutcome.SKIPPED_ECHO, detail="update only touched sync fields")
        return await self.sync_document(event.entity_id)

    async def precheck(self, event: SyncEvent) -> SyncResult | None:
        """The cheap answer without the lock, or None when the event needs a full look (then
        the caller takes the entity lock and calls `handle`, which reads everything again):
        an echo of our own write (no call), or - one read of the document - a document that
        is gone or, planned with the remembered linked entities (services.documents.links:
        same link ids, no collection changed since), up to date. Writes nothing. Without a
        memory (a new document) or against it (a link it lacks, an unlink of one it has) it
        reads nothing: the locked run reads once."""
        if event.action == EntityAction.DELETE:
            return None
        if is_own_write_echo(event):
            return SyncResult(SyncOutcome.SKIPPED_ECHO, detail="update only touched sync fields")
        memory = await self.links.get(event.entity_id)
        if memory is None or contradicts(event, memory):
            return None
        doc = await self.load_document(event.entity_id)
        if doc is None:
            return SyncResult(SyncOutcome.GONE, detail="document not found")
        found = recall(doc, memory)
        if found is None or await self._tokens(found[1]) != found[1]:
            return None
        plan = plan_document_sync(doc, found[0], await self.journal.get(doc.id))
        if plan.decision != SyncDecision.UP_TO_DATE:
            return None
        return SyncResult(SyncOutcome.UP_TO_DATE, collections=plan.required, file_id=doc.xaiId, detail="unchanged, links as remembered")

    async def sync_document(self, doc_id: str) -> SyncResult:
        """Plan and apply one document's sync. The caller holds the entity lock
        `document_sync:CDokumente:{id}` (src/glue/locking.py); the plan is made here, after the
        lock was taken, because things may have changed while the caller waited."""
        doc, plan, journal = await self._plan(doc_id)
        if doc is None or plan is None:
            return SyncResult(SyncOutcome.GONE, detail="document not found")
        try:
            return await self._execute(doc, plan, journal)
        except IntegrationError as exc:
            if isinstance(exc, NotFoundError) and await self.load_document(doc_id) is None:
                return SyncResult(SyncOutcome.GONE, detail="document deleted during sync")
            if is_retryable(exc):
                # The ledger retries (a 429 included); only when it gives up does its dead hook
                # mark the document failed (services.platform.ledger.hooks). Writing `failed` now
                # would show a passing outage as a failure and cost an EspoCRM call per attempt.
                self.log.warn(
                    f"Document {doc.id}: xAI sync interrupted, will retry: {failure_message(exc)}",
                    document_id=doc.id, error_type=type(exc).__name__,
                )
                raise
            await self._mark_failed(doc, exc, plan)
            return SyncResult(SyncOutcome.FAILED, detail=failure_message(exc))
        except Exception as exc:  # a bug or an unknown library error: record it, let the queue retry
            await self._mark_failed(doc, exc, plan)
            raise

    async def _execute(self, doc: DocumentRecord, plan: SyncPlan, journal: dict[str, Any] | None) -> SyncResult:
        if plan.decision == SyncDecision.UP_TO_DATE:
            return SyncResult(SyncOutcome.UP_TO_DATE, collections=plan.required, file_id=doc.xaiId, detail=plan.reason)
        if plan.decision == SyncDecision.WAIT_FOR_COLLECTIONS:
            self.log.info(f"Document {doc.id}: waiting for collections", document_id=doc.id, reason=plan.reason)
            events = [
                collection_event(e.entity_type, e.entity_id, reason=f"document {doc.id} needs its collection", related_entity_type=EntityType.DOKUMENTE, related_entity_id=doc.id)
                for e in plan.missing
            ]
            return SyncResult(SyncOutcome.WAITING, events=events, detail=plan.reason)
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

    async def _sync(
        self, doc: DocumentRecord, plan: SyncPlan, journal: dict[str, Any] | None, *, downloaded: DownloadedFile | None = None
    ) -> SyncResult:
        """Upload when needed, fix the memberships, write back (`xaiSyncedHash` = the MD5).
        `downloaded`: the file already fetched (and hashed) by the caller, who removes it."""
        assert doc.fileId, "plan_document_sync guarantees a file"
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
                    file_id = await find_orphan_upload(
                        self.xai, filename, downloaded.size, float(pending.get("started_at") or 0), sha
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

        # Write ahead: every collection the file may be in once the adds ran (plan.xai_ahead).
        may_be_in = sorted(set((journal or {}).get("collections") or []) | set(plan.required))
        if journal is None or sorted(journal.get("collections") or []) != may_be_in:
            journal = {**(journal or {}), "collections": may_be_in}
            await self.journal.set(doc.id, journal)
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
            events = [
                collection_event(e.entity_type, e.entity_id, reason=f"collection {e.collection_id} is gone")
                for e in plan.linked
                if e.collection_id in gone
            ]
            await self.espocrm.update_entity(
                EntityType.DOKUMENTE.value, doc.id,
                {"xaiId": file_id, "xaiCollections": in_collections, "xaiSyncedHash": md5,
                 "xaiSyncStatus": XAISyncStatus.UNCLEAN, "xaiSyncError": f"collections missing in xAI: {', '.join(gone)}"},
            )
            self.log.warn(f"Document {doc.id}: collections gone, asked the collection manager", document_id=doc.id, gone=gone)
            return SyncResult(SyncOutcome.WAITING, events=events, uploaded=uploaded, file_id=file_id, collections=in_collections)

        result = await write_back(self.espocrm, doc, file_id, in_collections, md5, sha, uploaded)
        if result.outcome == SyncOutcome.SYNCED:
            log = self.log.warn if result.detail else self.log.info
            log(f"Document {doc.id}: synced to {len(in_collections)} collection(s) {result.detail}".rstrip(),
                document_id=doc.id, file_id=file_id, uploaded=uploaded, collections=in_collections)
        return result

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
        await self.links.delete(doc_id)
        self.log.info(f"Document {doc_id} deleted: removed from {len(pairs)} collection(s), file kept", document_id=doc_id)
        return SyncResult(SyncOutcome.DELETED, collections=sorted({c for c, _ in pairs}))


def _str_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v]
    return []
