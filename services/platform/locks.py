"""Per-entity Redis locks (developer guide, "Lock Strategy: Step + Input Values").

Key format, exactly as the guide has it and WITHOUT any prefix:

    {step}:{entity_type}:{entity_id}      e.g. document_sync:CDokumente:abc123

so `redis-cli --scan --pattern 'document_sync:*'` lists a step's locks. The lock itself is
redis-py's `redis.asyncio.lock.Lock`, which uses its `name` as the Redis key unchanged (we
pass the key above) and our `host:pid:random` owner token as its token: acquire is
`SET key token NX PX ttl`; release and extend are redis-py's Lua compare-and-delete /
compare-and-pexpire, so only the owner can release or extend. `RedisLock` wraps it (booleans
instead of LockError/LockNotOwnedError, LockBackendError when Redis is unreachable, re-taking
a lock the same owner holds refreshes it). The TTL (default 30 min) frees the lock of a
worker that died while holding it; the lease renewal below is ours, on top of `extend`.

Handlers use `entity_lock(...)`: busy → `LockBusyError` (retryable: the queue tries again
later); the lock is released in `finally`, also when the body raises.

Lease (our reading of the guide's "TTL: 30 minutes, auto-release on timeout"): by default
`entity_lock` does not park a 30-minute expiry in Redis. It takes the lock with a short
lease (`DEFAULT_LOCK_LEASE_SECONDS`, 60 s) and renews it every lease/3 while the holder is
alive, for at most the TTL (30 min) in all; then renewal stops and the lock expires. So a
live holder keeps its lock for up to 30 minutes, and a holder that was killed (SIGKILL,
OOM, a lost machine) frees it within one lease instead of blocking the entity — and
exhausting the queue's retries — for half an hour. `lease=None` gives the plain TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from services.clients.errors import LockBusyError, RetryableError, ValidationError

DEFAULT_LOCK_TTL_SECONDS = 1800  # 30 minutes; services.platform.settings.LOCK_TTL_DEFAULT
DEFAULT_LOCK_LEASE_SECONDS = 60.0  # how long a dead holder blocks an entity at most
CONFIGURED_LEASE = -1.0
"""`entity_lock(lease=CONFIGURED_LEASE)` (the default): the lease from LOCK_LEASE_SECONDS."""
_configured_lease = DEFAULT_LOCK_LEASE_SECONDS


def configure_lease(seconds: float) -> None:
    """Set the lease `entity_lock` uses by default (LOCK_LEASE_SECONDS, validated in the
    settings; applied by services.platform.container when the worker builds its Redis client)."""
    global _configured_lease
    _configured_lease = float(seconds)


class LockBackendError(RetryableError):
    """Redis could not be reached while taking or releasing a lock."""


def _check_part(name: str, value: Any) -> str:
    text = str(value) if value is not None else ""
    if not text:
        raise ValidationError(f"Lock key part {name} is empty")
    if ":" in text:
        raise ValidationError(f"Lock key part {name}={text!r} must not contain ':'")
    if any(c.isspace() or ord(c) < 32 for c in text) or len(text) > 200:
        raise ValidationError(f"Lock key part {name}={text!r} has whitespace/control characters or is too long")
    return text


def lock_key(step: str, entity_type: Any, entity_id: str) -> str:
    """`{step}:{entity_type}:{entity_id}`; each part non-empty, without ':' or whitespace,
    so a key always splits back into the same three parts."""
    return ":".join(
        (_check_part("step", step), _check_part("entity_type", entity_type), _check_part("entity_id", entity_id))
    )


def new_owner_token() -> str:
    """`host:pid:random` - unique, and tells an operator who holds a lock."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"


def _ms(seconds: float) -> int:
    if seconds <= 0:
        raise ValueError(f"lock TTL must be positive, got {seconds}")
    return max(1, int(round(seconds * 1000)))


class _OwnerLock(Lock):
    """redis-py's Lock, with one difference: taking a lock this owner token already holds
    succeeds and resets its expiry to the timeout (redis-py's own `do_acquire` is a bare
    `SET NX PX`, which fails on a key that exists even when it holds our token). The
    compare-and-pexpire is redis-py's own `LUA_REACQUIRE_SCRIPT`."""

    async def do_acquire(self, token: str | bytes) -> bool:
        if await super().do_acquire(token):
            return True
        reacquire: Any = self.lua_reacquire  # registered by Lock.__init__ (typed None in redis-py)
        ms = int(float(self.timeout or 0) * 1000)
        return bool(await reacquire(keys=[self.name], args=[token, ms], client=self.redis))


class RedisLock:
    """One lock on `key`, held under a random owner token. TTL in seconds (fractions allowed).

    Built on `redis.asyncio.lock.Lock` (the key is the Lock's `name`, unprefixed; token
    ownership, `acquire(blocking_timeout=...)`, `extend(..., replace_ttl=...)`, `release()`
    with `LockNotOwnedError`); this wrapper answers with booleans instead of redis-py's
    LockError/LockNotOwnedError, keeps `acquired`/`lost` for the holder, and turns an
    unreachable Redis into the retryable LockBackendError.
    """

    def __init__(self, redis: Any, key: str, ttl_seconds: float = DEFAULT_LOCK_TTL_SECONDS, owner: str | None = None):
        self.redis = redis
        self.key = key
        self.ttl_seconds = float(ttl_seconds)
        self._ttl_ms = _ms(self.ttl_seconds)
        self.owner = owner or new_owner_token()
        self.acquired = False
        """Whether this object believes it holds the lock (see `held()` for the truth in Redis)."""
        self.lost = False
        """Set when an extension found the lock gone or taken over."""
        # thread_local=False: the body and the lease renewal are two tasks sharing one token.
        self._lock = _OwnerLock(redis, key, timeout=self._ttl_ms / 1000, blocking=False, thread_local=False)

    def __repr__(self) -> str:
        return f"RedisLock(key={self.key!r}, ttl={self.ttl_seconds:g}s, acquired={self.acquired})"

    async def acquire(self, *, timeout: float = 0.0, retry_interval: float = 0.05) -> bool:
        """Try to take the lock (`SET NX PX`); with `timeout` > 0 keep trying that long.

        Re-acquiring a lock this owner already holds succeeds and refreshes its TTL.
        Raises LockBackendError when Redis is unreachable.
        """
        self._lock.sleep = retry_interval
        try:
            ok = bool(
                await self._lock.acquire(blocking=timeout > 0, blocking_timeout=max(0.0, timeout), token=self.owner)
            )
        except RedisError as exc:
            raise LockBackendError(f"Redis unavailable while locking {self.key}: {exc}") from exc
        if ok:
            self.acquired = True
            self.lost = False
        return ok

    async def release(self) -> bool:
        """Delete the key if this owner still holds it; False if it expired, another owner has
        it, or this object never took it."""
        self.acquired = False
        try:
            await self._lock.release()
        except LockError:  # LockNotOwnedError included: expired or taken over, or not ours
            return False
        except RedisError as exc:
            raise LockBackendError(f"Redis unavailable while unlocking {self.key}: {exc}") from exc
        return True

    async def extend(self, extra_ttl: float | None = None, *, replace_ttl: bool = False) -> bool:
        """Add `extra_ttl` seconds (default: the lock's TTL) to the remaining TTL, or with
        `replace_ttl=True` make the lock expire `extra_ttl` seconds from now.

        Only the owner can extend; False (and `lost`) when the lock is no longer ours.
        """
        ms = _ms(self.ttl_seconds if extra_ttl is None else extra_ttl)
        try:
            await self._lock.extend(ms / 1000, replace_ttl=replace_ttl)
            ok = True
        except LockError:  # not ours (any more), or never taken by this object
            ok = False
        except RedisError as exc:
            raise LockBackendError(f"Redis unavailable while extending {self.key}: {exc}") from exc
        if not ok:
            self.acquired = False
            self.lost = True
        return ok

    async def held(self) -> bool:
        """Whether Redis still has this owner's token under the key."""
        try:
            value = await self.redis.get(self.key)
        except RedisError as exc:
            raise LockBackendError(f"Redis unavailable while checking {self.key}: {exc}") from exc
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return bool(value == self.owner)


async def _keep_extending(lock: RedisLock, interval: float, logger: Any, *, until: float | None = None, lease: float | None = None) -> None:
    """Every `interval` seconds push the lock's expiry to a full TTL (or `lease`) from now;
    stop if lost, or once the loop clock passes `until` (the maximum hold)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        if until is not None and loop.time() >= until:
            if logger is not None:
                logger.warn(f"Lock {lock.key} reached its maximum hold; it will expire", lock_key=lock.key)
            return
        try:
            if not await lock.extend(lease, replace_ttl=True):
                if logger is not None:
                    logger.error(f"Lock {lock.key} was lost while its work was still running", lock_key=lock.key)
                return
        except LockBackendError as exc:
            if logger is not None:
                logger.warn(f"Could not extend lock {lock.key}: {exc}", lock_key=lock.key)


@contextlib.asynccontextmanager
async def entity_lock(
    redis: Any,
    step: str,
    entity_type: Any,
    entity_id: str,
    ttl: float = DEFAULT_LOCK_TTL_SECONDS,
    *,
    auto_extend: bool = False,
    wait: float = 0.0,
    owner: str | None = None,
    logger: Any = None,
    lease: float | None = CONFIGURED_LEASE,
) -> AsyncIterator[RedisLock]:
    """Hold `{step}:{entity_type}:{entity_id}` for the body of an `async with`.

    Raises LockBusyError when another owner holds it (after waiting up to `wait` s).
    With a `lease` shorter than `ttl` (the default, see the module docstring) the lock
    lives `lease` seconds in Redis and is renewed every lease/3 while the body runs, for
    at most `ttl` seconds. Without a lease, `auto_extend` extends the full TTL every
    ttl/3. The lock is released in `finally`; a failing release is logged (the expiry
    frees the key anyway) and never hides the body's own exception. `logger` is optional
    (a ServiceLogger or anything with warn/error(message, **fields)).
    """
    key = lock_key(step, entity_type, entity_id)
    if lease == CONFIGURED_LEASE:
        lease = _configured_lease
    use_lease = lease is not None and 0 < lease < ttl
    lock = RedisLock(redis, key, lease if use_lease else ttl, owner=owner)  # type: ignore[arg-type]
    if not await lock.acquire(timeout=wait):
        raise LockBusyError(key)
    extender: asyncio.Task[None] | None = None
    if use_lease:
        until = asyncio.get_running_loop().time() + ttl
        extender = asyncio.create_task(_keep_extending(lock, max(float(lease) / 3, 0.001), logger, until=until, lease=lease))  # type: ignore[arg-type]
    elif auto_extend:
        extender = asyncio.create_task(_keep_extending(lock, max(lock.ttl_seconds / 3, 0.001), logger))
    try:
        yield lock
    finally:
        if extender is not None:
            # Order does not matter for safety: a late extension after the release finds
            # another token (or none) and does nothing.
            extender.cancel()
        try:
            released = await lock.release()
            if not released and logger is not None:
                logger.warn(f"Lock {key} had already expired or changed owner at release", lock_key=key)
        except LockBackendError as exc:
            if logger is not None:
                logger.warn(f"Could not release lock {key} (its TTL will free it): {exc}", lock_key=key)
        finally:
            if extender is not None:
                await asyncio.gather(extender, return_exceptions=True)
