"""End to end: the operators' API and command (services.ops) through the real stack (tests/e2e.py:
engine, worker, simulators, Redis). Each test breaks something on purpose in a simulator (a file
taken out of its collection in xAI, a party changed in Advoware, a calendar pair whose sides are
gone, a sync the ledger gave up on), finds it in the entity view and in the drift audit, sees
why, and repairs it through the ledger; `bitbylaw-ops` is run as the installed console script.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from iii_local.testing import MotiaTester
from services.clients.advoware.api import AdvowareAPI
from services.clients.espocrm import EspoCRMAPI
from services.platform.container import advoware_from_settings
from services.platform.ledger import SyncKind
from services.platform.settings import load_settings
from simulators.sandbox import Simulators
from tests.e2e import OPS_TOKEN
from tests.steps.ledger_helpers import settle_ledger, stack_ledger, trigger_cron_once
from tests.steps.test_beteiligte_sync import new_party
from tests.steps.test_document_sync import Xai, espo, new_rk, synced_document, wait_until, xai  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(180)
AUTH = {"Authorization": f"Bearer {OPS_TOKEN}"}
OPS = Path(sys.executable).parent / "bitbylaw-ops"
CRON_ID = "steps::Ops Drift Audit Cron::trigger::0"


@pytest.fixture
async def advo(stack: MotiaTester) -> AsyncIterator[AdvowareAPI]:
    client = advoware_from_settings(load_settings(dict(stack.env)))
    yield client
    await client.close()


async def ops(stack: MotiaTester, *args: str) -> tuple[int, str]:
    """Run the installed console script against the stack's engine."""
    env = {**os.environ, "OPS_URL": stack.base_url, "OPS_TOKEN": OPS_TOKEN}
    proc = await asyncio.create_subprocess_exec(str(OPS), *args, env=env, cwd="/", stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode() + err.decode()


async def view(stack: MotiaTester, kind: str, eid: str) -> dict[str, Any]:
    r = await stack.get(f"/ops/entities/{kind}/{eid}", headers=AUTH)
    assert r.status == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def audit(stack: MotiaTester, *checks: str) -> dict[str, Any]:
    r = await stack.post("/ops/audit/run", {"checks": list(checks)}, headers=AUTH)
    assert r.status == 200, r.text
    report = r.json()
    assert report["complete"], report["text"]
    return report  # type: ignore[no-any-return]


def findings_of(report: dict[str, Any], entity_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if (f.get("entity") or {}).get("id") == entity_id and (kind is None or f["type"] == kind)]


async def test_ops_endpoints_need_the_token_and_check_their_input(stack: MotiaTester) -> None:
    for method, path in (("GET", "/ops/entities/document/x1"), ("POST", "/ops/entities/document/x1/resync"), ("GET", "/ops/search?q=a"),
                         ("GET", "/ops/audit"), ("POST", "/ops/audit/run"), ("POST", "/ops/audit/repair")):
        r = await stack.request(method, path, headers={"Authorization": "Bearer wrong"})
        assert r.status == 401, (method, path, r.text)
        assert (await stack.request(method, path)).status == 401
    for path in ("/ops/entities/nope/x1", "/ops/entities/document/a%20b", "/ops/search", "/ops/search?q=a&limit=99", "/ops/audit?history=x"):
        r = await stack.get(path, headers=AUTH)
        assert r.status == 400 and r.json()["error"], (path, r.text)
    assert (await stack.post("/ops/audit/run", {"checks": ["nope"]}, headers=AUTH)).status == 400
    assert (await stack.post("/ops/audit/repair", {"ids": []}, headers=AUTH)).status == 400
    r = await stack.post("/ops/entities/employee/ZZ/resync", {}, headers=AUTH)
    assert r.status == 404 and "CALENDAR_MAPPING" in r.json()["error"]
    v = await view(stack, "document", "no-such-doc")
    assert v["found"] is False and v["state"] == "not_found" and v["actions"]["resync"]["path"] == "/ops/entities/document/no-such-doc/resync"


async def test_file_taken_out_of_its_collection_is_found_explained_and_repaired(
    stack: MotiaTester, espo: EspoCRMAPI, xai: Xai  # noqa: F811
) -> None:
    rk = await new_rk(espo)
    doc, filename, clean = await synced_document(stack, espo, b"Klageschrift " * 40, raeumungsklagenIds=[rk["id"]])
    cid, fid = clean["xaiCollections"][0], clean["xaiId"]
    before = await view(stack, "document", doc["id"])
    assert before["state"] == "in_sync", before["summary"]
    assert before["counterparts"]["xai"]["collections"] == [{"collection_id": cid, "required": True, "recorded": True,
                                                             "present": True, "status": before["counterparts"]["xai"]["collections"][0]["status"]}]
    runs = [a for a in before["activity"] if a["entity"] == f"document:{doc['id']}"]
    assert runs and all(a["trace_id"] for a in runs), before["activity"]  # the sync's own lines, with their traces

    async with xai.http.delete(f"{xai.url}/v1/collections/{cid}/documents/{fid}", headers=xai.mgmt) as resp:
        assert resp.status == 200, await resp.text()

    broken = await view(stack, "document", doc["id"])
    assert broken["state"] == "attention" and "lacks its file" in broken["summary"], broken["summary"]
    assert broken["counterparts"]["xai"]["collections"][0]["present"] is False
    code, out = await ops(stack, "status", "document", doc["id"])
    assert code == 1 and "lacks its file" in out and filename in out, out

    report = await audit(stack, "collections", "documents")
    [finding] = findings_of(report, doc["id"], "document_not_in_collection")
    assert cid in finding["summary"] and finding["repair"]["action"] == "record_and_resync", finding
    assert finding["id"] in report["text"] and "missing from a collection" in report["text"]
    r = await stack.post("/ops/audit/repair", {"ids": [finding["id"]]}, headers=AUTH)
    assert r.status == 200 and r.json()["queued"] == 1, r.text
    assert r.json()["outcomes"][0]["marks"][0]["kind"] == "document"
    await wait_until(lambda: _holds(xai, cid, fid), 40, "file back in its collection")
    await settle_ledger(stack)
    after = await view(stack, "document", doc["id"])
    assert after["state"] == "in_sync" and after["espocrm"]["xaiCollections"] == [cid] and after["espocrm"]["xaiId"] == fid
    assert any("ops repair" in a["message"] for a in after["activity"])
    assert not findings_of(await audit(stack, "collections", "documents"), doc["id"])
    overview = (await stack.get("/ops/audit?history=3", headers=AUTH)).json()
    assert overview["report"]["trigger"] == "http" and len(overview["history"]) >= 2


async def _holds(xai: Xai, cid: str, fid: str) -> bool:  # noqa: F811
    return fid in await xai.documents(cid)


async def test_party_changed_in_advoware_is_shown_side_by_side_found_and_repaired(
    stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, advo: AdvowareAPI  # noqa: F811
) -> None:
    party, betnr = await new_party(stack, sims, espo)
    assert (await view(stack, "party", party["id"]))["state"] == "in_sync"
    new_mail = f"neu-{uuid.uuid4().hex[:6]}@example.org"
    await advo.update_party(betnr, {"Email": new_mail})

    v = await view(stack, "party", party["id"])
    row = next(r for r in v["counterparts"]["fields"] if r["field"] == "emailAddress")
    assert row == {"field": "emailAddress", "espocrm": party["emailAddress"], "advoware": new_mail, "snapshot": party["emailAddress"],
                   "equal": False, "changed_in": "advoware"}, row
    assert v["state"] == "attention" and "differ from Advoware" in v["summary"]
    assert v["counterparts"]["advoware"]["betnr"] == betnr

    code, out = await ops(stack, "audit", "--check", "parties", "--json")
    assert code == 1, out
    [finding] = findings_of(json.loads(out), party["id"], "party_differs")
    assert finding["details"]["fields"]["emailAddress"]["changed_in"] == "advoware"
    code, out = await ops(stack, "repair", finding["id"])
    assert code == 0 and "1 queued" in out, out

    async def copied() -> Any:
        rec = await espo.get_entity("CBeteiligte", party["id"])
        return rec if rec.get("emailAddress") == new_mail else None

    await wait_until(copied, 40, "the Advoware change copied to EspoCRM")
    await settle_ledger(stack)
    assert (await view(stack, "party", party["id"]))["state"] == "in_sync"
    assert not findings_of(await audit(stack, "parties"), party["id"])


async def test_stale_calendar_pair_is_found_and_the_full_sync_forgets_it(stack: MotiaTester, sims: Simulators, http: Any) -> None:
    calendar_id = load_settings(dict(stack.env)).calendar.mapping["AB"]
    async with http.post(sims.google.url + "/_sim/seed", json={"calendars": [{"id": calendar_id, "summary": "AB", "events": []}]}) as resp:
        assert resp.status == 200, await resp.text()  # the calendar exists (idempotent; the stack starts without data)
    frnr, event_id = 900000000 + uuid.uuid4().int % 99999999, f"opsstale{uuid.uuid4().hex[:10]}"
    state = await stack.state_get("calendar_sync", "AB") or {"version": 1, "sync_token": None, "pairs": {}, "pending_events": []}
    state["pairs"][str(frnr)] = [event_id, "a-hash", "g-hash"]
    await stack.state_set("calendar_sync", "AB", state)

    report = await audit(stack, "calendar")
    [finding] = [f for f in report["findings"] if f["details"].get("frnr") == frnr]
    assert finding["type"] == "calendar_pair_broken" and "stale" in finding["summary"] and finding["entity"]["id"] == "AB"
    employee = await view(stack, "employee", "AB")
    assert employee["found"] is True and employee["counterparts"]["google"]["calendar_id"]
    r = await stack.post("/ops/audit/repair", {"ids": [finding["id"]]}, headers=AUTH)
    assert r.status == 200 and r.json()["outcomes"][0]["marks"][0]["kind"] == "calendar_employee", r.text

    async def forgotten() -> bool:
        return str(frnr) not in ((await stack.state_get("calendar_sync", "AB")) or {}).get("pairs", {})

    await wait_until(forgotten, 60, "the stale pair forgotten by the full sync")
    await settle_ledger(stack)
    assert not [f for f in (await audit(stack, "calendar"))["findings"] if f["details"].get("frnr") == frnr]


async def test_search_resync_and_a_dead_sync_seen_and_revived(stack: MotiaTester, espo: EspoCRMAPI, xai: Xai) -> None:  # noqa: F811
    rk = await new_rk(espo)
    doc, filename, clean = await synced_document(stack, espo, b"Mahnung", raeumungsklagenIds=[rk["id"]])
    found = (await stack.get("/ops/search", params={"q": filename[3:14]}, headers=AUTH)).json()
    assert any(h["entity"] == {"type": "document", "id": doc["id"], "espocrm_type": "CDokumente", "path": f"/ops/entities/document/{doc['id']}"}
               and h["matched"] == "name" for h in found["results"]), found
    by_file = (await stack.get("/ops/search", params={"q": clean["xaiId"]}, headers=AUTH)).json()
    assert [h["matched"] for h in by_file["results"] if h["entity"]["id"] == doc["id"]] == ["xaiId"]
    code, out = await ops(stack, "search", rk["id"])
    assert code == 0 and f"eviction_case {rk['id']}" in out and "(matched id)" in out, out

    ledger = stack_ledger(stack)  # the ledger gives up on a sync of it (as after 9 failed attempts)
    await ledger.mark(SyncKind.DOCUMENT, doc["id"], "vmh.document.update",
                      {"entity_type": "CDokumente", "entity_id": doc["id"], "action": "update", "source": "manual"})
    claim = await ledger.begin(SyncKind.DOCUMENT, doc["id"])
    assert claim is not None
    await ledger.fail(claim, "ApiError: xai 400: file type not accepted", retryable=False)
    dead = await view(stack, "document", doc["id"])
    assert dead["state"] == "dead" and "xai 400" in dead["summary"] and dead["ledger"][0]["state"] == "dead"
    code, out = await ops(stack, "ledger", "ls", "--dead", "--kind", "document")
    assert code == 0 and doc["id"] in out and "file type not accepted" in out, out

    code, out = await ops(stack, "resync", "document", doc["id"])
    assert code == 0 and f"queued document {doc['id']}" in out and "revived" in out, out
    await settle_ledger(stack)
    revived = await view(stack, "document", doc["id"])
    assert revived["state"] == "in_sync" and revived["ledger"] == []
    assert any(a["message"].startswith("operator resync") for a in revived["activity"])


async def test_the_nightly_audit_keeps_its_report(stack: MotiaTester) -> None:
    previous = ((await stack.get("/ops/audit", headers=AUTH)).json().get("report") or {}).get("id")
    await trigger_cron_once(stack, CRON_ID, "ops_audit_cron")

    async def kept() -> Any:
        report = (await stack.get("/ops/audit", headers=AUTH)).json()["report"]
        return report if report and report["id"] != previous and report["trigger"] == "cron" else None

    report = await wait_until(kept, 60, "the cron's report")
    assert [c["check"] for c in report["checks"]] == ["collections", "documents", "parties", "bank_accounts", "calendar"]
    logs = await stack.logs(wait_for="ops audit (cron)")
    assert any("ops audit (cron)" in r["message"] for r in logs)
    assert any(re.match(r"ops audit \(cron\): \d+ finding\(s\)", r["message"]) for r in logs), "the cron logs a count, not the list"
    code, out = await ops(stack, "audit", "--last")
    assert code in (0, 1) and "Drift audit of" in out and "(cron)" in out, out
