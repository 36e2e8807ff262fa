"""End-to-end helpers around the sync ledger of the `stack` (tests/e2e.py).

Retries are no longer the engine's: a failed run waits in the ledger (not in the engine's
queue) until the sweeper re-enqueues it. "Settled" therefore means the engine is idle AND
the ledger has no live (pending or retrying) mark left.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from iii_local.testing import MotiaTester
from services.platform.container import ledger_from_settings
from services.platform.ledger import Ledger, MarkInfo, SyncKind
from services.platform.settings import load_settings

_clients: dict[tuple[int, str], aioredis.Redis] = {}


def _test_redis(url: str) -> aioredis.Redis:
    """The tests' own client, which reconnects: the session's Redis is restarted on purpose
    (tests/reliability/test_document_pipeline_faults.py), and a pooled connection from before
    would fail the next test's first command."""
    key = (id(asyncio.get_running_loop()), url)
    if key not in _clients:
        _clients[key] = aioredis.Redis.from_url(
            url, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 5), retry_on_error=[RedisConnectionError, RedisTimeoutError]
        )
    return _clients[key]


def stack_ledger(stack: MotiaTester) -> Ledger:
    """The ledger the stack's worker uses (same Redis, same prefix)."""
    settings = load_settings(dict(stack.env))
    return ledger_from_settings(settings, _test_redis(settings.redis_url))  # type: ignore[no-any-return]


async def live_marks(stack: MotiaTester) -> int:
    stats = await stack_ledger(stack).stats()
    return sum(s["pending"] + s["retrying"] for s in stats.values())


async def settle_ledger(stack: MotiaTester, timeout: float = 90.0) -> None:
    """Wait until the engine is idle and no ledger mark is pending or retrying, twice in a row."""
    deadline = time.monotonic() + timeout
    calm = 0
    while True:
        await stack.wait_idle(timeout=max(1.0, deadline - time.monotonic()))
        live = await live_marks(stack)
        calm = calm + 1 if live == 0 else 0
        if calm >= 2:
            return
        if time.monotonic() > deadline:
            marks = [m.as_json() for m in await stack_ledger(stack).live(limit=20)]
            raise TimeoutError(f"sync ledger not settled after {timeout}s: {live} live mark(s): {marks}")
        await asyncio.sleep(0.3)


async def dead_mark(stack: MotiaTester, kind: SyncKind, entity_id: str) -> MarkInfo | None:
    info = await stack_ledger(stack).get(kind, entity_id)
    return info if info is not None and info.state == "dead" else None


async def release_cron_slots(stack: MotiaTester, step: str) -> int:
    """Forget which slots of a cron step already ran (`cron:{step}:*`), so a manual trigger
    right after a scheduled run is not taken for a second engine firing the same slot."""
    redis: Any = _test_redis(load_settings(dict(stack.env)).redis_url)
    keys = [k async for k in redis.scan_iter(match=f"cron:{step}:*")]
    return int(await redis.delete(*keys)) if keys else 0


async def trigger_cron_once(stack: MotiaTester, function_id: str, step: str) -> dict[str, Any]:
    """Trigger a cron step by hand (the console's button) and make sure it really runs."""
    await release_cron_slots(stack, step)
    return await stack.trigger_cron(function_id)
