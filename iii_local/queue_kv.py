"""The builtin queue's storage: job records, lists and sorted sets, saved on an interval.

This is engine 0.8.3's `builtins/queue_kv.rs` over `builtins/kv.rs`. Everything lives in
memory; with `store_method: file_based` a save loop writes what changed every
`save_interval_ms` (default 5000; `kv.rs` 184-215 and 252-295, `queue_kv.rs` 132-247):
job records one by one, the lists and the sorted sets each as a whole snapshot. There is
no write on enqueue and none at shutdown (the queue module has no `destroy`), so a crash
or a stop loses whatever changed since the last tick. `in_memory` (the real default)
keeps nothing across a restart. A failed save marks its part dirty again.

On disk the stand-in keeps the three parts in one SQLite file (`queue_kv.sqlite3` in the
`file_path` folder), written in one transaction per tick on a helper thread. The real
engine writes `{key}.bin` files and `_queue_lists.bin`/`_queue_sorted_sets.bin`; the
observable difference is nil (what is on disk is what was in memory at the last tick).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("iii_local.queue_kv")

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
DB_FILE = "queue_kv.sqlite3"


class _SortedSet:
    """member → score, with a heap for the lowest score (stale heap entries are skipped)."""

    def __init__(self) -> None:
        self.scores: dict[str, int] = {}
        self.heap: list[tuple[int, int, str]] = []
        self.seq = 0

    def add(self, member: str, score: int) -> None:
        self.scores[member] = score
        self.seq += 1
        heapq.heappush(self.heap, (score, self.seq, member))

    def _clean(self) -> None:
        while self.heap and self.scores.get(self.heap[0][2]) != self.heap[0][0]:
            heapq.heappop(self.heap)

    def range(self, lo: int, hi: int) -> list[str]:
        self._clean()
        if not self.heap or self.heap[0][0] > hi:
            return []
        return [m for m, s in sorted(self.scores.items(), key=lambda kv: kv[1]) if lo <= s <= hi]


class QueueKvStore:
    """Job records (`set_job`/`get_job`/`delete_job`), lists and sorted sets of the builtin queue."""

    def __init__(self, *, store_method: str = "in_memory", file_path: Path | None = None, save_interval_ms: int = 5000) -> None:
        if store_method not in ("file_based", "in_memory"):
            log.warning("Unknown store_method %r, defaulting to in_memory", store_method)
            store_method = "in_memory"
        self.file_based = store_method == "file_based" and file_path is not None
        self.dir = Path(file_path) if file_path is not None else None
        self.save_interval = max(1, int(save_interval_ms)) / 1000
        self.jobs: dict[str, Any] = {}
        self.lists: dict[str, deque[str]] = {}
        self.zsets: dict[str, _SortedSet] = {}
        self._dirty_jobs: dict[str, bool] = {}  # key → True (upsert) / False (delete)
        self._dirty_lists = False
        self._dirty_zsets = False
        self._saver: asyncio.Task[None] | None = None
        self._db: sqlite3.Connection | None = None
        self.saves = 0
        self.last_save: float | None = None

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Load what the last save left on disk and start the save loop (file_based only)."""
        if not self.file_based or self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.dir / DB_FILE), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            "CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, body TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS blobs (name TEXT PRIMARY KEY, body TEXT NOT NULL);"
        )
        for key, body in self._db.execute("SELECT key, body FROM jobs"):
            try:
                self.jobs[key] = json.loads(body)
            except ValueError:
                log.warning("failed to decode queue job record %s", key)
        blobs = dict(self._db.execute("SELECT name, body FROM blobs").fetchall())
        try:
            self.lists = {k: deque(v) for k, v in json.loads(blobs.get("lists", "{}")).items()}
        except (ValueError, AttributeError):
            log.warning("failed to decode queue lists from disk")
        try:
            for k, members in json.loads(blobs.get("sorted_sets", "{}")).items():
                zs = self.zsets[k] = _SortedSet()
                for member, score in members:
                    zs.add(member, int(score))
        except (ValueError, AttributeError, TypeError):
            log.warning("failed to decode queue sorted_sets from disk")
        self._saver = asyncio.create_task(self._save_loop())

    async def close(self) -> None:
        """Stop the save loop without a final save (what changed since the last tick is lost)."""
        if self._saver is not None:
            self._saver.cancel()
            try:
                await self._saver
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._saver = None
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.save_interval)
            await self.save()

    async def save(self) -> None:
        """One tick of the save loop: write what changed since the last one."""
        if self._db is None or not (self._dirty_jobs or self._dirty_lists or self._dirty_zsets):
            return
        jobs, self._dirty_jobs = self._dirty_jobs, {}
        upserts = [(k, _dumps(self.jobs[k])) for k, up in jobs.items() if up and k in self.jobs]
        deletes = [(k,) for k, up in jobs.items() if not up or k not in self.jobs]
        blobs: list[tuple[str, str]] = []
        lists_dirty, zsets_dirty = self._dirty_lists, self._dirty_zsets
        self._dirty_lists = self._dirty_zsets = False
        if lists_dirty:
            blobs.append(("lists", _dumps({k: list(v) for k, v in self.lists.items()})))
        if zsets_dirty:
            blobs.append(("sorted_sets", _dumps({k: list(z.scores.items()) for k, z in self.zsets.items()})))
        try:
            await asyncio.to_thread(self._write, upserts, deletes, blobs)
            self.saves += 1
            self.last_save = time.time()
        except Exception:  # noqa: BLE001 - like the engine: log, mark dirty again, retry next tick
            log.exception("failed to persist queue store")
            for k, up in jobs.items():
                self._dirty_jobs.setdefault(k, up)
            self._dirty_lists |= lists_dirty
            self._dirty_zsets |= zsets_dirty

    def _write(self, upserts: list[tuple[str, str]], deletes: list[tuple[str]], blobs: list[tuple[str, str]]) -> None:
        db = self._db
        if db is None:
            return
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR REPLACE INTO jobs(key, body) VALUES (?, ?)", upserts)
            db.executemany("DELETE FROM jobs WHERE key = ?", deletes)
            db.executemany("INSERT OR REPLACE INTO blobs(name, body) VALUES (?, ?)", blobs)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def info(self) -> dict[str, Any]:
        """How the queue is kept: method, interval, saves so far and when the last one happened."""
        return {"store_method": "file_based" if self.file_based else "in_memory",
                "save_interval_ms": int(self.save_interval * 1000) if self.file_based else None,
                "saves": self.saves, "last_save": self.last_save}

    # ------------------------------------------------------------ job records (kv.rs)

    def set_job(self, key: str, value: Any) -> None:
        self.jobs[key] = value
        if self.file_based:
            self._dirty_jobs[key] = True

    def get_job(self, key: str) -> Any:
        return self.jobs.get(key)

    def delete_job(self, key: str) -> None:
        self.jobs.pop(key, None)
        if self.file_based:
            self._dirty_jobs[key] = False

    def list_job_keys(self, prefix: str) -> list[str]:
        return [k for k in self.jobs if k.startswith(prefix)]

    # ------------------------------------------------------------ lists

    def _touch_lists(self) -> None:
        if self.file_based:
            self._dirty_lists = True

    def lpush(self, key: str, value: str) -> None:
        self.lists.setdefault(key, deque()).appendleft(value)
        self._touch_lists()

    def rpush(self, key: str, value: str) -> None:
        self.lists.setdefault(key, deque()).append(value)
        self._touch_lists()

    def rpop(self, key: str) -> str | None:
        lst = self.lists.get(key)
        if lst is None:
            return None
        value = lst.pop() if lst else None
        if not lst:
            del self.lists[key]
        self._touch_lists()
        return value

    def lrem(self, key: str, count: int, value: str) -> int:
        """Remove up to `count` occurrences from the head (0: all)."""
        lst = self.lists.get(key)
        if lst is None:
            return 0
        removed = 0
        if count == 1:  # the common case (ack, nack, requeue): the first occurrence from the head
            try:
                lst.remove(value)
                removed = 1
            except ValueError:
                pass
        elif count >= 0:
            keep: deque[str] = deque()
            for item in lst:
                if item == value and (count == 0 or removed < count):
                    removed += 1
                else:
                    keep.append(item)
            lst = keep
        else:
            items = list(lst)
            for i in range(len(items) - 1, -1, -1):
                if removed >= -count:
                    break
                if items[i] == value:
                    del items[i]
                    removed += 1
            lst = deque(items)
        if lst:
            self.lists[key] = lst
        else:
            del self.lists[key]
        self._touch_lists()
        return removed

    def llen(self, key: str) -> int:
        return len(self.lists.get(key, ()))

    def lrange(self, key: str) -> list[str]:
        """The whole list, head first (operator listing only; the engine never reads one back)."""
        return list(self.lists.get(key, ()))

    # ------------------------------------------------------------ sorted sets

    def zadd(self, key: str, score: int, member: str) -> None:
        self.zsets.setdefault(key, _SortedSet()).add(member, int(score))
        if self.file_based:
            self._dirty_zsets = True

    def zrem(self, key: str, member: str) -> bool:
        zs = self.zsets.get(key)
        if zs is None or member not in zs.scores:
            return False
        del zs.scores[member]
        if not zs.scores:
            del self.zsets[key]
        if self.file_based:
            self._dirty_zsets = True
        return True

    def zrangebyscore(self, key: str, lo: int, hi: int) -> list[str]:
        zs = self.zsets.get(key)
        return zs.range(lo, hi) if zs is not None else []

    def zcard(self, key: str) -> int:
        zs = self.zsets.get(key)
        return len(zs.scores) if zs is not None else 0

    def has_queue_state(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.lists) or any(k.startswith(prefix) for k in self.zsets)

    def keys(self) -> list[str]:
        """Every list and sorted-set key (for the operator's per-topic view)."""
        return [*self.lists, *self.zsets]
