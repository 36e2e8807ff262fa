"""Property-based (hypothesis, stateful) test of the document sync with in-memory fakes.

Random sequences of: creating Raeumungsklagen (open with a collection, open still waiting
for one, closed), giving a waiting one its collection, replacing an entity's collection (the
manager after xAI lost it), creating documents linked to them
(or to nothing), replacing a document's file (EspoCRM sets `fileStatus` changed, or - the
guide's missed case - leaves it `synced` and only `md5sum` changes; its hook may keep
`sha256` stale), turning a record back into the format before the MD5 rule (`xaiSyncedHash`
= the SHA-256 of its xAI file, journal without `md5`), linking and unlinking, deleting a
document, and running the sync - once, twice, with a simulated crash between xAI
accepting an upload and the journal / EspoCRM hearing of it, or as the queue handler does
for an event (`precheck` first, planning with the link memory, then `handle`; the manager's
work by hand renews the entity's change token as CollectionManager does). Each machine runs
twice: with EspoCRM's read carrying the link ids (link-multiple fields) and without.
Invariants:
- no content is ever uploaded twice (every upload carries new content), so neither a
  migration nor a sync of a legacy record uploads again what xAI has;
- after a sync that reports the document synced, migrated or up to date, and the document
  is clean, `xaiSyncedHash` and `md5sum` are the MD5 of its file, which is the content of
  `xaiId`, in exactly its required collections, and no older file of it is in any;
- a hash migration makes no xAI call that writes;
- a second sync of an unchanged clean document makes no write (EspoCRM or xAI), once its
  hash is the MD5 (a legacy record's first sync is its migration);
- an event answered by `precheck` writes nothing and reads once, and a document it calls up
  to date is in exactly its required collections (the memory is never stale);
- a deleted document has no file in any collection once its delete is handled;
- at the end, with every waiting entity given its collection, one sync of each document
  makes it clean (or no_sync) with exact memberships, and one more sync writes nothing.

The fakes below stand alone (the EspoCRM and xAI behaviour the sync relies on, written
from the vendors' documented contracts); only the service under test and the clients'
error type it expects come from the project. The entity lock is the step glue's, not the
service's (src/glue/locking.py), so none is taken here.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    consumes,
    invariant,
    rule,
)

from services.clients.errors import NotFoundError
from services.documents.executor import DocumentSyncService
from services.documents.journal import MemoryJournal
from services.documents.results import SyncOutcome
from services.platform.models import SyncEvent
from tests.state_machines import AsyncMachine, CheckedAtTeardown

DOC, RK = "CDokumente", "Raeumungsklage"
DOC_FIELD = "espocrm_document_id"  # the xAI document field the sync tags files with (its contract)


class SimulatedCrash(BaseException):
    """The worker died: nothing after this point of the run happens (no except clause runs)."""


# --------------------------------------------------------------------------- fakes


class FakeEspo:
    """CDokumente with attachments, Raeumungsklagen and the `raeumungsklagen` link.

    Like the firm's EspoCRM document hook, a new attachment sets `md5sum` (and, when
    `with_sha`, `sha256`) from its bytes and `fileStatus` to `changed` - unless `keep_status`,
    the case where only the hash tells of the change."""

    def __init__(self, link_ids: bool = False) -> None:
        self.link_ids = link_ids
        self.reads = 0
        self.docs: dict[str, dict[str, Any]] = {}
        self.rks: dict[str, dict[str, Any]] = {}
        self.links: dict[str, set[str]] = {}  # doc id → rk ids
        self.attachments: dict[str, bytes] = {}
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self.crash_on_write_back = False
        self._ids = itertools.count(1)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    async def get_entity(self, entity_type: str, entity_id: str) -> dict[str, Any]:
        """A record; with `link_ids` a document's read carries `{link}Ids` of its three links
        (EspoCRM loads link-multiple fields into a read)."""
        self.reads += 1
        table = self.docs if entity_type == DOC else self.rks
        if entity_id not in table:
            raise NotFoundError("espocrm", 404, f"{entity_type} {entity_id} not found")
        out = dict(table[entity_id])
        if self.link_ids and entity_type == DOC:
            out.update({"raeumungsklagenIds": sorted(self.links.get(entity_id, set())), "beteiligteIds": [], "accountsIds": []})
        return out

    async def list_entities(self, entity_type: str, *, where: Any = None, **_: Any) -> dict[str, Any]:
        """EspoCRM's list, filtered by `id` only (the delete's second read)."""
        table = self.docs if entity_type == DOC else self.rks
        ids = [w["value"] for w in where or [] if w.get("attribute") == "id"]
        rows = [dict(r) for rid, r in table.items() if not ids or rid in ids]
        return {"list": rows, "total": len(rows)}

    async def iter_related(self, entity_type: str, entity_id: str, link: str) -> AsyncIterator[dict[str, Any]]:
        assert entity_type == DOC
        self.reads += 1
        if link == "raeumungsklagen":
            for rk in sorted(self.links.get(entity_id, set())):
                if rk in self.rks:
                    yield dict(self.rks[rk])

    async def update_entity(self, entity_type: str, entity_id: str, data: dict[str, Any]) -> dict[str, Any]:
        if self.crash_on_write_back and "xaiId" in data:
            self.crash_on_write_back = False
            raise SimulatedCrash("died before EspoCRM heard of the sync")
        table = self.docs if entity_type == DOC else self.rks
        if entity_id not in table:
            raise NotFoundError("espocrm", 404, f"{entity_type} {entity_id} not found")
        self.writes.append((entity_type, entity_id, dict(data)))
        table[entity_id].update({k: (str(v) if v is not None and not isinstance(v, list) else v) for k, v in data.items()})
        return dict(table[entity_id])

    async def download_attachment_stream(self, attachment_id: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        data = self.attachments[attachment_id]
        for i in range(0, len(data), 7):  # small chunks: the sync must hash across them
            yield data[i : i + 7]

    # user actions (not called by the sync)
    def set_file(self, doc_id: str, content: bytes, *, keep_status: bool = False, with_sha: bool = True) -> None:
        att = self.new_id("att")
        self.attachments[att] = content
        self.docs[doc_id].update({"fileId": att, "md5sum": hashlib.md5(content).hexdigest()})
        if with_sha:
            self.docs[doc_id]["sha256"] = hashlib.sha256(content).hexdigest()
        if not keep_status:
            self.docs[doc_id]["fileStatus"] = "changed"


class FakeXAI:
    """Files and collections; adding a member twice or removing a non-member changes nothing."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.collections: dict[str, dict[str, dict[str, Any]]] = {}  # cid → file id → fields
        self.uploads: list[str] = []  # sha256 of every accepted upload
        self.writes = 0
        self.crash_after_upload = False
        self._ids = itertools.count(1)

    async def get_file(self, file_id: str) -> dict[str, Any] | None:
        f = self.files.get(file_id)
        return {k: v for k, v in f.items() if k != "content"} if f else None

    async def upload_file(self, filename: str, content: Any, mime_type: str = "application/octet-stream") -> str:
        data = open(content, "rb").read() if isinstance(content, str) else bytes(content)
        fid = f"file{next(self._ids)}"
        self.files[fid] = {"id": fid, "filename": filename, "bytes": len(data), "created_at": int(time.time()), "content": data}
        self.uploads.append(hashlib.sha256(data).hexdigest())
        self.writes += 1
        if self.crash_after_upload:
            self.crash_after_upload = False
            raise SimulatedCrash("died after xAI accepted the upload")
        return fid

    async def iter_file_content(self, file_id: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        yield self.files[file_id]["content"]

    async def list_files(self) -> AsyncIterator[dict[str, Any]]:
        for f in list(self.files.values()):
            yield {k: v for k, v in f.items() if k != "content"}

    async def add_to_collection(self, collection_id: str, file_id: str, fields: dict[str, Any] | None = None) -> bool:
        self.writes += 1
        if collection_id not in self.collections or file_id not in self.files:
            raise NotFoundError(f"collection {collection_id} or file {file_id} not found")
        members = self.collections[collection_id]
        if file_id in members:
            return False
        members[file_id] = {k: str(v) for k, v in (fields or {}).items()}
        return True

    async def remove_from_collection(self, collection_id: str, file_id: str) -> bool:
        self.writes += 1
        return self.collections.get(collection_id, {}).pop(file_id, None) is not None

    async def list_collections(self) -> AsyncIterator[dict[str, Any]]:
        for cid in list(self.collections):
            yield {"collection_id": cid}

    async def list_documents(self, collection_id: str) -> AsyncIterator[dict[str, Any]]:
        for fid, fields in list(self.collections.get(collection_id, {}).items()):
            yield {"fields": dict(fields), "file_metadata": {"file_id": fid}}

    def new_collection(self) -> str:
        cid = f"col{next(self._ids)}"
        self.collections[cid] = {}
        return cid

    def holders(self, file_id: str) -> set[str]:
        return {cid for cid, members in self.collections.items() if file_id in members}


class Rules:
    """The collection rule the test uses: an open Raeumungsklage has a collection."""

    def should_have_collection(self, entity_type: str, record: Any) -> bool:
        return entity_type == RK and record.get("status") == "Offen"


# --------------------------------------------------------------------------- machine


class DocumentSyncMachine(AsyncMachine):
    rks = Bundle("rks")
    docs = Bundle("docs")
    link_ids = False

    def __init__(self) -> None:
        super().__init__()
        self.espo, self.xai = FakeEspo(self.link_ids), FakeXAI()
        self.journal = MemoryJournal()  # survives "crashes", like Motia state
        self.links = MemoryJournal()  # the link memory, Motia state too
        self.changes = MemoryJournal()  # the collection manager's change tokens
        self.contents = itertools.count(1)
        self.deleted: set[str] = set()
        self.file_ids: dict[str, set[str]] = {}  # doc id → every xAI file that ever held it

    def service(self) -> DocumentSyncService:
        return DocumentSyncService(self.espo, self.xai, Rules(), journal=self.journal, links=self.links, changes=self.changes)

    def new_content(self, doc_id: str) -> bytes:
        # unique per version, sizes vary
        return f"{doc_id} version {next(self.contents)} ".encode() * (1 + next(self.contents) % 3)

    def required(self, doc_id: str) -> set[str]:
        rks = [self.espo.rks[r] for r in self.espo.links.get(doc_id, set()) if r in self.espo.rks]
        return {r["xaiCollectionId"] for r in rks if r.get("status") == "Offen" and r.get("xaiCollectionId")}

    def waiting(self, doc_id: str) -> bool:
        return any(
            self.espo.rks[r].get("status") == "Offen" and not self.espo.rks[r].get("xaiCollectionId")
            for r in self.espo.links.get(doc_id, set())
        )

    def note_files(self, doc_id: str) -> None:
        for fid in self.xai.files:
            if any(members.get(fid, {}).get(DOC_FIELD) == doc_id for members in self.xai.collections.values()):
                self.file_ids.setdefault(doc_id, set()).add(fid)
        if doc_id in self.espo.docs and self.espo.docs[doc_id].get("xaiId"):
            self.file_ids.setdefault(doc_id, set()).add(self.espo.docs[doc_id]["xaiId"])

    def check_clean(self, doc_id: str) -> None:
        """A clean document's file is in exactly its required collections; older files in none."""
        d = self.espo.docs[doc_id]
        if d.get("xaiSyncStatus") != "clean":
            return
        fid = d["xaiId"]
        content = self.espo.attachments[d["fileId"]]
        assert d["xaiSyncedHash"] == d["md5sum"] == hashlib.md5(content).hexdigest(), d  # the guide's MD5 rule
        assert self.xai.files[fid]["content"] == content
        assert self.xai.holders(fid) == self.required(doc_id), (doc_id, self.xai.holders(fid), self.required(doc_id))
        for old in self.file_ids.get(doc_id, set()) - {fid}:
            assert not self.xai.holders(old), (doc_id, old, self.xai.holders(old))

    def sync(self, doc_id: str) -> Any:
        xai_writes = self.xai.writes
        res = self.run(self.service().sync_document(doc_id))
        self.note_files(doc_id)
        if res.outcome in (SyncOutcome.SYNCED, SyncOutcome.UP_TO_DATE, SyncOutcome.MIGRATED):
            self.check_clean(doc_id)
        if res.outcome == SyncOutcome.MIGRATED:
            assert self.xai.writes == xai_writes, "a hash migration wrote to xAI"
        event(f"outcome={res.outcome}")
        return res

    # ------------------------------------------------------------------ entities
    @rule(target=rks, kind=st.sampled_from(["open", "open", "waiting", "closed"]))
    def new_rk(self, kind: str) -> str:
        rk = self.espo.new_id("rk")
        cid = self.xai.new_collection() if kind == "open" else None
        self.espo.rks[rk] = {"id": rk, "status": "Abgeschlossen" if kind == "closed" else "Offen", "xaiCollectionId": cid}
        return rk

    def changed(self, rk: str) -> None:
        """What the manager does after storing a collection id: a new change token (key `{type}:{id}`)."""
        self.run(self.changes.set(f"{RK}:{rk}", {"token": self.espo.new_id("token")}))

    @rule(rk=rks)
    def give_collection(self, rk: str) -> None:
        """The collection manager's work, done by hand."""
        rec = self.espo.rks[rk]
        if rec["status"] == "Offen" and not rec.get("xaiCollectionId"):
            rec["xaiCollectionId"] = self.xai.new_collection()
            self.changed(rk)

    @rule(rk=rks)
    def replace_collection(self, rk: str) -> None:
        """xAI lost the entity's collection and the manager made a new one (its documents'
        remembered collection id is stale now)."""
        rec = self.espo.rks[rk]
        if rec.get("xaiCollectionId"):
            self.xai.collections.pop(rec["xaiCollectionId"], None)
            rec["xaiCollectionId"] = self.xai.new_collection()
            self.changed(rk)

    # ------------------------------------------------------------------ documents
    @rule(target=docs, rk=st.one_of(st.none(), rks))
    def new_doc(self, rk: str | None) -> str:
        doc_id = self.espo.new_id("doc")
        self.espo.docs[doc_id] = {"id": doc_id, "name": f"{doc_id}.txt", "fileName": f"{doc_id}.txt", "xaiCollections": []}
        self.espo.set_file(doc_id, self.new_content(doc_id))
        self.espo.docs[doc_id]["fileStatus"] = "new"
        self.espo.links[doc_id] = {rk} if rk else set()
        return doc_id

    @rule(doc=docs, keep_status=st.booleans(), with_sha=st.booleans())
    def change_file(self, doc: str, keep_status: bool, with_sha: bool) -> None:
        if doc in self.espo.docs:
            self.espo.set_file(doc, self.new_content(doc), keep_status=keep_status, with_sha=with_sha)

    @rule(doc=docs)
    def back_to_legacy_hash(self, doc: str) -> None:
        """The record as the sync wrote it before the MD5 rule: `xaiSyncedHash` (and `sha256`
        when it was that content) the SHA-256 of the bytes in `xaiId`, the journal without MD5."""
        d = self.espo.docs.get(doc)
        if not d or not d.get("xaiId") or not d.get("xaiSyncedHash") or d["xaiId"] not in self.xai.files:
            return
        synced = self.xai.files[d["xaiId"]]["content"]
        d["xaiSyncedHash"] = hashlib.sha256(synced).hexdigest()
        if self.espo.attachments.get(d.get("fileId") or "") == synced:
            d["sha256"] = d["xaiSyncedHash"]
        entry = self.journal.data.get(doc)
        if entry is not None:
            entry.pop("md5", None)
            (entry.get("upload_pending") or {}).pop("md5", None)

    @rule(doc=docs, rk=rks)
    def link(self, doc: str, rk: str) -> None:
        if doc in self.espo.docs:
            self.espo.links[doc].add(rk)

    @rule(doc=docs, rk=rks)
    def unlink(self, doc: str, rk: str) -> None:
        if doc in self.espo.docs:
            self.espo.links[doc].discard(rk)

    @rule(doc=consumes(docs))
    def delete(self, doc: str) -> None:
        self.note_files(doc)
        self.espo.docs.pop(doc, None)
        self.espo.links.pop(doc, None)
        res = self.run(self.service().remove_document(doc))
        assert res.outcome == SyncOutcome.DELETED
        self.deleted.add(doc)
        for fid in self.file_ids.get(doc, set()):
            assert not self.xai.holders(fid), (doc, fid, self.xai.holders(fid))

    # ------------------------------------------------------------------ syncs
    @rule(doc=docs, twice=st.booleans())
    def sync_doc(self, doc: str, twice: bool) -> None:
        if doc not in self.espo.docs:
            return
        self.sync(doc)
        if twice:
            self.sync_unchanged(doc)

    @rule(doc=docs, news=st.sampled_from([None, "link", "unlink"]), rk=rks)
    def handle_event(self, doc: str, news: str | None = None, rk: str = "") -> None:
        """A queued event as the handler runs it: `precheck`, else `handle` (the lock is the
        glue's); `news`: a link/unlink webhook's event about `rk` (maybe an old one). An answer
        from `precheck` reads once and writes nothing."""
        if doc not in self.espo.docs:
            return
        event_data: dict[str, Any] = {"entity_type": DOC, "entity_id": doc, "action": "update", "source": "webhook", "changed_fields": ["name"]}
        if news:
            event_data = {**event_data, "changed_fields": [], "link_change": news, "related_entity_type": RK, "related_entity_id": rk}
        ev = SyncEvent.from_queue(event_data)
        writes, reads = (len(self.espo.writes), self.xai.writes), self.espo.reads
        res = self.run(self.service().precheck(ev))
        if res is not None:
            assert res.outcome == SyncOutcome.UP_TO_DATE and self.link_ids, res
            assert (len(self.espo.writes), self.xai.writes) == writes and self.espo.reads == reads + 1
            self.check_clean(doc)
            event("precheck up to date")
            return
        res = self.run(self.service().handle(ev))
        self.note_files(doc)
        if res.outcome in (SyncOutcome.SYNCED, SyncOutcome.UP_TO_DATE, SyncOutcome.MIGRATED):
            self.check_clean(doc)
        event(f"handled={res.outcome}")

    def sync_unchanged(self, doc: str) -> None:
        """Syncing a clean, unchanged document again makes no write at all."""
        d = self.espo.docs[doc]
        clean = d.get("xaiSyncStatus") in ("clean", "no_sync") and len(d.get("xaiSyncedHash") or "") != 64
        espo_before, xai_before = len(self.espo.writes), self.xai.writes
        self.sync(doc)
        if clean:
            assert (len(self.espo.writes), self.xai.writes) == (espo_before, xai_before), self.espo.writes[espo_before:]

    @rule(doc=docs, where=st.sampled_from(["after_upload", "before_write_back"]))
    def sync_with_crash(self, doc: str, where: str) -> None:
        if doc not in self.espo.docs:
            return
        if where == "after_upload":
            self.xai.crash_after_upload = True
        else:
            self.espo.crash_on_write_back = True
        try:
            self.run(self.service().sync_document(doc))
            event("crash point not reached")
        except SimulatedCrash:
            event(f"crashed {where}")
        finally:
            self.xai.crash_after_upload = self.espo.crash_on_write_back = False
            self.note_files(doc)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def no_content_uploaded_twice(self) -> None:
        assert len(self.xai.uploads) == len(set(self.xai.uploads)), self.xai.uploads

    @invariant()
    def deleted_documents_in_no_collection(self) -> None:
        for doc in self.deleted:
            for fid in self.file_ids.get(doc, set()):
                assert not self.xai.holders(fid), (doc, fid)

    def teardown_check(self) -> None:
        """Every waiting entity gets its collection; then one sync settles every document."""
        for rk in list(self.espo.rks):
            self.give_collection(rk)
        for doc in sorted(self.espo.docs):
            self.sync(doc)
            status = self.espo.docs[doc].get("xaiSyncStatus")
            if self.required(doc):
                assert status == "clean", (doc, self.espo.docs[doc])
            else:
                assert status == "no_sync", (doc, self.espo.docs[doc])
                for fid in self.file_ids.get(doc, set()):
                    assert not self.xai.holders(fid), (doc, fid)
            self.sync_unchanged(doc)
            if self.link_ids:  # now remembered: a redundant event is answered by one read
                reads = self.espo.reads
                res = self.run(self.service().precheck(SyncEvent.from_queue({"entity_type": DOC, "entity_id": doc, "action": "update"})))
                assert res is not None and res.outcome == SyncOutcome.UP_TO_DATE and self.espo.reads == reads + 1, res
        self.no_content_uploaded_twice()
        event(f"docs={len(self.espo.docs)} deleted={len(self.deleted)}")


class CheckedMachine(CheckedAtTeardown, DocumentSyncMachine):
    """The machine hypothesis runs: every run ends with `teardown_check`."""


SETTINGS = settings(
    max_examples=int(os.environ.get("DOCUMENT_SYNC_HYPOTHESIS_EXAMPLES", "100")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class CheckedMachineWithLinkIds(CheckedMachine):
    link_ids = True


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DocumentSyncMachine]]:
    """Machines driven by hand (the cases hypothesis found, replayed without a hypothesis run),
    torn down after the test."""
    monkeypatch.setattr(sys.modules[__name__], "event", lambda *_: None)
    made: list[DocumentSyncMachine] = []

    def make(cls: type[DocumentSyncMachine] = DocumentSyncMachine) -> DocumentSyncMachine:
        made.append(cls())
        return made[-1]

    yield make
    for m in made:
        m.teardown()


TestDocumentSyncStateful = CheckedMachine.TestCase
TestDocumentSyncStateful.settings = SETTINGS
TestDocumentSyncStatefulWithLinkIds = CheckedMachineWithLinkIds.TestCase
TestDocumentSyncStatefulWithLinkIds.settings = SETTINGS


def test_crash_after_upload_does_not_adopt_an_earlier_same_size_version(machine: Any) -> None:
    """The case hypothesis found: an earlier version of the document with the same name and
    size, uploaded seconds before, must not be adopted as the orphan of a crashed upload."""
    m = machine()
    rk = m.new_rk("open")
    doc = m.new_doc(rk)
    m.sync(doc)
    m.espo.set_file(doc, b"B" * len(m.espo.attachments[m.espo.docs[doc]["fileId"]]))
    m.sync_with_crash(doc, "after_upload")
    m.sync(doc)
    assert m.espo.docs[doc]["xaiSyncStatus"] == "clean"
    m.check_clean(doc)
    m.teardown_check()


@pytest.mark.parametrize(("legacy_first", "journal_lost"), [(True, False), (False, False), (True, True)])
def test_legacy_record_whose_file_changed_in_place_is_synced_not_migrated(
    machine: Any, legacy_first: bool, journal_lost: bool
) -> None:
    """The guide's missed case on a record from before the MD5 rule: the file is replaced,
    `md5sum` changes, `fileStatus` stays synced and the stale `sha256` still equals the legacy
    `xaiSyncedHash`. The migration's download must notice and sync the new bytes (once),
    with or without the journal (Motia state may have been lost)."""
    m = machine()
    doc = m.new_doc(m.new_rk("open"))
    m.sync(doc)
    steps = [lambda: m.back_to_legacy_hash(doc), lambda: m.change_file(doc, keep_status=True, with_sha=False)]
    for step in steps if legacy_first else reversed(steps):
        step()
    if journal_lost:
        m.journal.data.clear()
    uploads = len(m.xai.uploads)
    res = m.sync(doc)
    assert res.outcome == SyncOutcome.SYNCED and res.uploaded and len(m.xai.uploads) == uploads + 1
    m.check_clean(doc)
    m.teardown_check()


def test_legacy_record_migrates_without_upload_or_xai_write(machine: Any) -> None:
    m = machine()
    doc = m.new_doc(m.new_rk("open"))
    m.sync(doc)
    m.back_to_legacy_hash(doc)
    assert len(m.espo.docs[doc]["xaiSyncedHash"]) == 64 and "md5" not in m.journal.data[doc]
    uploads = len(m.xai.uploads)
    assert m.sync(doc).outcome == SyncOutcome.MIGRATED  # sync() asserts: clean on the MD5, no xAI write
    assert len(m.xai.uploads) == uploads and m.journal.data[doc]["md5"] == m.espo.docs[doc]["md5sum"]
    m.sync_unchanged(doc)


def test_replaced_collection_is_not_answered_from_the_link_memory(machine: Any) -> None:
    """The sequence the memory must survive (hypothesis finds its mutant only after ~1,000
    examples): a document remembered in its entity's collection, the manager replaces that
    collection, then an event. The renewed change token makes it move, not answer from memory."""
    m = machine(CheckedMachineWithLinkIds)
    rk = m.new_rk("open")
    doc = m.new_doc(rk)
    m.sync(doc)
    m.handle_event(doc)  # answered from memory: one read, no write
    old = m.espo.rks[rk]["xaiCollectionId"]
    m.replace_collection(rk)
    m.handle_event(doc)  # asserts exact memberships when it reports up to date or synced
    assert m.xai.holders(m.espo.docs[doc]["xaiId"]) == {m.espo.rks[rk]["xaiCollectionId"]} != {old}
    m.teardown_check()


@pytest.mark.parametrize("first_linked", [False, True])
def test_run_stopped_before_its_write_back_then_unlinked_leaves_no_membership(machine: Any, first_linked: bool) -> None:
    """The case hypothesis found once `pending_sync` was no longer written before the work: a
    run adds the file to a collection and dies before EspoCRM hears of it; the link goes away.
    EspoCRM's record alone looks up to date (no_sync without collections, or clean in its
    first collection only); the journal, written ahead, says xAI holds more."""
    m = machine(CheckedMachineWithLinkIds)
    first = m.new_rk("open")
    doc = m.new_doc(first if first_linked else None)
    m.sync(doc)
    rk = m.new_rk("open")
    m.link(doc, rk)
    m.sync_with_crash(doc, "before_write_back")
    assert m.xai.holders(m.journal.data[doc]["file_id"]) >= {m.espo.rks[rk]["xaiCollectionId"]}
    m.unlink(doc, rk)
    m.handle_event(doc)
    m.teardown_check()  # no file of the document left in the unlinked collection
    assert m.espo.rks[rk]["xaiCollectionId"] not in m.xai.holders(m.espo.docs[doc].get("xaiId") or "")
