"""End to end: the sync ledger's steps in the stack (tests/e2e.py: LEDGER_SWEEP_CRON every
second, OPS_TOKEN set): the sweeper delivers a mark whose event was lost, the operators'
view and replay answer with the right statuses, untagged (hand-enqueued) events are adopted."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from iii_local.testing import MotiaTester
from services.platform.ledger import SyncKind, read_tag
from tests.e2e import OPS_TOKEN
from tests.steps.ledger_helpers import settle_ledger, stack_ledger

pytestmark = pytest.mark.timeout(120)
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}


async def test_the_sweeper_delivers_a_mark_whose_event_was_lost(stack: MotiaTester) -> None:
    """Marked, never enqueued (as if the engine lost the event): after the grace the sweeper
    enqueues it tagged, the handler runs (the document does not exist: nothing to do) and
    clears the mark."""
    doc_id = "lost" + uuid.uuid4().hex[:12]
    watch = await stack.watch("vmh.document.update")
    ledger = stack_ledger(stack)
    mark = await ledger.mark(SyncKind.DOCUMENT, doc_id, "vmh.document.update",
                             {"entity_type": "CDokumente", "entity_id": doc_id, "action": "update", "source": "manual"})
    started = time.monotonic()
    while await ledger.get(SyncKind.DOCUMENT, doc_id) is not None:
        assert time.monotonic() - started < 30, "the sweeper never delivered the mark"
        await asyncio.sleep(0.2)
    assert time.monotonic() - started >= ledger.grace - 0.5  # not before the grace
    sent = [m["data"] for m in await watch.refresh() if m["data"]["entity_id"] == doc_id]
    assert sent and read_tag(sent[0]) == (SyncKind.DOCUMENT, mark.seq)
    logs = await stack.logs(wait_for="ledger sweep: re-enqueued")
    assert any("ledger sweep: re-enqueued" in r["message"] for r in logs)


async def test_ops_view_and_replay_need_the_bearer_token(stack: MotiaTester) -> None:
    assert (await stack.get("/ops/ledger")).status == 401
    assert (await stack.get("/ops/ledger", headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await stack.post("/ops/ledger/replay", {}, headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await stack.get("/ops/ledger?kind=nope", headers=AUTH)).status == 400
    r = await stack.get("/ops/ledger?dead=1&kind=party", headers=AUTH)
    assert r.status == 200, r.text
    body = r.json()
    assert set(body["stats"]) == {k.value for k in SyncKind} and body["list"] == "dead" and body["kind"] == "party"
    assert all(m["state"] == "dead" and m["kind"] == "party" for m in body["marks"])
    r = await stack.post("/ops/ledger/replay", {"kind": "party", "ids": ["no-such-party"]}, headers=AUTH)
    assert r.status == 200 and r.json()["replayed"] == 0


async def test_hand_enqueued_event_is_adopted_and_cleared(stack: MotiaTester) -> None:
    doc_id = "hand" + uuid.uuid4().hex[:12]
    await stack.enqueue("vmh.document.update", {"entity_type": "CDokumente", "entity_id": doc_id, "action": "update", "source": "manual"})
    await settle_ledger(stack)
    assert await stack_ledger(stack).get(SyncKind.DOCUMENT, doc_id) is None
    logs = await stack.logs(wait_for=f"adopted an untagged document event for {doc_id}")
    assert any(f"adopted an untagged document event for {doc_id}" in r["message"] for r in logs)
