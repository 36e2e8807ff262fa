"""The sync plan (services.calendar.plan): who changed, what is written, conflicts."""

from __future__ import annotations

from datetime import date

from services.calendar.advoware_mapping import advoware_hash, item_from_advoware
from services.calendar.google_mapping import google_body, google_hash
from services.calendar.plan import ActionKind, Pair, Side, SyncInput, plan_sync, verification_needed
from services.platform.settings import ConflictRule

WINDOW = (date(2026, 5, 1), date(2026, 12, 31))


def rec(frnr: int, text: str = "Termin", *, day: str = "2026-06-10", modified: str = "2026-06-01T08:00:00.000Z", anwalt: str = "MM", **kw):
    r = {
        "FrNr": frnr,
        "Text": text,
        "Datum": f"{day}T09:00:00Z",
        "DatumBis": f"{day}T00:00:00Z",
        "UhrzeitBis": "10:00:00",
        "Anwalt": anwalt,
        "ZuletztGeaendertAm": modified,
    }
    r.update(kw)
    return r


def event_for(record, event_id: str, *, updated: str = "2026-06-01T08:00:00.000Z", tagged: bool = True, **changes):
    body = google_body(item_from_advoware(record), record["FrNr"] if tagged else None)
    body.update(id=event_id, updated=updated, status="confirmed", **changes)
    return body


def synced(record, event_id: str) -> tuple[Pair, dict]:
    ev = event_for(record, event_id)
    return Pair(record["FrNr"], event_id, advoware_hash(record), google_hash(ev)), ev


def make(pairs=(), appointments=(), events=(), deleted=(), full=False, rule=ConflictRule.NEWEST_WINS):
    return SyncInput(
        kuerzel="MM",
        pairs={p.frnr: p for p in pairs},
        appointments={r["FrNr"]: r for r in appointments},
        advoware_deleted=frozenset(deleted),
        events={e["id"]: e for e in events},
        google_full=full,
        window=WINDOW,
        conflict_rule=rule,
    )


def kinds(plan):
    return [a.kind for a in plan.actions]


def test_nothing_changed_no_actions_incremental_and_full():
    r = rec(1)
    pair, ev = synced(r, "ev00001")
    assert plan_sync(make([pair], [r])).actions == []
    plan = plan_sync(make([pair], [r], [ev], full=True))
    assert plan.actions == [] and plan.writes == 0
    # Our own write echoed back in the incremental feed (same content, new etag/updated)
    echoed = dict(ev, etag="new", updated="2026-06-02T00:00:00Z")
    assert plan_sync(make([pair], [rec(1, modified="2026-06-02T00:00:00.000Z")], [echoed])).actions == []


def test_new_on_either_side():
    plan = plan_sync(make([], [rec(1)], [{"id": "g0001", "status": "confirmed", "summary": "Neu", "start": {"date": "2026-06-01"}, "end": {"date": "2026-06-02"}}]))
    assert sorted(kinds(plan)) == sorted([ActionKind.CREATE_GOOGLE, ActionKind.CREATE_ADVOWARE])
    create_a = next(a for a in plan.actions if a.kind is ActionKind.CREATE_ADVOWARE)
    assert create_a.item.summary == "Neu" and create_a.item.all_day and create_a.event_id == "g0001"
    create_g = next(a for a in plan.actions if a.kind is ActionKind.CREATE_GOOGLE)
    assert create_g.frnr == 1 and create_g.a_hash == advoware_hash(rec(1))
    assert plan.writes == 3  # insert; create + tag


def test_changed_in_advoware_only_updates_google():
    r = rec(1)
    pair, _ = synced(r, "ev00001")
    plan = plan_sync(make([pair], [rec(1, "Neu")]))
    assert kinds(plan) == [ActionKind.UPDATE_GOOGLE]
    assert plan.actions[0].item.summary == "Neu" and plan.actions[0].event_id == "ev00001"


def test_changed_in_google_only_updates_advoware():
    r = rec(1)
    pair, ev = synced(r, "ev00001")
    plan = plan_sync(make([pair], [r], [dict(ev, summary="Geändert")]))
    assert kinds(plan) == [ActionKind.UPDATE_ADVOWARE]
    assert plan.actions[0].item.summary == "Geändert" and not plan.actions[0].tag


def test_conflict_newest_wins_and_advoware_wins():
    r = rec(1)
    pair, ev = synced(r, "ev00001")
    a_new = rec(1, "A", modified="2026-06-05T10:00:00.000Z")
    g_newer = dict(ev, summary="G", updated="2026-06-05T11:00:00.000Z")
    plan = plan_sync(make([pair], [a_new], [g_newer]))
    assert kinds(plan) == [ActionKind.UPDATE_ADVOWARE] and plan.actions[0].item.summary == "G"
    assert plan.conflicts[0].winner is Side.GOOGLE
    g_older = dict(g_newer, updated="2026-06-05T09:00:00.000Z")
    plan = plan_sync(make([pair], [a_new], [g_older]))
    assert kinds(plan) == [ActionKind.UPDATE_GOOGLE] and plan.conflicts[0].winner is Side.ADVOWARE
    plan = plan_sync(make([pair], [a_new], [g_newer], rule=ConflictRule.ADVOWARE_WINS))
    assert kinds(plan) == [ActionKind.UPDATE_GOOGLE] and plan.actions[0].item.summary == "A"
    assert "advoware_wins" in plan.conflicts[0].reason


def test_same_change_on_both_sides_writes_nothing():
    r = rec(1)
    pair, ev = synced(r, "ev00001")
    plan = plan_sync(make([pair], [rec(1, "X")], [dict(ev, summary="X")]))
    assert kinds(plan) == [ActionKind.REMEMBER] and plan.writes == 0 and not plan.conflicts


def test_deleted_in_advoware_deletes_google():
    r = rec(1)
    pair, _ = synced(r, "ev00001")
    plan = plan_sync(make([pair], [], [], deleted=[1]))
    assert kinds(plan) == [ActionKind.DELETE_GOOGLE] and plan.actions[0].event_id == "ev00001"


def test_unverified_missing_appointment_is_never_deleted():
    r = rec(1)
    pair, _ = synced(r, "ev00001")
    plan = plan_sync(make([pair], [], []))
    assert plan.actions == [] and plan.notes


def test_moved_out_of_window_is_kept_or_forgotten():
    old = rec(1, day="2026-03-01")  # before the window, still exists (verified)
    pair, _ = synced(old, "ev00001")
    assert kinds(plan_sync(make([pair], [old]))) == [ActionKind.FORGET]
    future = rec(2, day="2027-06-01")  # after the window: keep, nothing to do
    pair2, _ = synced(future, "ev00002")
    assert plan_sync(make([pair2], [future])).actions == []


def test_deleted_in_google_deletes_advoware():
    r = rec(1)
    pair, _ = synced(r, "ev00001")
    plan = plan_sync(make([pair], [r], [{"id": "ev00001", "status": "cancelled"}]))
    assert kinds(plan) == [ActionKind.DELETE_ADVOWARE] and plan.actions[0].frnr == 1


def test_delete_against_change():
    r = rec(1)
    pair, ev = synced(r, "ev00001")
    # Google deleted, Advoware changed → re-create the event
    plan = plan_sync(make([pair], [rec(1, "neu")], [{"id": "ev00001", "status": "cancelled"}]))
    assert kinds(plan) == [ActionKind.CREATE_GOOGLE] and plan.conflicts
    # Advoware deleted, Google changed → newest_wins re-creates the appointment, advoware_wins deletes
    changed = dict(ev, summary="neu")
    plan = plan_sync(make([pair], [], [changed], deleted=[1]))
    assert kinds(plan) == [ActionKind.CREATE_ADVOWARE] and plan.conflicts[0].winner is Side.GOOGLE
    plan = plan_sync(make([pair], [], [changed], deleted=[1], rule=ConflictRule.ADVOWARE_WINS))
    assert kinds(plan) == [ActionKind.DELETE_GOOGLE]


def test_deleted_on_both_sides_forgets():
    r = rec(1)
    pair, _ = synced(r, "ev00001")
    plan = plan_sync(make([pair], [], [{"id": "ev00001", "status": "cancelled"}], deleted=[1]))
    assert kinds(plan) == [ActionKind.FORGET] and plan.writes == 0


def test_reassigned_appointment_leaves_this_calendar():
    r = rec(1)
    pair, _ = synced(r, "ev00001")
    plan = plan_sync(make([pair], [rec(1, anwalt="AB")]))
    assert kinds(plan) == [ActionKind.DELETE_GOOGLE]


def test_adoption_of_event_carrying_frnr():
    r = rec(7)
    ev = event_for(r, "ev00007")
    plan = plan_sync(make([], [r], [ev]))
    assert kinds(plan) == [ActionKind.REMEMBER] and plan.writes == 0
    plan = plan_sync(make([], [r], [dict(ev, summary="other", updated="2026-06-05T00:00:00Z")]))
    assert kinds(plan) == [ActionKind.UPDATE_ADVOWARE] and plan.conflicts


def test_orphan_event_of_deleted_appointment_is_deleted():
    r = rec(9)
    ev = event_for(r, "ev00009")
    plan = plan_sync(make([], [], [ev], deleted=[9]))
    assert kinds(plan) == [ActionKind.DELETE_GOOGLE]


def test_cancelled_unknown_instances_and_negative_frnr_are_ignored():
    inst = {"id": "m_20260610", "recurringEventId": "m", "status": "confirmed", "start": {"date": "2026-06-10"}, "end": {"date": "2026-06-11"}}
    ooo = dict(inst, id="o1", recurringEventId=None, eventType="outOfOffice")
    plan = plan_sync(make([], [rec(-5)], [{"id": "zz", "status": "cancelled"}, inst, ooo]))
    assert plan.actions == []


def test_untagged_paired_event_gets_tagged():
    r = rec(1)
    ev = event_for(r, "ev00001", tagged=False)
    pair = Pair(1, "ev00001", advoware_hash(r), google_hash(ev))
    plan = plan_sync(make([pair], [r], [ev]))
    assert kinds(plan) == [ActionKind.TAG_GOOGLE]
    plan = plan_sync(make([pair], [r], [dict(ev, summary="neu")]))
    assert kinds(plan) == [ActionKind.UPDATE_ADVOWARE] and plan.actions[0].tag and plan.writes == 2


def test_verification_needed():
    r1, r2 = rec(1), rec(2)
    p1, ev1 = synced(r1, "ev00001")
    p2, _ = synced(r2, "ev00002")
    foreign = event_for(rec(3), "ev00003")  # unpaired event carrying FrNr 3, not listed
    frnrs, event_ids = verification_needed({1: p1, 2: p2}, [1], {"ev00001": ev1, "ev00003": foreign}, google_full=True)
    assert frnrs == {2, 3} and event_ids == {"ev00002"}
    frnrs, event_ids = verification_needed({1: p1, 2: p2}, [1, 2], {}, google_full=False)
    assert frnrs == set() and event_ids == set()


def test_writes_proportional_to_changes():
    records = [rec(i, f"T{i}") for i in range(1, 201)]
    pairs, events = [], []
    for r in records:
        p, ev = synced(r, f"ev{r['FrNr']:05d}")
        pairs.append(p)
        events.append(ev)
    records[3] = rec(4, "changed")
    events[10] = dict(events[10], location="anders")
    plan = plan_sync(make(pairs, records, events, full=True))
    assert sorted(kinds(plan)) == sorted([ActionKind.UPDATE_GOOGLE, ActionKind.UPDATE_ADVOWARE])
    assert plan.writes == 2
