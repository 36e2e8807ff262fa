"""The document sync's events, collection decisions and services against in-process simulators +
Redis (the sync plan's table of cases: test_plan.py; MD5 change detection and the hash
migration: test_hash.py)."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.clients.errors import ApiConnectionError, LockBusyError, ValidationError
from services.documents.collections import (
    CollectionAction,
    collection_metadata,
    matching_collections,
    plan_collection,
)
from services.documents.events import document_webhook_events, is_own_write_echo, link_webhook_events
from services.documents.files import download_to_tempfile
from services.documents.reconcile import iter_reconcile_events, unsynced_documents_where
from services.documents.results import SyncOutcome
from services.platform.locks import RedisLock, lock_key
from services.platform.models import (
    EntityAction,
    EntityType,
    LinkWebhookItem,
    SyncEvent,
    SyncSource,
    WebhookItem,
)
from services.platform.settings import DEFAULT_XAI_COLLECTION_RULES, XAISettings, _collection_rules
from src.glue.queue_handlers import run_document_sync
from tests.services.documents.world import RULES, World

RK, ACC = EntityType.RAEUMUNGSKLAGE, EntityType.ACCOUNT


def _event(action: EntityAction, changed: list[str], source: SyncSource = SyncSource.WEBHOOK) -> SyncEvent:
    return SyncEvent(entity_type=EntityType.DOKUMENTE, entity_id="d1", action=action, source=source, changed_fields=changed)


def test_own_write_echo() -> None:
    assert is_own_write_echo(_event(EntityAction.UPDATE, ["xaiSyncStatus"]))
    assert is_own_write_echo(_event(EntityAction.UPDATE, ["xaiSyncStatus", "modifiedAt", "modifiedById"]))
    assert not is_own_write_echo(_event(EntityAction.UPDATE, ["modifiedAt"]))
    assert is_own_write_echo(_event(EntityAction.UPDATE, ["xaiId", "xaiCollections", "fileStatus", "sha256", "xaiSyncedHash", "xaiLastSync"]))
    # md5sum is EspoCRM's hash of the current file: its change alone is a file change, not our echo
    assert not is_own_write_echo(_event(EntityAction.UPDATE, ["md5sum", "modifiedAt"]))
    assert not is_own_write_echo(_event(EntityAction.UPDATE, ["xaiSyncStatus", "md5sum"]))
    assert not is_own_write_echo(_event(EntityAction.UPDATE, ["fileId", "sha256", "md5sum", "fileStatus"]))
    assert not is_own_write_echo(_event(EntityAction.UPDATE, []))
    assert not is_own_write_echo(_event(EntityAction.CREATE, ["xaiSyncStatus"]))
    assert not is_own_write_echo(_event(EntityAction.UPDATE, ["xaiSyncStatus"], SyncSource.CRON))


def test_plan_collection() -> None:
    assert plan_collection(True, "c1", True, []).action == CollectionAction.KEEP
    assert plan_collection(True, None, False, []).action == CollectionAction.CREATE
    p = plan_collection(True, None, False, [{"collection_id": "c7"}, {"collection_id": "c8"}])
    assert p.action == CollectionAction.ADOPT and p.collection_id == "c7"
    assert plan_collection(True, "gone", False, [{"collection_id": "gone"}]).action == CollectionAction.CREATE
    assert plan_collection(False, "c1", True, []) .action == CollectionAction.DELETE
    assert plan_collection(False, None, False, []).action == CollectionAction.NOTHING


def test_matching_collections_oldest_first() -> None:
    cols = [
        {"collection_id": "b", "created_at": "2026-02", "metadata": {"espocrm_entity_type": "Account", "espocrm_entity_id": "x"}},
        {"collection_id": "a", "created_at": "2026-01", "metadata": {"espocrm_entity_type": "Account", "espocrm_entity_id": "x"}},
        {"collection_id": "c", "created_at": "2026-01", "metadata": {"espocrm_entity_type": "Raeumungsklage", "espocrm_entity_id": "x"}},
    ]
    assert [c["collection_id"] for c in matching_collections(cols, "Account", "x")] == ["a", "b"]
    meta = collection_metadata("Account", "x")
    assert meta["espocrm_entity_type"] == "Account" and meta["espocrm_entity_id"] == "x" and meta["created_at"]


def test_collection_rules_decide() -> None:
    rules = XAISettings(api_base_url="u", management_base_url="u", api_key="k", management_key="k",
                        collection_rules=_collection_rules(DEFAULT_XAI_COLLECTION_RULES))
    assert rules.should_have_collection("Account", {"status": "Active"})
    assert not rules.should_have_collection("Account", {"status": "Inactive"})
    assert rules.should_have_collection("Raeumungsklage", {"status": "Offen"})
    assert rules.should_have_collection("CBeteiligte", {"xaiCollectionEnabled": True})
    assert not rules.should_have_collection("CBeteiligte", {"xaiCollectionEnabled": False})


def test_webhook_events() -> None:
    item = WebhookItem.model_validate({"id": "d1", "xaiSyncStatus": "clean", "name": "n"})
    [ev] = document_webhook_events(EntityAction.UPDATE)(item, "hook")
    assert ev["topic"] == "vmh.document.update"
    data = SyncEvent.from_queue(ev["data"])
    assert data.changed_fields == ["name", "xaiSyncStatus"] and data.webhook_id == "hook" and not is_own_write_echo(data)
    link = LinkWebhookItem.model_validate({"entityType": "Account", "entityId": "a1", "documentId": "d1"})
    [docu] = link_webhook_events(EntityAction.LINK)(link, None)  # the sync asks for a missing collection itself
    assert docu["topic"] == "vmh.document.update" and docu["data"]["entity_id"] == "d1"
    assert docu["data"]["related_entity_id"] == "a1" and docu["data"]["link_change"] == "link" and not docu["data"].get("full")


# --------------------------------------------------------------------------- against simulators

async def test_sync_uploads_once_and_is_idempotent(world: World) -> None:
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(b"hello world", raeumungsklagenIds=[rk])
    svc = world.service()
    res = await svc.sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and res.uploaded and res.collections == [cid]
    d = await world.espo.get_entity("CDokumente", doc_id)
    assert d["xaiSyncStatus"] == "clean" and d["fileStatus"] == "synced"
    assert d["sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert d["md5sum"] == hashlib.md5(b"hello world").hexdigest() == d["xaiSyncedHash"]  # the guide: MD5 at last sync
    for _ in range(3):
        assert (await svc.sync_document(doc_id)).outcome == SyncOutcome.UP_TO_DATE
    assert world.uploads() == 1


async def resync_without_upload(world: World, doc_id: str) -> Any:
    """Sync `doc_id` again after a failure: it ends clean on the one file already uploaded."""
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and not res.uploaded
    assert world.uploads() == 1
    d = await world.espo.get_entity("CDokumente", doc_id)
    assert d["xaiSyncStatus"] == "clean" and d["xaiId"] == res.file_id
    return res


async def test_crash_between_upload_and_write_back_does_not_upload_twice(world: World) -> None:
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(b"crash me", raeumungsklagenIds=[rk])
    original = world.espo.update_entity
    calls = {"n": 0}

    async def flaky_update(entity_type: str, entity_id: str, data: Any) -> Any:
        if "xaiId" in data and calls["n"] == 0:
            calls["n"] += 1
            raise ApiConnectionError("espocrm", "connection reset during write-back")
        return await original(entity_type, entity_id, data)

    world.espo.update_entity = flaky_update  # type: ignore[method-assign]
    with pytest.raises(ApiConnectionError):
        await world.service().sync_document(doc_id)
    d = await world.espo.get_entity("CDokumente", doc_id)
    # a retryable failure is not written as `failed` (the ledger's dead hook does that when it gives up)
    assert d.get("xaiSyncStatus") != "failed" and not d.get("xaiSyncError")
    assert world.uploads() == 1
    res = await resync_without_upload(world, doc_id)  # the queue's retry
    assert [x["file_metadata"]["file_id"] async for x in world.xai.list_documents(cid)] == [res.file_id]


async def test_death_right_after_upload_adopts_the_orphan_instead_of_uploading_again(world: World) -> None:
    """The worker dies after xAI accepted the upload but before the journal recorded it."""
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(b"died mid-upload", raeumungsklagenIds=[rk])
    original = world.journal.set
    died = {"n": 0}

    async def dying_set(key: str, value: Any) -> None:
        if value.get("file_id") and not value.get("upload_pending") and died["n"] == 0:
            died["n"] += 1
            raise asyncio.CancelledError("worker killed")  # nothing after this line ran
        await original(key, value)

    world.journal.set = dying_set  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await world.service().sync_document(doc_id)
    world.journal.set = original  # type: ignore[method-assign]
    assert world.uploads() == 1
    await resync_without_upload(world, doc_id)  # the queue's redelivery


async def test_lock_busy_raises(world: World) -> None:
    rk, _ = await world.rk_with_collection()
    doc_id = await world.new_doc(b"locked", raeumungsklagenIds=[rk])
    lock = RedisLock(world.redis, lock_key("document_sync", "CDokumente", doc_id), 5)
    assert await lock.acquire()
    try:
        with pytest.raises(LockBusyError):
            await run_document_sync(world.service(), SyncEvent.from_queue({"entity_type": "CDokumente", "entity_id": doc_id, "action": "update"}), redis=world.redis, wait=0.0)
    finally:
        await lock.release()
    assert world.uploads() == 0


async def test_waits_for_missing_collection(world: World) -> None:
    acc = await world.espo.create_entity("Account", {"name": f"A {uuid.uuid4().hex[:8]}", "status": "Active"})
    doc_id = await world.new_doc(b"wait", accountsIds=[acc["id"]])
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.WAITING
    assert [(e["topic"], e["data"]["entity_id"]) for e in res.events] == [("vmh.collection.ensure", acc["id"])]
    assert world.uploads() == 0
    ens = await world.manager().ensure(ACC, acc["id"])
    assert ens.action == CollectionAction.CREATE and [e["data"]["entity_id"] for e in ens.events] == [doc_id]
    assert (await world.service().sync_document(doc_id)).outcome == SyncOutcome.SYNCED


async def test_manager_adopts_instead_of_duplicating(world: World) -> None:
    rk = await world.espo.create_entity("Raeumungsklage", {"name": f"RK {uuid.uuid4().hex[:8]}", "status": "Offen"})
    # A crash after create, before storing the id: the collection exists, EspoCRM does not know it.
    created = await world.xai.create_collection("orphan", collection_metadata("Raeumungsklage", rk["id"]))
    res = await world.manager().ensure(RK, rk["id"])
    assert res.action == CollectionAction.ADOPT and res.collection_id == created["collection_id"]
    assert (await world.espo.get_entity("Raeumungsklage", rk["id"]))["xaiCollectionId"] == created["collection_id"]
    assert len([c async for c in world.xai.list_collections()]) == 1
    assert (await world.manager().ensure(RK, rk["id"])).action == CollectionAction.KEEP


async def test_manager_recreates_gone_and_deletes_unwanted(world: World) -> None:
    rk, cid = await world.rk_with_collection()
    await world.xai.delete_collection(cid)
    res = await world.manager().ensure(RK, rk)
    assert res.action == CollectionAction.CREATE and res.collection_id != cid
    await world.espo.update_entity("Raeumungsklage", rk, {"status": "Abgeschlossen"})
    res2 = await world.manager().ensure(RK, rk)
    assert res2.action == CollectionAction.DELETE and await world.xai.get_collection(res.collection_id) is None
    assert (await world.espo.get_entity("Raeumungsklage", rk)).get("xaiCollectionId") is None


async def test_too_large_file_fails_permanently(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import services.documents.executor as dsu

    rk, _ = await world.rk_with_collection()
    doc_id = await world.new_doc(b"x" * 2048, raeumungsklagenIds=[rk])
    orig = dsu.download_to_tempfile
    monkeypatch.setattr(dsu, "download_to_tempfile", lambda espocrm, att, max_bytes=0: orig(espocrm, att, max_bytes=1024))
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.FAILED
    d = await world.espo.get_entity("CDokumente", doc_id)
    assert d["xaiSyncStatus"] == "failed" and "exceeds" in d["xaiSyncError"]


class _ChunkSource:
    """An EspoCRM stand-in whose attachment is produced chunk by chunk (never whole)."""

    def __init__(self, chunks: int, size: int = 65536) -> None:
        self.chunks, self.size = chunks, size

    def chunk(self, i: int) -> bytes:
        return bytes([i % 251]) * self.size

    async def download_attachment_stream(self, attachment_id: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        for i in range(self.chunks):
            yield self.chunk(i)


async def test_download_streams_to_disk_with_small_memory() -> None:
    src = _ChunkSource(128)  # 8 MiB
    sha, md5 = hashlib.sha256(), hashlib.md5()
    for i in range(src.chunks):
        sha.update(src.chunk(i))
        md5.update(src.chunk(i))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        f = await download_to_tempfile(src, "att")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    try:
        assert f.size == 128 * 65536 and f.sha256 == sha.hexdigest() and f.md5 == md5.hexdigest()
        assert peak < 1024 * 1024, peak  # a few chunks, not the file
    finally:
        f.remove()
    with pytest.raises(ValidationError):
        await download_to_tempfile(src, "att", max_bytes=100_000)


async def test_download_through_the_client_hashes_right(world: World) -> None:
    content = bytes(range(256)) * 4096
    att = await world.espo.upload_attachment("big.bin", content, "application/octet-stream", "CDokumente", "file")
    f = await download_to_tempfile(world.espo, att["id"])
    try:
        assert f.size == len(content) and f.sha256 == hashlib.sha256(content).hexdigest()
        with open(f.path, "rb") as fh:
            assert fh.read() == content
    finally:
        f.remove()
    import os

    assert not os.path.exists(f.path)


async def test_delete_removes_everywhere_even_without_journal(world: World) -> None:
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(b"gone soon", raeumungsklagenIds=[rk])
    res = await world.service().sync_document(doc_id)
    await world.espo.delete_entity("CDokumente", doc_id)
    world.journal.data.clear()  # forces the scan by the xAI document field
    out = await world.service().remove_document(doc_id)
    assert out.outcome == SyncOutcome.DELETED and out.collections == [cid]
    assert [d async for d in world.xai.list_documents(cid)] == []
    assert await world.xai.get_file(str(res.file_id)) is not None


async def test_reconciler_finds_what_is_out_of_line(world: World) -> None:
    rk_missing = await world.espo.create_entity("Raeumungsklage", {"name": "RK missing", "status": "Offen"})
    await world.espo.create_entity("Raeumungsklage", {"name": "RK closed", "status": "Abgeschlossen"})
    rk_obsolete = await world.espo.create_entity("Raeumungsklage", {"name": "RK obsolete", "status": "Abgeschlossen", "xaiCollectionId": "c-old"})
    bet = await world.espo.create_entity("CBeteiligte", {"name": "B enabled", "xaiCollectionEnabled": True}, skip_duplicate_check=True)
    await world.espo.create_entity("CBeteiligte", {"name": "B disabled", "xaiCollectionEnabled": False}, skip_duplicate_check=True)
    new_doc = await world.espo.create_entity("CDokumente", {"name": "n", "fileStatus": "new"})
    failed = await world.espo.create_entity("CDokumente", {"name": "f", "fileStatus": "synced", "xaiSyncStatus": "failed"})
    await world.espo.create_entity("CDokumente", {"name": "c", "fileStatus": "synced", "xaiSyncStatus": "clean"})
    await world.espo.create_entity("CDokumente", {"name": "ns", "fileStatus": "new", "xaiSyncStatus": "no_sync"})
    pending = await world.espo.create_entity("CDokumente", {"name": "p", "fileStatus": "synced", "xaiSyncStatus": "pending_sync"})
    events = [e async for e in iter_reconcile_events(world.espo, RULES, lock_ttl=1800)]
    found = {(e["topic"], e["data"]["entity_id"]) for e in events}
    assert found == {
        ("vmh.collection.ensure", rk_missing["id"]),
        ("vmh.collection.ensure", rk_obsolete["id"]),
        ("vmh.collection.ensure", bet["id"]),
        ("vmh.document.update", new_doc["id"]),
        ("vmh.document.update", failed["id"]),
    }
    assert all(e["data"]["source"] == "cron" for e in events)
    # pending_sync counts once it is older than the lock TTL
    events = [e async for e in iter_reconcile_events(world.espo, RULES, lock_ttl=-3600)]
    assert ("vmh.document.update", pending["id"]) in {(e["topic"], e["data"]["entity_id"]) for e in events}
    assert len([e async for e in iter_reconcile_events(world.espo, RULES, limit=2, page_size=1)]) == 2


def test_unsynced_where_shape() -> None:
    [item] = unsynced_documents_where("2026-01-01 00:00:00")
    assert item["type"] == "or" and len(item["value"]) == 3
