"""A poison message on the real pipeline: one employee's calendar sync fails on every attempt.

Retries are the project's (the sync ledger, services/platform/ledger): the engine 0.8.3 gives every job
the adapter's attempts and ignores the step's (semantics row Q2). The poison mark lands in the
ledger's dead list with its error after the kind's budget (4 attempts for calendar_employee),
the other employees sync meanwhile, and once the cause is fixed an operator's replay
(`POST /ops/ledger/replay`, or `python -m services.platform.ledger replay`) syncs it.
"""

from __future__ import annotations

import asyncio
import time

from iii_local.testing import MotiaTester
from services.calendar.sync import STATUS_SCOPE
from services.platform.ledger import POLICIES, SyncKind
from simulators.sandbox import Simulators
from tests.e2e import OPS_TOKEN
from tests.steps.ledger_helpers import dead_mark, settle_ledger
from tests.steps.test_calendar_sync import AUTH, clients, event_with, marker, seed_termine, sim  # noqa: F401  (clients: fixture)


async def test_poison_lands_in_the_dead_list_does_not_block_and_replays(stack: MotiaTester, sims_reset: Simulators, clients) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    sims = sims_reset
    _, google = clients
    m = marker()
    base = 760000 + int(time.time()) % 10000 * 10
    await seed_termine(sims, *({"FrNr": base + i, "_day": 3, "_time": "09:00:00", "UhrzeitBis": "09:30:00", "Text": f"Gift {m} {k}", "Anwalt": k} for i, k in enumerate(("MM", "AB", "CK"))))
    await sim("POST", sims.google.url + "/_sim/faults", {"method": "*", "path": "ck@kanzlei\\.example", "status": 500})
    for k in ("CK", "MM", "AB"):
        r = await stack.post("/advoware/calendar/sync", {"kuerzel": k}, headers=AUTH)
        assert r.status == 202, r.text
    deadline = time.monotonic() + 90
    while (dead := await dead_mark(stack, SyncKind.CALENDAR_EMPLOYEE, "CK")) is None:
        assert time.monotonic() < deadline, "the poison mark never reached the ledger's dead list"
        await asyncio.sleep(0.5)
    budget = POLICIES[SyncKind.CALENDAR_EMPLOYEE].max_attempts
    assert budget == 4
    # One more when a newer request for CK (e.g. the 15-minute cron) arrived during the last
    # failed run (ledger invariant 5).
    assert budget <= dead.attempts <= budget + 1
    assert "500" in dead.last_error
    assert (await stack.state_get(STATUS_SCOPE, "CK"))["dead"] is True
    # The others were not blocked.
    assert len(await event_with(google, "MM", m)) == 1 and len(await event_with(google, "AB", m)) == 1
    # The engine's own dead-letter list stays empty: the handler never raised for the failure.
    assert not [d for d in await stack.dead_letters("calendar.sync.employee") if (d["job"]["data"] or {}).get("kuerzel") == "CK"]
    # Fix the cause, replay from the ledger.
    await sim("DELETE", sims.google.url + "/_sim/faults")
    resp = await stack.post("/ops/ledger/replay", {"kind": "calendar_employee", "ids": ["CK"]}, headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert resp.status == 200 and resp.json()["replayed"] == 1, resp.text
    await settle_ledger(stack)
    assert (await stack.state_get(STATUS_SCOPE, "CK"))["result"] == "ok"
    assert len(await event_with(google, "CK", m)) == 1
    assert await dead_mark(stack, SyncKind.CALENDAR_EMPLOYEE, "CK") is None
