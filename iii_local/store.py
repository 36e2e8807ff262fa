"""Durable storage for the stand-in: queue jobs, queue subscriptions, state and cron marks.

Two backends with one async interface:
- `SqliteStore` (the real engine's `file_based` store method): one SQLite file in WAL mode.
  Every write is committed before the call returns, so an enqueue acknowledged to a
  worker survives a crash of the engine process. Calls are short local-disk operations
  done on the event loop thread (tens of microseconds), which keeps ordering simple.
  Queue job writes are group-committed: the writes issued during one event-loop turn
  are applied in order in one transaction at the start of the next turn, and each
  caller resumes only after that commit. State (kv) writes commit immediately.
- `RedisStore` (`RedisAdapter` in the config): the same data in Redis hashes.
- `MemoryStore` (`store_method: in_memory`): nothing survives a restart.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from iii_local.jobs import Job


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    # queue
    async def put_jobs(self, jobs: list[Job]) -> None: ...
    async def update_job(self, job: Job) -> None: ...
    async def delete_job(self, job_id: str) -> None: ...
    async def load_jobs(self) -> list[Job]: ...
    async def add_subscription(self, topic: str, subscriber: str, config: dict[str, Any]) -> None: ...
    async def load_subscriptions(self) -> list[tuple[str, str, dict[str, Any]]]: ...
    # state
    async def kv_get(self, scope: str, key: str) -> Any: ...
    async def kv_set(self, scope: str, key: str, value: Any) -> None: ...
    async def kv_delete(self, scope: str, key: str) -> None: ...
    async def kv_list(self, scope: str) -> list[tuple[str, Any]]: ...
    async def kv_scopes(self) -> list[str]: ...


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

_JOB_FIELDS = tuple(Job.__dataclass_fields__)


def _job_body(job: Job) -> str:
    """`Job.to_dict()` as JSON, without `asdict`'s deep copy."""
    d = {f: getattr(job, f) for f in _JOB_FIELDS}
    d["state"] = job.state.value
    return _dumps(d)


_UPSERT_JOB = "INSERT OR REPLACE INTO jobs(id, body) VALUES (?, ?)"
_DELETE_JOB = "DELETE FROM jobs WHERE id = ?"


class SqliteStore:
    """All engine data in one SQLite file (WAL)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db: sqlite3.Connection | None = None
        self._ops: list[tuple[str, tuple[Any, ...]]] = []  # job writes waiting for the group commit
        self._commit: asyncio.Future[None] | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(
            """
            CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, body TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS subscriptions (
                topic TEXT NOT NULL, subscriber TEXT NOT NULL, config TEXT NOT NULL,
                PRIMARY KEY (topic, subscriber));
            CREATE TABLE IF NOT EXISTS kv (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                PRIMARY KEY (scope, key));
            """
        )

    async def close(self) -> None:
        if self.db is not None:
            if self._ops:
                self._flush()
            self.db.close()
            self.db = None

    def _db(self) -> sqlite3.Connection:
        assert self.db is not None, "store not opened"
        return self.db

    def _write(self, ops: list[tuple[str, tuple[Any, ...]]]) -> "asyncio.Future[None]":
        """Queue job writes for the next group commit; the future resolves once committed."""
        self._ops.extend(ops)
        fut = self._commit
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = self._commit = loop.create_future()
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        ops, fut = self._ops, self._commit
        self._ops, self._commit = [], None
        if not ops:
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        db = self._db()
        try:
            db.execute("BEGIN")
            try:
                for sql, params in ops:
                    db.execute(sql, params)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except Exception as exc:  # noqa: BLE001 - every writer in this group sees the failure
            if fut is not None and not fut.done():
                fut.set_exception(exc)
            return
        if fut is not None and not fut.done():
            fut.set_result(None)

    async def put_jobs(self, jobs: list[Job]) -> None:
        if jobs:
            await self._write([(_UPSERT_JOB, (j.id, _job_body(j))) for j in jobs])

    async def update_job(self, job: Job) -> None:
        await self._write([(_UPSERT_JOB, (job.id, _job_body(job)))])

    async def delete_job(self, job_id: str) -> None:
        await self._write([(_DELETE_JOB, (job_id,))])

    async def load_jobs(self) -> list[Job]:
        if self._ops:
            self._flush()
        rows = self._db().execute("SELECT body FROM jobs").fetchall()
        return [Job.from_dict(json.loads(r[0])) for r in rows]

    async def add_subscription(self, topic: str, subscriber: str, config: dict[str, Any]) -> None:
        self._db().execute(
            "INSERT OR REPLACE INTO subscriptions(topic, subscriber, config) VALUES (?, ?, ?)",
            (topic, subscriber, _dumps(config)),
        )

    async def load_subscriptions(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._db().execute("SELECT topic, subscriber, config FROM subscriptions").fetchall()
        return [(t, s, json.loads(c)) for t, s, c in rows]

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
    """The same data in Redis: `iii:jobs` (hash id→job), `iii:subs`, `iii:state:{scope}` hashes."""

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

    async def put_jobs(self, jobs: list[Job]) -> None:
        if jobs:
            await self.redis.hset(self.prefix + "jobs", mapping={j.id: _dumps(j.to_dict()) for j in jobs})

    async def update_job(self, job: Job) -> None:
        await self.redis.hset(self.prefix + "jobs", job.id, _dumps(job.to_dict()))

    async def delete_job(self, job_id: str) -> None:
        await self.redis.hdel(self.prefix + "jobs", job_id)

    async def load_jobs(self) -> list[Job]:
        raw = await self.redis.hgetall(self.prefix + "jobs")
        return [Job.from_dict(json.loads(v)) for v in raw.values()]

    async def add_subscription(self, topic: str, subscriber: str, config: dict[str, Any]) -> None:
        await self.redis.hset(self.prefix + "subs", _dumps([topic, subscriber]), _dumps(config))

    async def load_subscriptions(self) -> list[tuple[str, str, dict[str, Any]]]:
        raw = await self.redis.hgetall(self.prefix + "subs")
        out = []
        for k, v in raw.items():
            topic, sub = json.loads(k)
            out.append((topic, sub, json.loads(v)))
        return out

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
