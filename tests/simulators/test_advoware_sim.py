"""The Advoware simulator speaks the API described in external-apis.md §3."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from simulators.advoware import create_app, iban_is_valid, load_demo_seed
from simulators.runner import RunningApp, start_app
from tests.advoware_demo import API_KEY, APP_ID, DATABASE, KANZLEI, PASSWORD, USER, advoware_demo
from tests.simulators.http_status import status


def sign(product: Any, app_id: str, nonce: str, stamp: str, key_b64: str = API_KEY) -> str:
    msg = f"{product}:{app_id}:{nonce}:{stamp}".encode()
    return base64.b64encode(hmac.new(base64.b64decode(key_b64), msg, hashlib.sha512).digest()).decode()


def token_body(*, stamp: str | None = None, nonce: str | None = None, **over: Any) -> dict[str, Any]:
    stamp = stamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    nonce = nonce or str(uuid.uuid4())
    body: dict[str, Any] = {
        "AppID": APP_ID,
        "Kanzlei": KANZLEI,
        "Database": DATABASE,
        "User": USER,
        "Role": 2,
        "Product": 64,
        "Password": PASSWORD,
        "Nonce": nonce,
        "RequestTimeStamp": stamp,
    }
    body.update(over)
    body.setdefault("HMAC512Signature", sign(body["Product"], body["AppID"], nonce, stamp))
    return body


@pytest.fixture
async def sim() -> AsyncIterator[RunningApp]:
    async with advoware_demo() as running:
        yield running


async def get_token(http: aiohttp.ClientSession, sim: RunningApp) -> str:
    async with http.post(f"{sim.url}/api/v1/Token", json=token_body()) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["access_token"]


@pytest.fixture
async def auth(http: aiohttp.ClientSession, sim: RunningApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {await get_token(http, sim)}"}


# --- token gateway ----------------------------------------------------------------------


async def test_token_issued_with_dotnet_expiration(http, sim) -> None:
    async with http.post(f"{sim.url}/api/v1/Token", json=token_body()) as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["access_token"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", doc["expiration_utc"])
    expires = datetime.fromisoformat(doc["expiration_utc"][:26] + "+00:00")
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)


async def test_token_accepts_php_iso8601_timestamp(http, sim) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    assert await status(http.post(f"{sim.url}/api/v1/Token", json=token_body(stamp=stamp))) == 200


async def test_token_rejects_bad_signature(http, sim) -> None:
    body = token_body(HMAC512Signature=sign(64, APP_ID, "other-nonce", "2026-01-01T00:00:00Z"))
    async with http.post(f"{sim.url}/api/v1/Token", json=body) as resp:
        assert resp.status == 401
        assert "Signature" in (await resp.json())["Message"]


async def test_token_rejects_signature_with_wrong_key(http, sim) -> None:
    stamp, nonce = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "n-1"
    wrong = sign(64, APP_ID, nonce, stamp, base64.b64encode(b"other-key").decode())
    assert await status(http.post(f"{sim.url}/api/v1/Token", json=token_body(stamp=stamp, nonce=nonce, HMAC512Signature=wrong))) == 401


@pytest.mark.parametrize("offset", [timedelta(minutes=-6), timedelta(minutes=6)])
async def test_token_rejects_stale_or_future_timestamp(http, sim, offset) -> None:
    stamp = (datetime.now(UTC) + offset).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    async with http.post(f"{sim.url}/api/v1/Token", json=token_body(stamp=stamp)) as resp:
        assert resp.status == 401
        assert "Zeitfenster" in (await resp.json())["Message"]


async def test_token_rejects_replayed_nonce(http, sim) -> None:
    body = token_body()
    assert await status(http.post(f"{sim.url}/api/v1/Token", json=body)) == 200
    async with http.post(f"{sim.url}/api/v1/Token", json=body) as resp:
        assert resp.status == 401
        assert "Nonce" in (await resp.json())["Message"]


@pytest.mark.parametrize(
    ("over", "status", "fragment"),
    [
        ({"Password": "falsch"}, 401, "Falscher Name oder falsches Kennwort"),
        ({"User": "XY"}, 401, "Falscher Name oder falsches Kennwort"),
        ({"Kanzlei": "andere"}, 401, "ist nicht registriert"),
        ({"Database": "PROD"}, 401, "ist nicht registriert"),
        ({"AppID": "fremde-app"}, 401, "ist nicht registriert"),
        ({"Product": 1}, 401, "freigeschaltet"),
        ({"Role": 3}, 401, "freigeschaltet"),
        ({"Nonce": ""}, 400, "Nonce"),
        ({"RequestTimeStamp": "gestern"}, 400, "RequestTimeStamp"),
    ],
)
async def test_token_rejects_bad_fields(http, sim, over, status, fragment) -> None:
    async with http.post(f"{sim.url}/api/v1/Token", json=token_body(**over)) as resp:
        assert resp.status == status
        assert fragment in (await resp.json())["Message"]


async def test_token_rejects_malformed_json(http, sim) -> None:
    async with http.post(f"{sim.url}/api/v1/Token", data=b"{nope", headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert "Message" in await resp.json()


async def test_discovery_points_at_itself(http, sim) -> None:
    async with http.get(f"{sim.url}/AdvonetConfigurator/api/Url", params={"Kanzlei": KANZLEI.lower()}) as resp:
        doc = await resp.json()
    assert doc == {"relayUrl": sim.url + "/", "connectorUrl": sim.url + "/", "securityGateway": sim.url + "/"}
    assert await status(http.get(f"{sim.url}/AdvonetConfigurator/api/Url", params={"Kanzlei": "unbekannt"})) == 404


# --- auth on the API --------------------------------------------------------------------


async def test_api_needs_live_bearer_token(http, sim, auth) -> None:
    url = f"{sim.url}/api/v1/advonet/Mitarbeiter"
    async with http.get(url) as resp:
        assert resp.status == 401
        assert "ist nicht angemeldet" in (await resp.json())["Message"]
    assert await status(http.get(url, headers={"Authorization": "Bearer erfunden"})) == 401
    async with http.get(url, headers=auth) as resp:
        assert resp.status == 200
        assert {m["Kuerzel"] for m in await resp.json()} == {"MM", "AB", "CK"}
    async with http.post(f"{sim.url}/_sim/expire-tokens") as resp:
        assert (await resp.json())["expired"] >= 1
    assert await status(http.get(url, headers=auth)) == 401


async def test_token_expires_after_ttl(http) -> None:
    app = create_app(API_KEY, APP_ID, KANZLEI, DATABASE, USER, PASSWORD, token_ttl_seconds=0)
    running = await start_app(app)
    try:
        token = await get_token(http, running)
        assert await status(http.get(f"{running.url}/api/v1/Akten", headers={"Authorization": f"Bearer {token}"})) == 401
    finally:
        await running.stop()


async def test_unknown_path_and_method(http, sim, auth) -> None:
    async with http.get(f"{sim.url}/api/v1/advonet/Gibtsnicht", headers=auth) as resp:
        assert resp.status == 404
        assert "No HTTP resource" in (await resp.json())["Message"]
    async with http.patch(f"{sim.url}/api/v1/advonet/TermineActiveSync", headers=auth) as resp:
        assert resp.status == 405
        assert "PUT" in resp.headers["Allow"]


async def test_paths_are_case_insensitive(http, sim, auth) -> None:
    assert await status(http.get(f"{sim.url}/API/V1/ADVONET/mitarbeiter", headers=auth)) == 200


async def test_fault_injection_applies(http, sim, auth) -> None:
    assert await status(http.post(f"{sim.url}/_sim/faults", json={"path": "Akten", "status": 503, "times": 1})) == 200
    assert await status(http.get(f"{sim.url}/api/v1/Akten", headers=auth)) == 503
    assert await status(http.get(f"{sim.url}/api/v1/Akten", headers=auth)) == 200


# --- matters ----------------------------------------------------------------------------


async def test_akten(http, sim, auth) -> None:
    async with http.get(f"{sim.url}/api/v1/Akten", headers=auth) as resp:
        akten = await resp.json()
    assert [a["Nr"] for a in akten] == [1001, 1002]
    async with http.get(f"{sim.url}/api/v1/Akten/1002", headers=auth) as resp:
        assert (await resp.json())["Az"] == "1002/25"
    assert await status(http.get(f"{sim.url}/api/v1/Akten/9", headers=auth)) == 404


# --- appointments -----------------------------------------------------------------------


def days(n: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=n)).isoformat()


async def list_termine(http, sim, auth, kuerzel: str, start: str, end: str) -> list[dict[str, Any]]:
    async with http.get(
        f"{sim.url}/api/v1/advonet/TermineActiveSync", params={"from": start, "to": end, "kuerzel": kuerzel}, headers=auth
    ) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_termine_list_filters_by_kuerzel_and_overlap(http, sim, auth) -> None:
    mm = await list_termine(http, sim, auth, "MM", days(-14), days(14))
    assert {t["FrNr"] for t in mm} == {1001, 1002, 1003, 1007, 1009, 1010, 1011}
    assert [t["Datum"] for t in mm] == sorted(t["Datum"] for t in mm)
    # one day inside the vacation and the weekly series only
    assert {t["FrNr"] for t in await list_termine(http, sim, auth, "mm", days(6), days(6))} == {1002, 1009}
    # a two-day appointment is found from its second day
    assert {t["FrNr"] for t in await list_termine(http, sim, auth, "AB", days(14), days(14))} == {1012}


async def test_seed_quirks(http, sim, auth) -> None:
    by_nr = {t["FrNr"]: t for t in await list_termine(http, sim, auth, "MM", days(-14), days(14))}
    vacation = by_nr[1009]
    assert vacation["Abwesenheit"] == 1 and vacation["UhrzeitBis"] == "23:59:00"
    assert vacation["DatumBis"].startswith(days(9))
    assert by_nr[1007]["Privat"] == 1
    series = by_nr[1002]
    assert (series["Dauertermin"], series["Turnus"], series["TurnusArt"]) == (1, 1, 2)
    assert by_nr[1001]["Nr"] == 1001
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", by_nr[1001]["Datum"])


async def test_termin_crud(http, sim, auth) -> None:
    url = f"{sim.url}/api/v1/advonet/TermineActiveSync"
    new = {"Text": "Neuer Termin", "Datum": f"{days(3)}T09:00:00Z", "DatumBis": f"{days(3)}T00:00:00Z",
           "UhrzeitBis": "10:00:00", "Anwalt": "AB", "Sb": "AB", "Unbekannt": "weg"}
    async with http.post(url, json=new, headers=auth) as resp:
        assert resp.status == 200
        frnr = await resp.json()
    assert isinstance(frnr, int)
    async with http.get(url, params={"frnr": str(frnr)}, headers=auth) as resp:
        rec = await resp.json()
    assert rec["Text"] == "Neuer Termin" and rec["ZuletztGeaendertAm"].endswith("Z") and "Unbekannt" not in rec
    rec["Ort"] = "Kanzlei"
    async with http.put(url, params={"frnr": str(frnr)}, json=rec, headers=auth) as resp:
        assert resp.status == 200
        assert (await resp.json())["Ort"] == "Kanzlei"
    # PUT replaces: a field left out falls back to its default
    async with http.put(url, params={"frnr": str(frnr)}, json={"Datum": rec["Datum"]}, headers=auth) as resp:
        assert (await resp.json())["Text"] == ""
    assert await status(http.delete(url, params={"frnr": str(frnr)}, headers=auth)) == 200
    assert await status(http.get(url, params={"frnr": str(frnr)}, headers=auth)) == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"Text": "ohne Datum"}, "Datum"),
        ({"Datum": "morgen"}, "Datum"),
        ({"Datum": "2026-05-10T10:00:00Z", "UhrzeitBis": "25:00"}, "UhrzeitBis"),
        ({"Datum": "2026-05-10T10:00:00Z", "UhrzeitBis": "09:00:00"}, "Ende"),
        ({"Datum": "2026-05-10T10:00:00Z", "Privat": 2}, "Privat"),
        ({"Datum": "2026-05-10T10:00:00Z", "Dauertermin": 1}, "Dauertermin"),
        ({"Datum": "2026-05-10T10:00:00Z", "TurnusArt": 9}, "TurnusArt"),
    ],
)
async def test_termin_validation(http, sim, auth, body, fragment) -> None:
    async with http.post(f"{sim.url}/api/v1/advonet/TermineActiveSync", json=body, headers=auth) as resp:
        assert resp.status == 400
        doc = await resp.json()
    assert fragment in doc["Message"]


async def test_termin_list_needs_range(http, sim, auth) -> None:
    assert await status(http.get(f"{sim.url}/api/v1/advonet/TermineActiveSync", params={"kuerzel": "MM"}, headers=auth)) == 400


# --- parties and bank accounts ------------------------------------------------------------


async def test_beteiligte_paging_and_filters(http, sim, auth) -> None:
    url = f"{sim.url}/api/v1/advonet/Beteiligte"
    created = []
    for i in range(5):
        async with http.post(url, json={"Name": f"Testperson{i}", "Vorname": "Eva", "ExterneId": f"espo-{i}"}, headers=auth) as resp:
            assert resp.status == 201
            created.append(await resp.json())
    assert [p["BetNr"] for p in created] == [3, 4, 5, 6, 7]
    pages = []
    for skip in (0, 3, 6):
        async with http.get(url, params={"skip": str(skip), "take": "3"}, headers=auth) as resp:
            pages.append([p["BetNr"] for p in await resp.json()])
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]
    async with http.get(url, params={"name": "testperson"}, headers=auth) as resp:
        assert len(await resp.json()) == 5
    async with http.get(url, params={"externeId": "espo-3"}, headers=auth) as resp:
        assert [p["BetNr"] for p in await resp.json()] == [6]
    since = created[0]["GeaendertAm"]
    async with http.get(url, params={"geaendertSeit": since}, headers=auth) as resp:
        assert [p["BetNr"] for p in await resp.json()] == [3, 4, 5, 6, 7]
    assert await status(http.get(url, params={"geaendertSeit": "kaputt"}, headers=auth)) == 400


async def test_beteiligter_crud_and_conflict(http, sim, auth) -> None:
    url = f"{sim.url}/api/v1/advonet/Beteiligte"
    async with http.post(url, json={"Vorname": "ohne Name"}, headers=auth) as resp:
        assert resp.status == 400
        assert "Name" in (await resp.json())["Message"]
    async with http.post(url, json={"Name": "Neu", "Geburtsdatum": "1990-02-03", "Email": "neu@example.org"}, headers=auth) as resp:
        party = await resp.json()
    assert party["Geburtsdatum"] == "1990-02-03T00:00:00"
    betnr = party["BetNr"]
    async with http.put(f"{url}/{betnr}", json={**party, "Ort": "Bonn"}, headers=auth) as resp:
        updated = await resp.json()
    assert updated["Ort"] == "Bonn" and updated["GeaendertAm"] >= party["GeaendertAm"]
    async with http.delete(f"{url}/1", headers=auth) as resp:
        assert resp.status == 409
        message = (await resp.json())["Message"]
    assert "Akte" in message and "1001/25" in message
    assert await status(http.delete(f"{url}/{betnr}", headers=auth)) == 200
    assert await status(http.get(f"{url}/{betnr}", headers=auth)) == 404


async def test_bankverbindungen(http, sim, auth) -> None:
    url = f"{sim.url}/api/v1/advonet/Beteiligte/1/Bankverbindungen"
    async with http.get(url, headers=auth) as resp:
        assert [b["IBAN"] for b in await resp.json()] == ["DE89370400440532013000"]
    async with http.post(url, json={"IBAN": "DE89 3704 0044 0532 0130 01"}, headers=auth) as resp:
        assert resp.status == 400
        assert "IBAN" in (await resp.json())["Message"]
    async with http.post(url, json={"IBAN": "de02 1203 0000 0000 2020 51", "Kontoinhaber": "P. Schulz"}, headers=auth) as resp:
        assert resp.status == 201
        bank = await resp.json()
    assert bank["IBAN"] == "DE02120300000000202051"
    async with http.put(f"{url}/{bank['Id']}", json={**bank, "BIC": "BYLADEM1001"}, headers=auth) as resp:
        assert (await resp.json())["BIC"] == "BYLADEM1001"
    assert await status(http.put(f"{url}/{bank['Id']}", json={**bank, "BIC": "XX"}, headers=auth)) == 400
    # a bank account of another party is not reachable under this one
    assert await status(http.delete(f"{sim.url}/api/v1/advonet/Beteiligte/2/Bankverbindungen/{bank['Id']}", headers=auth)) == 404
    assert await status(http.delete(f"{url}/{bank['Id']}", headers=auth)) == 200
    assert await status(http.get(f"{sim.url}/api/v1/advonet/Beteiligte/99/Bankverbindungen", headers=auth)) == 404


def test_iban_checksum() -> None:
    assert iban_is_valid("DE89370400440532013000")
    assert iban_is_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_is_valid("DE89370400440532013001")
    assert not iban_is_valid("DE8937040044")


async def test_reset_and_reseed(http, sim, auth) -> None:
    assert await status(http.post(f"{sim.url}/_sim/reset", json={})) == 200
    async with http.get(f"{sim.url}/api/v1/Akten", headers=auth) as resp:
        assert await resp.json() == []
    assert await status(http.post(f"{sim.url}/_sim/reset", json={"seed": True})) == 200
    async with http.get(f"{sim.url}/api/v1/Akten", headers=auth) as resp:
        assert len(await resp.json()) == 2


def test_demo_seed_dates_are_relative() -> None:
    app = create_app(API_KEY, APP_ID, KANZLEI, DATABASE, USER, PASSWORD, seed=load_demo_seed())
    from simulators.advoware import STATE

    termine = app[STATE].termine
    assert termine[1005]["Datum"] == f"{days(0)}T10:00:00Z"
    assert termine[1003]["ErinnerungsDatum"] == f"{days(-4)}T10:30:00Z"
