"""Call budget: how many calls to EspoCRM and xAI each document event costs, end to end.

Counted in the simulators' request logs (`GET /_sim/requests`), not timed, so the figures
do not depend on the machine. Runs the real stack: Redis, the stand-in engine with the real
worker over src/steps/vmh, the EspoCRM simulator sending its webhooks (create, update with
the changed attributes, link/unlink) to the engine, the xAI simulator. Every scenario waits
until no webhook is in flight and the queues are idle, so the echoes of our own write-backs
and every follow-up event are in the count. The bench's own setup calls (creating the
record it then watches) are subtracted by name; the rows say what was counted.

Scenarios (issue #16's goals in brackets; before → after the work on it):
- new_document: a document created linked to one entity that has a collection, until every
  event it caused is handled [≤ 10 calls] 16 → 6 (7 when the link webhook lands during the run).
- redundant_update: a manual `vmh.document.update` for a clean, unchanged document [≤ 1
  EspoCRM call, 0 xAI calls] 4 → 1.
- echo: EspoCRM's update webhook for an attribute only the sync writes [0 calls] 0 → 0.
- link / unlink: one more document linked to (unlinked from) an entity with 1 and with N
  documents [calls independent of N] 16 / 12 → 6 / 3, the same for both sizes.

The minimum for a new document is 6, when EspoCRM's read of the document carries its link
ids (EspoCRM loads link-multiple fields into a read; the simulator's CDokumente has them):
1. GET the document (it names its linked entities: `raeumungsklagenIds`, ...);
2. GET the one link with ids (`CDokumente/{id}/raeumungsklagen`): the entity's
   `xaiCollectionId` and the fields of its collection rule, which no earlier call has;
3. GET the attachment (the bytes to upload and their MD5);
4. POST the file to xAI; 5. add it to the collection;
6. PUT the result back (`xaiId`, `xaiCollections`, `xaiSyncedHash`, clean) - once: no
   `pending_sync` write before the work (the journal in Motia state, written ahead of every
   xAI change, tells a stopped run instead), no read before the write (the PUT's answer shows
   a file replaced meanwhile).
Nothing else is needed: the create and link webhooks are one ledger mark (one run) when both
arrive before it starts; one arriving during the run makes the ledger run the mark again,
and that run must read the document (the mark keeps only the latest payload, so it may stand
for a change too): 7. The write-back's echo is dropped at intake (0); the link webhook asks
for no collection check of its own (the document's sync asks when the collection is missing
or gone). Where the CRM's read has no link ids (no link-multiple fields), step 2 lists all
three links: 8. Link: the same 6 (the file is not in xAI yet); unlink: read, remove from the
collection, write back = 3. A redundant event: one read, planned with the linked entities
remembered from the last full read (services.documents.links), which stays valid until the
links or an entity's collection change.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, session  # noqa: E402
from event_storm import Harness  # noqa: E402


class Counter:
    """Requests the simulators logged, by system, since the last `reset`."""

    def __init__(self, h: Harness) -> None:
        assert h.sims
        self.urls = {"espocrm": h.sims.espocrm.url, "xai": h.sims.xai.url}

    async def reset(self) -> None:
        async with session() as s:
            for url in self.urls.values():
                async with s.delete(f"{url}/_sim/requests") as r:
                    await r.read()

    async def calls(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        async with session() as s:
            for name, url in self.urls.items():
                async with s.get(f"{url}/_sim/requests") as r:
                    out[name] = [f"{x['method']} {x['path']}" for x in await r.json() if not x["path"].startswith("/_sim")]
        return out


async def settle(h: Harness) -> None:
    """Until EspoCRM has no webhook queued and the engine's queues are idle, twice in a row."""
    assert h.sims and h.tester
    quiet, seen = 0, -1
    async with session() as s:
        while quiet < 2:
            async with s.post(f"{h.sims.espocrm.url}/_sim/webhooks/flush", params={"timeout": "30"}) as r:
                await r.read()
            await h.tester.wait_idle(timeout=120, settle=0.3)
            await asyncio.sleep(0.3)
            async with s.get(f"{h.sims.espocrm.url}/_sim/webhook-deliveries") as r:
                delivered = len(await r.json())
            quiet = quiet + 1 if delivered == seen else 0
            seen = delivered


async def wait_clean(h: Harness, doc_ids: list[str], timeout: float = 120) -> None:
    """Poll the simulator's raw records (`/_sim/entities`, not logged) until the documents are clean."""
    assert h.sims
    deadline = asyncio.get_running_loop().time() + timeout
    async with session() as s:
        while True:
            async with s.get(f"{h.sims.espocrm.url}/_sim/entities/CDokumente") as r:
                clean = {d["id"] for d in await r.json() if d.get("xaiSyncStatus") == "clean"}
            if set(doc_ids) <= clean:
                return
            if asyncio.get_running_loop().time() > deadline:
                async with s.get(f"{h.sims.espocrm.url}/_sim/entities/CDokumente") as r:
                    stuck = [d for d in await r.json() if d["id"] in set(doc_ids) - clean]
                raise TimeoutError(f"not clean after {timeout}s: {stuck}")
            await asyncio.sleep(0.1)


def figures(prefix: str, calls: dict[str, list[str]], minus: dict[str, int] | None = None) -> dict[str, Any]:
    minus = minus or {}
    espo = len(calls["espocrm"]) - minus.get("espocrm", 0)
    xai = len(calls["xai"]) - minus.get("xai", 0)
    return {f"{prefix}_espocrm_calls": espo, f"{prefix}_xai_calls": xai, f"{prefix}_calls": espo + xai}


async def link_unlink(h: Harness, count: Counter, size: int) -> dict[str, Any]:
    """Link one more document to a new entity (with a collection) that already has `size`
    documents, then unlink it: `link_{size}_*`, `unlink_{size}_*` (the bench's POST/DELETE of
    the link subtracted)."""
    assert h.espo
    rk = await h.rk_with_collection()
    ids = []
    for i in range(size):
        a = await h.espo.upload_attachment(f"n{i}.txt", f"n{i} {uuid.uuid4()}".encode(), "text/plain", "CDokumente", "file")
        d = await h.espo.create_entity("CDokumente", {"name": f"n{i}.txt", "fileId": a["id"], "raeumungsklagenIds": [rk]})
        ids.append(d["id"])
    await wait_clean(h, ids)
    await settle(h)
    a = await h.espo.upload_attachment("late.txt", f"late {uuid.uuid4()}".encode(), "text/plain", "CDokumente", "file")
    late = await h.espo.create_entity("CDokumente", {"name": "late.txt", "fileId": a["id"]})
    await settle(h)
    out: dict[str, Any] = {}
    await count.reset()
    await h.espo.link_entities("Raeumungsklage", rk, "dokumente", late["id"])
    await wait_clean(h, [late["id"]])
    await settle(h)
    calls = await count.calls()
    out.update(figures(f"link_{size}", calls, {"espocrm": 1}))
    out[f"link_{size}_trace"] = "; ".join(calls["espocrm"][1:] + calls["xai"])
    await count.reset()
    await h.espo.unlink_entities("Raeumungsklage", rk, "dokumente", late["id"])
    await settle(h)
    calls = await count.calls()
    out.update(figures(f"unlink_{size}", calls, {"espocrm": 1}))
    out[f"unlink_{size}_trace"] = "; ".join(calls["espocrm"][1:] + calls["xai"])
    return out


async def main(linked_documents: int = 20) -> None:
    h = await Harness().start()
    try:
        assert h.espo and h.tester
        count = Counter(h)
        rk = await h.rk_with_collection()
        await settle(h)
        out: dict[str, Any] = {}

        # new_document: attachment upload + create are the bench's own two calls.
        await count.reset()
        att = await h.espo.upload_attachment("budget.txt", b"budget " * 1000, "text/plain", "CDokumente", "file")
        doc = await h.espo.create_entity("CDokumente", {"name": "budget.txt", "fileId": att["id"], "raeumungsklagenIds": [rk]})
        await wait_clean(h, [doc["id"]])
        await settle(h)
        calls = await count.calls()
        out.update(figures("new_document", calls, {"espocrm": 2}))
        out["new_document_trace"] = "; ".join(calls["espocrm"][2:] + calls["xai"])

        # redundant_update: a manual event for the now clean, unchanged document.
        await count.reset()
        await h.tester.enqueue("vmh.document.update", {"entity_type": "CDokumente", "entity_id": doc["id"], "action": "update", "source": "manual"})
        await settle(h)
        calls = await count.calls()
        out.update(figures("redundant_update", calls))
        out["redundant_update_trace"] = "; ".join(calls["espocrm"] + calls["xai"])

        # echo: EspoCRM reports an update of a field only the sync writes (one PUT by the bench).
        await count.reset()
        await h.espo.update_entity("CDokumente", doc["id"], {"xaiLastSync": "2026-01-01 00:00:00"})
        await settle(h)
        calls = await count.calls()
        out.update(figures("echo", calls, {"espocrm": 1}))

        # link / unlink with 1 and with N documents already linked to an entity.
        for size in (1, linked_documents):
            out.update(await link_unlink(h, count, size))
        for what in ("link", "unlink"):  # calls added by the documents already linked: 0 is the goal
            out[f"{what}_growth_calls"] = out[f"{what}_{linked_documents}_calls"] - out[f"{what}_1_calls"]
        out["targets"] = "new_document <= 10; redundant_update espocrm <= 1, xai 0; echo 0; link/unlink independent of linked_documents"
        emit("call_budget", out)
    finally:
        await h.stop()


if __name__ == "__main__":
    asyncio.run(main())
