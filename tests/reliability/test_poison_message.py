"""A poison message on the real pipeline: one employee's calendar sync fails on every attempt.

It lands in the dead-letter list with its error after the step's retries (4 attempts), the
other employees sync meanwhile, and once the cause is fixed a replay from the DLQ syncs it.
(The engine-level version, with a step that always raises, is in tests/iii_local/test_compat.py.)
"""

from __future__ import annotations

import asyncio
import time

from iii_local.testing import MotiaTester
from services.calendar_sync import STATUS_SCOPE
from simulators.sandbox import Simulators
from tests.steps.test_calendar_sync import AUTH, clients, event_with, marker, seed_termine, sim  # noqa: F401  (clients: fixture)

TOPIC = "calendar.sync.employee"


async def test_poison_lands_in_dlq_does_not_block_and_replays(stack: MotiaTester, sims_reset: Simulators, clients) -> None:  # type: ignore[no-untyped-def]
    sims = sims_reset
    _, google = clients
    started = time.time()
    m = marker()
    base = 760000 + int(time.time()) % 10000 * 10
    await seed_termine(sims, *({"FrNr": base + i, "_day": 3, "_time": "09:00:00", "UhrzeitBis": "09:30:00", "Text": f"Gift {m} {k}", "Anwalt": k} for i, k in enumerate(("MM", "AB", "CK"))))
    await sim("POST", sims.google.url + "/_sim/faults", {"method": "*", "path": "ck@kanzlei\\.example", "status": 500})
    for k in ("CK", "MM", "AB"):
        r = await stack.post("/advoware/calendar/sync", {"kuerzel": k}, headers=AUTH)
        assert r.status == 202, r.text
    deadline = time.monotonic() + 90
    while True:
        dead = [
            d for d in await stack.dead_letters(TOPIC)
            if (d["job"]["data"] or {}).get("kuerzel") == "CK" and (d["failed_at"] or 0) >= started
        ]
        if dead:
            break
        assert time.monotonic() < deadline, "the poison message never reached the dead-letter list"
        await asyncio.sleep(0.5)
    entry = dead[-1]
    assert entry["job"]["attempts_made"] == entry["job"]["max_attempts"] == 4
    assert "500" in (entry["error"] or "")
    # The others were not blocked.
    assert len(await event_with(google, "MM", m)) == 1 and len(await event_with(google, "AB", m)) == 1
    # Fix the cause, replay from the DLQ.
    await sim("DELETE", sims.google.url + "/_sim/faults")
    assert await stack.replay([entry["job"]["id"]]) == 1
    await stack.wait_idle(timeout=60)
    assert (await stack.state_get(STATUS_SCOPE, "CK"))["result"] == "ok"
    assert len(await event_with(google, "CK", m)) == 1
    assert not [d for d in await stack.dead_letters(TOPIC) if d["job"]["id"] == entry["job"]["id"]]
