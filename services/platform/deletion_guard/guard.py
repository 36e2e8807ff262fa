"""The guard itself: an hourly budget of deletes shared by every worker (Redis), the held
deletes waiting for an operator, and the tombstones (the deleted records' last state).

`RedisDeletionGuard` is the production one (one Lua script per decision, so two workers
never both take the last delete of the budget); `LocalDeletionGuard` keeps the same rules in
the process, for unit tests and tools without Redis. Both:
- `admit(deletion)`: an operator-approved key passes (not counted); else, when the guard has
  tripped, HELD; else when `max_per_hour` deletes happened within the last hour, the guard
  trips and the delete is HELD; else it is counted and ALLOWED. ALLOWED and APPROVED keep
  the tombstone first (newest first, at most `keep` of them); HELD records the deletion in
  the held list (key → entry, the latest reason).
- `confirm(keys)`: the operator approves the held deletes (all, or the named keys), the trip
  and the hour's count are cleared; returns the approved entries (their `retry` events are
  what the caller re-queues). `reset()`: clears the trip and the count, approves nothing.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol

from services.platform.deletion_guard.model import HOUR_SECONDS, Deletion, Gate, Verdict, dumps, now_seconds

DEFAULT_MAX_PER_HOUR = 5
DEFAULT_KEEP = 10000
DEFAULT_PREFIX = "deletes"


class DeletionGuard(Protocol):
    max_per_hour: int

    async def admit(self, deletion: Deletion) -> Gate: ...

    async def status(self) -> dict[str, Any]: ...

    async def held(self) -> list[dict[str, Any]]: ...

    async def confirm(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]: ...

    async def reset(self) -> None: ...

    async def tombstones(self, limit: int = 100) -> list[dict[str, Any]]: ...


async def find_tombstone(guard: DeletionGuard, tombstone_id: str) -> dict[str, Any] | None:
    """The kept tombstone with this id (searches all that are kept), or None."""
    return next((t for t in await guard.tombstones(limit=0) if t.get("id") == tombstone_id), None)


# KEYS: window, tripped, held, approved, tombstones
# ARGV: now (ms), window (ms), max, key, unique member, held entry, tombstone, keep
ADMIT = """
local now = tonumber(ARGV[1])
local keep = tonumber(ARGV[8])
local function tomb()
  redis.call('HDEL', KEYS[3], ARGV[4])
  redis.call('LPUSH', KEYS[5], ARGV[7])
  redis.call('LTRIM', KEYS[5], 0, keep - 1)
end
if redis.call('SREM', KEYS[4], ARGV[4]) == 1 then
  tomb()
  return 'approved'
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[6])
  return 'held'
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[2], 'at', now, 'count', count, 'key', ARGV[4])
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[6])
  return 'tripped'
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
tomb()
return 'allowed'
"""

TRIPPED_WHY = "the guard tripped earlier: deletes wait for an operator's confirm"


def _trip_why(max_per_hour: int) -> str:
    return f"more than {max_per_hour} deletes within an hour: the guard tripped, deletes wait for an operator's confirm"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class RedisDeletionGuard:
    """The guard on Redis (keys `{prefix}:window|tripped|held|approved|tombstones`)."""

    redis: Any
    _: KW_ONLY
    max_per_hour: int = DEFAULT_MAX_PER_HOUR
    prefix: str = DEFAULT_PREFIX
    keep: int = DEFAULT_KEEP
    clock: Callable[[], float] = now_seconds
    keys: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.keys = {name: f"{self.prefix}:{name}" for name in ("window", "tripped", "held", "approved", "tombstones")}

    async def admit(self, deletion: Deletion) -> Gate:
        at = self.clock()
        tombstone = deletion.tombstone(at)
        held = deletion.held_entry(at, _trip_why(self.max_per_hour))
        k = self.keys
        verdict = _text(
            await self.redis.eval(
                ADMIT, 5, k["window"], k["tripped"], k["held"], k["approved"], k["tombstones"],
                int(at * 1000), int(HOUR_SECONDS * 1000), self.max_per_hour, deletion.key,
                f"{deletion.key}|{tombstone['id']}", dumps(held), dumps(tombstone), self.keep,
            )
        )
        if verdict == "approved":
            return Gate(Verdict.APPROVED, tombstone["id"])
        if verdict == "allowed":
            return Gate(Verdict.ALLOWED, tombstone["id"])
        return Gate(Verdict.HELD, why=held["why"] if verdict == "tripped" else TRIPPED_WHY)

    async def status(self) -> dict[str, Any]:
        k = self.keys
        await self.redis.zremrangebyscore(k["window"], "-inf", int((self.clock() - HOUR_SECONDS) * 1000))
        tripped = {_text(a): _text(b) for a, b in (await self.redis.hgetall(k["tripped"])).items()}
        return {
            "max_per_hour": self.max_per_hour,
            "deletes_last_hour": int(await self.redis.zcard(k["window"])),
            "tripped": tripped or None,
            "held": int(await self.redis.hlen(k["held"])),
            "approved_pending": int(await self.redis.scard(k["approved"])),
            "tombstones": int(await self.redis.llen(k["tombstones"])),
        }

    async def held(self) -> list[dict[str, Any]]:
        raw = await self.redis.hgetall(self.keys["held"])
        return sorted((json.loads(v) for v in raw.values()), key=lambda e: e.get("at", 0))

    async def confirm(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        wanted = set(keys) if keys is not None else None
        approved = [e for e in await self.held() if wanted is None or e["key"] in wanted]
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            if approved:
                pipe.sadd(k["approved"], *[e["key"] for e in approved])
            pipe.delete(k["tripped"], k["window"])
            await pipe.execute()
        return approved

    async def reset(self) -> None:
        await self.redis.delete(self.keys["tripped"], self.keys["window"])

    async def tombstones(self, limit: int = 100) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(self.keys["tombstones"], 0, limit - 1 if limit > 0 else -1)
        return [json.loads(v) for v in raw]


class LocalDeletionGuard:
    """The same rules in this process only (unit tests, tools without Redis)."""

    def __init__(self, *, max_per_hour: int = DEFAULT_MAX_PER_HOUR, keep: int = DEFAULT_KEEP, clock: Callable[[], float] = now_seconds) -> None:
        self.max_per_hour = max_per_hour
        self.clock = clock
        self.window: deque[float] = deque()
        self.tripped: dict[str, Any] | None = None
        self._held: dict[str, dict[str, Any]] = {}
        self.approved: set[str] = set()
        self.kept: deque[dict[str, Any]] = deque(maxlen=keep)

    async def admit(self, deletion: Deletion) -> Gate:
        at = self.clock()
        if deletion.key in self.approved:
            self.approved.discard(deletion.key)
            return self._keep(deletion, at, Verdict.APPROVED)
        why = TRIPPED_WHY if self.tripped else _trip_why(self.max_per_hour)
        if self.tripped is None:
            while self.window and self.window[0] <= at - HOUR_SECONDS:
                self.window.popleft()
            if len(self.window) < self.max_per_hour:
                self.window.append(at)
                return self._keep(deletion, at, Verdict.ALLOWED)
            self.tripped = {"at": at, "count": len(self.window), "key": deletion.key}
        self._held[deletion.key] = deletion.held_entry(at, why)
        return Gate(Verdict.HELD, why=why)

    def _keep(self, deletion: Deletion, at: float, verdict: Verdict) -> Gate:
        self._held.pop(deletion.key, None)
        tombstone = deletion.tombstone(at)
        self.kept.appendleft(json.loads(dumps(tombstone)))
        return Gate(verdict, tombstone["id"])

    async def status(self) -> dict[str, Any]:
        at = self.clock()
        return {
            "max_per_hour": self.max_per_hour,
            "deletes_last_hour": sum(1 for t in self.window if t > at - HOUR_SECONDS),
            "tripped": self.tripped,
            "held": len(self._held),
            "approved_pending": len(self.approved),
            "tombstones": len(self.kept),
        }

    async def held(self) -> list[dict[str, Any]]:
        return sorted(self._held.values(), key=lambda e: e.get("at", 0))

    async def confirm(self, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        wanted = set(keys) if keys is not None else None
        approved = [e for e in await self.held() if wanted is None or e["key"] in wanted]
        self.approved.update(e["key"] for e in approved)
        await self.reset()
        return approved

    async def reset(self) -> None:
        self.tripped = None
        self.window.clear()

    async def tombstones(self, limit: int = 100) -> list[dict[str, Any]]:
        items = list(self.kept)
        return items[:limit] if limit > 0 else items
