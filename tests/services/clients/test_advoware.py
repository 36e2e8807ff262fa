"""AdvowareAPI against the Advoware simulator and a real Redis."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from services.clients.advoware.api import AdvowareAPI
from services.clients.advoware.client import discover_urls
from services.clients.advoware.responses import ResponseTooLargeError
from services.clients.advoware.token import format_timestamp, hmac512_signature
from services.clients.errors import ApiConnectionError, ApiError, AuthError, ConflictError, NotFoundError
from services.clients.retry import RetryPolicy
from simulators.runner import RunningApp, free_port
from tests.advoware_demo import API_KEY, KANZLEI, advoware_demo, demo_client

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, jitter=False)


# --- pure helpers -----------------------------------------------------------------------


def test_hmac_spec_vector() -> None:
    sig = hmac512_signature(API_KEY, 64, "app-123", "nonce-abc", "2026-08-30T00:00:00.000Z")
    assert sig == "o7rz9KmoXZs550HfzO6ffiG17XwiPmlBHlksUYKZ3jcfolELow51Fw5KlrQqCK5y41aIValDjrh1iQ2GZ2WtqQ=="


def test_format_timestamp_dotnet_style() -> None:
    dt = datetime(2021, 1, 29, 14, 4, 26, 795554, tzinfo=UTC)
    assert format_timestamp(dt) == "2021-01-29T14:04:26.7955540Z"
    berlin = datetime(2021, 1, 29, 15, 4, 26, 0, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(berlin) == "2021-01-29T14:04:26.0000000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", format_timestamp())


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[RunningApp]:
    async with advoware_demo() as running:
        yield running


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


TOKEN_AGE = 0.2
"""The clients here drop a token on 401 once it is this old (the tests wait that long: aged())."""


async def aged() -> None:
    """Let the current token grow older than TOKEN_AGE, so a 401 may replace it."""
    await asyncio.sleep(TOKEN_AGE + 0.05)


@pytest.fixture
def cache_key() -> str:
    return f"advoware:test:{uuid.uuid4().hex}"


def make_client(sim: RunningApp, redis: aioredis.Redis | None, cache_key: str, **over: Any) -> AdvowareAPI:
    kwargs: dict[str, Any] = dict(
        redis=redis,
        token_cache_key=cache_key,
        retry_policy=FAST,
        timeout=10.0,
        min_token_refresh_seconds=TOKEN_AGE,
    )
    return demo_client(sim.url + "/", sim.url + "/", **(kwargs | over))


@pytest.fixture
async def api(sim: RunningApp, redis_client: aioredis.Redis, cache_key: str) -> AsyncIterator[AdvowareAPI]:
    client = make_client(sim, redis_client, cache_key)
    try:
        yield client
    finally:
        await client.close()


async def sim_requests(sim: RunningApp, path: str, method: str = "*") -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{sim.url}/_sim/requests", params={"path": path, "method": method}) as resp:
            return await resp.json()


async def token_requests(sim: RunningApp) -> int:
    return len(await sim_requests(sim, "^/api/v1/Token$", "POST"))


async def admin(sim: RunningApp, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{sim.url}/_sim/{path}", json=body if body is not None else {}) as resp:
            assert resp.status == 200
            return await resp.json()


def days(n: int) -> datetime:
    return datetime.now(UTC).replace(tzinfo=None) + timedelta(days=n)


# --- token handling ---------------------------------------------------------------------


async def test_token_cached_in_redis_and_shared(sim, redis_client, cache_key) -> None:
    first = make_client(sim, redis_client, cache_key)
    second = make_client(sim, redis_client, cache_key)
    try:
        assert len(await first.list_employees()) == 3
        assert await redis_client.pttl(cache_key) > 0
        assert len(await second.list_employees()) == 3
        assert await token_requests(sim) == 1
        assert (first.token_fetches, second.token_fetches) == (1, 0)
    finally:
        await first.close()
        await second.close()


async def test_token_ttl_in_redis_ends_before_expiry(sim, redis_client, cache_key) -> None:
    client = make_client(sim, redis_client, cache_key, refresh_margin_seconds=120)
    try:
        await client.get_token()
        ttl = await redis_client.pttl(cache_key) / 1000
        assert 3600 - 120 - 5 < ttl <= 3600 - 120
    finally:
        await client.close()


async def test_concurrent_calls_fetch_one_token(api, sim) -> None:
    results = await asyncio.gather(*(api.list_employees() for _ in range(50)))
    assert all(len(r) == 3 for r in results)
    assert await token_requests(sim) == 1


async def test_concurrent_processes_share_one_fetch(sim, redis_client, cache_key) -> None:
    # separate instances stand in for separate worker processes: only Redis connects them
    clients = [make_client(sim, redis_client, cache_key) for _ in range(4)]
    try:
        await asyncio.gather(*(c.list_employees() for c in clients for _ in range(10)))
        assert await token_requests(sim) == 1
        assert sum(c.token_fetches for c in clients) == 1
    finally:
        for c in clients:
            await c.close()


@pytest.mark.parametrize(("redis_state", "calls"), [("absent", 10), ("down", 5)])
async def test_one_token_without_a_usable_redis(sim, cache_key, redis_state: str, calls: int) -> None:
    """Without Redis, or with one that does not answer, the token is kept in memory: one fetch for all calls."""
    redis = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5) if redis_state == "down" else None
    client = make_client(sim, redis, cache_key)
    try:
        await asyncio.gather(*(client.list_employees() for _ in range(calls)))
        assert await token_requests(sim) == 1
    finally:
        await client.close()
        if redis is not None:
            await redis.aclose()


async def test_expired_tokens_refresh_exactly_once(api, sim, redis_client, cache_key) -> None:
    await asyncio.gather(*(api.list_employees() for _ in range(10)))
    old = await api.get_token()
    await aged()
    await admin(sim, "expire-tokens")
    results = await asyncio.gather(*(api.list_employees() for _ in range(50)))
    assert all(len(r) == 3 for r in results)
    assert await token_requests(sim) == 2
    new = await api.get_token()
    assert new != old
    assert await redis_client.get(cache_key)  # the new token is cached (sealed: tests/security/test_advoware_token.py)
    assert len([r for r in await sim_requests(sim, "Mitarbeiter") if r["status"] == 401]) >= 1


async def test_other_process_refresh_does_not_drop_new_token(sim, redis_client, cache_key) -> None:
    a = make_client(sim, redis_client, cache_key)
    b = make_client(sim, redis_client, cache_key)
    try:
        await a.list_employees()
        await b.list_employees()
        await aged()
        await admin(sim, "expire-tokens")
        await a.list_employees()  # a refreshes and caches the new token
        await b.list_employees()  # b's stale token fails; it must adopt a's token, not fetch again
        assert await token_requests(sim) == 2
    finally:
        await a.close()
        await b.close()


async def test_persistent_401_raises_auth_error(api, sim) -> None:
    await api.list_employees()
    await aged()
    await admin(sim, "faults", {"path": "Mitarbeiter", "status": 401, "times": 2})
    with pytest.raises(AuthError):
        await api.list_employees()
    assert await token_requests(sim) == 2  # one refresh, no more


async def test_bad_credentials_raise_auth_error(sim, redis_client, cache_key) -> None:
    client = make_client(sim, redis_client, cache_key, password="falsch")
    try:
        with pytest.raises(AuthError) as info:
            await client.list_employees()
        assert "Falscher Name oder falsches Kennwort" in info.value.reason
        assert await token_requests(sim) == 1  # 401 is permanent: not retried
    finally:
        await client.close()


async def test_discover_urls(sim) -> None:
    urls = await discover_urls(sim.url + "/", KANZLEI)
    assert urls.api_base == sim.url + "/" and urls.security_gateway == sim.url + "/"


# --- retries ----------------------------------------------------------------------------


async def test_get_retried_after_503(api, sim) -> None:
    await admin(sim, "faults", {"method": "GET", "path": "Mitarbeiter", "status": 503, "times": 2})
    assert len(await api.list_employees()) == 3
    assert [r["status"] for r in await sim_requests(sim, "Mitarbeiter")] == [503, 503, 200]


async def test_400_not_retried(api, sim) -> None:
    with pytest.raises(ApiError) as info:
        await api.create_appointment({"Text": "ohne Datum"})
    assert info.value.status == 400 and "Datum" in info.value.reason
    await admin(sim, "faults", {"method": "GET", "path": "Mitarbeiter", "status": 400, "times": 3})
    with pytest.raises(ApiError):
        await api.list_employees()
    assert len(await sim_requests(sim, "TermineActiveSync", "POST")) == 1
    assert len(await sim_requests(sim, "Mitarbeiter", "GET")) == 1


async def test_post_not_retried_on_503(api, sim) -> None:
    await admin(sim, "faults", {"method": "POST", "path": "Beteiligte", "status": 503, "times": 1})
    with pytest.raises(ApiError) as info:
        await api.create_party({"Name": "Einmal"})
    assert info.value.status == 503 and info.value.retryable
    assert len(await sim_requests(sim, "Beteiligte", "POST")) == 1


async def test_connection_reset_retried_for_get(api, sim) -> None:
    await admin(sim, "faults", {"method": "GET", "path": "Akten", "reset": True, "times": 1})
    assert len(await api.list_matters()) == 2


# --- raw request (proxy) ----------------------------------------------------------------


async def test_raw_request_passes_errors_through(api, sim) -> None:
    resp = await api.request("GET", "api/v1/Akten/4711")
    assert resp.status == 404 and "nicht gefunden" in resp.json()["Message"]
    resp = await api.request("POST", "api/v1/advonet/TermineActiveSync", json_body={"Text": "x"})
    assert resp.status == 400 and resp.content_type == "application/json"
    resp = await api.request("GET", "/api/v1/advonet/Mitarbeiter", headers={"Authorization": "Bearer fremd"})
    assert resp.status == 200 and len(resp.json()) == 3


async def test_raw_request_retries_get_only(api, sim) -> None:
    await admin(sim, "faults", {"method": "GET", "path": "Akten", "status": 503, "times": 1})
    resp = await api.request("GET", "api/v1/Akten", params={"take": "1"})
    assert resp.status == 200 and len(resp.json()) == 1
    await admin(sim, "faults", {"method": "GET", "path": "Akten", "status": 503, "times": 5, "retry_after": 0})
    resp = await api.request("GET", "api/v1/Akten")
    assert resp.status == 503 and resp.headers["Retry-After"] == "0"  # last answer after 3 attempts
    async with aiohttp.ClientSession() as s:
        await s.delete(f"{sim.url}/_sim/faults")
    await admin(sim, "faults", {"method": "POST", "path": "TermineActiveSync", "status": 503, "times": 1})
    resp = await api.request("POST", "api/v1/advonet/TermineActiveSync", json_body={"Datum": "2026-05-10T10:00:00Z"})
    assert resp.status == 503
    assert len(await sim_requests(sim, "TermineActiveSync", "POST")) == 1


async def test_raw_request_size_limit(api) -> None:
    with pytest.raises(ResponseTooLargeError):
        await api.request("GET", "api/v1/advonet/Mitarbeiter", max_response_bytes=50)
    resp = await api.request("GET", "api/v1/advonet/Mitarbeiter", max_response_bytes=100_000)
    assert resp.ok


async def test_raw_request_refuses_path_escape(api) -> None:
    from services.clients.errors import ValidationError

    with pytest.raises(ValidationError):
        await api.request("GET", "api/v1/../../_sim/requests")


async def test_connection_error_is_typed(sim, redis_client, cache_key) -> None:
    client = make_client(sim, redis_client, cache_key, retry_policy=RetryPolicy(max_attempts=1))
    await sim.stop()
    try:
        with pytest.raises(ApiConnectionError):
            await client.list_employees()
    finally:
        await client.close()


# --- typed calls ------------------------------------------------------------------------


async def test_appointments_crud(api) -> None:
    listed = await api.list_appointments("MM", days(-14).date(), days(14).date())
    assert {t["FrNr"] for t in listed} >= {1001, 1002, 1009}
    start = days(3).replace(hour=9, minute=0, second=0, microsecond=0)
    created = await api.create_appointment(
        {"Text": "Akteneinsicht", "Datum": start, "DatumBis": start.date(), "UhrzeitBis": "10:00:00",
         "Anwalt": "AB", "Sb": "AB", "Ort": "Amtsgericht", "Nr": 1002, "FrNr": 1}
    )
    frnr = created["FrNr"]
    assert frnr != 1 and created["ZuletztGeaendertAm"] and created["Ort"] == "Amtsgericht"
    assert (await api.get_appointment(frnr))["Text"] == "Akteneinsicht"
    updated = await api.update_appointment(frnr, {"Text": "Akteneinsicht (verlegt)"})
    assert updated["Text"] == "Akteneinsicht (verlegt)"
    assert updated["Ort"] == "Amtsgericht" and updated["Nr"] == 1002  # merged, not wiped
    assert frnr in {t["FrNr"] for t in await api.list_appointments("ab", start.date(), start.date())}
    await api.delete_appointment(frnr)
    with pytest.raises(NotFoundError):
        await api.get_appointment(frnr)
    with pytest.raises(NotFoundError):
        await api.delete_appointment(frnr)


async def test_aware_datetime_rejected(api) -> None:
    from services.clients.errors import ValidationError

    with pytest.raises(ValidationError):
        await api.create_appointment({"Datum": datetime.now(UTC)})


async def test_parties_crud_and_paging(api) -> None:
    since = datetime.now(UTC)
    created = [await api.create_party({"Name": f"Person {i}", "Vorname": "Eva", "ExterneId": f"espo-{i}"}) for i in range(5)]
    pages = [page async for page in api.list_parties(page_size=2)]
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    changed = [p["BetNr"] async for page in api.list_parties(changed_since=since, page_size=2) for p in page]
    assert changed == [p["BetNr"] for p in created]
    found = await api.find_party_by_external_id("espo-3")
    assert found is not None and found["BetNr"] == created[3]["BetNr"]
    assert await api.find_party_by_external_id("espo-404") is None
    updated = await api.update_party(created[0]["BetNr"], {"Ort": "Bonn"})
    assert updated["Ort"] == "Bonn" and updated["Vorname"] == "Eva" and updated["ExterneId"] == "espo-0"
    assert (await api.get_party(created[0]["BetNr"]))["Ort"] == "Bonn"
    await api.delete_party(created[1]["BetNr"])
    with pytest.raises(NotFoundError):
        await api.get_party(created[1]["BetNr"])


async def test_delete_party_with_matters_conflicts(api) -> None:
    with pytest.raises(ConflictError) as info:
        await api.delete_party(1)
    assert info.value.status == 409 and "Akte" in info.value.reason and not info.value.retryable


async def test_bank_accounts_crud(api) -> None:
    party = await api.create_party({"Name": "Kontoinhaberin"})
    betnr = party["BetNr"]
    assert await api.list_bank_accounts(betnr) == []
    bank = await api.create_bank_account(betnr, {"IBAN": "DE89 3704 0044 0532 0130 00", "Kontoinhaber": "K."})
    assert bank["IBAN"] == "DE89370400440532013000"
    updated = await api.update_bank_account(betnr, bank["Id"], {"Bank": "Commerzbank"})
    assert updated["Bank"] == "Commerzbank" and updated["Kontoinhaber"] == "K."
    with pytest.raises(ApiError) as info:
        await api.create_bank_account(betnr, {"IBAN": "DE89370400440532013001"})
    assert info.value.status == 400 and "IBAN" in info.value.reason
    await api.delete_bank_account(betnr, bank["Id"])
    assert await api.list_bank_accounts(betnr) == []
    with pytest.raises(NotFoundError):
        await api.update_bank_account(betnr, bank["Id"], {"Bank": "x"})


async def test_matters_and_employees(api) -> None:
    assert [m["Nr"] for m in await api.list_matters(page_size=1)] == [1001, 1002]
    assert (await api.get_matter(1001))["Rubrum"].startswith("Schulz")
    assert {e["Kuerzel"] for e in await api.list_employees()} == {"MM", "AB", "CK"}


def test_paths_helpers() -> None:
    from services.clients.advoware import paths as P

    rec = P.normalize_record({"frNr": 5, "datumBis": "x", "zuletztGeaendertAm": "y", "Extra": 1}, P.TerminField)
    assert rec == {"FrNr": 5, "DatumBis": "x", "ZuletztGeaendertAm": "y", "Extra": 1}
    assert P.parse_utc("2016-06-22T13:17:01.608") == datetime(2016, 6, 22, 13, 17, 1, 608000, tzinfo=UTC)
    assert P.parse_utc("2021-01-29T15:04:26.7955547+01:00") == datetime(2021, 1, 29, 14, 4, 26, 795554, tzinfo=UTC)
    assert P.parse_wall_clock("2026-05-10T09:00:00Z") == datetime(2026, 5, 10, 9, 0)
    assert P.parse_time("23:59") == (23, 59, 0)
    assert P.bankverbindung_path(7, 3) == "api/v1/advonet/Beteiligte/7/Bankverbindungen/3"
    assert P.TurnusArt.WOECHENTLICH == 2


# --- redirects are never followed ----------------------------------------------------------


@pytest.fixture
async def redirecting() -> AsyncIterator[tuple[str, list[str]]]:
    """An Advoware whose token endpoint, API path and configurator redirect (302/307) to an
    "internal" server; yields the base URL and the list of requests the internal one saw."""
    from aiohttp import web

    from simulators.runner import start_app

    seen: list[str] = []

    async def internal(request: web.Request) -> web.Response:
        seen.append(request.path)
        if request.path.endswith("/Token"):
            return web.json_response({"access_token": "internal-token", "expiration_utc": "2099-01-01T00:00:00Z"})
        return web.json_response({"secret": "INTERNAL-ADMIN-PAGE", "connectorUrl": "http://x/", "securityGateway": "http://x/"})

    inner_app = web.Application()
    inner_app.router.add_route("*", "/{tail:.*}", internal)
    inner = await start_app(inner_app)

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "outer-token", "expiration_utc": "2099-01-01T00:00:00Z"})

    async def bounce(request: web.Request) -> web.Response:
        raise web.HTTPFound(inner.url + "/internal" + request.path)

    async def bounce_token(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(inner.url + "/api/v1/Token")

    outer_app = web.Application()
    outer_app.router.add_post("/api/v1/Token", token)
    outer_app.router.add_post("/moved/api/v1/Token", bounce_token)
    outer_app.router.add_route("*", "/api/v1/advonet/Mitarbeiter", bounce)
    outer_app.router.add_get("/AdvonetConfigurator/api/Url", bounce)
    outer = await start_app(outer_app)
    try:
        yield outer.url, seen
    finally:
        await outer.stop()
        await inner.stop()


async def test_api_redirect_is_not_followed(redirecting: tuple[str, list[str]]) -> None:
    url, seen = redirecting
    client = demo_client(url + "/", url + "/api/v1/Token", retry_policy=FAST)
    try:
        raw = await client.request("GET", "api/v1/advonet/Mitarbeiter")
        assert raw.status == 302 and b"INTERNAL" not in raw.body  # the answer as it came, for the proxy to judge
        with pytest.raises(ApiError) as info:
            await client.list_employees()
        assert info.value.status == 302 and not info.value.retryable
    finally:
        await client.close()
    assert seen == []


async def test_token_and_discovery_redirects_are_not_followed(redirecting: tuple[str, list[str]]) -> None:
    url, seen = redirecting
    client = demo_client(url + "/", url + "/moved/api/v1/Token", retry_policy=FAST)
    try:
        with pytest.raises(ApiError) as info:
            await client.get_token()
        assert info.value.status == 307 and "redirect" in info.value.reason
    finally:
        await client.close()
    with pytest.raises(ApiError) as found:
        await discover_urls(url + "/", KANZLEI)
    assert found.value.status == 302
    assert seen == []
