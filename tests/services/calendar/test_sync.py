"""One employee's sync run (services.calendar.sync.EmployeeSync) against the Advoware and
Google simulators in-process, with an in-memory state: recovery after failures, no
duplicates, adoption, reassignment, conflict rule."""

from __future__ import annotations

import pytest

from services.calendar.google_mapping import event_frnr
from services.calendar.sync import STATE_SCOPE, STATUS_SCOPE, GoogleReadMode, run_employee_sync
from services.clients.errors import ApiError
from services.platform.settings import ConflictRule
from tests.services.calendar.sims import CAL, Env, new_event, termin


async def test_first_run_then_idle_run(env: Env):
    await env.seed(termin(5001, "A"), termin(5002, "B", Privat=1))
    await env.google.insert_event(CAL, new_event("G"))
    report = await env.sync().run()
    assert report.google_mode is GoogleReadMode.FULL
    assert report.writes == {"google_insert": 2, "advoware_create": 1, "google_patch": 1}
    assert sorted(e["summary"] for e in await env.events()) == ["A", "B", "G"]
    assert sorted(t["Text"] for t in await env.termine()) == ["A", "B", "G"]
    assert all(event_frnr(e) for e in await env.events())
    await env.sim(env.a, "DELETE", "/_sim/requests")
    await env.sim(env.g, "DELETE", "/_sim/requests")
    report = await env.sync().run()
    assert report.google_mode is GoogleReadMode.INCREMENTAL and report.write_count == 0
    assert await env.writes() == 0


async def test_failure_mid_run_keeps_progress_and_retry_makes_no_duplicates(env: Env):
    await env.seed(termin(5101, "A1"), termin(5102, "A2"))
    await env.google.insert_event(CAL, new_event("G1"))
    # the Advoware create (after both Google inserts) fails with a 503 once
    await env.fault(env.a, method="POST", path="TermineActiveSync", status=503, times=1)
    with pytest.raises(ApiError):
        await env.sync().run()
    saved = await env.state.get(STATE_SCOPE, "MM")
    assert set(saved["pairs"]) == {"5101", "5102"} and saved["sync_token"] is None
    report = await env.sync().run()
    assert report.writes == {"advoware_create": 1, "google_patch": 1}
    events = await env.events()
    assert sorted(e["summary"] for e in events) == ["A1", "A2", "G1"]
    assert sorted(t["Text"] for t in await env.termine()) == ["A1", "A2", "G1"]


async def test_tagging_failure_is_repaired_next_run(env: Env):
    ev = await env.google.insert_event(CAL, new_event("G3"))
    await env.fault(env.g, method="PATCH", path="events", status=403, times=1)
    report = await env.sync().run()
    assert report.item_errors and len(await env.termine()) == 1
    assert event_frnr(await env.google.get_event(CAL, ev["id"])) is None
    report = await env.sync().run()
    assert report.writes == {"google_patch": 1}  # tagged, not created again
    [t] = await env.termine()
    assert event_frnr(await env.google.get_event(CAL, ev["id"])) == t["FrNr"]
    assert (await env.sync().run()).write_count == 0


async def test_permanent_item_error_is_retried_next_run(env: Env):
    ev = await env.google.insert_event(CAL, new_event("G2"))
    await env.sync().run()  # creates the appointment and tags the event
    await env.google.patch_event(CAL, ev["id"], {"summary": "G2 neu"})
    # a permanent error while writing Advoware: recorded, the event is re-read next run
    await env.fault(env.a, method="PUT", path="TermineActiveSync", status=400, times=1)
    report = await env.sync().run()
    assert report.item_errors and report.result.value == "partial"
    assert (await env.state.get(STATE_SCOPE, "MM"))["pending_events"] == [ev["id"]]
    report = await env.sync().run()
    assert report.writes == {"advoware_update": 1}
    assert [t["Text"] for t in await env.termine()] == ["G2 neu"]


async def test_lost_state_adopts_instead_of_duplicating(env: Env):
    await env.seed(termin(5201, "A"))
    await env.google.insert_event(CAL, new_event("G"))
    await env.sync().run()
    doc = await env.state.get(STATE_SCOPE, "MM")
    doc["pairs"] = {}  # state lost, sync token kept: the twins are not in the incremental feed
    await env.state.set(STATE_SCOPE, "MM", doc)
    report = await env.sync().run()
    assert report.writes.get("google_insert", 0) == 0 and report.writes.get("advoware_create", 0) == 0
    assert len(await env.events()) == 2 and len(await env.termine()) == 2
    # and a full resync without any state pairs everything again, without writes
    await env.state.set(STATE_SCOPE, "MM", None)
    report = await env.sync(full=True).run()
    assert report.write_count == 0 and report.pairs == 2


async def test_reassigned_appointment_leaves_the_calendar(env: Env):
    await env.seed(termin(5301, "A"))
    await env.sync().run()
    [ev] = await env.events()
    await env.seed(termin(5301, "A", Anwalt="AB"))
    report = await env.sync().run()
    assert report.writes == {"google_delete": 1}
    assert await env.events() == []
    await env.advo.get_appointment(5301)  # untouched in Advoware
    assert ev["id"]


async def test_conflict_rule_advoware_wins(env: Env):
    await env.seed(termin(5401, "A"))
    await env.sync().run()
    [ev] = await env.events()
    await env.google.patch_event(CAL, ev["id"], {"summary": "G newer"})
    await env.seed(termin(5401, "A changed", ZuletztGeaendertAm="2000-01-01T00:00:00.000Z"))
    settings = env.settings.model_copy(update={"conflict_rule": ConflictRule.ADVOWARE_WINS})
    report = await env.sync(settings=settings).run()
    assert report.conflicts and report.conflicts[0]["winner"] == "advoware"
    assert (await env.google.get_event(CAL, ev["id"]))["summary"] == "A changed"
    # the same situation under newest_wins: Google (newer) wins
    await env.google.patch_event(CAL, ev["id"], {"summary": "G again"})
    await env.seed(termin(5401, "A again", ZuletztGeaendertAm="2000-01-01T00:00:00.000Z"))
    report = await env.sync().run()
    assert report.conflicts[0]["winner"] == "google"
    assert (await env.advo.get_appointment(5401))["Text"] == "G again"


async def test_google_deletion_of_unchanged_and_advoware_404_orphans(env: Env):
    await env.seed(termin(5501, "A"), termin(5502, "B"))
    await env.sync().run()
    by = {e["summary"]: e for e in await env.events()}
    await env.google.delete_event(CAL, by["A"]["id"])
    await env.advo.delete_appointment(5502)
    report = await env.sync().run()
    assert report.writes == {"advoware_delete": 1, "google_delete": 1}
    assert await env.events() == [] and await env.termine() == []
    assert (await env.state.get(STATE_SCOPE, "MM"))["pairs"] == {}


async def test_run_employee_sync_records_status(env: Env):
    await env.fault(env.g, method="GET", path="events", status=403)
    with pytest.raises(ApiError):
        await run_employee_sync("MM", CAL, advoware=env.advo, google=env.google, state=env.state, settings=env.settings, logger=env.log)
    status = await env.state.get(STATUS_SCOPE, "MM")
    assert status["result"] == "failed" and "403" in status["error"] and status["consecutive_failures"] == 1
    assert any("failed" in m for m in env.log.messages("error"))
    await env.sim(env.g, "DELETE", "/_sim/faults")
    await run_employee_sync("MM", CAL, advoware=env.advo, google=env.google, state=env.state, settings=env.settings, logger=env.log)
    status = await env.state.get(STATUS_SCOPE, "MM")
    assert status["result"] == "ok" and status["consecutive_failures"] == 0 and status["error"] is None
