"""Recent activity per entity: the project's own log lines of the runs that touched it, kept in
Redis, so operators can answer "what happened to X, and in which trace?" the same way on the
real engine and on the stand-in (the engine keeps logs and traces, but cannot list them by
entity; the iii console and `journalctl` can, once you know the trace id this gives you).

Rules:
- Every queued run (services.platform.ledger.run_marked) collects the lines logged while it
  runs (`collecting`: a context variable, so tasks it starts count too) through the service
  logger (services.platform.logging) and the ledger's own lines, at info level and above,
  each with the run's trace id (`ctx.trace_id`), and writes them in one round trip when the
  run ends (`ActivityLog.flush`), even when it failed or was cancelled. A worker killed mid-run
  loses that run's lines; its ledger mark still shows the takeover and the attempt.
- Bounded: at most MAX_RUN_LINES per run (the last ones), MAX_LINES per entity (newest
  first), messages cut to MAX_MESSAGE characters and fields to MAX_FIELDS characters of JSON,
  and each entity's list expires TTL_SECONDS after its last write.
- Redacted: messages and fields go through services.platform.logging's redaction again (the
  ledger's lines do not pass the service logger), so no secret reaches Redis.
- Never in the way: outside a run `note` does nothing, and a Redis failure while writing is
  logged and dropped.

Keys: `{prefix}:log:{entity}` where `entity` is the ledger's `{kind}:{entity id}` (e.g.
`document:6650f…`, `collection:Account:6650f…`, `calendar_employee:MM`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

MAX_LINES = 50
MAX_RUN_LINES = 30
MAX_MESSAGE = 500
MAX_FIELDS = 1500
TTL_SECONDS = 14 * 24 * 3600
RECORDED_LEVELS = frozenset({"info", "warn", "error"})

log = logging.getLogger("bitbylaw.activity")


@dataclass
class RunActivity:
    """The lines one run logged so far (the last MAX_RUN_LINES of them)."""

    entity: str
    trace_id: str | None = None
    records: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_RUN_LINES))
    seen: int = 0


_current: ContextVar[RunActivity | None] = ContextVar("bitbylaw_run_activity", default=None)


@contextlib.contextmanager
def collecting(entity: str, trace_id: str | None = None) -> Iterator[RunActivity]:
    """Collect the lines logged in this context (and the tasks it starts) for `entity`."""
    run = RunActivity(entity, trace_id)
    token = _current.set(run)
    try:
        yield run
    finally:
        _current.reset(token)


def _fields_text(data: Mapping[str, Any] | None) -> str | None:
    from services.platform.logging import redact_mapping

    if not data:
        return None
    text = json.dumps(redact_mapping(data), default=str, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= MAX_FIELDS else text[: MAX_FIELDS - 1] + "…"


def make_record(level: str, message: str, data: Mapping[str, Any] | None = None, *, trace_id: str | None = None,
                at: float | None = None) -> dict[str, Any]:
    """One stored line: `{at, level, message, trace_id, fields}` (fields: redacted JSON text or None)."""
    from services.platform.logging import redact_text

    text = redact_text(str(message))
    return {
        "at": round(time.time() if at is None else at, 3),
        "level": level,
        "message": text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…",
        "trace_id": trace_id,
        "fields": _fields_text(data),
    }


def note(level: str, message: str, data: Mapping[str, Any] | None = None) -> None:
    """Called by the loggers for every line: kept when a run is collecting (info and above)."""
    run = _current.get()
    if run is None or level not in RECORDED_LEVELS:
        return
    try:
        run.records.append(make_record(level, message, data, trace_id=run.trace_id))
        run.seen += 1
    except Exception:  # noqa: BLE001 - activity is a convenience; logging must never fail because of it
        log.debug("activity: a line could not be recorded", exc_info=True)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass
class ActivityLog:
    """The per-entity lists in Redis (`{prefix}:log:{entity}`)."""

    redis: Any
    prefix: str = "ledger"

    def key(self, entity: str) -> str:
        return f"{self.prefix}:log:{entity}"

    async def _push(self, entity: str, records: Iterable[dict[str, Any]]) -> bool:
        lines = [json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records]
        if not lines:
            return True
        key = self.key(entity)
        try:
            pipe = self.redis.pipeline(transaction=True)
            pipe.lpush(key, *lines)
            pipe.ltrim(key, 0, MAX_LINES - 1)
            pipe.expire(key, TTL_SECONDS)
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - never in the way of a sync
            log.warning("activity: could not store %d line(s) of %s: %s", len(lines), entity, exc)
            return False
        return True

    async def flush(self, run: RunActivity) -> bool:
        """Store a run's lines (oldest pushed first, so the list reads newest first)."""
        records = list(run.records)
        if run.seen > len(records):
            records.insert(0, make_record("info", f"({run.seen - len(records)} earlier line(s) of this run not kept)",
                                          trace_id=run.trace_id, at=records[0]["at"] if records else None))
        return await self._push(run.entity, records)

    async def add(self, entity: str, level: str, message: str, data: Mapping[str, Any] | None = None, *,
                  trace_id: str | None = None) -> bool:
        """Store one line now (operators' actions: a resync or a repair queued)."""
        return await self._push(entity, [make_record(level, message, data, trace_id=trace_id)])

    async def recent(self, entities: Iterable[str], limit: int = MAX_LINES) -> list[dict[str, Any]]:
        """The stored lines of these entities, newest first, each with its `entity`."""
        names = list(dict.fromkeys(entities))
        if not names:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for entity in names:
            pipe.lrange(self.key(entity), 0, MAX_LINES - 1)
        out: list[dict[str, Any]] = []
        for entity, raw in zip(names, await pipe.execute()):
            for item in raw or []:
                try:
                    record = json.loads(_text(item))
                except ValueError:
                    continue
                if isinstance(record, dict):
                    out.append({**record, "entity": entity})
        out.sort(key=lambda r: float(r.get("at") or 0), reverse=True)
        return out[:limit]


__all__ = ["MAX_LINES", "MAX_RUN_LINES", "ActivityLog", "RunActivity", "collecting", "make_record", "note"]
