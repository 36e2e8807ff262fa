"""The one place a sync takes its entity lock (developer guide, "Lock Strategy: Step + Input
Values"); services take none.

`sync_lock(step, entity_type, entity_id)` holds `{step}:{entity_type}:{entity_id}` (no prefix:
services.platform.locks.lock_key) with ONE lifetime rule for every sync: a lease of
`LOCK_LEASE_SECONDS` (services.platform.container configures it when the worker builds its
Redis client) renewed while the work runs, for at most `LOCK_TTL_SECONDS` (settings
`lock_ttl_seconds`); a busy lock is waited for up to `LOCK_WAIT_SECONDS`, then LockBusyError,
which services.platform.ledger.run_marked reschedules without counting an attempt. A holder
that was killed frees the entity within one lease.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from services.platform.container import get_redis_client
from services.platform.locks import RedisLock, entity_lock
from services.platform.settings import get_settings

LOCK_WAIT_SECONDS = 10.0
"""How long a sync waits for a busy entity lock before LockBusyError (rescheduled by the ledger)."""


@contextlib.asynccontextmanager
async def sync_lock(
    step: str, entity_type: Any, entity_id: str, *, logger: Any = None, redis: Any = None, wait: float | None = None
) -> AsyncIterator[RedisLock]:
    """Hold the entity lock `{step}:{entity_type}:{entity_id}` for the body (rules above).
    `redis` defaults to the worker's client, `wait` to LOCK_WAIT_SECONDS (tests pass 0)."""
    async with entity_lock(
        redis if redis is not None else get_redis_client(),
        step,
        entity_type,
        entity_id,
        get_settings().lock_ttl_seconds,
        wait=LOCK_WAIT_SECONDS if wait is None else wait,
        logger=logger,
    ) as lock:
        yield lock
