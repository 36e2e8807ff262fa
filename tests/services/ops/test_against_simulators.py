"""The entity view and the audit's executor against the four simulators in this process (no
engine, no worker): what they read, that they stay within their call budget, and that a system
that fails is named instead of failing the answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from iii_local.testing import MemoryState, mock_context
from services.calendar.sync import STATE_SCOPE
from services.documents.events import document_event
from services.ops.audit.executor import run_audit
from services.ops.audit.model import Check, Finding, FindingType, Repair, RepairAction
from services.ops.audit.repair import record_correction, repair_findings
from services.ops.audit.runs import repair_last, run_and_keep
from services.ops.audit.store import ReportStore
from services.ops.entities import EntityRef, OpsEntityType, parse_ref
from services.ops.resync import resync
from services.ops.status import VIEW_MAX_CALLS, entity_status
from services.ops.systems import Systems
from services.platform.container import advoware_from_settings, espocrm_from_settings, google_calendar_from_settings, xai_from_settings
from services.platform.deletion_guard import LocalDeletionGuard
from services.platform.ledger import Ledger, SyncKind
from services.platform.settings import load_settings
from simulators.sandbox import Simulators, start_simulators

RK = "Raeumungsklage"
DOC = "CDokumente"


@dataclass
class World:
    systems: Systems
    sims: Simulators

    async def sim(self, url: str, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as s:
            async with s.request(method, url + path, json=body) as resp:
                assert resp.status < 400, await resp.text()
                return await resp.json()


@pytest.fixture
async def world(redis_url: str) -> AsyncIterator[World]:
    base = {"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env", "REDIS_URL": redis_url}
    sims = await start_simulators(load_settings(base), demo=False, use_configured_ports=False)
    settings = load_settings({**base, **sims.env()})
    redis = aioredis.Redis.from_url(redis_url)
    systems = Systems(espocrm_from_settings(settings), xai_from_settings(settings), advoware_from_settings(settings),
                      google_calendar_from_settings(settings), MemoryState(), Ledger(redis, prefix=f"opst{uuid.uuid4().hex[:6]}"),
                      settings, LocalDeletionGuard())
    yield World(systems, sims)
    for client in (systems.espocrm, systems.xai, systems.advoware, systems.google):
        await client.close()
    await redis.aclose()
    await sims.stop()


async def synced_document(w: World) -> tuple[dict[str, Any], str, str]:
    """An eviction case with its collection and a document whose file is in it, marked clean."""
    s = w.systems
    rk = await s.espocrm.create_entity(RK, {"name": "RK Ops", "status": "Offen"})
    col = await s.xai.create_collection("RK Ops", {"espocrm_entity_type": RK, "espocrm_entity_id": rk["id"]})
    cid = str(col["collection_id"])
    await s.espocrm.update_entity(RK, rk["id"], {"xaiCollectionId": cid})
    fid = await s.xai.upload_file("vertrag.txt", b"Vertrag", "text/plain")
    await s.xai.add_to_collection(cid, fid, {"espocrm_document_id": "pending"})
    att = await s.espocrm.upload_attachment("vertrag.txt", b"Vertrag", "text/plain", DOC, "file")
    doc = await s.espocrm.create_entity(DOC, {"name": "vertrag.txt", "fileId": att["id"], "raeumungsklagenIds": [rk["id"]],
                                              "xaiId": fid, "xaiCollections": [cid], "xaiSyncStatus": "clean", "fileStatus": "synced"})
    await s.xai.remove_from_collection(cid, fid)
    await s.xai.add_to_collection(cid, fid, {"espocrm_document_id": doc["id"]})
    return doc, cid, fid


async def test_the_document_view_reads_every_side_and_explains_a_missing_membership(world: World) -> None:
    doc, cid, fid = await synced_document(world)
    ref = parse_ref("document", doc["id"])
    ok = await entity_status(world.systems, ref)
    assert ok["found"] and ok["counterparts"]["plan"]["required"] == [cid]
    assert ok["counterparts"]["xai"]["collections"][0]["present"] is True and ok["counterparts"]["xai"]["file"]["id"] == fid
    assert ok["problems"] == [] and 0 < ok["calls"] <= VIEW_MAX_CALLS
    await world.systems.xai.remove_from_collection(cid, fid)
    broken = await entity_status(world.systems, ref)
    assert broken["state"] == "attention" and any("lacks its file" in p for p in broken["problems"])

    async with aiohttp.ClientSession() as s:  # xAI down: the view still answers, naming it
        async with s.post(world.sims.xai.url + "/_sim/faults", json={"method": "*", "path": ".*", "status": 503}) as resp:
            assert resp.status == 200
    try:
        down = await entity_status(world.systems, ref, max_calls=5)
    finally:
        async with aiohttp.ClientSession() as s:
            await (await s.delete(world.sims.xai.url + "/_sim/faults")).read()
    assert down["found"] is True and "xai" in down["errors"] and down["calls"] <= 5


async def test_the_audit_finds_what_disagrees_and_a_spent_budget_reports_instead_of_guessing(world: World) -> None:
    doc, cid, fid = await synced_document(world)
    stray = await world.systems.xai.create_collection("left over", {"espocrm_entity_type": RK, "espocrm_entity_id": "gone-rk"})
    await world.systems.xai.remove_from_collection(cid, fid)
    asked = (c for c in [Check.COLLECTIONS, Check.DOCUMENTS])  # any iterable, read once
    report = await run_audit(world.systems, max_calls=500, max_seconds=30, trigger="test", checks=asked)
    assert report.complete, report.text()
    assert [c.check for c in report.checks] == [Check.COLLECTIONS, Check.DOCUMENTS]
    by_type = {(f.type.value, f.entity.id if f.entity else None) for f in report.findings}
    assert ("document_not_in_collection", doc["id"]) in by_type and ("collection_without_owner", "gone-rk") in by_type
    assert report.calls and sum(report.calls.values()) == sum(c.calls for c in report.checks)

    cut = await run_audit(world.systems, max_calls=2, max_seconds=30, trigger="test")
    assert not cut.complete and cut.checks[0].note == "call budget of 2 spent" and sum(cut.calls.values()) == 2
    assert cut.findings == [] and [c.value for c in cut.not_run] == ["documents", "parties", "bank_accounts", "calendar"]
    assert "Incomplete: collections: call budget of 2 spent" in cut.text()
    assert stray["collection_id"]


async def test_the_calendar_check_reads_both_calendars_and_the_resync_marks_the_ledger(world: World) -> None:
    s = world.systems
    calendar_id = s.settings.calendar.mapping["MM"]
    await world.sim(world.sims.google.url, "POST", "/_sim/seed", {"calendars": [{"id": calendar_id, "summary": "MM", "events": []}]})
    await s.state.set(STATE_SCOPE, "MM", {"version": 1, "sync_token": None, "pairs": {"4711": ["evt-gone", "a", "g"]}, "pending_events": []})
    report = await run_audit(s, max_calls=200, max_seconds=30, trigger="test", checks=[Check.CALENDAR])
    [finding] = report.findings
    assert finding.type.value == "calendar_pair_broken" and finding.details["frnr"] == 4711 and report.complete
    ctx = mock_context()
    body = await resync(s, parse_ref("employee", "MM"), ctx)
    assert [(q["kind"], q["entity_id"]) for q in body["queued"]] == [("calendar_employee", "MM")]
    assert ctx.topics() == ["calendar.sync.employee"] and ctx.enqueued[0]["data"]["full"] is True
    assert await s.ledger.get(SyncKind.CALENDAR_EMPLOYEE, "MM") is not None
    view = await entity_status(s, parse_ref("employee", "MM"))
    assert view["state"] == "syncing" and view["counterparts"]["google"]["pairs"] == 1
    assert any(a["message"].startswith("operator resync") for a in view["activity"])


async def test_a_deleted_record_shows_its_tombstone_and_a_held_delete_is_a_problem(world: World) -> None:
    from services.platform.deletion_guard import Deletion, System

    guard = world.systems.guard
    gone = Deletion(System.ESPOCRM, "CBeteiligte", "p-gone", "Advoware party 9 not found", record={"id": "p-gone", "name": "Alt"},
                    context={"advowareId": 9})
    assert (await guard.admit(gone)).allowed
    view = await entity_status(world.systems, parse_ref("party", "p-gone"))
    assert view["state"] == "not_found" and [t["entity_id"] for t in view["deletion_guard"]["tombstones"]] == ["p-gone"]
    guard.max_per_hour = 0  # the next delete is held until an operator confirms
    party = await world.systems.espocrm.create_entity("CBeteiligte", {"name": "Held", "lastName": "Held"})
    held = Deletion(System.ADVOWARE, "Beteiligte", "77", "EspoCRM party gone", context={"espoId": party["id"]},
                    retry={"topic": "vmh.beteiligte.delete", "data": {"entity_id": party["id"]}})
    assert not (await guard.admit(held)).allowed
    view = await entity_status(world.systems, parse_ref("party", party["id"]))
    assert [e["key"] for e in view["deletion_guard"]["held"]] == ["advoware:Beteiligte:77"]
    assert any("waits for an operator's confirm" in p for p in view["problems"])


async def test_differing_bank_accounts_are_read_again_with_one_list_per_party(world: World) -> None:
    s = world.systems
    party = await s.espocrm.create_entity("CBeteiligte", {"name": "Konten", "lastName": "Konten"})
    betnr = int((await s.advoware.create_party({"Name": "Konten", "ExterneId": party["id"]}))["BetNr"])
    await s.espocrm.update_entity("CBeteiligte", party["id"], {"advowareId": betnr})
    banks = []
    for iban in ("DE89370400440532013000", "DE02120300000000202051"):
        account = await s.advoware.create_bank_account(betnr, {"IBAN": iban, "Bank": "Bank", "Kontoinhaber": "Anna"})
        banks.append(await s.espocrm.create_entity("CBankverbindungen", {
            "name": iban, "beteiligteId": party["id"], "advowareId": account["Id"], "iban": iban, "bankName": "Bank",
            "kontoinhaber": "Anna", "syncStatus": "clean"}))
        await s.advoware.update_bank_account(betnr, int(account["Id"]), {"Kontoinhaber": "Bert"})
    listed: list[int] = []
    list_bank_accounts = s.advoware.list_bank_accounts

    async def counted(nr: int) -> Any:
        listed.append(nr)
        return await list_bank_accounts(nr)

    s.advoware.list_bank_accounts = counted
    report = await run_audit(s, max_calls=200, max_seconds=30, trigger="test", checks=[Check.BANK_ACCOUNTS])
    assert report.complete, report.text()
    assert sorted((f.type.value, f.entity.id if f.entity else None) for f in report.findings) == sorted(
        ("bank_account_differs", b["id"]) for b in banks)
    assert listed == [betnr, betnr]  # once to compare, once again before reporting: not once per differing account


async def test_a_repair_corrects_the_record_then_queues_the_sync_through_the_ledger_and_is_kept(world: World) -> None:
    s = world.systems
    doc, cid, fid = await synced_document(world)
    await s.xai.remove_from_collection(cid, fid)
    store, ctx = ReportStore(s.ledger.redis, s.ledger.prefix), mock_context()
    body = await run_and_keep(s, store, ctx, trigger="test", max_calls=500, max_seconds=30, checks=[Check.COLLECTIONS, Check.DOCUMENTS])
    [finding] = [f for f in body["findings"] if f["type"] == "document_not_in_collection"]
    done = await repair_last(s, store, ctx, [finding["id"], "no-such-id"])
    assert (done["queued"], done["unknown"], done["skipped"], done["failed"]) == (1, 1, 0, 0)
    assert (await s.espocrm.get_entity(DOC, doc["id"]))["xaiCollections"] == []  # the record first, then the sync
    assert ctx.topics() == ["vmh.document.update"] and await s.ledger.get(SyncKind.DOCUMENT, doc["id"]) is not None
    [repaired] = [f["repaired"] for f in (await store.last() or {})["findings"] if f["id"] == finding["id"]]
    assert repaired["status"] == "queued" and repaired["marks"][0]["entity_id"] == doc["id"]
    lines = await s.activity.recent([f"document:{doc['id']}"])
    assert any("document_not_in_collection" in line["message"] for line in lines)


async def test_repairs_mark_each_entity_once_and_a_failed_correction_queues_nothing(world: World) -> None:
    s = world.systems
    ref = EntityRef(OpsEntityType.DOCUMENT, "d-repair")
    resync = Repair(RepairAction.RESYNC, "queue its sync", ({"topic": "vmh.document.update", "data": {
        "entity_type": DOC, "entity_id": "d-repair", "action": "update", "source": "manual"}},))
    wrong = record_correction("d-other") | {"field": "name"}  # only xaiCollections may be corrected
    findings = [Finding(FindingType.FILE_WITHOUT_DOCUMENT, "a", "", "", "k1", ref, repair=resync),
                Finding(FindingType.DOCUMENT_NOT_IN_COLLECTION, "b", "", "", "k2", ref, repair=resync),
                Finding(FindingType.DOCUMENT_NOT_IN_COLLECTION, "c", "", "", "k3", ref,
                        repair=Repair(RepairAction.RECORD_AND_RESYNC, "fix", resync.events, wrong)),
                Finding(FindingType.COLLECTION_WITHOUT_OWNER, "d", "", "not ours", "k4", hint="delete it by hand")]
    ctx = mock_context()
    outcomes = await repair_findings(findings, espocrm=s.espocrm, ledger=s.ledger, ctx=ctx)
    assert [o.status.value for o in outcomes] == ["queued", "queued", "failed", "skipped"]
    assert outcomes[0].marks == outcomes[1].marks and len(outcomes[0].marks) == 1 and outcomes[2].marks == []
    assert ctx.topics() == ["vmh.document.update"] and "delete it by hand" in outcomes[3].detail


async def test_a_failing_system_leaves_only_its_checks_incomplete_and_a_spent_time_budget_stops_the_audit(world: World) -> None:
    await world.sim(world.sims.xai.url, "POST", "/_sim/faults", {"method": "*", "path": ".*", "status": 403})  # not retried
    try:
        report = await run_audit(world.systems, max_calls=200, max_seconds=30, trigger="test",
                                 checks=[Check.COLLECTIONS, Check.DOCUMENTS, Check.PARTIES])
    finally:
        await world.sim(world.sims.xai.url, "DELETE", "/_sim/faults")
    notes = {c.check: (c.complete, c.note or "") for c in report.checks}
    assert notes[Check.COLLECTIONS][0] is False and notes[Check.COLLECTIONS][1].startswith("stopped: ")
    assert notes[Check.DOCUMENTS] == (False, "needs the collections check, which did not finish")
    assert notes[Check.PARTIES] == (True, "") and not report.complete

    late = await run_audit(world.systems, max_calls=200, max_seconds=0, trigger="test")
    assert [(c.check, c.note) for c in late.checks] == [(Check.COLLECTIONS, "time budget spent")]
    assert len(late.not_run) == len(Check) - 1 and sum(late.calls.values()) == 0


async def test_an_entity_whose_sync_is_pending_is_left_out_and_counted(world: World) -> None:
    doc, cid, fid = await synced_document(world)
    await world.systems.xai.remove_from_collection(cid, fid)
    await world.systems.ledger.mark_events([document_event(doc["id"])])
    report = await run_audit(world.systems, max_calls=500, max_seconds=30, trigger="test", checks=[Check.COLLECTIONS, Check.DOCUMENTS])
    assert report.complete and not [f for f in report.findings if f.entity and f.entity.id == doc["id"]]
    assert [c.skipped_busy for c in report.checks] == [0, 1] and "1 left out (a sync is pending)" in report.text()
