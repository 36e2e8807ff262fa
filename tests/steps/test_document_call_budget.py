"""Call budgets of the document sync through the real stack (issue #16), counted in the
simulators' request logs, not timed: EspoCRM simulator → signed webhooks → engine → worker →
xAI simulator. A change that adds calls fails here.

- a redundant event for a clean, unchanged document: at most 1 EspoCRM call, no xAI call;
- the echo of our own write-back (an update webhook reporting only fields the sync writes):
  no call at all; a change of another field is no echo and is looked at (one read);
- a new document linked to one entity with a collection, end to end with every event it
  causes (create and link webhooks, the echoes of the write-back): at most 7 calls, the
  minimum of bench/call_budget.py (6) plus the one read a second webhook may cost (one read
  per run of the document's sync, the runs counted in the ledger's activity lines);
- linking or unlinking a document costs the same whether the entity has 1 or 3 documents.

The session stack is shared, so calls are attributed by the ids in their paths (the
document, its attachment, the entity, the collection, the xAI file) and uploads by the
document's unique file name. A call that names none of them (a list or a search) is not seen
here: tests/services/documents/test_calls.py counts every call the sync makes, in process.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from iii_local.testing import MotiaTester
from services.clients.espocrm import EspoCRMAPI
from services.platform.activity import ActivityLog
from simulators.sandbox import Simulators
from tests.steps import test_document_sync as documents
from tests.steps.ledger_helpers import stack_ledger
from tests.steps.test_document_sync import DOC, RK, Xai, ensure_collection, new_document, new_rk, settle, synced_document, wait_until

pytestmark = pytest.mark.timeout(180)
espo, xai = documents.espo, documents.xai  # the document tests' fixtures


async def quiet(stack: MotiaTester, sims: Simulators, http: aiohttp.ClientSession) -> float:
    """No webhook queued in EspoCRM and the ledger settled: the time from which to count."""
    async with http.post(f"{sims.espocrm.url}/_sim/webhooks/flush", params={"timeout": "30"}) as r:
        assert r.status == 200
    await settle(stack)
    return time.time()


async def calls(sims: Simulators, http: aiohttp.ClientSession, since: float, *ids: str) -> tuple[list[str], list[str]]:
    """`METHOD path` of the EspoCRM and the xAI calls since `since` whose path names one of `ids`."""
    out: list[list[str]] = []
    for url in (sims.espocrm.url, sims.xai.url):
        async with http.get(f"{url}/_sim/requests", params={"path": "|".join(i for i in ids if i)}) as r:
            rows = [x for x in await r.json() if x["ts"] >= since and not x["path"].startswith("/_sim")]
        out.append([f"{x['method']} {x['path']}" for x in sorted(rows, key=lambda x: x["ts"])])
    return out[0], out[1]


async def raw_status(sims: Simulators, http: aiohttp.ClientSession, doc_id: str, status: str = "clean") -> dict[str, Any]:
    """Wait until the document has `status`, reading the simulator's raw records (not logged,
    unlike the API, so the polling is not counted)."""

    async def check() -> Any:
        async with http.get(f"{sims.espocrm.url}/_sim/entities/{DOC}") as r:
            return next((d for d in await r.json() if d["id"] == doc_id and d.get("xaiSyncStatus") == status), None)

    return await wait_until(check, 40, f"document {doc_id} {status}")  # type: ignore[no-any-return]


async def webhook_reported(sims: Simulators, http: aiohttp.ClientSession, since: float, doc_id: str, attribute: str) -> bool:
    """EspoCRM delivered an update webhook for `doc_id` naming `attribute` since `since`."""
    async with http.get(f"{sims.espocrm.url}/_sim/webhook-deliveries") as r:
        rows = await r.json()
    return any(
        d["ts"] >= since and d["event"] == f"{DOC}.update" and doc_id in d["body"] and f'"{attribute}"' in d["body"]
        and 200 <= int(d["status"] or 0) < 300
        for d in rows
    )


async def document_runs(stack: MotiaTester, doc_id: str) -> int:
    """Runs of the document's sync that completed (the ledger's `done` or `moved` line in the
    document's recent activity, services.platform.activity), whatever the sync did."""
    ledger = stack_ledger(stack)
    lines = await ActivityLog(ledger.redis, ledger.prefix).recent([f"document:{doc_id}"])
    return sum(1 for line in lines if line["message"] in (f"ledger: document {doc_id}: done", f"ledger: document {doc_id}: moved"))


async def rk_with_collection(stack: MotiaTester, espo: EspoCRMAPI) -> tuple[dict[str, Any], str]:
    rk = await new_rk(espo)
    await ensure_collection(stack, espo, rk)
    return rk, str((await espo.get_entity(RK, rk["id"]))["xaiCollectionId"])


async def test_redundant_event_and_echo_budgets(stack: MotiaTester, sims: Simulators, http: aiohttp.ClientSession, espo: EspoCRMAPI, xai: Xai) -> None:
    rk, cid = await rk_with_collection(stack, espo)
    doc, filename, clean = await synced_document(stack, espo, b"budget: redundant and echo", raeumungsklagenIds=[rk["id"]])
    ids = (doc["id"], doc["fileId"], rk["id"], cid, clean["xaiId"])

    # a redundant event for the clean, unchanged document: one read, nothing else
    since = await quiet(stack, sims, http)
    await stack.enqueue("vmh.document.update", {"entity_type": DOC, "entity_id": doc["id"], "action": "update", "source": "manual"})
    await quiet(stack, sims, http)
    assert await calls(sims, http, since, *ids) == ([f"GET /api/v1/{DOC}/{doc['id']}"], [])

    # the echo of our own write: EspoCRM reports only a field the sync writes → no call
    since = await quiet(stack, sims, http)
    await espo.update_entity(DOC, doc["id"], {"xaiLastSync": "2026-01-01 00:00:00"})
    await quiet(stack, sims, http)
    assert await webhook_reported(sims, http, since, doc["id"], "xaiLastSync")  # it did arrive
    assert await calls(sims, http, since, *ids) == ([f"PUT /api/v1/{DOC}/{doc['id']}"], [])  # the test's own PUT only

    # not an echo: another field changed → looked at (one read), still nothing to do
    since = await quiet(stack, sims, http)
    await espo.update_entity(DOC, doc["id"], {"description": "edited by a user"})
    await quiet(stack, sims, http)
    assert await webhook_reported(sims, http, since, doc["id"], "description")
    assert await calls(sims, http, since, *ids) == ([f"PUT /api/v1/{DOC}/{doc['id']}", f"GET /api/v1/{DOC}/{doc['id']}"], [])
    assert len(await xai.files_named(filename)) == 1
    assert (await espo.get_entity(DOC, doc["id"]))["xaiSyncStatus"] == "clean"


async def test_new_document_end_to_end_budget(stack: MotiaTester, sims: Simulators, http: aiohttp.ClientSession, espo: EspoCRMAPI, xai: Xai) -> None:
    rk, cid = await rk_with_collection(stack, espo)
    since = await quiet(stack, sims, http)
    doc, filename = await new_document(espo, b"budget: a new document", raeumungsklagenIds=[rk["id"]])
    clean = await raw_status(sims, http, doc["id"])
    await quiet(stack, sims, http)
    espo_calls, xai_calls = await calls(sims, http, since, doc["id"], doc["fileId"], rk["id"], cid, clean["xaiId"])
    uploads = len(await xai.files_named(filename))
    reads = espo_calls.count(f"GET /api/v1/{DOC}/{doc['id']}")
    assert uploads == 1 and reads in (1, 2), espo_calls  # a second webhook during the run costs one read
    assert reads == await document_runs(stack, doc["id"]), espo_calls  # that read, and no other: one per run
    assert sorted(espo_calls) == sorted(
        [f"GET /api/v1/{DOC}/{doc['id']}"] * reads
        + [f"GET /api/v1/{DOC}/{doc['id']}/raeumungsklagen", f"GET /api/v1/Attachment/file/{doc['fileId']}", f"PUT /api/v1/{DOC}/{doc['id']}"]
    )
    assert xai_calls == [f"POST /v1/collections/{cid}/documents/{clean['xaiId']}"]
    assert len(espo_calls) + len(xai_calls) + uploads <= 7


async def link_unlink_costs(
    stack: MotiaTester, sims: Simulators, http: aiohttp.ClientSession, espo: EspoCRMAPI, xai: Xai, already: int
) -> tuple[int, int]:
    """Calls of linking one more document to an entity with `already` documents, then unlinking it."""
    rk, cid = await rk_with_collection(stack, espo)
    for i in range(already):
        await synced_document(stack, espo, f"budget: linked {i} {rk['id']}".encode(), raeumungsklagenIds=[rk["id"]])
    late, filename = await new_document(espo, f"budget: late {rk['id']}".encode())
    await raw_status(sims, http, late["id"], "no_sync")
    since = await quiet(stack, sims, http)
    await espo.link_entities(RK, rk["id"], "dokumente", late["id"])
    linked = await raw_status(sims, http, late["id"])
    await quiet(stack, sims, http)
    ids = (late["id"], late["fileId"], rk["id"], cid, linked["xaiId"])
    e, x = await calls(sims, http, since, *ids)
    link = len(e) - 1 + len(x) + len(await xai.files_named(filename))  # without the test's own POST
    since = await quiet(stack, sims, http)
    await espo.unlink_entities(RK, rk["id"], "dokumente", late["id"])
    await raw_status(sims, http, late["id"], "no_sync")
    await quiet(stack, sims, http)
    e, x = await calls(sims, http, since, *ids)
    assert await xai.documents(cid) and linked["xaiId"] not in await xai.documents(cid)
    return link, len(e) - 1 + len(x)


async def test_link_and_unlink_cost_does_not_grow_with_the_linked_documents(
    stack: MotiaTester, sims: Simulators, http: aiohttp.ClientSession, espo: EspoCRMAPI, xai: Xai
) -> None:
    one = await link_unlink_costs(stack, sims, http, espo, xai, 1)
    three = await link_unlink_costs(stack, sims, http, espo, xai, 3)
    assert one == three, (one, three)
    link, unlink = one
    assert link <= 6 and unlink <= 3, one  # link: read, list, download, upload, add, write; unlink: read, remove, write
