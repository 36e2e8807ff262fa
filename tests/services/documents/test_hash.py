"""The guide's hash rule against the EspoCRM and xAI simulators: `xaiSyncedHash` is the MD5
of the synced bytes, `md5sum != xaiSyncedHash` is a change even while `fileStatus` stays
synced, and records holding a SHA-256 there from before are migrated without an upload."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from services.documents.reconcile import iter_reconcile_events
from services.documents.results import SyncOutcome
from services.platform.models import utc_now
from tests.services.documents.world import RULES, World

DOC = "CDokumente"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def synced(world: World, content: bytes) -> tuple[str, str, dict[str, Any]]:
    """A document linked to an open Räumungsklage, synced: (doc id, collection, record)."""
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(content, raeumungsklagenIds=[rk])
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and res.uploaded
    return doc_id, cid, await world.espo.get_entity(DOC, doc_id)


async def replace_file_in_place(world: World, doc_id: str, content: bytes, **fields: Any) -> dict[str, Any]:
    """A new attachment while `fileStatus` stays synced (EspoCRM's hook sets md5sum from it)."""
    att = await world.espo.upload_attachment("f.txt", content, "text/plain", DOC, "file")
    return await world.espo.update_entity(DOC, doc_id, {"fileId": att["id"], "fileStatus": "synced", **fields})


async def to_legacy(world: World, doc_id: str) -> dict[str, Any]:
    """The record and journal as the sync left them before the MD5 rule."""
    d = await world.espo.get_entity(DOC, doc_id)
    entry = world.journal.data[doc_id]
    entry.pop("md5")
    return await world.espo.update_entity(DOC, doc_id, {"xaiSyncedHash": d["sha256"]})


async def test_synced_record_holds_the_md5_and_journal_both_hashes(world: World) -> None:
    doc_id, cid, d = await synced(world, b"guide's way")
    assert d["xaiSyncedHash"] == d["md5sum"] == md5(b"guide's way") and d["sha256"] == sha(b"guide's way")
    assert world.journal.data[doc_id] == {"file_id": d["xaiId"], "sha256": sha(b"guide's way"), "md5": md5(b"guide's way"), "collections": [cid]}
    [member] = [x async for x in world.xai.list_documents(cid)]
    assert member["fields"]["md5"] == md5(b"guide's way")


async def test_record_synced_the_guides_way_is_not_uploaded_again(world: World) -> None:
    """A record another tool synced as the guide shows (xaiSyncedHash = MD5) is up to date."""
    content = b"synced by the guide's code"
    rk, cid = await world.rk_with_collection()
    file_id = await world.xai.upload_file("g.txt", content, "text/plain")
    await world.xai.add_to_collection(cid, file_id, {"espocrm_document_id": "x"})
    att = await world.espo.upload_attachment("g.txt", content, "text/plain", DOC, "file")
    d = await world.espo.create_entity(DOC, {
        "name": "g", "fileId": att["id"], "raeumungsklagenIds": [rk], "fileStatus": "synced", "xaiSyncStatus": "clean",
        "xaiId": file_id, "xaiCollections": [cid], "xaiSyncedHash": md5(content),
    })
    uploads = world.uploads()
    assert (await world.service().sync_document(d["id"])).outcome == SyncOutcome.UP_TO_DATE
    assert world.uploads() == uploads


async def test_md5sum_change_while_file_status_stays_synced_is_synced(world: World) -> None:
    """The guide's missed case: only md5sum tells of the new file (sha256 left stale)."""
    doc_id, cid, first = await synced(world, b"version one")
    now = await replace_file_in_place(world, doc_id, b"version two", sha256=first["sha256"])
    assert now["fileStatus"] == "synced" and now["md5sum"] == md5(b"version two") != now["xaiSyncedHash"]
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and res.uploaded and res.file_id != first["xaiId"]
    d = await world.espo.get_entity(DOC, doc_id)
    assert d["xaiSyncedHash"] == d["md5sum"] == md5(b"version two") and d["sha256"] == sha(b"version two")
    assert [x["file_metadata"]["file_id"] async for x in world.xai.list_documents(cid)] == [res.file_id]
    assert world.uploads() == 2


async def test_legacy_record_is_migrated_with_one_download_and_no_xai_call(world: World) -> None:
    doc_id, cid, first = await synced(world, b"synced before the MD5 rule")
    legacy = await to_legacy(world, doc_id)
    assert legacy["xaiSyncedHash"] == sha(b"synced before the MD5 rule")
    xai_calls = len(world.xai_requests())
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.MIGRATED and not res.uploaded and res.file_id == first["xaiId"]
    assert len(world.xai_requests()) == xai_calls  # no upload, no collection call, not even a read
    d = await world.espo.get_entity(DOC, doc_id)
    assert d["xaiSyncedHash"] == d["md5sum"] == md5(b"synced before the MD5 rule")
    assert d["xaiSyncStatus"] == "clean" and d["xaiId"] == first["xaiId"] and d["xaiCollections"] == [cid]
    assert world.journal.data[doc_id]["md5"] == d["md5sum"]
    assert (await world.service().sync_document(doc_id)).outcome == SyncOutcome.UP_TO_DATE
    assert world.uploads() == 1


async def test_legacy_record_whose_file_changed_is_synced_once(world: World) -> None:
    """The migration's download shows other bytes than the legacy hash: the normal sync takes
    over with that download, uploads the new bytes once and ends on their MD5."""
    doc_id, cid, first = await synced(world, b"old bytes")
    await to_legacy(world, doc_id)
    await replace_file_in_place(world, doc_id, b"new bytes", sha256=first["sha256"])
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and res.uploaded
    d = await world.espo.get_entity(DOC, doc_id)
    assert d["xaiSyncedHash"] == d["md5sum"] == md5(b"new bytes") and d["xaiSyncStatus"] == "clean"
    assert [x["file_metadata"]["file_id"] async for x in world.xai.list_documents(cid)] == [d["xaiId"]]
    assert world.uploads() == 2


async def test_legacy_record_with_new_link_is_synced_without_upload(world: World) -> None:
    doc_id, cid, first = await synced(world, b"one more collection")
    await to_legacy(world, doc_id)
    rk2, cid2 = await world.rk_with_collection()
    await world.espo.link_entities(DOC, doc_id, "raeumungsklagen", rk2)
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and not res.uploaded and sorted(res.collections) == sorted([cid, cid2])
    d = await world.espo.get_entity(DOC, doc_id)
    assert d["xaiSyncedHash"] == d["md5sum"] == md5(b"one more collection") and world.uploads() == 1


async def test_reconciler_finds_legacy_hashes_and_md5_mismatches(world: World) -> None:
    base = {"fileStatus": "synced", "xaiSyncStatus": "clean", "xaiId": "f"}
    legacy = await world.espo.create_entity(DOC, {**base, "name": "legacy", "xaiSyncedHash": "a" * 64, "md5sum": "b" * 32})
    mismatch = await world.espo.create_entity(DOC, {**base, "name": "mismatch", "xaiSyncedHash": "c" * 32, "md5sum": "d" * 32})
    await world.espo.create_entity(DOC, {**base, "name": "same", "xaiSyncedHash": "e" * 32, "md5sum": "E" * 32})
    await world.espo.create_entity(DOC, {**base, "name": "unsynced clean", "md5sum": "f" * 32})
    found = {e["data"]["entity_id"]: e["data"]["reason"] async for e in iter_reconcile_events(world.espo, RULES)}
    assert found == {
        legacy["id"]: "reconciler: xaiSyncedHash is a legacy SHA-256",
        mismatch["id"]: "reconciler: md5sum differs from xaiSyncedHash",
    }
    # A mismatch outside the window is left to its webhook; a legacy hash is found whenever.
    later = {e["data"]["entity_id"] async for e in iter_reconcile_events(world.espo, RULES, now=utc_now() + timedelta(days=2))}
    assert later == {legacy["id"]}
    assert len([e async for e in iter_reconcile_events(world.espo, RULES, limit=1, page_size=1)]) == 1
