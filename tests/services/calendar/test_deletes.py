"""Calendar deletes caused by a gone counterpart, under the deletion guard
(services.calendar.deletes) against the Advoware and Google simulators: a wrong path, an outage
or an empty list deletes nothing, a second read that still finds the record keeps it, the guard
trips after its budget and an operator's confirm lets the held deletes through."""

from __future__ import annotations

from typing import Any

import pytest

from services.calendar.google_mapping import FRNR_PROPERTY
from services.calendar.sync import STATE_SCOPE
from services.clients.errors import ApiError
from services.platform.deletion_guard import LocalDeletionGuard
from tests.services.calendar.sims import CAL, Env, termin


async def paired(env: Env, *frnrs: int, guard: LocalDeletionGuard) -> dict[int, str]:
    """The appointments seeded and synced: FrNr → its Google event id."""
    await env.seed(*(termin(f, f"T{f}", day=2 + i) for i, f in enumerate(frnrs)))
    await env.sync(guard=guard).run()
    pairs = (await env.state.get(STATE_SCOPE, "MM"))["pairs"]
    return {int(f): p[0] for f, p in pairs.items()}


async def test_a_wrong_or_failing_appointment_path_deletes_no_event(env: Env) -> None:
    guard = LocalDeletionGuard()
    await paired(env, 6001, 6002, guard=guard)
    for status in (404, 503):
        await env.fault(env.a, method="GET", path="TermineActiveSync", status=status)
        with pytest.raises(ApiError):
            await env.sync(guard=guard).run()
        await env.sim(env.a, "DELETE", "/_sim/faults")
        assert len(await env.events()) == 2
    assert (await env.sync(guard=guard).run()).write_count == 0


async def test_an_empty_list_with_404s_while_pairs_are_known_deletes_nothing(env: Env) -> None:
    guard = LocalDeletionGuard(max_per_hour=1)
    await paired(env, 6101, 6102, 6103, guard=guard)
    await env.fault(env.a, method="GET", path="TermineActiveSync", status=200, body=[], times=1)  # the window list
    await env.fault(env.a, method="GET", path="TermineActiveSync", status=404, times=3)  # each appointment by FrNr
    report = await env.sync(guard=guard).run()
    assert report.writes.get("google_delete", 0) == 0 and len(report.item_errors) == 3
    assert all("listed nothing" in e["error"] for e in report.item_errors)
    assert len(await env.events()) == 3 and (await guard.status())["deletes_last_hour"] == 0


async def test_an_appointment_404_by_frnr_but_listed_on_its_day_keeps_its_event(env: Env) -> None:
    guard = LocalDeletionGuard()
    await paired(env, 6201, guard=guard)
    await env.fault(env.a, method="GET", path="TermineActiveSync", status=200, body=[], times=1)
    await env.fault(env.a, method="GET", path="TermineActiveSync", status=404, times=1)
    report = await env.sync(guard=guard).run()
    assert report.result.value == "partial" and "is listed on" in report.item_errors[0]["error"]
    assert len(await env.events()) == 1
    assert (await env.sync(guard=guard).run()).write_count == 0  # next run: all in line


async def test_the_guard_trips_after_its_budget_until_an_operator_confirms(env: Env) -> None:
    guard = LocalDeletionGuard(max_per_hour=2)
    events = await paired(env, 6301, 6302, 6303, 6304, 6305, guard=guard)
    for frnr in (6301, 6302, 6303, 6304):
        await env.advo.delete_appointment(frnr)
    report = await env.sync(guard=guard).run()
    assert report.writes == {"google_delete": 2} and len(report.item_errors) == 2
    assert all("the guard tripped" in e["error"] for e in report.item_errors)
    assert len(await env.events()) == 3
    tombs = await guard.tombstones()
    assert {t["system"] for t in tombs} == {"google"} and {t["entity_id"] for t in tombs} <= set(events.values())
    assert tombs[0]["record"]["summary"].startswith("T630") and tombs[0]["context"]["calendar_id"] == CAL
    approved = await guard.confirm()
    assert [e["retry"]["data"]["kuerzel"] for e in approved] == ["MM", "MM"]
    report = await env.sync(guard=guard).run()
    assert report.writes == {"google_delete": 2} and not report.item_errors
    assert [e["summary"] for e in await env.events()] == ["T6305"]


async def test_events_deleted_in_google_trip_the_guard_for_appointments(env: Env) -> None:
    guard = LocalDeletionGuard(max_per_hour=1)
    events = await paired(env, 6401, 6402, 6403, guard=guard)
    for event_id in events.values():
        await env.google.delete_event(CAL, event_id)
    report = await env.sync(guard=guard).run()
    assert report.writes == {"advoware_delete": 1} and len(report.item_errors) == 2
    assert len(await env.termine()) == 2
    [tomb] = await guard.tombstones()
    assert tomb["system"] == "advoware" and tomb["entity_type"] == "Termin" and tomb["record"]["Text"].startswith("T64")
    await guard.confirm()
    report = await env.sync(guard=guard).run()  # the held events were kept pending: read again
    assert report.writes == {"advoware_delete": 2} and await env.termine() == []


async def test_an_event_gone_while_another_carries_its_frnr_is_paired_not_deleted(env: Env) -> None:
    guard = LocalDeletionGuard()
    events = await paired(env, 6501, guard=guard)
    twin: dict[str, Any] = {k: v for k, v in (await env.google.get_event(CAL, events[6501]) or {}).items()
                            if k in ("summary", "start", "end", "extendedProperties")}
    assert twin["extendedProperties"]["private"][FRNR_PROPERTY] == "6501"
    created = await env.google.insert_event(CAL, twin)
    await env.google.delete_event(CAL, events[6501])
    report = await env.sync(guard=guard).run()
    assert report.writes.get("advoware_delete", 0) == 0 and [t["FrNr"] for t in await env.termine()] == [6501]
    assert (await env.state.get(STATE_SCOPE, "MM"))["pairs"]["6501"][0] == created["id"]


async def test_a_wrong_google_calendar_path_deletes_no_appointment(env: Env) -> None:
    guard = LocalDeletionGuard()
    await paired(env, 6601, 6602, guard=guard)
    await env.fault(env.g, method="GET", path="events", status=404)
    with pytest.raises(ApiError):
        await env.sync(guard=guard).run()
    assert len(await env.termine()) == 2
