"""A document delete takes the file out of its collections only after EspoCRM confirms the
document is gone (a 404 on read, absent from its list): a delete event for a document that
exists, an EspoCRM outage and a wrong path (404 on the whole entity) remove nothing."""

from __future__ import annotations

import aiohttp
import pytest

from services.clients.errors import ApiError
from services.documents.results import SyncOutcome
from services.platform.models import EntityAction, EntityType, SyncEvent, SyncSource
from tests.services.documents.world import World


async def synced_doc(world: World) -> tuple[str, str, str]:
    """A document synced into its Räumungsklage's collection: (doc id, collection id, file id)."""
    rk, cid = await world.rk_with_collection()
    doc_id = await world.new_doc(b"kept unless really gone", raeumungsklagenIds=[rk])
    res = await world.service().sync_document(doc_id)
    assert res.outcome == SyncOutcome.SYNCED and res.file_id
    return doc_id, cid, str(res.file_id)


async def files_in(world: World, cid: str) -> list[str]:
    return [(d.get("file_metadata") or {}).get("file_id") async for d in world.xai.list_documents(cid)]


def delete_event(doc_id: str) -> SyncEvent:
    return SyncEvent(entity_type=EntityType.DOKUMENTE, entity_id=doc_id, action=EntityAction.DELETE, source=SyncSource.WEBHOOK)


async def fault(world: World, **spec: object) -> None:
    async with aiohttp.ClientSession() as s, s.post(f"{world.espo_run.url}/_sim/faults", json=spec) as resp:
        assert resp.status < 400, await resp.text()


async def test_delete_event_for_a_document_that_exists_removes_nothing(world: World) -> None:
    doc_id, cid, file_id = await synced_doc(world)
    out = await world.service().handle(delete_event(doc_id))
    assert out.outcome != SyncOutcome.DELETED
    assert await files_in(world, cid) == [file_id]


async def test_espocrm_outage_on_the_read_removes_nothing(world: World) -> None:
    doc_id, cid, file_id = await synced_doc(world)
    await world.espo.delete_entity("CDokumente", doc_id)
    await fault(world, method="GET", path="^/api/v1/CDokumente", status=503)
    with pytest.raises(ApiError) as err:
        await world.service().handle(delete_event(doc_id))
    assert err.value.retryable  # the ledger retries; the retry decides
    assert await files_in(world, cid) == [file_id]


async def test_wrong_path_answering_404_everywhere_removes_nothing(world: World) -> None:
    doc_id, cid, file_id = await synced_doc(world)
    await fault(world, method="GET", path="^/api/v1/CDokumente", status=404)
    out = await world.service().handle(delete_event(doc_id))
    assert out.outcome == SyncOutcome.DELETE_HELD and "404" in out.detail
    assert await files_in(world, cid) == [file_id]


async def test_confirmed_delete_removes_the_file_from_its_collection(world: World) -> None:
    doc_id, cid, file_id = await synced_doc(world)
    await world.espo.delete_entity("CDokumente", doc_id)
    out = await world.service().handle(delete_event(doc_id))
    assert out.outcome == SyncOutcome.DELETED and out.collections == [cid]
    assert await files_in(world, cid) == []
    assert await world.xai.get_file(file_id) is not None  # the file itself is kept
