"""Call budget of an idle calendar run (services.calendar.sync.EmployeeSync), counted in the
Advoware and Google simulators' request logs, not timed: nothing changed → no write, one
Advoware listing of the sync window (TermineActiveSync from/to) and one Google listing with
the stored syncToken; an expired token (410) → one full listing of the window, still no write;
pairs that lie outside the listed window are not read again on every run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from services.calendar.sync import GoogleReadMode, berlin_today, sync_window
from tests.services.calendar.sims import Env, new_event, termin


async def requests(env: Env) -> dict[str, list[dict[str, Any]]]:
    """The API calls since the last `clear` (admin and token calls left out)."""
    out = {}
    for name, app in (("advoware", env.a), ("google", env.g)):
        log = await env.sim(app, "GET", "/_sim/requests")
        out[name] = [{**r, "query": {k: v[0] for k, v in parse_qs(r["query"]).items()}} for r in log
                     if not r["path"].startswith("/_sim") and not r["path"].endswith("/Token")]
    return out


async def clear(env: Env) -> None:
    await env.sim(env.a, "DELETE", "/_sim/requests")
    await env.sim(env.g, "DELETE", "/_sim/requests")


def writes(calls: dict[str, list[dict[str, Any]]]) -> int:
    return sum(1 for side in calls.values() for r in side if r["method"] != "GET")


async def synced(env: Env, n: int = 20) -> None:
    await env.seed(*(termin(6000 + i, f"T{i}", day=i % 40 - 10) for i in range(n)))
    await env.google.insert_event(env.settings.mapping["MM"], new_event("from Google"))
    first = await env.sync().run()
    assert first.write_count > 0
    await clear(env)


async def test_idle_run_writes_nothing_and_reads_the_window_and_the_sync_token(env: Env) -> None:
    await synced(env)
    report = await env.sync().run()
    calls = await requests(env)
    assert report.google_mode is GoogleReadMode.INCREMENTAL and report.write_count == 0 and writes(calls) == 0
    [advo] = calls["advoware"]
    start, end = sync_window(env.settings, berlin_today())
    assert advo["path"].endswith("TermineActiveSync") and advo["query"]["from"] == start.isoformat() and advo["query"]["to"] == end.isoformat()
    [google] = calls["google"]
    assert google["method"] == "GET" and "syncToken" in google["query"] and "timeMin" not in google["query"]


async def test_expired_sync_token_reads_the_window_once_and_writes_nothing(env: Env) -> None:
    await synced(env)
    await env.fault(env.g, method="GET", path="events$", status=410, times=1)
    report = await env.sync().run()
    calls = await requests(env)
    assert report.google_mode is GoogleReadMode.FULL_AFTER_410 and writes(calls) == 0
    expired, full = calls["google"]
    assert "syncToken" in expired["query"] and expired["status"] == 410
    assert "syncToken" not in full["query"] and "timeMin" in full["query"] and "timeMax" in full["query"]
    assert len(calls["advoware"]) == 1
    await clear(env)
    again = await env.sync().run()  # the new token is stored
    assert again.google_mode is GoogleReadMode.INCREMENTAL and len((await requests(env))["google"]) == 1


async def test_pairs_outside_the_window_are_not_read_on_every_run(env: Env) -> None:
    await synced(env, n=5)
    # moved far beyond the window in Advoware: verified by a read of its own, then left alone
    await env.seed(termin(6001, "T1 later", day=env.settings.sync_future_days + 40))
    moved = await env.sync().run()
    assert moved.writes == {"google_patch": 1}
    await clear(env)
    for _ in range(3):
        report = await env.sync().run()
        assert report.write_count == 0
    calls = await requests(env)
    assert len(calls["advoware"]) == 3 and len(calls["google"]) == 3, calls["advoware"]
    # its event changed in Google: read, and the change reaches Advoware
    [event] = [e for e in await env.events() if e["summary"] == "T1 later"]
    await env.google.patch_event(env.settings.mapping["MM"], event["id"], {"summary": "T1 renamed"})
    await clear(env)
    report = await env.sync().run()
    assert report.writes == {"advoware_update": 1}
    assert [c["method"] for c in (await requests(env))["advoware"] if c["query"].get("frnr") == "6001"][0] == "GET"
    assert (await env.advo.get_appointment(6001))["Text"] == "T1 renamed"
    await clear(env)
    assert (await env.sync().run()).write_count == 0 and len((await requests(env))["advoware"]) == 1
    # the next day it is read again: a deletion out there is seen within a day
    await env.advo.delete_appointment(6001)
    assert (await env.sync().run()).write_count == 0  # not read today
    report = await env.sync(today=berlin_today() + timedelta(days=1)).run()
    assert report.writes == {"google_delete": 1}
