"""GoogleCalendarAPI and its token providers against the Google Calendar simulator."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.clients.errors import ApiError, AuthError, ValidationError
from services.clients.google_calendar import (
    GoogleCalendarAPI,
    ServiceAccountTokenProvider,
    StaticTokenProvider,
    SyncTokenExpired,
    is_cancelled,
    private_property,
)
from services.clients.retry import RetryPolicy
from simulators.google_calendar import create_app
from simulators.runner import RunningApp, start_app
from tests.sim_admin import request_statuses, sim_admin

TOKEN = "sandbox-token"
CAL = "mm@kanzlei.example"
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_total=10, jitter=False)


def event(summary: str, day: int = 10, frnr: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": summary,
        "start": {"dateTime": f"2026-03-{day:02d}T10:00:00+01:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": f"2026-03-{day:02d}T11:00:00+01:00", "timeZone": "Europe/Berlin"},
    }
    if frnr is not None:
        body["extendedProperties"] = {"private": {"advowareFrNr": frnr}}
    return body


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def sa_key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture
async def sim(sa_key: rsa.RSAPrivateKey) -> AsyncIterator[RunningApp]:
    seed = {"calendars": [{"id": CAL}, {"id": "ab@kanzlei.example"}]}
    running = await start_app(create_app({TOKEN}, seed=seed, public_key=public_pem(sa_key)))
    yield running
    await running.stop()


@pytest.fixture
async def gcal(sim: RunningApp) -> AsyncIterator[GoogleCalendarAPI]:
    api = GoogleCalendarAPI(f"{sim.url}/calendar/v3", token_provider=StaticTokenProvider(TOKEN), retry_policy=FAST)
    yield api
    await api.close()


admin = sim_admin


async def statuses(sim: RunningApp, path_re: str, method: str = "*") -> list[int]:
    return await request_statuses(sim, path_re, method)


async def test_crud_and_double_delete(gcal: GoogleCalendarAPI) -> None:
    created = await gcal.insert_event(CAL, event("Termin", frnr="42"))
    assert private_property(created, "advowareFrNr") == "42"
    fetched = await gcal.get_event(CAL, created["id"])
    assert fetched is not None and fetched["summary"] == "Termin"
    patched = await gcal.patch_event(CAL, created["id"], {"location": "Saal 1"})
    assert patched["location"] == "Saal 1" and patched["summary"] == "Termin"
    replaced = await gcal.update_event(CAL, created["id"], event("Neu", day=11, frnr="42"))
    assert replaced["summary"] == "Neu" and "location" not in replaced
    assert await gcal.delete_event(CAL, created["id"]) is True
    assert await gcal.delete_event(CAL, created["id"]) is False  # 410: already deleted
    assert await gcal.delete_event(CAL, "neverexisted1") is False  # 404
    gone = await gcal.get_event(CAL, created["id"])
    assert gone is not None and is_cancelled(gone)
    assert await gcal.get_event(CAL, "neverexisted1") is None
    with pytest.raises(ApiError) as err:
        await gcal.insert_event(CAL, {"summary": "ohne Zeiten"})
    assert err.value.status == 400 and "start" in err.value.reason
    with pytest.raises(ApiError) as err:
        await gcal.insert_event("nobody@kanzlei.example", event("x"))
    assert err.value.status == 404


async def test_insert_is_idempotent_with_generated_ids(gcal: GoogleCalendarAPI) -> None:
    first = await gcal.insert_event(CAL, {**event("Einmal"), "id": "abcdef000001"})
    # A retry of the same insert (same id) meets 409 and returns the existing event.
    again = await gcal.insert_event(CAL, {**event("Einmal"), "id": "abcdef000001"})
    assert again["id"] == first["id"] == "abcdef000001"
    items, _ = await gcal.list_all(CAL)
    assert [e["id"] for e in items] == ["abcdef000001"]
    other = await gcal.insert_event(CAL, event("Zweimal"))
    assert other["id"] != first["id"]


async def test_full_then_incremental_sync(gcal: GoogleCalendarAPI, sim: RunningApp) -> None:
    ids = [(await gcal.insert_event(CAL, event(f"T{i}", day=i + 1)))["id"] for i in range(5)]
    await admin(sim, "DELETE", "requests")
    items, sync = await gcal.list_all(CAL, page_size=2)
    assert [e["id"] for e in items] == ids and sync
    assert len(await statuses(sim, "/events$", "GET")) == 3  # three pages of two

    pages = [p async for p in gcal.iter_pages(CAL, page_size=2)]
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert [p.next_sync_token is not None for p in pages] == [False, False, True]

    await gcal.patch_event(CAL, ids[0], {"summary": "geändert"})
    await gcal.delete_event(CAL, ids[1])
    changed, sync2 = await gcal.list_all(CAL, sync_token=sync)
    by_id = {e["id"]: e for e in changed}
    assert set(by_id) == {ids[0], ids[1]}
    assert by_id[ids[0]]["summary"] == "geändert"
    assert is_cancelled(by_id[ids[1]])
    assert sync2 and sync2 != sync
    again, _ = await gcal.list_all(CAL, sync_token=sync2)
    assert again == []


async def test_expired_sync_token_raises(gcal: GoogleCalendarAPI, sim: RunningApp) -> None:
    await gcal.insert_event(CAL, event("A"))
    _, sync = await gcal.list_all(CAL)
    assert sync
    await admin(sim, "POST", "expire-sync-tokens")
    with pytest.raises(SyncTokenExpired) as err:
        await gcal.list_all(CAL, sync_token=sync)
    assert err.value.calendar_id == CAL and not err.value.retryable
    assert await statuses(sim, "/events$", "GET") == [200, 410]  # 410 is not retried
    # The caller's recovery: a full sync gives a fresh, working token.
    items, fresh = await gcal.list_all(CAL)
    assert len(items) == 1 and fresh
    assert (await gcal.list_all(CAL, sync_token=fresh))[0] == []


async def test_invalid_combination_is_rejected(gcal: GoogleCalendarAPI, sim: RunningApp) -> None:
    with pytest.raises(ValidationError):
        await gcal.list_events(CAL, sync_token="CPx", time_min="2026-01-01T00:00:00Z")
    with pytest.raises(ValidationError):
        await gcal.list_events(CAL, sync_token="CPx", private_ext={"advowareFrNr": "1"})
    assert await statuses(sim, "/events$") == []  # refused before asking Google


async def test_find_by_private_property(gcal: GoogleCalendarAPI) -> None:
    a = await gcal.insert_event(CAL, event("A", frnr="100"))
    await gcal.insert_event(CAL, event("B", frnr="200"))
    await gcal.insert_event("ab@kanzlei.example", event("A bei AB", frnr="100"))
    found = await gcal.find_by_private_property(CAL, "advowareFrNr", "100")
    assert [e["id"] for e in found] == [a["id"]]
    assert await gcal.find_by_private_property(CAL, "advowareFrNr", "999") == []
    await gcal.delete_event(CAL, a["id"])
    assert await gcal.find_by_private_property(CAL, "advowareFrNr", "100") == []
    deleted = await gcal.find_by_private_property(CAL, "advowareFrNr", "100", include_deleted=True)
    assert [e["id"] for e in deleted] == [a["id"]]


async def test_time_window(gcal: GoogleCalendarAPI) -> None:
    from datetime import datetime

    await gcal.insert_event(CAL, event("früh", day=1))
    late = await gcal.insert_event(CAL, event("spät", day=20))
    items, _ = await gcal.list_all(CAL, time_min=datetime(2026, 3, 15, tzinfo=UTC), time_max="2026-04-01T00:00:00Z")
    assert [e["id"] for e in items] == [late["id"]]
    with pytest.raises(ValidationError):
        await gcal.list_all(CAL, time_min=datetime(2026, 3, 15))


async def test_retries_on_500_and_429(gcal: GoogleCalendarAPI, sim: RunningApp) -> None:
    await gcal.insert_event(CAL, event("A"))
    await admin(sim, "DELETE", "requests")
    await admin(sim, "POST", "faults", {"path": "/events$", "method": "GET", "status": 500, "times": 2})
    items, _ = await gcal.list_all(CAL)
    assert len(items) == 1
    assert await statuses(sim, "/events$", "GET") == [500, 500, 200]

    await admin(sim, "POST", "faults", {"path": "/events$", "method": "GET", "status": 429, "retry_after": 0.25, "times": 1})
    started = time.monotonic()
    items, _ = await gcal.list_all(CAL)
    assert len(items) == 1 and time.monotonic() - started >= 0.24


async def test_static_token_401_is_auth_error_without_loop(sim: RunningApp) -> None:
    api = GoogleCalendarAPI(f"{sim.url}/calendar/v3", token_provider=StaticTokenProvider("wrong"), retry_policy=FAST)
    try:
        with pytest.raises(AuthError) as err:
            await api.list_all(CAL)
        assert err.value.status == 401
        assert await statuses(sim, "/events$") == [401]
    finally:
        await api.close()


def sa_info(key: rsa.RSAPrivateKey, token_uri: str) -> dict[str, Any]:
    return {
        "type": "service_account",
        "client_email": "kalender-sync@kanzlei-project.iam.gserviceaccount.com",
        "private_key_id": "kid-1",
        "private_key": pem(key),
        "token_uri": token_uri,
    }


async def test_service_account_tokens(sim: RunningApp, sa_key: rsa.RSAPrivateKey) -> None:
    provider = ServiceAccountTokenProvider(sa_info(sa_key, f"{sim.url}/token"), subject="mm@kanzlei.example", retry_policy=FAST)
    api = GoogleCalendarAPI(f"{sim.url}/calendar/v3", token_provider=provider, retry_policy=FAST)
    try:
        header_b64, claims_b64, _sig = provider.assertion().split(".")
        pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
        header = json.loads(base64.urlsafe_b64decode(pad(header_b64)))
        claims = json.loads(base64.urlsafe_b64decode(pad(claims_b64)))
        assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
        assert claims["sub"] == "mm@kanzlei.example" and claims["aud"] == f"{sim.url}/token"
        assert claims["scope"] == "https://www.googleapis.com/auth/calendar" and claims["exp"] - claims["iat"] == 3600

        await api.insert_event(CAL, event("A"))
        await api.list_all(CAL)
        assert await statuses(sim, "^/token$") == [200]  # cached
        # The simulator forgets issued tokens: the client gets 401, refreshes once and succeeds.
        await admin(sim, "POST", "revoke-tokens")
        items, _ = await api.list_all(CAL)
        assert len(items) == 1
        assert await statuses(sim, "^/token$") == [200, 200]
        assert (await statuses(sim, "/events$", "GET"))[-2:] == [401, 200]
    finally:
        await api.close()
        await provider.close()


async def test_service_account_with_wrong_key_fails_auth(sim: RunningApp) -> None:
    provider = ServiceAccountTokenProvider(sa_info(rsa_key(), f"{sim.url}/token"), retry_policy=FAST)
    try:
        with pytest.raises(AuthError) as err:
            await provider.token()
        assert "invalid_grant" in err.value.reason
        assert await statuses(sim, "^/token$") == [400]
    finally:
        await provider.close()
