"""Base class of the sync utilities (developer guide, "Sync Utilities Pattern").

Subclasses define `_get_lock_key(entity_id)` and their sync decisions; the base gives
them context-aware logging and owner-checked Redis locks. `espocrm` is typed `Any` to
avoid an import cycle with the client module.
"""

from __future__ import annotations

import contextlib
from typing import Any, AsyncIterator

from services.config import LOCK_TTL_DEFAULT
from services.exceptions import LockBusyError
from services.locks import RedisLock, new_owner_token
from services.logging_utils import ServiceLogger, get_service_logger


class BaseSyncUtils:
    """Logging and locking shared by every `*SyncUtils` class.

    Attributes: `espocrm` (EspoCRM client), `redis` (redis.asyncio client or None),
    `context` (Motia FlowContext or None), `settings` (services.config.Settings or None),
    `logger` (ServiceLogger), `lock_ttl` (seconds: the argument, else settings.lock_ttl_seconds,
    else 1800).

    Without Redis (`redis=None`) locking is disabled: acquiring always succeeds and a
    warning is logged each time (the guide: "works without Redis, with warnings").
    """

    logger_name: str | None = None
    """Name for `get_service_logger`; default: the class name."""

    def __init__(
        self,
        espocrm: Any,
        redis: Any,
        context: Any = None,
        *,
        settings: Any = None,
        lock_ttl: float | None = None,
    ) -> None:
        self.espocrm = espocrm
        self.redis = redis
        self.context = context
        self.settings = settings
        if lock_ttl is None:
            lock_ttl = getattr(settings, "lock_ttl_seconds", None) or LOCK_TTL_DEFAULT
        self.lock_ttl: float = lock_ttl
        self.logger: ServiceLogger = get_service_logger(self.logger_name or type(self).__name__, context)
        self._locks: dict[str, RedisLock] = {}
        """Locks this instance holds, by key (their owner tokens decide who may release)."""

    def _log(self, message: str, level: str = "info", **fields: Any) -> None:
        """Log through the context's logger (or stdlib) with structured, redacted fields."""
        self.logger.log(level, message, **fields)

    def _get_lock_key(self, entity_id: str) -> str:
        """The lock key for an entity, e.g. `services.locks.lock_key("document_sync", "CDokumente", id)`."""
        raise NotImplementedError(f"{type(self).__name__} must define _get_lock_key(entity_id)")

    async def _acquire_redis_lock(self, key: str, ttl: float | None = None) -> bool:
        """Take `key` for this instance (SET NX PX with an owner token); False when busy.

        Raises services.locks.LockBackendError (retryable) when Redis is unreachable.
        """
        if self.redis is None:
            self._log(f"Redis not configured: proceeding WITHOUT lock {key}", "warn", lock_key=key)
            return True
        lock = self._locks.get(key)
        if lock is None or (ttl is not None and ttl != lock.ttl_seconds):
            owner = lock.owner if lock is not None else new_owner_token()
            lock = RedisLock(self.redis, key, ttl if ttl is not None else self.lock_ttl, owner=owner)
        if await lock.acquire():
            self._locks[key] = lock
            self._log(f"Lock acquired: {key}", "debug", lock_key=key, ttl_seconds=lock.ttl_seconds)
            return True
        self._log(f"Lock busy: {key}", "info", lock_key=key)
        return False

    async def _release_redis_lock(self, key: str) -> bool:
        """Release `key` if this instance holds it; False if it never did, or the lock expired
        and was taken by someone else (then nothing is deleted)."""
        if self.redis is None:
            return True
        lock = self._locks.pop(key, None)
        if lock is None:
            self._log(f"Not releasing {key}: this instance does not hold it", "warn", lock_key=key)
            return False
        released = await lock.release()
        if not released:
            self._log(f"Lock {key} had expired or changed owner before release", "warn", lock_key=key)
        return released

    async def _extend_redis_lock(self, key: str, ttl: float | None = None) -> bool:
        """Push the expiry of a held lock to `ttl` (default: its TTL) seconds from now."""
        lock = self._locks.get(key)
        if lock is None:
            return self.redis is None
        return await lock.extend(ttl, replace_ttl=True)

    @contextlib.asynccontextmanager
    async def _locked(self, entity_id: str, ttl: float | None = None) -> AsyncIterator[str]:
        """`async with self._locked(id):` → the lock key; LockBusyError when busy; released in finally."""
        key = self._get_lock_key(entity_id)
        if not await self._acquire_redis_lock(key, ttl):
            raise LockBusyError(key)
        try:
            yield key
        finally:
            try:
                await self._release_redis_lock(key)
            except Exception as exc:  # noqa: BLE001 - the TTL frees it; never hide the body's error
                self._log(f"Could not release lock {key}: {exc}", "warn", lock_key=key)
