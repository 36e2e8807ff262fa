"""End to end: calendar sync Advoware ↔ Google through the real worker (`stack`) and the
simulators (`sims`). Sandbox mapping: MM/AB/CK → mm@/ab@/ck@kanzlei.example.

Each test triggers the sync through the API (`POST /advoware/calendar/sync`), waits until
the queues are idle and checks both simulators. Texts carry a per-test marker, so tests
do not depend on each other's data.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import aiohttp
import pytest

from services.calendar.google_mapping import FRNR_PROPERTY, event_frnr
from services.calendar.sync import STATE_SCOPE, STATUS_SCOPE
from services.clients.advoware.api import AdvowareAPI
from services.clients.errors import NotFoundError
from services.clients.google_calendar import GoogleCalendarAPI
from services.platform.container import advoware_from_settings, google_calendar_from_settings
from services.platform.ledger import SyncKind
from services.platform.settings import load_settings
from tests.e2e import OPS_TOKEN
from tests.steps.conftest import PROXY_TOKEN
from tests.steps.ledger_helpers import dead_mark, settle_ledger

CALENDARS = {"MM": "mm@kanzlei.example", "AB": "ab@kanzlei.example", "CK": "ck@kanzlei.example"}
AUTH = {"Authorization": f"Bearer {PROXY_TOKEN}"}


def day(offset: int) -> str:
    return (date.today() + timedelta(days=offset)).isoformat()


@pytest.fixture(scope="module")
async def clients(stack, sims) -> AsyncIterator[tuple[AdvowareAPI, GoogleCalendarAPI]]:
    settings = load_settings(stack.env)
    advo = advoware_from_settings(settings)
    assert settings.google.static_token is not None
    google = google_calendar_from_settings(settings)
    async with aiohttp.ClientSession() as s:
        seed = {"calendars": [{"id": cid, "summary": k, "timeZone": "Europe/Berlin", "events": []} for k, cid in CALENDARS.items()]}
        async with s.post(sims.google.url + "/_sim/seed", json=seed) as resp:
            assert resp.status == 200
    yield advo, google
    await advo.close()
    await google.close()


async def sim(method: str, url: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s:
        async with s.request(method, url, json=body) as resp:
            assert resp.status < 400, await resp.text()
            return await resp.json()


async def seed_termine(sims, *termine: dict[str, Any]) -> None:
    await sim("POST", sims.advoware.url + "/_sim/seed", {"Termine": list(termine)})


def own_frnr(base: int) -> int:
    """A FrNr in the test's own range (`base` + a per-run offset, steps of 10), so runs do not collide."""
    return base + int(time.time()) % 10000 * 10


def termin(frnr: int, in_days: int, start: str, end: str, text: str, anwalt: str = "MM", **fields: Any) -> dict[str, Any]:
    """A seed appointment `in_days` from today, `start` to `end` (wall clock), plus any other `fields`."""
    return {"FrNr": frnr, "_day": in_days, "_time": start, "UhrzeitBis": end, "Text": text, "Anwalt": anwalt, **fields}


async def sync(stack, kuerzel: str | None = None, *, full: bool = False) -> dict[str, Any] | None:
    body: dict[str, Any] = {"full": full}
    if kuerzel:
        body["kuerzel"] = kuerzel
    resp = await stack.post("/advoware/calendar/sync", body, headers=AUTH)
    assert resp.status == 202, resp.text
    await settle_ledger(stack)
    return await stack.state_get(STATUS_SCOPE, kuerzel) if kuerzel else None


async def events_of(google: GoogleCalendarAPI, kuerzel: str) -> list[dict[str, Any]]:
    items, _ = await google.list_all(CALENDARS[kuerzel], show_deleted=False)
    return items


async def event_with(google: GoogleCalendarAPI, kuerzel: str, marker: str) -> list[dict[str, Any]]:
    return [e for e in await events_of(google, kuerzel) if marker in (e.get("summary") or "")]


async def termine_with(advo: AdvowareAPI, kuerzel: str, marker: str) -> list[dict[str, Any]]:
    items = await advo.list_appointments(kuerzel, date.today() - timedelta(days=30), date.today() + timedelta(days=180))
    return [t for t in items if marker in (t.get("Text") or "")]


def marker() -> str:
    return "T" + uuid.uuid4().hex[:8]


async def synced_mm_event(stack, sims, google: GoogleCalendarAPI, m: str, seed: dict[str, Any]) -> dict[str, Any]:
    """Seed one appointment of MM (its Text carries the test's marker `m`), sync MM (which must succeed), and return the one Google event with `m`."""
    await seed_termine(sims, seed)
    status = await sync(stack, "MM")
    assert status["result"] == "ok", status
    [ev] = await event_with(google, "MM", m)
    return ev


async def write_requests(sims) -> list[dict[str, Any]]:
    """Data-changing requests our sync sent to the simulators (token requests excluded)."""
    out: list[dict[str, Any]] = []
    for url, path in ((sims.advoware.url, "TermineActiveSync"), (sims.google.url, "/calendar/v3/")):
        for r in await sim("GET", url + f"/_sim/requests?path={path}"):
            if r["method"] != "GET":
                out.append(r)
    return out


# --- API ----------------------------------------------------------------------------------


async def test_api_auth_and_validation(stack, clients):
    assert (await stack.post("/advoware/calendar/sync", {})).status == 401
    assert (await stack.post("/advoware/calendar/sync", {}, headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await stack.post("/advoware/calendar/sync", {}, headers={"Authorization": PROXY_TOKEN})).status == 401
    resp = await stack.post("/advoware/calendar/sync", {"kuerzel": "XY"}, headers=AUTH)
    assert resp.status == 404
    resp = await stack.post("/advoware/calendar/sync", {"kuerzel": "MM", "bogus": 1}, headers=AUTH)
    assert resp.status == 400
    resp = await stack.post("/advoware/calendar/sync", {}, headers=AUTH)
    assert resp.status == 202
    assert resp.json()["queued"] == {"topic": "calendar.sync.all", "employees": ["AB", "CK", "MM"], "full": False}
    resp = await stack.post("/advoware/calendar/sync", {"kuerzel": "mm", "full": True}, headers=AUTH)
    assert resp.status == 202
    assert resp.json()["queued"] == {"topic": "calendar.sync.employee", "employees": ["MM"], "full": True}
    await settle_ledger(stack)
    for k in CALENDARS:
        status = await stack.state_get(STATUS_SCOPE, k)
        assert status["result"] == "ok", status


# --- Advoware → Google --------------------------------------------------------------------


async def test_advoware_to_google_create_update_delete(stack, sims, clients):
    advo, google = clients
    m = marker()
    frnr = own_frnr(700000)
    ev = await synced_mm_event(stack, sims, google, m, termin(frnr, 3, "09:30:00", "11:00:00", f"Mandant {m}", Ort="Raum 2", Notiz="Akte"))
    assert event_frnr(ev) == frnr
    assert ev["location"] == "Raum 2" and ev["description"] == "Akte"
    assert ev["start"]["dateTime"].startswith(f"{day(3)}T09:30:00") and ev["start"]["timeZone"] == "Europe/Berlin"
    assert ev["end"]["dateTime"].startswith(f"{day(3)}T11:00:00")
    state = await stack.state_get(STATE_SCOPE, "MM")
    assert state["pairs"][str(frnr)][0] == ev["id"] and state["sync_token"]

    # update in Advoware
    await seed_termine(sims, termin(frnr, 4, "10:00:00", "10:30:00", f"Mandant {m} verlegt"))
    await sync(stack, "MM")
    [ev2] = await event_with(google, "MM", m)
    assert ev2["id"] == ev["id"] and ev2["summary"] == f"Mandant {m} verlegt"
    assert ev2["start"]["dateTime"].startswith(f"{day(4)}T10:00:00") and ev2["location"] == ""

    # delete in Advoware
    await advo.delete_appointment(frnr)
    await sync(stack, "MM")
    assert await event_with(google, "MM", m) == []
    gone = await google.get_event(CALENDARS["MM"], ev["id"])
    assert gone is not None and gone["status"] == "cancelled"
    assert str(frnr) not in (await stack.state_get(STATE_SCOPE, "MM"))["pairs"]


async def test_moved_out_of_window_is_not_a_deletion(stack, sims, clients):
    advo, google = clients
    m = marker()
    seed = termin(own_frnr(710000), 5, "08:00:00", "09:00:00", f"Frist {m}")
    ev = await synced_mm_event(stack, sims, google, m, seed)
    # moved a year ahead: no longer in the window's list, but it still exists
    await seed_termine(sims, {**seed, "_day": 400})
    await sync(stack, "MM")
    kept = await google.get_event(CALENDARS["MM"], ev["id"])
    assert kept["status"] != "cancelled"
    assert kept["start"]["dateTime"].startswith(day(400))
    await advo.get_appointment(seed["FrNr"])  # still there


# --- Google → Advoware --------------------------------------------------------------------


async def test_google_to_advoware_create_update_delete(stack, sims, clients):
    advo, google = clients
    m = marker()
    cal = CALENDARS["AB"]
    ev = await google.insert_event(
        cal,
        {
            "summary": f"Gerichtstermin {m}",
            "description": "Saal 3",
            "location": "AG Köln",
            "start": {"dateTime": f"{day(6)}T13:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": f"{day(6)}T14:15:00", "timeZone": "Europe/Berlin"},
        },
    )
    status = await sync(stack, "AB")
    assert status["result"] == "ok", status
    [t] = await termine_with(advo, "AB", m)
    assert t["Anwalt"] == "AB" and t["Ort"] == "AG Köln" and t["Notiz"] == "Saal 3"
    assert t["Datum"] == f"{day(6)}T13:00:00Z" and t["UhrzeitBis"] == "14:15:00"
    tagged = await google.get_event(cal, ev["id"])
    assert tagged["extendedProperties"]["private"][FRNR_PROPERTY] == str(t["FrNr"])

    # update in Google
    await google.patch_event(cal, ev["id"], {"summary": f"Gerichtstermin {m} neu", "location": "LG Köln"})
    await sync(stack, "AB")
    [t2] = await termine_with(advo, "AB", m)
    assert t2["FrNr"] == t["FrNr"] and t2["Text"] == f"Gerichtstermin {m} neu" and t2["Ort"] == "LG Köln"

    # delete in Google
    await google.delete_event(cal, ev["id"])
    await sync(stack, "AB")
    with pytest.raises(NotFoundError):
        await advo.get_appointment(t["FrNr"])


# --- special fields -----------------------------------------------------------------------


async def test_all_day_private_and_recurring(stack, sims, clients):
    advo, google = clients
    m = marker()
    base = own_frnr(720000)
    await seed_termine(
        sims,
        {"FrNr": base, "_day": 10, "_end_day": 12, "UhrzeitBis": "23:59:00", "Abwesenheit": 1, "Text": f"Urlaub {m}", "Anwalt": "CK"},
        termin(base + 1, 2, "12:00:00", "13:00:00", f"Arzt {m}", "CK", Privat=1),
        termin(base + 2, 1, "08:30:00", "09:00:00", f"Jour fixe {m}", "CK", _end_day=60, Dauertermin=1, Turnus=2, TurnusArt=2),
    )
    cal = CALENDARS["CK"]
    g_allday = await google.insert_event(cal, {"summary": f"Fortbildung {m}", "start": {"date": day(20)}, "end": {"date": day(23)}})
    g_series = await google.insert_event(
        cal,
        {
            "summary": f"Sprechstunde {m}",
            "start": {"dateTime": f"{day(3)}T16:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": f"{day(3)}T17:00:00", "timeZone": "Europe/Berlin"},
            "recurrence": ["RRULE:FREQ=MONTHLY;INTERVAL=1;COUNT=3"],
            "visibility": "private",
        },
    )
    status = await sync(stack, "CK")
    assert status["result"] == "ok", status
    by_summary = {e["summary"]: e for e in await event_with(google, "CK", m)}
    urlaub = by_summary[f"Urlaub {m}"]
    assert urlaub["start"] == {"date": day(10)} and urlaub["end"] == {"date": day(13)}
    assert by_summary[f"Arzt {m}"]["visibility"] == "private"
    series = by_summary[f"Jour fixe {m}"]
    assert series["recurrence"][0].startswith("RRULE:FREQ=WEEKLY;INTERVAL=2;UNTIL=")
    assert series["end"]["dateTime"].startswith(f"{day(1)}T09:00:00")

    termine = {t["Text"]: t for t in await termine_with(advo, "CK", m)}
    fb = termine[f"Fortbildung {m}"]
    assert fb["Abwesenheit"] == 1 and fb["Datum"] == f"{day(20)}T00:00:00Z"
    assert fb["DatumBis"].startswith(day(22)) and fb["UhrzeitBis"] == "23:59:00"
    sp = termine[f"Sprechstunde {m}"]
    first = date.today() + timedelta(days=3)
    month3 = first.month + 2
    last = date(first.year + (month3 - 1) // 12, (month3 - 1) % 12 + 1, 1)
    assert (sp["Dauertermin"], sp["Turnus"], sp["TurnusArt"], sp["Privat"]) == (1, 1, 3, 1)
    assert sp["DatumBis"][:7] == last.isoformat()[:7] and sp["UhrzeitBis"] == "17:00:00"
    assert g_allday["id"] and g_series["id"]

    # nothing changed: a second run writes nothing
    await sim("DELETE", sims.advoware.url + "/_sim/requests")
    await sim("DELETE", sims.google.url + "/_sim/requests")
    status = await sync(stack, "CK")
    assert status["write_count"] == 0 and await write_requests(sims) == []


# --- conflicts ----------------------------------------------------------------------------


async def test_conflict_newest_wins(stack, sims, clients):
    advo, google = clients
    m = marker()
    frnr = own_frnr(730000)
    seed = termin(frnr, 7, "15:00:00", "16:00:00", f"Vergleich {m}")
    ev = await synced_mm_event(stack, sims, google, m, seed)
    # both sides change; Google's change is the newer one
    await seed_termine(sims, {**seed, "Text": f"Vergleich {m} Advoware"})
    await asyncio.sleep(0.05)
    await google.patch_event(CALENDARS["MM"], ev["id"], {"summary": f"Vergleich {m} Google"})
    status = await sync(stack, "MM")
    assert [c for c in status["conflicts"] if c["frnr"] == frnr and c["winner"] == "google"], status
    assert (await advo.get_appointment(frnr))["Text"] == f"Vergleich {m} Google"
    assert (await google.get_event(CALENDARS["MM"], ev["id"]))["summary"] == f"Vergleich {m} Google"
    logs = await stack.logs(wait_for=f"conflict on FrNr {frnr}")
    assert any(f"conflict on FrNr {frnr}" in r["message"] for r in logs)

    # Advoware newer this time
    await google.patch_event(CALENDARS["MM"], ev["id"], {"summary": f"Vergleich {m} G2"})
    await asyncio.sleep(0.05)
    await seed_termine(sims, {**seed, "Text": f"Vergleich {m} A2"})
    status = await sync(stack, "MM")
    assert [c for c in status["conflicts"] if c["frnr"] == frnr and c["winner"] == "advoware"], status
    assert (await google.get_event(CALENDARS["MM"], ev["id"]))["summary"] == f"Vergleich {m} A2"


# --- idle run, 410 ------------------------------------------------------------------------


async def test_idle_second_run_makes_no_writes(stack, sims, clients):
    await sync(stack)  # everyone in line
    await sim("DELETE", sims.advoware.url + "/_sim/requests")
    await sim("DELETE", sims.google.url + "/_sim/requests")
    await sync(stack)
    assert await write_requests(sims) == []
    for k in CALENDARS:
        status = await stack.state_get(STATUS_SCOPE, k)
        assert status["result"] == "ok" and status["write_count"] == 0, status
    # it did read both sides
    assert await sim("GET", sims.google.url + "/_sim/requests?path=/calendar/v3/&method=GET")
    assert await sim("GET", sims.advoware.url + "/_sim/requests?path=TermineActiveSync&method=GET")


async def test_expired_sync_token_recovers_with_full_resync(stack, sims, clients):
    advo, google = clients
    m = marker()
    await sync(stack, "AB")
    await sim("POST", sims.google.url + "/_sim/expire-sync-tokens")
    await google.insert_event(
        CALENDARS["AB"],
        {"summary": f"Nach 410 {m}", "start": {"dateTime": f"{day(9)}T10:00:00+02:00"}, "end": {"dateTime": f"{day(9)}T11:00:00+02:00"}},
    )
    status = await sync(stack, "AB")
    assert status["result"] == "ok" and status["google_mode"] == "full_after_410", status
    assert len(await termine_with(advo, "AB", m)) == 1
    # the full resync re-paired everything without duplicating or deleting
    status = await sync(stack, "AB")
    assert status["google_mode"] == "incremental" and status["write_count"] == 0
    assert len(await event_with(google, "AB", m)) == 1


# --- one employee failing -----------------------------------------------------------------


async def test_one_employee_failing_does_not_stop_the_others(stack, sims, sims_reset, clients):
    advo, google = clients
    m = marker()
    base = own_frnr(740000)
    await seed_termine(
        sims,
        *(termin(base + i, 2, "10:00:00", "11:00:00", f"Alle {m} {k}", k) for i, k in enumerate(CALENDARS)),
    )
    await sim("POST", sims.google.url + "/_sim/faults", {"method": "*", "path": "ck@kanzlei\\.example", "status": 403})
    resp = await stack.post("/advoware/calendar/sync", {}, headers=AUTH)
    assert resp.status == 202
    deadline = time.monotonic() + 30
    while True:
        ck = await stack.state_get(STATUS_SCOPE, "CK")
        mm = await stack.state_get(STATUS_SCOPE, "MM")
        ab = await stack.state_get(STATUS_SCOPE, "AB")
        done = [s for s in (mm, ab) if s and s.get("result") == "ok"]
        if ck and ck.get("result") == "failed" and len(done) == 2 and await event_with(google, "MM", m) and await event_with(google, "AB", m):
            break
        assert time.monotonic() < deadline, (ck, mm, ab)
        await asyncio.sleep(0.2)
    assert "403" in ck["error"] and ck["consecutive_failures"] >= 1
    assert len(await event_with(google, "MM", m)) == 1 and len(await event_with(google, "AB", m)) == 1
    logs = await stack.logs(wait_for="calendar sync CK failed")
    assert any("calendar sync CK failed" in r["message"] for r in logs)
    # 403 is permanent: the ledger gives up at once, the status record says so
    dead = await dead_mark(stack, SyncKind.CALENDAR_EMPLOYEE, "CK")
    assert dead is not None and "403" in dead.last_error
    ck = await stack.state_get(STATUS_SCOPE, "CK")
    assert ck["dead"] is True and "gave up" in ck["error"]
    # the fault goes away: an operator's replay (the next cron run would do it too) syncs CK
    await sim("DELETE", sims.google.url + "/_sim/faults")
    resp = await stack.post("/ops/ledger/replay", {"kind": "calendar_employee", "ids": ["CK"]}, headers={"Authorization": f"Bearer {OPS_TOKEN}"})
    assert resp.status == 200 and resp.json()["replayed"] == 1, resp.text
    await settle_ledger(stack)
    ck = await stack.state_get(STATUS_SCOPE, "CK")
    assert ck["result"] == "ok", ck
    assert len(await event_with(google, "CK", m)) == 1
