"""The shared Advoware gateway token (issue #14, "Configuration and secrets" and "The Advoware
proxy"), against the Advoware simulator and a real Redis:

- Whoever can read Redis does not get a usable token: the cached value is sealed with a key
  derived from the API key; it opens with that key only and only under its own cache key.
- A plaintext token cached by the version before is not used and not a crash: it is replaced.
- A 401 causes at most one gateway login per token and interval: an endpoint that always
  answers 401 cannot make the client log in per request (the simulator counts the logins), and
  concurrent 401s of an old token share one login.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from services.clients.advoware.api import AdvowareAPI
from services.clients.advoware.sealed import TokenSeal
from services.clients.errors import AuthError
from services.clients.retry import RetryPolicy
from simulators.runner import RunningApp
from tests.advoware_demo import API_KEY, advoware_demo, demo_client

FAST = RetryPolicy(max_attempts=1)
INTERVAL = 0.6
"""The clients' min_token_refresh_seconds here."""


@dataclass
class Setup:
    """The simulator, a Redis client and a cache key of this test's own."""

    sim: RunningApp
    redis: aioredis.Redis
    cache_key: str

    def client(self) -> AdvowareAPI:
        """A client of the simulator caching its token under `cache_key`, with INTERVAL as its refresh rule."""
        return demo_client(
            self.sim.url + "/", self.sim.url + "/", redis=self.redis, token_cache_key=self.cache_key, retry_policy=FAST,
            min_token_refresh_seconds=INTERVAL,
        )


@pytest.fixture
async def env(redis_url: str) -> AsyncIterator[Setup]:
    redis = aioredis.from_url(redis_url)
    async with advoware_demo() as sim:
        try:
            yield Setup(sim, redis, f"advoware:security-test:{uuid.uuid4().hex}")
        finally:
            await redis.aclose()


async def sim_log(sim: RunningApp, path: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{sim.url}/_sim/requests", params={"path": path}) as r:
            return list(await r.json())


async def logins(sim: RunningApp) -> int:
    return len([r for r in await sim_log(sim, "(?i)^/api/v1/Token$") if r["method"] == "POST"])


async def sim_post(sim: RunningApp, path: str, body: Any = None) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(sim.url + path, json=body if body is not None else {}) as r:
            assert r.status < 400, await r.text()


# --- the cached token is sealed --------------------------------------------------------


async def test_redis_never_holds_the_token_in_plain_text(env: Setup) -> None:
    api = env.client()
    try:
        token = await api.get_token()
    finally:
        await api.close()
    raw = await env.redis.get(env.cache_key)
    assert raw and token.encode() not in raw and base64.b64encode(token.encode()) not in raw
    stored = json.loads(raw)
    assert set(stored) == {"v", "id", "sealed"} and token not in json.dumps(stored)
    key = base64.b64decode(API_KEY)
    opened = TokenSeal(key, env.cache_key).open(raw)
    assert opened is not None and json.loads(opened)["access_token"] == token
    assert TokenSeal(b"another-api-key", env.cache_key).open(raw) is None  # a Redis reader without the API key
    assert TokenSeal(key, env.cache_key + ":copy").open(raw) is None  # the value moved under another key


async def test_a_second_process_reads_the_sealed_token(env: Setup) -> None:
    first, second = env.client(), env.client()
    try:
        assert await first.get_token() == await second.get_token()
        assert (first.token_fetches, second.token_fetches, await logins(env.sim)) == (1, 0, 1)
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("legacy", ["plaintext", "garbage", "wrong-seal"])
async def test_an_old_or_foreign_cache_entry_is_replaced(env: Setup, legacy: str) -> None:
    now = time.time()
    values = {
        "plaintext": json.dumps({"access_token": "stolen-looking-token", "expiration_utc": "2099-01-01T00:00:00Z",
                                 "expires_at": now + 3600, "usable_until": now + 3000}),
        "garbage": "\x00not json at all",
        "wrong-seal": TokenSeal(b"another-api-key", env.cache_key).seal("stolen-looking-token", "{}"),
    }
    await env.redis.set(env.cache_key, values[legacy], px=600_000)
    api = env.client()
    try:
        employees = await api.list_employees()  # no crash, and the old entry's token is not sent
        assert employees
        token = await api.get_token()
    finally:
        await api.close()
    assert token != "stolen-looking-token" and await logins(env.sim) == 1
    raw = await env.redis.get(env.cache_key)
    assert json.loads(raw)["v"] == 2 and b"stolen-looking-token" not in raw
    sent = await sim_log(env.sim, "(?i)Mitarbeiter")
    assert all(r["status"] == 200 for r in sent)


# --- a 401 causes at most one login per token and interval ------------------------------


async def test_an_endpoint_that_always_answers_401_cannot_cause_logins(env: Setup) -> None:
    api = env.client()
    try:
        await api.list_employees()  # the token is fetched now
        await sim_post(env.sim, "/_sim/faults", {"path": "(?i)Mitarbeiter$", "status": 401})
        for _ in range(20):
            raw = await api.request("GET", "api/v1/advonet/Mitarbeiter")
            assert raw.status == 401  # Advoware's answer, passed on
        with pytest.raises(AuthError):
            await api.list_employees()
        assert await logins(env.sim) == 1, "a 401 on a fresh token made the client log in again"
        await asyncio.sleep(INTERVAL + 0.1)
        results = await asyncio.gather(*(api.request("GET", "api/v1/advonet/Mitarbeiter") for _ in range(10)))
        assert [r.status for r in results] == [401] * 10
        assert await logins(env.sim) == 2  # once the token is old enough: one login, shared by all ten
        for _ in range(10):
            await api.request("GET", "api/v1/advonet/Mitarbeiter")
        assert await logins(env.sim) == 2
    finally:
        await api.close()


async def test_an_expired_old_token_is_still_replaced_once(env: Setup) -> None:
    first, second = env.client(), env.client()
    try:
        await first.list_employees()
        await second.list_employees()
        await asyncio.sleep(INTERVAL + 0.1)
        await sim_post(env.sim, "/_sim/expire-tokens")
        results = await asyncio.gather(*(c.list_employees() for c in (first, second) for _ in range(15)))
        assert all(results)
        assert await logins(env.sim) == 2  # one for the start, one for the expired token, across both clients
    finally:
        await first.close()
        await second.close()
