"""End to end: EspoCRM simulator → webhooks → document sync / collection manager → xAI simulator.

Every test creates its own entities and documents (unique names), so tests do not
depend on each other or on other teams' records.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from iii_local.testing import MotiaTester
from services.clients.espocrm import EspoCRMAPI
from services.clients.espocrm_webhooks import sign_body
from services.clients.retry import RetryPolicy
from services.platform.ledger import SyncKind
from services.platform.settings import load_settings
from simulators.sandbox import Simulators
from tests.e2e import OPS_TOKEN, WEBHOOK_ID, WEBHOOK_SECRET
from tests.steps.ledger_helpers import dead_mark, settle_ledger, stack_ledger, trigger_cron_once

pytestmark = pytest.mark.timeout(120)

DOC = "CDokumente"
RK = "Raeumungsklage"


@pytest.fixture
async def espo(stack: MotiaTester, sims: Simulators) -> AsyncIterator[EspoCRMAPI]:
    settings = load_settings(dict(stack.env))
    client = EspoCRMAPI(
        f"{sims.espocrm.url}/api/v1",
        settings.espocrm.api_key.get_secret_value(),
        api_secret=settings.espocrm.api_secret.get_secret_value() if settings.espocrm.api_secret else None,
        retry_policy=RetryPolicy(max_attempts=1),
    )
    yield client
    await client.close()


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = await check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.1)


class Xai:
    def __init__(self, sims: Simulators, http: aiohttp.ClientSession, stack: MotiaTester) -> None:
        settings = load_settings(dict(stack.env))
        self.url = sims.xai.url
        self.http = http
        self.api = {"Authorization": f"Bearer {settings.xai.api_key.get_secret_value()}"}
        self.mgmt = {"Authorization": f"Bearer {settings.xai.management_key.get_secret_value()}"}

    async def files_named(self, filename: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        token = None
        while True:
            params = {"limit": "1000", **({"pagination_token": token} if token else {})}
            async with self.http.get(f"{self.url}/v1/files", headers=self.api, params=params) as r:
                body = await r.json()
            out += [f for f in body["data"] if f["filename"] == filename]
            token = body.get("pagination_token")
            if not token:
                return out

    async def collection(self, cid: str) -> dict[str, Any] | None:
        async with self.http.get(f"{self.url}/v1/collections/{cid}", headers=self.mgmt) as r:
            return await r.json() if r.status == 200 else None

    async def documents(self, cid: str) -> list[str]:
        async with self.http.get(f"{self.url}/v1/collections/{cid}/documents", headers=self.mgmt, params={"limit": "1000"}) as r:
            assert r.status == 200, await r.text()
            return [d["file_metadata"]["file_id"] for d in (await r.json())["documents"]]

    async def file_exists(self, fid: str) -> bool:
        async with self.http.get(f"{self.url}/v1/files/{fid}", headers=self.api) as r:
            return r.status == 200

    async def fault(self, **spec: Any) -> None:
        async with self.http.post(f"{self.url}/_sim/faults", json=spec) as r:
            assert r.status == 200, await r.text()

    async def requests(self) -> list[dict[str, Any]]:
        async with self.http.get(f"{self.url}/_sim/requests") as r:
            body = await r.json()
        return body if isinstance(body, list) else body.get("requests", [])

    async def delete_collection(self, cid: str) -> None:
        async with self.http.delete(f"{self.url}/v1/collections/{cid}", headers=self.mgmt) as r:
            assert r.status == 200, await r.text()


@pytest.fixture
async def xai(sims: Simulators, http: aiohttp.ClientSession, stack: MotiaTester) -> Xai:
    return Xai(sims, http, stack)


async def new_rk(espo: EspoCRMAPI, status: str = "Offen") -> dict[str, Any]:
    return await espo.create_entity(RK, {"name": uid("RK"), "status": status})


async def new_account(espo: EspoCRMAPI, status: str = "Active") -> dict[str, Any]:
    return await espo.create_entity("Account", {"name": uid("Account"), "status": status})


async def new_document(espo: EspoCRMAPI, content: bytes, **links: Any) -> tuple[dict[str, Any], str]:
    filename = uid("doc") + ".txt"
    att = await espo.upload_attachment(filename, content, "text/plain", DOC, "file")
    doc = await espo.create_entity(DOC, {"name": filename, "fileId": att["id"], **links})
    return doc, filename


async def doc_when(espo: EspoCRMAPI, doc_id: str, *, status: str = "clean", timeout: float = 40.0) -> dict[str, Any]:
    async def check() -> Any:
        d = await espo.get_entity(DOC, doc_id)
        return d if d.get("xaiSyncStatus") == status else None

    return await wait_until(check, timeout, f"document {doc_id} {status}")


async def synced_document(stack: MotiaTester, espo: EspoCRMAPI, content: bytes, **links: Any) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A new document (linked as `links` say), synced clean, with the worker settled: the
    created record, its file name and the clean record."""
    doc, filename = await new_document(espo, content, **links)
    clean = await doc_when(espo, doc["id"])
    await settle(stack)
    return doc, filename, clean


async def ensure_collection(stack: MotiaTester, espo: EspoCRMAPI, rk: dict[str, Any]) -> None:
    """Queue the collection check of the Räumungsklage `rk` and wait until it has one."""
    await stack.enqueue("vmh.collection.ensure", {"entity_type": RK, "entity_id": rk["id"], "action": "update"})
    await wait_until(lambda: _has_collection(espo, RK, rk["id"]), 20, "collection")


async def settle(stack: MotiaTester) -> None:
    """Engine idle and no sync ledger mark pending or retrying (retries live in the ledger)."""
    await settle_ledger(stack)


# --------------------------------------------------------------------------- sync


async def test_create_links_and_syncs_into_the_entity_collection(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    rk = await new_rk(espo)
    acc_inactive = await new_account(espo, status="Inactive")
    doc, filename = await new_document(espo, b"Mietvertrag Inhalt " * 50, raeumungsklagenIds=[rk["id"]], accountsIds=[acc_inactive["id"]])
    d = await doc_when(espo, doc["id"])
    await settle(stack)
    rk_now = await espo.get_entity(RK, rk["id"])
    cid = rk_now["xaiCollectionId"]
    assert cid and (await xai.collection(cid))["metadata"]["espocrm_entity_id"] == rk["id"]
    d = await espo.get_entity(DOC, doc["id"])
    assert d["xaiCollections"] == [cid]
    assert d["fileStatus"] == "synced" and d.get("xaiSyncStatus") == "clean" and d["xaiLastSync"]
    assert d["xaiSyncedHash"] == d["md5sum"] and d["sha256"]  # the guide: xaiSyncedHash is the MD5 at last sync
    assert await xai.documents(cid) == [d["xaiId"]]
    assert len(await xai.files_named(filename)) == 1
    assert (await espo.get_entity("Account", acc_inactive["id"])).get("xaiCollectionId") is None
    # The upload journal in Motia state (crash safety, delete handling) matches EspoCRM.
    journal = await stack.state_get("document_sync.xai", doc["id"])
    assert journal == {"file_id": d["xaiId"], "sha256": d["sha256"], "md5": d["md5sum"], "collections": [cid]}


async def test_changed_file_is_uploaded_once_more_and_old_version_leaves(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    rk = await new_rk(espo)
    doc, filename, first = await synced_document(stack, espo, b"version one", raeumungsklagenIds=[rk["id"]])
    att = await espo.upload_attachment(filename, b"version two, longer", "text/plain", DOC, "file")
    await espo.update_entity(DOC, doc["id"], {"fileId": att["id"]})

    async def resynced() -> Any:
        d = await espo.get_entity(DOC, doc["id"])
        return d if d.get("xaiSyncStatus") == "clean" and d["xaiId"] != first["xaiId"] else None

    second = await wait_until(resynced, 40, "re-sync")
    await settle(stack)
    assert len(await xai.files_named(filename)) == 2  # exactly one new upload
    cid = first["xaiCollections"][0]
    assert await xai.documents(cid) == [second["xaiId"]]
    assert await xai.file_exists(first["xaiId"])  # old file kept
    assert (await espo.get_entity(DOC, doc["id"]))["xaiId"] == second["xaiId"]


async def test_link_second_entity_adds_without_reupload_and_unlink_removes(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    rk = await new_rk(espo)
    acc = await new_account(espo)
    doc, filename, first = await synced_document(stack, espo, b"Kuendigung", raeumungsklagenIds=[rk["id"]])
    await espo.link_entities(DOC, doc["id"], "accounts", acc["id"])

    async def in_two() -> Any:
        d = await espo.get_entity(DOC, doc["id"])
        return d if d.get("xaiSyncStatus") == "clean" and len(d["xaiCollections"]) == 2 else None

    d = await wait_until(in_two, 40, "second collection")
    await settle(stack)
    acc_cid = (await espo.get_entity("Account", acc["id"]))["xaiCollectionId"]
    assert acc_cid in d["xaiCollections"] and d["xaiId"] == first["xaiId"]
    assert await xai.documents(acc_cid) == [first["xaiId"]]
    assert len(await xai.files_named(filename)) == 1

    await espo.unlink_entities(DOC, doc["id"], "raeumungsklagen", rk["id"])

    async def only_account() -> Any:
        d = await espo.get_entity(DOC, doc["id"])
        return d if d.get("xaiSyncStatus") == "clean" and d["xaiCollections"] == [acc_cid] else None

    await wait_until(only_account, 40, "unlink")
    await settle(stack)
    assert await xai.documents(first["xaiCollections"][0]) == []
    assert await xai.documents(acc_cid) == [first["xaiId"]]

    await espo.unlink_entities(DOC, doc["id"], "accounts", acc["id"])
    d = await doc_when(espo, doc["id"], status="no_sync")
    await settle(stack)
    assert d["xaiCollections"] == [] and await xai.documents(acc_cid) == []
    assert await xai.file_exists(first["xaiId"])


async def test_delete_removes_from_collections_and_keeps_file(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    rk = await new_rk(espo)
    acc = await new_account(espo)
    doc, _ = await new_document(espo, b"to be deleted", raeumungsklagenIds=[rk["id"]], accountsIds=[acc["id"]])

    async def in_two() -> Any:
        d = await espo.get_entity(DOC, doc["id"])
        return d if d.get("xaiSyncStatus") == "clean" and len(d["xaiCollections"]) == 2 else None

    d = await wait_until(in_two, 40, "two collections")
    await settle(stack)
    await espo.delete_entity(DOC, doc["id"])
    for cid in d["xaiCollections"]:
        await wait_until(lambda cid=cid: _empty(xai, cid), 30, f"{cid} emptied")
    await settle(stack)
    assert await xai.file_exists(d["xaiId"])


async def _empty(xai: Xai, cid: str) -> bool:
    return await xai.documents(cid) == []


async def test_event_storm_uploads_once(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    rk = await new_rk(espo)
    await espo.update_entity(RK, rk["id"], {"name": rk["name"] + " x"})
    # The collection first, so the storm hits the document sync itself.
    await ensure_collection(stack, espo, rk)
    filename = uid("storm") + ".txt"
    att = await espo.upload_attachment(filename, b"storm content", "text/plain", DOC, "file")
    doc = await espo.create_entity(DOC, {"name": filename, "fileId": att["id"], "raeumungsklagenIds": [rk["id"]]})
    event = {"entity_type": DOC, "entity_id": doc["id"], "action": "update", "source": "manual"}
    await asyncio.gather(*(stack.enqueue("vmh.document.update", event) for _ in range(120)))
    await doc_when(espo, doc["id"])
    await settle(stack)
    assert len(await xai.files_named(filename)) == 1
    assert (await espo.get_entity(DOC, doc["id"]))["xaiSyncStatus"] == "clean"


async def _has_collection(espo: EspoCRMAPI, etype: str, eid: str) -> Any:
    return (await espo.get_entity(etype, eid)).get("xaiCollectionId")


async def test_xai_429_and_500_bursts_end_clean(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai, sims_reset: Simulators) -> None:
    rk = await new_rk(espo)
    await ensure_collection(stack, espo, rk)
    await xai.fault(method="POST", path="^/v1/files$", status=429, retry_after=0.2, times=3)
    await xai.fault(method="POST", path="/documents/", status=500, times=2)
    doc, filename = await new_document(espo, b"rate limited", raeumungsklagenIds=[rk["id"]])
    d = await doc_when(espo, doc["id"], timeout=60)
    await settle(stack)
    assert len(await xai.files_named(filename)) == 1
    statuses = [r["status"] for r in await xai.requests()]
    assert 429 in statuses and 500 in statuses
    assert await xai.documents(d["xaiCollections"][0]) == [d["xaiId"]]


async def test_permanent_error_marks_failed_with_reason(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai, sims_reset: Simulators) -> None:
    rk = await new_rk(espo)
    await ensure_collection(stack, espo, rk)
    await xai.fault(method="POST", path="^/v1/files$", status=400, body={"code": "InvalidArgument", "error": "unsupported file"})
    doc, filename = await new_document(espo, b"bad", raeumungsklagenIds=[rk["id"]])
    d = await doc_when(espo, doc["id"], status="failed")
    await settle(stack)
    d = await espo.get_entity(DOC, doc["id"])
    assert d["xaiSyncStatus"] == "failed" and "400" in d["xaiSyncError"]
    assert await xai.files_named(filename) == []
    # Permanent: recorded on the document, not retried (nothing dead-lettered, nothing pending).
    dead = await stack.dead_letters("vmh.document.create") + await stack.dead_letters("vmh.document.update")
    assert not [x for x in dead if x["job"]["data"].get("entity_id") == doc["id"]]
    assert await stack_ledger(stack).get(SyncKind.DOCUMENT, doc["id"]) is None


@pytest.mark.timeout(240)
async def test_exhausted_retries_dead_letter_mark_failed_and_replay_syncs(
    stack: MotiaTester, espo: EspoCRMAPI, xai: Xai, sims_reset: Simulators
) -> None:
    """The attachment download keeps failing (EspoCRM 503): the ledger retries with its
    backoff, then dead-letters the mark and records xaiSyncStatus=failed with the last
    error; an operator's replay (POST /ops/ledger/replay) after the outage syncs it."""
    rk = await new_rk(espo)
    await ensure_collection(stack, espo, rk)
    filename = uid("outage") + ".txt"
    att = await espo.upload_attachment(filename, b"outage", "text/plain", DOC, "file")
    fault = {"method": "GET", "path": f"^/api/v1/Attachment/file/{att['id']}$", "status": 503}
    async with xai.http.post(f"{sims_reset.espocrm.url}/_sim/faults", json=fault) as resp:
        assert resp.status == 200, await resp.text()
    doc = await espo.create_entity(DOC, {"name": filename, "fileId": att["id"], "raeumungsklagenIds": [rk["id"]]})
    dead = await wait_until(lambda: dead_mark(stack, SyncKind.DOCUMENT, doc["id"]), 110, "dead-lettered document")
    budget = stack_ledger(stack).policy(SyncKind.DOCUMENT).max_attempts
    # The kind's budget; one more when a newer event for the document (its own create and link
    # webhooks race the first run) arrived during the last failed run (ledger invariant 5).
    assert budget <= dead.attempts <= budget + 1 and "503" in dead.last_error

    async def recorded() -> Any:
        d = await espo.get_entity(DOC, doc["id"])
        return d if d.get("xaiSyncStatus") == "failed" and "gave up" in (d.get("xaiSyncError") or "") else None

    d = await wait_until(recorded, 10, "failure recorded on the document")
    assert f"gave up after {budget} attempt" in d["xaiSyncError"] and "503" in d["xaiSyncError"]
    assert await xai.files_named(filename) == []
    async with xai.http.delete(f"{sims_reset.espocrm.url}/_sim/faults") as resp:
        assert resp.status == 200
    r = await stack.post("/ops/ledger/replay", {"kind": "document", "ids": [doc["id"]]}, headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert r.status == 200 and r.json()["replayed"] == 1, r.text
    d = await doc_when(espo, doc["id"])
    await settle(stack)
    assert len(await xai.files_named(filename)) == 1 and not d.get("xaiSyncError")


async def test_collection_gone_is_recreated_and_document_follows(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    rk = await new_rk(espo)
    doc, _, first = await synced_document(stack, espo, b"recreate me", raeumungsklagenIds=[rk["id"]])
    old_cid = first["xaiCollections"][0]
    await xai.delete_collection(old_cid)
    await stack.enqueue("vmh.collection.ensure", {"entity_type": RK, "entity_id": rk["id"], "action": "update"})

    async def moved() -> Any:
        d = await espo.get_entity(DOC, doc["id"])
        return d if d.get("xaiSyncStatus") == "clean" and d["xaiCollections"] and d["xaiCollections"] != [old_cid] else None

    d = await wait_until(moved, 40, "new collection")
    await settle(stack)
    new_cid = (await espo.get_entity(RK, rk["id"]))["xaiCollectionId"]
    assert d["xaiCollections"] == [new_cid] and await xai.documents(new_cid) == [first["xaiId"]]


async def test_entity_no_longer_wanted_loses_collection(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    rk = await new_rk(espo)
    doc, _, first = await synced_document(stack, espo, b"closed case", raeumungsklagenIds=[rk["id"]])
    cid = first["xaiCollections"][0]
    await espo.update_entity(RK, rk["id"], {"status": "Abgeschlossen"})
    await stack.enqueue("vmh.collection.ensure", {"entity_type": RK, "entity_id": rk["id"], "action": "update"})
    d = await doc_when(espo, doc["id"], status="no_sync")
    await settle(stack)
    assert d["xaiCollections"] == [] and await xai.collection(cid) is None
    assert (await espo.get_entity(RK, rk["id"])).get("xaiCollectionId") is None


async def test_reconciler_picks_up_unsynced_documents(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:
    rk = await new_rk(espo)
    # Linked and flagged unclean directly, as if every webhook had been lost.
    filename = uid("recon") + ".txt"
    att = await espo.upload_attachment(filename, b"reconcile me", "text/plain", DOC, "file")
    watch = await stack.watch("vmh.collection.ensure")
    jobs = (await stack.console("GET", "/_console/cron"))["jobs"]
    fid = next(j["function_id"] for j in jobs if "Document Sync Reconciler" in j["function_id"])
    doc = await espo.create_entity(DOC, {"name": filename, "fileId": att["id"], "raeumungsklagenIds": [rk["id"]]})
    await doc_when(espo, doc["id"])
    await settle(stack)
    await espo.update_entity(DOC, doc["id"], {"xaiSyncStatus": "unclean", "xaiCollections": []})
    await settle(stack)  # the update webhook is our own fields only: ignored
    assert (await espo.get_entity(DOC, doc["id"]))["xaiSyncStatus"] == "unclean"
    rk2 = await new_rk(espo)  # no webhook makes it a collection: the reconciler does
    result = await trigger_cron_once(stack, fid, "document_sync_cron")
    assert result["result"] == "ok"
    await doc_when(espo, doc["id"])
    await wait_until(lambda: _has_collection(espo, RK, rk2["id"]), 30, "reconciled collection")
    await settle(stack)
    assert any(m["data"]["entity_id"] == rk2["id"] for m in await watch.refresh())
    assert len(await xai.files_named(filename)) == 1


# --------------------------------------------------------------------------- webhook intake


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, webhook_id: str = WEBHOOK_ID) -> dict[str, str]:
    """Headers of a signed EspoCRM webhook as the shipped nginx forwards it to the engine
    (raw bytes as application/octet-stream, semantics rows H1/H2; see tests/webhook_relay.py)."""
    return {"Content-Type": "application/octet-stream", "X-Original-Content-Type": "application/json",
            "Signature": sign_body(webhook_id, secret, body)}


@pytest.mark.parametrize("action", ["create", "update", "delete"])
async def test_document_webhook_signed_is_queued(stack: MotiaTester, action: str) -> None:
    doc_id = uuid.uuid4().hex[:17]
    watch = await stack.watch(f"vmh.document.{action}")
    body = json.dumps([{"id": doc_id, "name": "x"}]).encode()
    r = await stack.request("POST", f"/vmh/webhook/document/{action}", data=body, headers=signed(body))
    assert r.status == 200, r.text
    assert r.json() == {"accepted": 1, "rejected": []}
    msgs = await watch.wait_for(1)
    data = [m["data"] for m in msgs if m["data"]["entity_id"] == doc_id]
    assert data and data[0]["entity_type"] == DOC and data[0]["action"] == action and data[0]["source"] == "webhook"
    if action == "update":
        assert data[0]["changed_fields"] == ["name"]
    await settle(stack)


@pytest.mark.parametrize("headers", ["forged", "missing", "wrong-id"])
async def test_webhook_bad_signature_401_nothing_queued(stack: MotiaTester, headers: str) -> None:
    doc_id = uuid.uuid4().hex[:17]
    watch = await stack.watch("vmh.document.update")
    body = json.dumps([{"id": doc_id}]).encode()
    h = {
        "forged": signed(body, secret="not-the-secret"),
        "missing": {"Content-Type": "application/octet-stream"},
        "wrong-id": signed(body, webhook_id="other-hook"),
    }[headers]
    r = await stack.request("POST", "/vmh/webhook/document/update", data=body, headers=h)
    assert r.status == 401
    link_body = json.dumps([{"entityType": RK, "entityId": "abc", "documentId": doc_id}]).encode()
    r = await stack.request("POST", "/vmh/webhook/entity/link", data=link_body, headers=h)
    assert r.status == 401
    await asyncio.sleep(0.3)
    assert not [m for m in await watch.refresh() if m["data"]["entity_id"] == doc_id]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{\"a\": 1}", b"[]", b"42", json.dumps([{"id": "x"}] * 51).encode(), b"[{\"id\": \"bad id!\"}]"],
)
async def test_document_webhook_malformed_400(stack: MotiaTester, body: bytes) -> None:
    r = await stack.request("POST", "/vmh/webhook/document/create", data=body, headers=signed(body))
    assert r.status == 400 and r.json()["error"]


async def test_link_webhook_queues_the_document_event_only(stack: MotiaTester) -> None:
    """The document's sync asks for the entity's collection when it is missing or gone, so a
    link queues no collection check of its own (services.documents.events)."""
    doc_id, rk_id = uuid.uuid4().hex[:17], uuid.uuid4().hex[:17]
    w_col = await stack.watch("vmh.collection.ensure")
    w_doc = await stack.watch("vmh.document.update")
    body = json.dumps([
        {"entityType": RK, "entityId": rk_id, "documentId": doc_id},
        {"entityType": "CBankverbindungen", "entityId": rk_id, "documentId": doc_id},
        {"entityType": RK, "entityId": rk_id},
    ]).encode()
    r = await stack.request("POST", "/vmh/webhook/entity/link", data=body, headers=signed(body))
    assert r.status == 200, r.text
    answer = r.json()
    assert answer["accepted"] == 1 and [x["index"] for x in answer["rejected"]] == [1, 2]
    docs = [m["data"] for m in await w_doc.wait_for(1) if m["data"]["entity_id"] == doc_id]
    assert docs[0]["related_entity_id"] == rk_id and docs[0]["related_entity_type"] == RK
    await settle(stack)
    assert not [m for m in await w_col.refresh() if m["data"]["entity_id"] == rk_id]


async def test_unlink_webhook_malformed_400(stack: MotiaTester) -> None:
    body = json.dumps([{"entityType": "Nope", "entityId": "a", "documentId": "b"}]).encode()
    r = await stack.request("POST", "/vmh/webhook/entity/unlink", data=body, headers=signed(body))
    assert r.status == 400


async def test_document_webhook_partly_invalid_queues_the_valid_ones(stack: MotiaTester) -> None:
    good = uuid.uuid4().hex[:17]
    watch = await stack.watch("vmh.document.delete")
    body = json.dumps([{"id": good}, {"name": "no id"}, "text", {"id": good}]).encode()
    r = await stack.request("POST", "/vmh/webhook/document/delete", data=body, headers=signed(body))
    assert r.status == 200, r.text
    assert r.json()["accepted"] == 1 and [x["index"] for x in r.json()["rejected"]] == [1, 2]
    await watch.wait_for(1)
    await settle(stack)
    assert len([m for m in await watch.refresh() if m["data"]["entity_id"] == good]) == 1
