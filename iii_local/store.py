"""Storage for the stand-in's state (kv) and cron marks.

Two backends with one async interface:
- `SqliteStore` (`store_method: file_based`): one SQLite file in WAL mode; every write is
  committed before the call returns.
- `RedisStore` (`RedisAdapter` in the config): the same data in Redis hashes.
- `MemoryStore` (`store_method: in_memory`): nothing survives a restart.

The queue keeps its own storage, modelled on the real engine's (`iii_local/queue_kv.py`).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Protocol


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    # state
    async def kv_get(self, scope: str, key: str) -> Any: ...
    async def kv_set(self, scope: str, key: str, value: Any) -> None: ...
    async def kv_delete(self, scope: str, key: str) -> None: ...
    async def kv_list(self, scope: str) -> list[tuple[str, Any]]: ...
    async def kv_scopes(self) -> list[str]: ...


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class SqliteStore:
    """State in one SQLite file (WAL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS kv (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (scope, key))"
        )

    async def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def _db(self) -> sqlite3.Connection:
        assert self.db is not None, "store not opened"
        return self.db

    async def kv_get(self, scope: str, key: str) -> Any:
        row = self._db().execute("SELECT value FROM kv WHERE scope = ? AND key = ?", (scope, key)).fetchone()
        return None if row is None else json.loads(row[0])

    async def kv_set(self, scope: str, key: str, value: Any) -> None:
        self._db().execute("INSERT OR REPLACE INTO kv(scope, key, value) VALUES (?, ?, ?)", (scope, key, _dumps(value)))

    async def kv_delete(self, scope: str, key: str) -> None:
        self._db().execute("DELETE FROM kv WHERE scope = ? AND key = ?", (scope, key))

    async def kv_list(self, scope: str) -> list[tuple[str, Any]]:
        rows = self._db().execute("SELECT key, value FROM kv WHERE scope = ? ORDER BY key", (scope,)).fetchall()
        return [(k, json.loads(v)) for k, v in rows]

    async def kv_scopes(self) -> list[str]:
        return [r[0] for r in self._db().execute("SELECT DISTINCT scope FROM kv ORDER BY scope").fetchall()]


class RedisStore:
    """The same data in Redis: one `iii:state:{scope}` hash per scope, `iii:scopes` lists them."""

    def __init__(self, url: str, prefix: str = "iii:") -> None:
        self.url = url
        self.prefix = prefix
        self.redis: Any = None

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(self.url, decode_responses=True)
        await self.redis.ping()

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None

    def _scope(self, scope: str) -> str:
        return f"{self.prefix}state:{scope}"

    async def kv_get(self, scope: str, key: str) -> Any:
        v = await self.redis.hget(self._scope(scope), key)
        return None if v is None else json.loads(v)

    async def kv_set(self, scope: str, key: str, value: Any) -> None:
        await self.redis.hset(self._scope(scope), key, _dumps(value))
        await self.redis.sadd(self.prefix + "scopes", scope)

    async def kv_delete(self, scope: str, key: str) -> None:
        await self.redis.hdel(self._scope(scope), key)

    async def kv_list(self, scope: str) -> list[tuple[str, Any]]:
        raw = await self.redis.hgetall(self._scope(scope))
        return sorted((k, json.loads(v)) for k, v in raw.items())

    async def kv_scopes(self) -> list[str]:
        scopes = await self.redis.smembers(self.prefix + "scopes")
        present = []
        for s in sorted(scopes):
            if await self.redis.exists(self._scope(s)):
                present.append(s)
        return present


class MemoryStore(SqliteStore):
    """`store_method: in_memory`: the SQLite schema in memory; nothing survives a restart."""

    def __init__(self) -> None:
        super().__init__(":memory:")


def make_store(store_method: str, file_path: Path, adapter_is_redis: bool, redis_url: str) -> Store:
    if adapter_is_redis:
        return RedisStore(redis_url)
    if store_method == "in_memory":
        return MemoryStore()
    path = file_path
    if path.suffix != ".db":
        path = path / "store.db" if not path.suffix else path
    return SqliteStore(path)
