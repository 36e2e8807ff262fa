"""The calls the document sync makes, counted in the simulators' request logs (in process):
one read for a redundant event, no `pending_sync` write, one write-back, the link ids of the
read instead of three related lists, and the write-back's answer catching a file replaced
while the sync worked (services.documents.executor, services.documents.links)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from services.documents.links import change_key, contradicts, recall, remember
from services.documents.plan import LinkedEntity
from services.documents.results import SyncOutcome
from services.platform.models import DocumentRecord, EntityAction, EntityType, SyncEvent, SyncSource
from tests.services.documents.world import RK, World

DOC = "CDokumente"


def _event(doc_id: str, **extra: Any) -> SyncEvent:
    return SyncEvent(entity_type=EntityType.DOKUMENTE, entity_id=doc_id, action=EntityAction.UPDATE, source=SyncSource.MANUAL, **extra)


async def synced(world: World, content: bytes = b"content") -> tuple[str, str, str]:
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(content + uuid.uuid4().bytes, raeumungsklagenIds=[rk])
    assert (await world.service().sync_document(doc_id)).outcome == SyncOutcome.SYNCED
    return doc_id, rk, cid


# --------------------------------------------------------------------------- pure


def test_recall_needs_every_link_id_and_exactly_the_remembered_entities() -> None:
    e1 = LinkedEntity(RK, "r1", True, "c1")
    memory = remember([e1], {("Raeumungsklage", "r1"): "t1"})
    doc = DocumentRecord.model_validate({"id": "d", "raeumungsklagenIds": ["r1"], "beteiligteIds": [], "accountsIds": []})
    assert recall(doc, memory) == ([e1], {("Raeumungsklage", "r1"): "t1"})
    assert recall(doc.model_copy(update={}), {"linked": []}) is None  # remembered none, read names one
    more = DocumentRecord.model_validate({"id": "d", "raeumungsklagenIds": ["r1", "r2"], "beteiligteIds": [], "accountsIds": []})
    assert recall(more, memory) is None  # a link since: read the entities again
    no_field = DocumentRecord.model_validate({"id": "d", "raeumungsklagenIds": ["r1"], "beteiligteIds": []})
    assert recall(no_field, memory) is None  # a link without ids in the read: unknown
    assert recall(doc, None) is None and recall(doc, {"linked": [["Nope", "x", True, None]]}) is None


def test_a_link_event_against_the_memory_needs_no_read_to_know_it() -> None:
    memory = remember([LinkedEntity(RK, "r1", True, "c1")], {})

    def ev(change: str, entity: str) -> SyncEvent:
        return _event("d", link_change=change, related_entity_type=RK, related_entity_id=entity)

    assert contradicts(ev("link", "r2"), memory) and contradicts(ev("unlink", "r1"), memory)
    assert not contradicts(ev("link", "r1"), memory) and not contradicts(ev("unlink", "r2"), memory)  # seen already
    assert not contradicts(_event("d"), memory)  # no link news: the read decides


# --------------------------------------------------------------------------- against simulators


async def test_new_document_sync_reads_once_lists_one_link_and_writes_back_once(world: World) -> None:
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(b"budget " * 100, raeumungsklagenIds=[rk])
    att = (await world.espo.get_entity(DOC, doc_id))["fileId"]
    world.clear_calls()
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and res.uploaded
    espo, xai = world.calls()
    assert espo == [
        f"GET /api/v1/{DOC}/{doc_id}",
        f"GET /api/v1/{DOC}/{doc_id}/raeumungsklagen",  # the only link the read names ids on
        f"GET /api/v1/Attachment/file/{att}",
        f"PUT /api/v1/{DOC}/{doc_id}",  # the one write-back: no pending_sync write, no read before it
    ]
    assert xai == ["POST /v1/files", f"POST /v1/collections/{cid}/documents/{res.file_id}"]
    d = await world.espo.get_entity(DOC, doc_id)
    assert d["xaiSyncStatus"] == "clean" and d["fileStatus"] == "synced" and d["xaiCollections"] == [cid]


async def test_redundant_event_costs_one_read_and_takes_no_lock(world: World) -> None:
    doc_id, _, cid = await synced(world)
    world.clear_calls()
    res = await world.service().precheck(_event(doc_id))
    assert res is not None and res.outcome == SyncOutcome.UP_TO_DATE and res.collections == [cid]
    assert world.calls() == ([f"GET /api/v1/{DOC}/{doc_id}"], [])


async def test_precheck_reads_nothing_without_a_memory(world: World) -> None:
    doc_id, _, _ = await synced(world)
    world.clear_calls()
    await world.links.delete(doc_id)
    assert await world.service().precheck(_event(doc_id)) is None
    assert world.calls() == ([], [])
    # the locked run reads everything, finds it up to date and remembers the links again
    assert (await world.service().sync_document(doc_id)).outcome == SyncOutcome.UP_TO_DATE
    world.clear_calls()
    assert (await world.service().precheck(_event(doc_id))).outcome == SyncOutcome.UP_TO_DATE  # type: ignore[union-attr]
    assert len(world.calls()[0]) == 1


async def test_a_link_since_the_last_read_is_never_answered_from_memory(world: World) -> None:
    doc_id, _, _ = await synced(world)
    rk2, cid2 = await world.rk_with_collection()
    await world.espo.link_entities(DOC, doc_id, "raeumungsklagen", rk2)
    assert await world.service().precheck(_event(doc_id)) is None  # the read names another entity
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and not res.uploaded and cid2 in res.collections


async def test_a_changed_collection_is_not_answered_from_memory(world: World) -> None:
    """The memory's collection id is stale once the manager replaced the collection: it renewed
    the entity's change token, so any event (its fan-out, or a newer one the ledger kept
    instead) makes the locked run read the entity and move the document."""
    doc_id, rk, cid = await synced(world)
    before = await world.changes.get(change_key(RK, rk))
    await world.xai.delete_collection(cid)
    ens = await world.manager().ensure(RK, rk)
    assert (await world.changes.get(change_key(RK, rk))) != before
    assert [e["data"]["entity_id"] for e in ens.events] == [doc_id]
    world.clear_calls()
    assert await world.service().precheck(_event(doc_id)) is None  # a plain event, not the fan-out's
    assert world.calls() == ([f"GET /api/v1/{DOC}/{doc_id}"], [])
    res = await world.service().handle(_event(doc_id))
    assert res.outcome == SyncOutcome.SYNCED and res.collections == [ens.collection_id] != [cid]
    assert (await world.service().precheck(_event(doc_id))).outcome == SyncOutcome.UP_TO_DATE  # type: ignore[union-attr]


async def test_unlink_costs_a_read_a_removal_and_a_write(world: World) -> None:
    doc_id, rk, cid = await synced(world)
    await world.espo.unlink_entities(DOC, doc_id, "raeumungsklagen", rk)
    file_id = (await world.espo.get_entity(DOC, doc_id))["xaiId"]
    world.clear_calls()
    assert await world.service().precheck(_event(doc_id)) is None  # a plain event reads: other link ids
    unlink = _event(doc_id, link_change="unlink", related_entity_type=RK, related_entity_id=rk)
    assert await world.service().precheck(unlink) is None  # the unlink event knows without a read
    assert (await world.service().handle(unlink)).outcome == SyncOutcome.NO_SYNC
    espo, xai = world.calls()
    assert espo == [f"GET /api/v1/{DOC}/{doc_id}"] * 2 + [f"PUT /api/v1/{DOC}/{doc_id}"]  # the plain event's read, the run's
    assert xai == [f"DELETE /v1/collections/{cid}/documents/{file_id}"]


async def test_file_replaced_during_the_sync_is_not_claimed_synced(world: World) -> None:
    """The write-back's answer shows another file: a second write takes the claim back, and the
    next sync (the replacement's own update webhook) uploads the new bytes."""
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(b"first version", raeumungsklagenIds=[rk])
    original = world.xai.add_to_collection

    async def replacing_add(collection_id: str, file_id: str, fields: Any = None) -> Any:
        att = await world.espo.upload_attachment("f.txt", b"second version", "text/plain", DOC, "file")
        await world.espo.update_entity(DOC, doc_id, {"fileId": att["id"]})  # the user, meanwhile
        world.xai.add_to_collection = original  # type: ignore[method-assign]
        return await original(collection_id, file_id, fields)

    world.xai.add_to_collection = replacing_add  # type: ignore[method-assign]
    await world.service().sync_document(doc_id)
    d = await world.espo.get_entity(DOC, doc_id)
    assert d["xaiSyncStatus"] == "unclean" and d["fileStatus"] == "changed"
    assert d["md5sum"] == hashlib.md5(b"second version").hexdigest() != d["xaiSyncedHash"]
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and res.uploaded
    d = await world.espo.get_entity(DOC, doc_id)
    assert d["xaiSyncStatus"] == "clean" and d["xaiSyncedHash"] == d["md5sum"] and d["sha256"] == hashlib.sha256(b"second version").hexdigest()


async def test_without_espocrms_md5sum_the_record_is_read_before_the_sync_writes_it(world: World) -> None:
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(b"no md5 here", raeumungsklagenIds=[rk])
    att = (await world.espo.update_entity(DOC, doc_id, {"md5sum": None}))["fileId"]  # a CRM whose hook fills none
    world.clear_calls()
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED
    espo, xai = world.calls()
    assert espo[-2:] == [f"GET /api/v1/{DOC}/{doc_id}", f"PUT /api/v1/{DOC}/{doc_id}"]
    assert espo[:-2] == [f"GET /api/v1/{DOC}/{doc_id}", f"GET /api/v1/{DOC}/{doc_id}/raeumungsklagen", f"GET /api/v1/Attachment/file/{att}"]
    assert xai == ["POST /v1/files", f"POST /v1/collections/{cid}/documents/{res.file_id}"]  # that read is the only extra call
    assert (await world.espo.get_entity(DOC, doc_id))["md5sum"] == hashlib.md5(b"no md5 here").hexdigest()


async def test_link_costs_do_not_grow_with_the_documents_already_linked(world: World) -> None:
    counts = []
    for already in (1, 4):
        rk, _ = await world.rk_with_collection()
        for i in range(already):
            await world.service().sync_document(await world.new_doc(f"{rk} {i}".encode(), raeumungsklagenIds=[rk]))
        late = await world.new_doc(f"{rk} late".encode())
        await world.service().sync_document(late)
        await world.espo.link_entities(RK.value, rk, "dokumente", late)
        world.clear_calls()
        link = _event(late, link_change="link", related_entity_type=RK, related_entity_id=rk)
        assert await world.service().precheck(link) is None  # the memory has no such link: no read
        assert (await world.service().handle(link)).outcome == SyncOutcome.SYNCED
        counts.append(tuple(len(c) for c in world.calls()))
    assert counts[0] == counts[1] == (4, 2)  # read, list, download, write; upload, add
