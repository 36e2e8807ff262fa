"""Calendar diff: plan a sync of 10,000 paired appointments against 10,000 events with 1%
changed (half on each side), plus a few new and deleted items on both sides.

Measures the CPU time of `plan_sync` (mapping + fingerprinting both sides + planning, as
one run does after reading) and counts the write operations it plans.
Targets: under 1 s CPU; planned writes proportional to the changes only.
"""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, machine  # noqa: E402

from services.calendar.advoware_mapping import advoware_hash, item_from_advoware  # noqa: E402
from services.calendar.google_mapping import google_body, google_hash  # noqa: E402
from services.calendar.plan import ActionKind, Pair, SyncInput, plan_sync  # noqa: E402
from services.platform.settings import ConflictRule  # noqa: E402


def build(n: int, changed_pct: float, today: date, *, extras: bool = True) -> tuple[SyncInput, int]:
    """A synced state of `n` pairs, then `changed_pct`% changed; returns the input and the
    number of writes the changes call for."""
    records: dict[int, dict] = {}
    events: dict[str, dict] = {}
    pairs: dict[int, Pair] = {}
    for i in range(n):
        frnr = 100000 + i
        d = today + timedelta(days=i % 180 - 30)
        rec = {
            "FrNr": frnr,
            "Text": f"Termin {i}",
            "Notiz": "Notiz " * (i % 5),
            "Ort": "Raum " + str(i % 7),
            "Datum": f"{d.isoformat()}T{8 + i % 9:02d}:00:00Z",
            "DatumBis": f"{d.isoformat()}T00:00:00Z",
            "UhrzeitBis": f"{9 + i % 9:02d}:30:00",
            "Abwesenheit": 1 if i % 50 == 0 else 0,
            "Privat": 1 if i % 13 == 0 else 0,
            "Dauertermin": 1 if i % 40 == 0 else 0,
            "Turnus": 1 if i % 40 == 0 else 0,
            "TurnusArt": 2 if i % 40 == 0 else 0,
            "Anwalt": "MM",
            "ZuletztGeaendertAm": "2026-01-01T00:00:00.000Z",
        }
        event_id = f"ev{frnr:08d}"
        ev = google_body(item_from_advoware(rec), frnr)
        ev.update(id=event_id, status="confirmed", updated="2026-01-01T00:00:00.000Z", etag=f'"{i}"')
        records[frnr] = rec
        events[event_id] = ev
        pairs[frnr] = Pair(frnr, event_id, advoware_hash(rec), google_hash(ev))

    changes = int(n * changed_pct / 100)
    expected = 0
    frnrs = list(records)
    step = max(1, n // max(1, changes))
    for k, frnr in enumerate(frnrs[::step][:changes]):
        if k % 2 == 0:
            records[frnr] = {**records[frnr], "Text": records[frnr]["Text"] + " (geändert)", "ZuletztGeaendertAm": "2026-02-01T00:00:00.000Z"}
        else:
            eid = pairs[frnr].event_id
            events[eid] = {**events[eid], "location": "Landgericht", "updated": "2026-02-01T00:00:00.000Z"}
        expected += 1
    # 10 new appointments, 10 new events (create + tag = 2 writes), 5 deleted per side
    for j in range(10 if extras else 0):
        frnr = 900000 + j
        records[frnr] = {**records[frnrs[j]], "FrNr": frnr, "Text": f"Neu A {j}"}
        events[f"new{j:08d}"] = {**events[pairs[frnrs[j]].event_id], "id": f"new{j:08d}", "summary": f"Neu G {j}", "extendedProperties": {}}
        expected += 1 + 2
    deleted_frnrs = set()
    for j in range(5 if extras else 0):
        frnr = frnrs[-1 - j]
        del records[frnr]
        deleted_frnrs.add(frnr)  # verified with a GET: 404
        eid = pairs[frnrs[-10 - j]].event_id
        events[eid] = {"id": eid, "status": "cancelled"}
        expected += 2
    window = (today - timedelta(days=30), today + timedelta(days=180))
    inp = SyncInput("MM", pairs, records, frozenset(deleted_frnrs), events, True, window, ConflictRule.NEWEST_WINS)
    return inp, expected


def main(n: int = 10000, changed_pct: float = 1.0) -> None:
    inp, expected = build(n, changed_pct, date.today())
    cpu0, wall0 = time.process_time(), time.perf_counter()
    plan = plan_sync(inp)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    figures = {
        "appointments": len(inp.appointments),
        "events": len(inp.events),
        "changed_pct": changed_pct,
        "cpu_s": cpu,
        "wall_s": wall,
        "planned_actions": len(plan.actions),
        "planned_writes": plan.writes,
        "expected_writes": expected,
        "update_google": plan.count(ActionKind.UPDATE_GOOGLE),
        "update_advoware": plan.count(ActionKind.UPDATE_ADVOWARE),
        "create_google": plan.count(ActionKind.CREATE_GOOGLE),
        "create_advoware": plan.count(ActionKind.CREATE_ADVOWARE),
        "delete_google": plan.count(ActionKind.DELETE_GOOGLE),
        "delete_advoware": plan.count(ActionKind.DELETE_ADVOWARE),
        "target_cpu_ok": cpu < 1.0,
        "writes_proportional_ok": plan.writes == expected,
        "machine": machine(),
    }
    emit("calendar_diff", figures)
    # idle: nothing changed → no writes
    idle, _ = build(n, 0, date.today(), extras=False)
    cpu0 = time.process_time()
    idle_plan = plan_sync(idle)
    emit("calendar_diff_idle", {"cpu_s": time.process_time() - cpu0, "planned_writes": idle_plan.writes, "planned_actions": len(idle_plan.actions)})


if __name__ == "__main__":
    main()
