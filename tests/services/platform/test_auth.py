"""services.platform.auth: the one bearer parsing and token comparison every endpoint uses, the
client address, and the limit on failed authentications (Redis and in-process; `admit`)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.platform.auth import (
    DIRECT_ADDRESS,
    AuthFailureLimiter,
    bearer_token,
    client_address,
    header_value,
    lower_headers,
    token_matches,
)
from services.platform.rejected import Rejected


@pytest.mark.parametrize(("headers", "token"), [
    ({"Authorization": "Bearer abc"}, "abc"),
    ({"authorization": "bearer  abc "}, "abc"),
    ({"AUTHORIZATION": ["Bearer abc", "Bearer other"]}, "abc"),
    ({"Authorization": "Basic abc"}, None),
    ({"Authorization": "Bearer "}, None),
    ({"Authorization": "Bearerabc"}, None),
    ({}, None),
    (None, None),
])
def test_bearer_token(headers: dict[str, object] | None, token: str | None) -> None:
    assert bearer_token(headers) == token


def test_header_value_is_case_insensitive_and_takes_the_first_of_a_list() -> None:
    assert header_value({"X-Forwarded-For": ("1.2.3.4", "5.6.7.8")}, "x-forwarded-for") == "1.2.3.4"
    assert header_value({"X-Other": "a"}, "x-forwarded-for") == ""
    assert lower_headers({"Content-Type": ["a/b", "c/d"], "X-Empty": [], "X-N": 3}) == {"content-type": "a/b", "x-empty": "", "x-n": "3"}


def test_token_matches_only_the_same_token() -> None:
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cret ", "s3cret")
    assert not token_matches("s3cre", "s3cret")
    assert not token_matches(None, "s3cret")
    assert not token_matches("", "s3cret")


def test_client_address_is_the_last_forwarded_hop() -> None:
    assert client_address({"X-Forwarded-For": "203.0.113.9"}) == "203.0.113.9"
    assert client_address({"x-forwarded-for": "1.2.3.4, 10.0.0.7"}) == "10.0.0.7"  # nginx appended 10.0.0.7
    assert client_address({"x-forwarded-for": "1.2.3.4, 2001:db8::1"}) == "2001:db8::1"
    for headers in ({}, {"x-forwarded-for": ""}, {"x-forwarded-for": "evil\r\nx"}, {"x-forwarded-for": "a" * 500},
                    {"x-forwarded-for": "1.2.3.4, unknown"}):
        assert client_address(headers) == DIRECT_ADDRESS


async def exercise_limiter(limiter: AuthFailureLimiter) -> None:
    a, b = "198.51.100.1", "198.51.100.2"
    for _ in range(3):
        assert await limiter.retry_after(a) == 0
        await limiter.record_failure(a)
    wait = await limiter.retry_after(a)
    assert 1 <= wait <= 2
    assert await limiter.retry_after(b) == 0  # per address
    await asyncio.sleep(1.3)  # the window (1.2 s) is over
    assert await limiter.retry_after(a) == 0


async def test_limiter_counts_in_redis(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    prefix = f"test-authfail-{uuid.uuid4().hex}:"
    try:
        await exercise_limiter(AuthFailureLimiter(client, limit=3, window_seconds=1.2, key_prefix=prefix))
        # shared: another limiter (another worker) on the same Redis sees the count
        one = AuthFailureLimiter(client, limit=2, window_seconds=30, key_prefix=prefix)
        other = AuthFailureLimiter(client, limit=2, window_seconds=30, key_prefix=prefix)
        await one.record_failure("192.0.2.5")
        await other.record_failure("192.0.2.5")
        assert await one.retry_after("192.0.2.5") >= 29
        assert 29_000 <= await client.pttl(prefix + "192.0.2.5") <= 30_000  # the window starts at the first failure
    finally:
        await client.aclose()


async def test_limiter_counts_in_process_without_redis() -> None:
    await exercise_limiter(AuthFailureLimiter(None, limit=3, window_seconds=1.2, key_prefix=f"mem-{uuid.uuid4().hex}:"))


async def test_limiter_falls_back_when_redis_fails() -> None:
    class Broken:
        def pipeline(self, **_: Any) -> Any:
            raise ConnectionError("redis is down")

    await exercise_limiter(AuthFailureLimiter(Broken(), limit=3, window_seconds=1.2, key_prefix=f"down-{uuid.uuid4().hex}:"))


async def test_admit_refuses_past_the_limit_before_verifying_and_counts_only_401() -> None:
    limiter = AuthFailureLimiter(None, limit=2, window_seconds=60, key_prefix=f"admit-{uuid.uuid4().hex}:")
    address = "198.51.100.9"
    verified: list[str] = []

    def verify(status: int | None) -> Any:
        def run() -> str:
            verified.append("ran")
            if status is not None:
                raise Rejected(status, "no")
            return "caller"
        return run

    def too_many(wait: int, reason: str) -> Rejected:
        return Rejected(429, f"{wait}|{reason}")

    assert await limiter.admit(address, verify(None), too_many) == "caller"
    for _ in range(3):  # a refusal other than 401 (e.g. 503: nothing configured) is no failed authentication
        with pytest.raises(Rejected) as info:
            await limiter.admit(address, verify(503), too_many)
        assert info.value.status == 503
    assert await limiter.retry_after(address) == 0
    for _ in range(2):
        with pytest.raises(Rejected) as info:
            await limiter.admit(address, verify(401), too_many)
        assert info.value.status == 401
    verified.clear()
    with pytest.raises(Rejected) as info:
        await limiter.admit(address, verify(None), too_many)
    wait, reason = info.value.reason.split("|")
    assert info.value.status == 429 and 59 <= int(wait) <= 60 and f"retry in {wait} s" in reason
    assert verified == []  # nothing is compared while the address is refused
