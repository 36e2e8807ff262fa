"""The operators' page at /ops/ in headless Chromium against the real stack (tests/e2e.py: the
stand-in engine, the real worker, the simulators, Redis): sign in, search, open an entity, break
things on purpose in the simulators (a file taken out of its xAI collection, a party changed in
Advoware, a sync the ledger gave up on), see it and why on the page, run the drift audit from
the page, repair from the page, and see it resolved; a wrong token is refused and signing out
forgets the token. Screenshots: docs/ops-page-*.png with CONSOLE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from iii_local.testing import MotiaTester
from services.clients.advoware.api import AdvowareAPI
from services.clients.espocrm import EspoCRMAPI
from services.platform.ledger import SyncKind
from simulators.sandbox import Simulators
from tests.e2e import OPS_TOKEN
from tests.steps.ledger_helpers import settle_ledger, stack_ledger
from tests.steps.test_beteiligte_sync import new_party
from tests.steps.test_document_sync import Xai, espo, new_rk, synced_document, wait_until, xai  # noqa: F401 (fixtures)
from tests.steps.test_ops_api import advo  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(300)
WAIT = 20_000  # ms, for Playwright waits
TOKEN_KEY = "bitbylaw.ops.token"


async def shown(page: Any, view: str) -> None:
    """Wait until the page has drawn `view` (app.js sets body[data-shown] when done)."""
    await page.wait_for_function(f"() => document.body.dataset.shown === {json.dumps(view)}", timeout=WAIT)


async def go(page: Any, stack: MotiaTester, route: str, view: str) -> None:
    await page.goto(f"{stack.base_url}/ops/#/{route}")
    await shown(page, view)


async def sign_in(page: Any, stack: MotiaTester, token: str = OPS_TOKEN) -> None:
    await page.goto(f"{stack.base_url}/ops/")
    await shown(page, "signin")
    await page.fill('[data-testid="token"]', token)
    await page.click('[data-testid="signin-form"] button[type="submit"]')


async def stored_token(page: Any) -> Any:
    return await page.evaluate(f"() => sessionStorage.getItem({json.dumps(TOKEN_KEY)})")


def csp_watch(page: Any) -> list[str]:
    """Console messages about the CSP (a blocked inline script or style, a foreign request)."""
    seen: list[str] = []
    page.on("console", lambda msg: seen.append(msg.text) if "Content Security Policy" in msg.text else None)
    return seen


async def test_a_wrong_token_is_refused_and_not_kept(page: Any, stack: MotiaTester) -> None:
    await sign_in(page, stack, "not-the-ops-token")
    error = page.locator('[data-testid="signin-error"]')
    await error.filter(has_text="Wrong token").wait_for(timeout=WAIT)
    assert await stored_token(page) is None
    assert await page.locator("#nav").is_hidden() and await page.locator("#view").is_hidden()
    await page.goto(f"{stack.base_url}/ops/#/audit")  # no way around the sign-in
    await shown(page, "signin")


async def test_signing_out_forgets_the_token(page: Any, stack: MotiaTester) -> None:
    watch = csp_watch(page)
    await sign_in(page, stack)
    await shown(page, "search")
    assert await stored_token(page) == OPS_TOKEN
    assert await page.locator("#signin").is_hidden() and await page.locator("#nav").is_visible()
    assert OPS_TOKEN not in page.url and await page.evaluate("() => document.cookie") == ""
    await page.click('[data-testid="sign-out"]')
    await shown(page, "signin")
    assert await stored_token(page) is None
    assert await page.locator("#view").is_hidden() and await page.locator("#view > *").count() == 0  # nothing left on the page
    await page.reload()
    await shown(page, "signin")
    assert not watch, watch


async def test_break_find_explain_and_repair_from_the_page(
    page: Any, stack: MotiaTester, sims: Simulators, espo: EspoCRMAPI, xai: Xai, advo: AdvowareAPI, ops_shots: Path  # noqa: F811
) -> None:
    watch = csp_watch(page)
    rk = await new_rk(espo)
    doc, filename, clean = await synced_document(stack, espo, b"Mietvertrag " * 40, raeumungsklagenIds=[rk["id"]])
    cid, fid = clean["xaiCollections"][0], clean["xaiId"]
    party, betnr = await new_party(stack, sims, espo)

    # Find the document by a part of its name and open its view.
    await sign_in(page, stack)
    await shown(page, "search")
    await page.fill('[data-testid="search-input"]', filename[3:14])
    await page.press('[data-testid="search-input"]', "Enter")
    hit = page.locator('[data-testid="search-results"] a', has_text=filename)
    await hit.wait_for(timeout=WAIT)
    await page.screenshot(path=str(ops_shots / "ops-page-search.png"), full_page=True)
    await hit.click()
    await shown(page, "entity")
    state = page.locator('[data-testid="state"]')
    assert await state.get_attribute("data-state") == "in_sync", await page.locator('[data-testid="summary"]').inner_text()
    row = page.locator('[data-testid="collections"] tbody tr', has_text=cid)
    assert "yes" in (await row.inner_text()).split("\t")[3]
    assert await page.locator('[data-testid="activity"] code.trace').count() > 0  # its sync's lines, with trace ids

    # Break it: the file taken out of its collection in xAI. The view says so, and why.
    async with xai.http.delete(f"{xai.url}/v1/collections/{cid}/documents/{fid}", headers=xai.mgmt) as resp:
        assert resp.status == 200, await resp.text()
    await page.click('[data-testid="reload"]')
    await page.locator('[data-testid="state"][data-state="attention"]').wait_for(timeout=WAIT)
    assert "lacks its file" in await page.locator('[data-testid="problems"]').inner_text()
    assert "no" in (await page.locator('[data-testid="collections"] tbody tr', has_text=cid).inner_text()).split("\t")[3]
    await page.screenshot(path=str(ops_shots / "ops-page-document.png"), full_page=True)

    # Break a party: changed in Advoware. Its fields side by side name the side that changed.
    new_mail = f"neu-{uuid.uuid4().hex[:6]}@example.org"
    await advo.update_party(betnr, {"Email": new_mail})
    await go(page, stack, f"entity/party/{party['id']}", "entity")
    assert await page.locator('[data-testid="state"]').get_attribute("data-state") == "attention"
    mail = page.locator('[data-testid="side-by-side"] tr.differs', has_text="emailAddress")
    assert new_mail in await mail.inner_text() and "changed in advoware" in await mail.inner_text()
    await page.screenshot(path=str(ops_shots / "ops-page-party.png"), full_page=True)

    # The drift audit, run from the page, finds both, with why.
    await go(page, stack, "audit", "audit")
    await page.click('[data-testid="run-audit"]')
    doc_finding = page.locator(f'[data-testid="finding"][data-type="document_not_in_collection"][data-entity="{doc["id"]}"]')
    party_finding = page.locator(f'[data-testid="finding"][data-type="party_differs"][data-entity="{party["id"]}"]')
    await doc_finding.wait_for(timeout=40_000)
    assert cid in await doc_finding.inner_text() and "Why:" in await doc_finding.inner_text()
    assert "emailAddress" in await party_finding.inner_text()
    group = page.locator('[data-testid="finding-group"][data-type="document_not_in_collection"] h3')
    assert "missing from a collection" in await group.inner_text()
    await page.screenshot(path=str(ops_shots / "ops-page-audit.png"), full_page=True)

    # Repair the document's finding alone, then all the rest; the syncs put both right.
    await doc_finding.locator('[data-testid="repair"]').click()
    await page.locator("#toast", has_text="1 queued").wait_for(timeout=WAIT)
    await doc_finding.locator('[data-testid="repaired"]').wait_for(timeout=WAIT)
    await page.click('[data-testid="repair-all"]')
    await page.locator("#toast", has_text="queued").wait_for(timeout=WAIT)
    await party_finding.locator('[data-testid="repaired"]').wait_for(timeout=WAIT)

    async def file_back() -> bool:
        return fid in await xai.documents(cid)

    async def mail_copied() -> bool:
        return (await espo.get_entity("CBeteiligte", party["id"])).get("emailAddress") == new_mail

    await wait_until(file_back, 40, "the file back in its collection")
    await wait_until(mail_copied, 40, "the Advoware change copied to EspoCRM")
    await settle_ledger(stack)

    # Resolved: a new audit has neither finding, and both views are in sync.
    before = await page.locator('[data-testid="report-summary"]').inner_text()
    await page.click('[data-testid="run-audit"]')
    await page.wait_for_function("t => document.querySelector('[data-testid=\"report-summary\"]')?.innerText !== t", arg=before, timeout=40_000)
    assert await doc_finding.count() == 0 and await party_finding.count() == 0
    for kind, eid in (("document", doc["id"]), ("party", party["id"])):
        await go(page, stack, f"entity/{kind}/{eid}", "entity")
        assert await page.locator('[data-testid="state"]').get_attribute("data-state") == "in_sync", kind
    assert not watch, watch


async def test_a_dead_sync_is_seen_in_the_ledger_and_replayed_from_the_page(
    page: Any, stack: MotiaTester, espo: EspoCRMAPI, ops_shots: Path  # noqa: F811
) -> None:
    rk = await new_rk(espo)
    doc, _, _ = await synced_document(stack, espo, b"Mahnung", raeumungsklagenIds=[rk["id"]])
    ledger = stack_ledger(stack)  # the ledger gives up on a sync of it (as after its last failed attempt)
    await ledger.mark(SyncKind.DOCUMENT, doc["id"], "vmh.document.update",
                      {"entity_type": "CDokumente", "entity_id": doc["id"], "action": "update", "source": "manual"})
    claim = await ledger.begin(SyncKind.DOCUMENT, doc["id"])
    assert claim is not None
    await ledger.fail(claim, "ApiError: xai 400: file type not accepted", retryable=False)

    await sign_in(page, stack)
    await shown(page, "search")
    await go(page, stack, f"entity/document/{doc['id']}", "entity")
    assert await page.locator('[data-testid="state"]').get_attribute("data-state") == "dead"
    assert "file type not accepted" in await page.locator('[data-testid="summary"]').inner_text()

    await go(page, stack, "ledger?dead=1", "ledger")
    dead = page.locator('[data-testid="ledger-marks"] tbody tr', has_text=doc["id"])
    assert "file type not accepted" in await dead.inner_text()
    assert await dead.get_by_role("link", name="view").get_attribute("href") == f"#/entity/document/{doc['id']}"
    stats = page.locator('[data-testid="ledger-stats"] tbody tr', has_text="document")
    assert int((await stats.inner_text()).split("\t")[3]) >= 1
    await page.screenshot(path=str(ops_shots / "ops-page-ledger.png"), full_page=True)
    await dead.locator('[data-testid="replay-one"]').click()
    await page.locator("#toast", has_text="Replayed 1 mark(s)").wait_for(timeout=WAIT)
    await page.locator('[data-testid="ledger-marks"] tbody tr', has_text=doc["id"]).wait_for(state="detached", timeout=WAIT)
    await settle_ledger(stack)
    await go(page, stack, f"entity/document/{doc['id']}", "entity")
    assert await page.locator('[data-testid="state"]').get_attribute("data-state") == "in_sync"

    await page.click('[data-testid="resync"]')  # "resync now": through the ledger, logged as the operator's
    await page.locator("#toast", has_text=f"document {doc['id']}").wait_for(timeout=WAIT)
    await settle_ledger(stack)
    await page.click('[data-testid="reload"]')
    await page.locator('[data-testid="activity"] tr', has_text="operator resync").first.wait_for(timeout=WAIT)


async def test_a_worker_killed_during_a_sync_is_seen_and_its_sync_taken_over(
    page: Any, stack: MotiaTester, sims_reset: Simulators, espo: EspoCRMAPI, xai: Xai, http: Any, ops_shots: Path  # noqa: F811
) -> None:
    """The document's repair (resync now) hangs in xAI and its worker is SIGKILLed meanwhile: the
    ledger shows the run and how long its claim lasts, then the sweeper hands it to the restarted
    worker ("took over a run whose worker died") and the document ends in sync."""
    rk = await new_rk(espo)
    doc, _, clean = await synced_document(stack, espo, b"Kuendigung " * 30, raeumungsklagenIds=[rk["id"]])
    cid, fid = clean["xaiCollections"][0], clean["xaiId"]
    async with xai.http.delete(f"{xai.url}/v1/collections/{cid}/documents/{fid}", headers=xai.mgmt) as resp:
        assert resp.status == 200, await resp.text()
    fault = {"method": "POST", "path": f"^/v1/collections/{cid}/documents/", "latency_ms": 8000, "times": 1}
    async with http.post(sims_reset.xai.url + "/_sim/faults", json=fault) as resp:
        assert resp.status == 200, await resp.text()

    await sign_in(page, stack)
    await shown(page, "search")
    await go(page, stack, f"entity/document/{doc['id']}", "entity")
    await page.click('[data-testid="resync"]')
    auth = {"Authorization": f"Bearer {OPS_TOKEN}"}

    async def running() -> bool:
        marks = (await stack.get(f"/ops/entities/document/{doc['id']}", headers=auth)).json()["ledger"]
        return any(m["in_flight"] for m in marks)

    await wait_until(running, 20, "the resync running")
    await stack.kill_worker()

    await go(page, stack, "ledger", "ledger")
    row = page.locator('[data-testid="ledger-marks"] tbody tr', has_text=doc["id"])
    assert "claim until" in await row.inner_text()  # a dead worker's run: the claim runs out, then the sweeper hands it on
    await page.screenshot(path=str(ops_shots / "ops-page-worker-killed.png"), full_page=True)

    async def taken_over() -> bool:
        v = (await stack.get(f"/ops/entities/document/{doc['id']}", headers=auth)).json()
        return v["state"] == "in_sync" and any("worker died" in a["message"] for a in v["activity"])

    await wait_until(taken_over, 60, "the run taken over and the document in sync")
    assert fid in await xai.documents(cid)
    await go(page, stack, f"entity/document/{doc['id']}", "entity")
    assert await page.locator('[data-testid="state"]').get_attribute("data-state") == "in_sync"
    await page.locator('[data-testid="activity"] tr', has_text="took over a run whose worker died").first.wait_for(timeout=WAIT)


async def test_data_is_shown_as_text_never_run(page: Any, stack: MotiaTester, espo: EspoCRMAPI) -> None:  # noqa: F811
    """A record whose name is markup (EspoCRM holds what its users type) is shown as those characters."""
    name = f'<img src=x onerror="window.pwned=1"><b>RK {uuid.uuid4().hex[:6]}</b>'
    rk = await espo.create_entity("Raeumungsklage", {"name": name, "status": "Offen"})
    await sign_in(page, stack)
    await shown(page, "search")
    await page.fill('[data-testid="search-input"]', rk["id"])
    await page.press('[data-testid="search-input"]', "Enter")
    hit = page.locator('[data-testid="search-results"] a', has_text="onerror")
    await hit.wait_for(timeout=WAIT)
    assert await hit.inner_text() == name
    await hit.click()
    await shown(page, "entity")
    assert name in await page.locator("h2").first.inner_text()
    assert await page.locator("#view img").count() == 0 and "<b>" in await page.locator("h2").first.inner_text()
    assert await page.evaluate("() => window.pwned") is None
