"""Retry with exponential backoff and jitter, bounded in attempts and in time.

Only retryable failures are retried (see `services.clients.errors.is_retryable`); a
`Retry-After` the server sent (429/503) is honoured instead of the computed delay,
as long as it fits in the remaining time budget. Anything else is raised at once.

A rate limit (429, `errors.is_rate_limited`) is not the request's fault: it does not spend
one of `max_attempts`, so a throttled call waits (Retry-After, else the growing backoff) for
as long as `max_total` allows instead of giving up after a few quick tries. What is still
rate-limited when the time budget is spent is raised as it is: retryable, never permanent.
A policy of one attempt (`NO_RETRY`) never retries, a 429 included.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from services.clients.errors import ApiError, is_rate_limited, is_retryable

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Defaults follow the guide: 3 attempts, 1 s base, 30 s cap."""

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_total: float = 120.0
    """Give up when the next wait would end past this many seconds since the first try."""
    jitter: bool = True

    def delay_for(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before attempt `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None and retry_after >= 0:
            return retry_after  # the server knows best; max_total still bounds it
        ceiling = min(self.base_delay * (2 ** (attempt - 1)), self.max_delay)
        if not self.jitter:
            return float(ceiling)
        # "Equal jitter" (half fixed, half random) keeps retries of many clients from
        # marching in step while still growing the wait.
        return random.uniform(ceiling / 2, ceiling)


DEFAULT_POLICY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)


def retry_after_of(exc: BaseException) -> float | None:
    """The server's Retry-After in seconds, when the error carries one."""
    if isinstance(exc, ApiError) and exc.retry_after is not None:
        return exc.retry_after
    return None


async def retry_async(
    operation: Callable[[], Awaitable[T]],
    policy: RetryPolicy = DEFAULT_POLICY,
    *,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run `operation` until it succeeds, fails permanently, or the budget is spent.

    `on_retry(attempt, error, delay)` is called before each wait (for logging).
    """
    started = clock()
    attempt = 0
    spent = 0  # failed attempts that count against max_attempts (rate limits do not)
    while True:
        attempt += 1
        try:
            return await operation()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not is_rate_limited(exc):
                spent += 1
            if not is_retryable(exc) or policy.max_attempts <= 1 or spent >= policy.max_attempts:
                raise
            delay = policy.delay_for(attempt, retry_after_of(exc))
            if clock() - started + delay > policy.max_total:
                raise
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)


def parse_retry_after(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
