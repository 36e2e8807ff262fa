"""The Google Calendar simulator follows external-apis.md §4 (events, sync tokens, errors, /token)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulators.google_calendar import create_app
from simulators.runner import RunningApp, start_app
from tests.simulators.http_status import status

TOKEN = "sandbox-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CAL = "mm@kanzlei.example"
SEED = Path(__file__).resolve().parents[2] / "simulators" / "seed" / "google_demo.json"


@pytest.fixture
async def sim() -> AsyncIterator[RunningApp]:
    running = await start_app(create_app({TOKEN}, seed=SEED))
    yield running
    await running.stop()


def events_url(sim: RunningApp, cal: str = CAL) -> str:
    return f"{sim.url}/calendar/v3/calendars/{cal}/events"


def body(summary: str, day: int = 10, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": f"2026-03-{day:02d}T10:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": f"2026-03-{day:02d}T11:00:00+01:00", "timeZone": "Europe/Berlin"},
        **extra,
    }


async def insert(http: aiohttp.ClientSession, sim: RunningApp, data: dict[str, Any], cal: str = CAL) -> dict[str, Any]:
    async with http.post(events_url(sim, cal), json=data, headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def list_events(http: aiohttp.ClientSession, sim: RunningApp, params: Any = (), cal: str = CAL) -> tuple[int, dict[str, Any]]:
    async with http.get(events_url(sim, cal), params=params, headers=AUTH) as resp:
        return resp.status, await resp.json()


async def test_auth_errors_look_like_google(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        async with http.get(events_url(sim), headers=headers) as resp:
            assert resp.status == 401
            err = (await resp.json())["error"]
            assert err["code"] == 401 and err["message"] and err["errors"][0]["reason"] == "authError"


async def test_seeded_demo_calendars(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    code, page = await list_events(http, sim)
    assert code == 200
    assert [e["summary"] for e in page["items"]] == ["Mandantentermin Schulz"]
    assert page["items"][0]["start"]["timeZone"] == "Europe/Berlin"
    assert "{{" not in page["items"][0]["start"]["dateTime"]
    for cal in ("ab@kanzlei.example", "ck@kanzlei.example"):
        code, page = await list_events(http, sim, cal=cal)
        assert code == 200 and len(page["items"]) == 1
    code, page = await list_events(http, sim, cal="nobody@kanzlei.example")
    assert code == 404 and page["error"]["errors"][0]["reason"] == "notFound"


async def test_insert_get_patch_put_delete(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    created = await insert(
        http,
        sim,
        body("Gerichtstermin", description="LG Berlin", location="Saal 3", visibility="private",
             extendedProperties={"private": {"advowareFrNr": "123"}}),
    )
    for key in ("id", "etag", "updated", "created", "iCalUID"):
        assert created[key]
    assert created["status"] == "confirmed" and created["kind"] == "calendar#event"
    eid = created["id"]
    url = f"{events_url(sim)}/{eid}"
    async with http.get(url, headers=AUTH) as resp:
        assert (await resp.json())["extendedProperties"] == {"private": {"advowareFrNr": "123"}}

    time.sleep(0.002)
    async with http.patch(url, json={"summary": "Verlegt", "extendedProperties": {"private": {"espo": "e1"}}}, headers=AUTH) as resp:
        patched = await resp.json()
    assert patched["summary"] == "Verlegt" and patched["location"] == "Saal 3"
    assert patched["extendedProperties"]["private"] == {"advowareFrNr": "123", "espo": "e1"}  # objects merge
    assert patched["etag"] != created["etag"] and patched["updated"] > created["updated"]
    assert patched["created"] == created["created"]

    assert await status(http.patch(url, json={"start": {"date": "2026-03-10"}}, headers=AUTH)) == 400  # date start with dateTime end
    async with http.put(url, json=body("Ersetzt", day=12), headers=AUTH) as resp:
        replaced = await resp.json()
    assert replaced["summary"] == "Ersetzt" and "location" not in replaced and replaced["id"] == eid
    assert replaced["sequence"] == 1

    assert await status(http.delete(url, headers=AUTH)) == 204
    async with http.delete(url, headers=AUTH) as resp:
        assert resp.status == 410
        assert (await resp.json())["error"]["message"] == "Resource has been deleted"
    async with http.get(url, headers=AUTH) as resp:
        assert (await resp.json())["status"] == "cancelled"
    assert await status(http.delete(f"{events_url(sim)}/unknownevent1", headers=AUTH)) == 404
    assert await status(http.patch(f"{events_url(sim)}/unknownevent1", json={}, headers=AUTH)) == 404


async def test_insert_validation_and_client_ids(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    bad = [
        {"summary": "no times"},
        {"summary": "x", "start": {"dateTime": "2026-03-10T10:00:00"}, "end": {"dateTime": "2026-03-10T11:00:00"}},
        body("reversed") | {"end": {"dateTime": "2026-03-10T09:00:00+01:00"}},
        body("bad id", id="UPPERCASE!"),
    ]
    for data in bad:
        assert await status(http.post(events_url(sim), json=data, headers=AUTH)) == 400, data
    first = await insert(http, sim, body("mit id", id="abc123def456"))
    assert first["id"] == "abc123def456"
    assert await status(http.post(events_url(sim), json=body("mit id", id="abc123def456"), headers=AUTH)) == 409
    allday = await insert(http, sim, {"summary": "Urlaub", "start": {"date": "2026-03-10"}, "end": {"date": "2026-03-12"}})
    assert allday["start"] == {"date": "2026-03-10"}


async def test_paging_and_full_then_incremental_sync(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    ids = [(await insert(http, sim, body(f"T{i}", day=i + 1)))["id"] for i in range(5)]
    seen: list[str] = []
    params: dict[str, str] = {"maxResults": "2"}
    pages = 0
    while True:
        code, page = await list_events(http, sim, params)
        assert code == 200
        pages += 1
        seen += [e["id"] for e in page["items"]]
        if "nextPageToken" in page:
            assert "nextSyncToken" not in page  # only the last page carries it
            params = {"maxResults": "2", "pageToken": page["nextPageToken"]}
        else:
            sync = page["nextSyncToken"]
            break
    assert pages == 3 and len(seen) == 6 and set(ids) <= set(seen)  # 5 + the seeded one

    # Nothing changed: an empty incremental result and a fresh token.
    code, page = await list_events(http, sim, {"syncToken": sync})
    assert code == 200 and page["items"] == [] and page["nextSyncToken"]

    assert await status(http.patch(f"{events_url(sim)}/{ids[0]}", json={"summary": "neu"}, headers=AUTH)) == 200
    assert await status(http.delete(f"{events_url(sim)}/{ids[1]}", headers=AUTH)) == 204
    new = await insert(http, sim, body("dazu"))
    code, page = await list_events(http, sim, {"syncToken": sync})
    changed = {e["id"]: e for e in page["items"]}
    assert set(changed) == {ids[0], ids[1], new["id"]}
    assert changed[ids[0]]["summary"] == "neu"
    assert changed[ids[1]]["status"] == "cancelled"
    assert set(changed[ids[1]]) <= {"kind", "etag", "id", "status", "updated"}
    sync2 = page["nextSyncToken"]
    code, page = await list_events(http, sim, {"syncToken": sync2})
    assert page["items"] == []
    # Full list hides the deleted one unless showDeleted.
    code, page = await list_events(http, sim)
    assert ids[1] not in {e["id"] for e in page["items"]}
    code, page = await list_events(http, sim, {"showDeleted": "true"})
    assert ids[1] in {e["id"] for e in page["items"]}


async def test_sync_token_errors(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    code, page = await list_events(http, sim)
    sync = page["nextSyncToken"]
    for extra in (
        {"timeMin": "2026-01-01T00:00:00Z"},
        {"timeMax": "2026-01-01T00:00:00Z"},
        {"updatedMin": "2026-01-01T00:00:00Z"},
        {"privateExtendedProperty": "advowareFrNr=1"},
        {"orderBy": "updated"},
        {"showDeleted": "false"},
    ):
        code, err = await list_events(http, sim, {"syncToken": sync, **extra})
        assert code == 400, extra
        assert err["error"]["code"] == 400
    code, err = await list_events(http, sim, {"syncToken": "CPbogus"})
    assert code == 410 and err["error"]["errors"][0]["reason"] == "fullSyncRequired"
    code, _ = await list_events(http, sim, {"syncToken": sync})
    assert code == 200
    # A token is bound to its calendar.
    code, _ = await list_events(http, sim, {"syncToken": sync}, cal="ab@kanzlei.example")
    assert code == 410
    async with http.post(f"{sim.url}/_sim/expire-sync-tokens") as resp:
        assert (await resp.json())["expired"] >= 1
    code, _ = await list_events(http, sim, {"syncToken": sync})
    assert code == 410
    code, _ = await list_events(http, sim, {"pageToken": "nonsense"})
    assert code == 400


async def test_filters(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    a = await insert(http, sim, body("A", day=5, extendedProperties={"private": {"advowareFrNr": "1", "kind": "x"}}))
    b = await insert(http, sim, body("B", day=6, extendedProperties={"private": {"advowareFrNr": "2", "kind": "x"}}))
    code, page = await list_events(http, sim, [("privateExtendedProperty", "advowareFrNr=2")])
    assert [e["id"] for e in page["items"]] == [b["id"]]
    code, page = await list_events(http, sim, [("privateExtendedProperty", "kind=x"), ("privateExtendedProperty", "advowareFrNr=1")])
    assert [e["id"] for e in page["items"]] == [a["id"]]
    code, page = await list_events(http, sim, {"timeMin": "2026-03-06T00:00:00+01:00", "timeMax": "2026-03-07T00:00:00+01:00"})
    assert [e["id"] for e in page["items"]] == [b["id"]]
    code, _ = await list_events(http, sim, {"timeMin": "2026-03-06T00:00:00"})
    assert code == 400  # no offset
    code, page = await list_events(http, sim, {"q": "b"})
    assert b["id"] in [e["id"] for e in page["items"]] and a["id"] not in [e["id"] for e in page["items"]]
    code, _ = await list_events(http, sim, {"orderBy": "startTime"})
    assert code == 400  # needs singleEvents


async def test_single_events_expands_recurrence(sim: RunningApp, http: aiohttp.ClientSession) -> None:
    weekly = await insert(http, sim, body("Jour fixe", day=2, recurrence=["RRULE:FREQ=WEEKLY;COUNT=5"]))
    code, page = await list_events(http, sim, {"singleEvents": "true", "orderBy": "startTime",
                                                 "timeMin": "2026-03-01T00:00:00Z", "timeMax": "2026-04-30T00:00:00Z"})
    inst = [e for e in page["items"] if e.get("recurringEventId") == weekly["id"]]
    assert [e["start"]["dateTime"][:10] for e in inst] == ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23", "2026-03-30"]
    assert all(e["id"].startswith(weekly["id"] + "_") and "recurrence" not in e for e in inst)
    # Across the DST change (29 March) the wall-clock time stays 10:00 in Berlin.
    assert inst[3]["start"]["dateTime"] == "2026-03-23T10:00:00+01:00"
    assert inst[4]["start"]["dateTime"] == "2026-03-30T10:00:00+02:00"
    code, page = await list_events(http, sim, {"timeMin": "2026-03-27T00:00:00Z"})
    assert weekly["id"] in [e["id"] for e in page["items"]]  # the series overlaps via its last instance
    code, page = await list_events(http, sim, {"timeMin": "2026-04-01T00:00:00Z"})
    assert weekly["id"] not in [e["id"] for e in page["items"]]


async def test_token_endpoint(http: aiohttp.ClientSession) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    running = await start_app(create_app(set(), seed={"calendars": [{"id": CAL}]}, public_key=pub))

    def jwt(signer: Any, claims: dict[str, Any], alg: str = "RS256") -> str:
        enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
        head = enc({"alg": alg, "typ": "JWT"}) + "." + enc(claims)
        sig = signer.sign(head.encode(), padding.PKCS1v15(), hashes.SHA256())
        return head + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": "sa@p.iam.gserviceaccount.com", "scope": "https://www.googleapis.com/auth/calendar",
              "aud": f"{running.url}/token", "iat": now, "exp": now + 3600}
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    try:
        async with http.post(f"{running.url}/token", data={"grant_type": grant, "assertion": jwt(key, claims)}) as resp:
            answer = await resp.json()
        assert resp.status == 200 and answer["token_type"] == "Bearer" and answer["expires_in"] == 3600
        assert await status(http.get(events_url(running), headers={"Authorization": f"Bearer {answer['access_token']}"})) == 200
        for form in (
            {"grant_type": grant, "assertion": jwt(other, claims)},  # wrong key
            {"grant_type": grant, "assertion": jwt(key, {**claims, "exp": now - 10})},  # expired
            {"grant_type": grant, "assertion": jwt(key, {k: v for k, v in claims.items() if k != "scope"})},
            {"grant_type": grant, "assertion": "not.a.jwt"},
            {"grant_type": "password", "assertion": jwt(key, claims)},
        ):
            async with http.post(f"{running.url}/token", data=form) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"] in ("invalid_grant", "unsupported_grant_type")
        async with http.post(f"{running.url}/_sim/revoke-tokens") as resp:
            assert (await resp.json())["revoked"] == 1
        assert await status(http.get(events_url(running), headers={"Authorization": f"Bearer {answer['access_token']}"})) == 401
    finally:
        await running.stop()
