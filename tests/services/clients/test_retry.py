"""services.clients.retry: what is retried, how long it waits, when it gives up (fake sleep and clock)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest

from services.clients.errors import (
    ApiConnectionError,
    ApiError,
    AuthError,
    ConflictError,
    LockBusyError,
    NotFoundError,
    ValidationError,
)
from services.clients.retry import NO_RETRY, RetryPolicy, parse_retry_after, retry_after_of, retry_async


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(errors: list[BaseException], result: Any = "ok") -> tuple[Callable[[], Awaitable[Any]], list[int]]:
    """An operation raising `errors` in turn, then returning `result`; also its call counter."""
    calls = [0]

    async def op() -> Any:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return op, calls


POLICY = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=8.0, max_total=1000.0, jitter=False)


async def run(op: Callable[[], Awaitable[Any]], policy: RetryPolicy = POLICY, t: FakeTime | None = None, **kw: Any) -> Any:
    t = t or FakeTime()
    return await retry_async(op, policy, sleep=t.sleep, clock=t.clock, **kw)


# --------------------------------------------------------------------------- what is retried


@pytest.mark.parametrize(
    "error",
    [
        ApiError("svc", 503),
        ApiError("svc", 500),
        ApiError("svc", 502),
        ApiError("svc", 504),
        ApiError("svc", 429),
        ApiError("svc", 408),
        ApiConnectionError("svc", "refused"),
        ApiConnectionError("svc", "slow", timeout=True),
        LockBusyError("document_sync:CDokumente:x"),
        aiohttp.ClientConnectionError("reset"),
        aiohttp.ServerDisconnectedError(),
        TimeoutError(),
        ConnectionResetError(),
    ],
)
async def test_retryable_errors_are_retried(error: BaseException) -> None:
    t = FakeTime()
    op, calls = failing([error, error])
    assert await run(op, t=t) == "ok"
    assert calls[0] == 3
    assert t.sleeps == [1.0, 2.0]


@pytest.mark.parametrize(
    "error",
    [
        ApiError("svc", 400, "bad where clause"),
        ApiError("svc", 422),
        NotFoundError("svc", 404),
        AuthError("svc", 401),
        AuthError("svc", 403),
        ConflictError("svc", 409),
        ValidationError("bad payload"),
        ValueError("a bug"),
        KeyError("x"),
    ],
)
async def test_permanent_errors_are_raised_at_once(error: BaseException) -> None:
    t = FakeTime()
    op, calls = failing([error])
    with pytest.raises(type(error)) as info:
        await run(op, t=t)
    assert info.value is error
    assert calls[0] == 1 and t.sleeps == []


async def test_cancellation_is_not_retried() -> None:
    t = FakeTime()
    op, calls = failing([asyncio.CancelledError()])
    with pytest.raises(asyncio.CancelledError):
        await run(op, t=t)
    assert calls[0] == 1


# --------------------------------------------------------------------------- when it stops


async def test_stops_at_max_attempts_and_raises_last_error() -> None:
    t = FakeTime()
    errors: list[BaseException] = [ApiError("svc", 503, f"try {n}") for n in range(10)]
    op, calls = failing(errors)
    with pytest.raises(ApiError) as info:
        await run(op, RetryPolicy(max_attempts=4, base_delay=1, max_delay=100, max_total=1000, jitter=False), t=t)
    assert calls[0] == 4
    assert info.value.reason == "try 3"
    assert t.sleeps == [1, 2, 4]


async def test_no_retry_policy_tries_once() -> None:
    op, calls = failing([ApiError("svc", 503)])
    with pytest.raises(ApiError):
        await run(op, NO_RETRY)
    assert calls[0] == 1


async def test_rate_limits_spend_no_attempt_only_time() -> None:
    t = FakeTime()
    op, calls = failing([ApiError("xai", 429)] * 6 + [ApiError("xai", 503)])
    policy = RetryPolicy(max_attempts=2, base_delay=1, max_delay=8, max_total=1000, jitter=False)
    assert await run(op, policy, t=t) == "ok"
    # six 429s and one 503 (the first counted failure of two allowed); the backoff still grows
    assert calls[0] == 8 and t.sleeps == [1, 2, 4, 8, 8, 8, 8]


async def test_rate_limited_past_max_total_raises_the_retryable_429() -> None:
    t = FakeTime()
    op, calls = failing([ApiError("xai", 429, retry_after=10.0)] * 100)
    with pytest.raises(ApiError) as info:
        await run(op, RetryPolicy(max_attempts=2, max_total=35), t=t)
    assert info.value.status == 429 and info.value.retryable
    assert calls[0] == 4 and t.sleeps == [10.0, 10.0, 10.0]  # a fourth wait would end at 40 > 35


async def test_no_retry_policy_does_not_retry_a_rate_limit() -> None:
    op, calls = failing([ApiError("svc", 429, retry_after=0.1)])
    with pytest.raises(ApiError):
        await run(op, NO_RETRY)
    assert calls[0] == 1


async def test_stops_when_next_wait_would_pass_max_total() -> None:
    t = FakeTime()
    op, calls = failing([ApiError("svc", 503)] * 10)
    policy = RetryPolicy(max_attempts=10, base_delay=10, max_delay=100, max_total=25, jitter=False)
    with pytest.raises(ApiError):
        await run(op, policy, t=t)
    # t=0 fail → wait 10 (ends at 10 ≤ 25); t=10 fail → wait 20 would end at 30 > 25: give up
    assert calls[0] == 2 and t.sleeps == [10]


async def test_max_total_counts_time_spent_in_the_operation() -> None:
    t = FakeTime()
    calls = [0]

    async def slow_failure() -> None:
        calls[0] += 1
        t.now += 20  # each attempt itself takes 20 s
        raise ApiConnectionError("svc", "timeout", timeout=True)

    with pytest.raises(ApiConnectionError):
        await run(slow_failure, RetryPolicy(max_attempts=10, base_delay=1, max_delay=1, max_total=50, jitter=False), t=t)
    # after attempt 1: 20+1 ≤ 50; after attempt 2: 41+1 ≤ 50; after attempt 3: 62+1 > 50
    assert calls[0] == 3 and t.sleeps == [1, 1]


# --------------------------------------------------------------------------- how long it waits


async def test_honours_retry_after_instead_of_backoff() -> None:
    t = FakeTime()
    op, _ = failing([ApiError("xai", 429, retry_after=7.0), ApiError("xai", 503, retry_after=0.5)])
    assert await run(op, t=t) == "ok"
    assert t.sleeps == [7.0, 0.5]


async def test_retry_after_beyond_max_delay_is_honoured_but_bounded_by_max_total() -> None:
    t = FakeTime()
    op, _ = failing([ApiError("xai", 429, retry_after=20.0)])
    assert await run(op, RetryPolicy(max_attempts=3, base_delay=1, max_delay=5, max_total=60, jitter=False), t=t) == "ok"
    assert t.sleeps == [20.0]

    t = FakeTime()
    op, calls = failing([ApiError("xai", 429, retry_after=120.0)])
    with pytest.raises(ApiError):
        await run(op, RetryPolicy(max_attempts=3, max_total=60), t=t)
    assert calls[0] == 1 and t.sleeps == []  # waiting 120 s would blow the 60 s budget


async def test_negative_retry_after_falls_back_to_backoff() -> None:
    t = FakeTime()
    op, _ = failing([ApiError("xai", 429, retry_after=-1.0)])
    await run(op, t=t)
    assert t.sleeps == [1.0]


def test_exponential_backoff_is_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0, jitter=False)
    assert [policy.delay_for(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]


def test_jitter_stays_within_half_to_full_delay() -> None:
    policy = RetryPolicy(base_delay=2.0, max_delay=30.0, jitter=True)
    delays = [policy.delay_for(3) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 1


def test_default_policy_matches_guide() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.max_delay) == (3, 1.0, 30.0)


async def test_on_retry_callback_sees_attempt_error_and_delay() -> None:
    seen: list[tuple[int, str, float]] = []
    op, _ = failing([ApiError("svc", 502), ApiConnectionError("svc", "refused")])
    await run(op, on_retry=lambda attempt, exc, delay: seen.append((attempt, type(exc).__name__, delay)))
    assert seen == [(1, "ApiError", 1.0), (2, "ApiConnectionError", 2.0)]


def test_retry_after_of() -> None:
    assert retry_after_of(ApiError("s", 429, retry_after=3)) == 3
    assert retry_after_of(ApiError("s", 429)) is None
    assert retry_after_of(ValueError()) is None


# --------------------------------------------------------------------------- Retry-After header


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), ("", None), (None, None), ("soon", None)],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    future = datetime.now(UTC) + timedelta(seconds=120)
    value = parse_retry_after(format_datetime(future, usegmt=True))
    assert value is not None and 110 <= value <= 121
    past = datetime.now(UTC) - timedelta(hours=1)
    assert parse_retry_after(format_datetime(past, usegmt=True)) == 0.0


async def test_real_sleep_default_is_used_when_not_injected() -> None:
    op, calls = failing([ApiError("svc", 503)])
    started = time.monotonic()
    assert await retry_async(op, RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01, jitter=False)) == "ok"
    assert calls[0] == 2 and time.monotonic() - started >= 0.01
