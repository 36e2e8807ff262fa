"""The cron module: 6-field (seconds first) or 7-field (with year) expressions, in UTC.

croniter does the arithmetic. The engine's cron crate numbers weekdays 1–7 with
Sunday = 1; croniter counts 0–6 with Sunday = 0, so numeric weekdays are translated
(names pass through). Each (job, scheduled time) fires at most once: the last fired
time is kept in the store (KvCronAdapter) or claimed with SET NX in Redis
(RedisCronAdapter, so several engines never double-fire). Missed ticks while the engine
was down are not replayed. Failed runs are not retried, like the real engine.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from croniter import croniter

from iii_local.engine import Engine, InvocationError, TriggerEntry, new_traceparent
from iii_local.store import Store
from iii_local.telemetry import InvocationRecord, span_id_of, trace_id_of

SCOPE = "__iii_cron"


class CronExpressionError(ValueError):
    pass


def _translate_dow(field_text: str) -> str:
    """Map the engine's 1–7 (Sun=1) weekday numbers to croniter's 0–6 (Sun=0)."""

    def one(tok: str) -> str:
        if tok.isdigit():
            n = int(tok)
            if not 1 <= n <= 7:
                raise CronExpressionError(f"weekday {n} out of range 1-7 (Sunday = 1)")
            return str(n - 1)
        return tok

    out = []
    for part in field_text.split(","):
        step = ""
        if "/" in part:
            part, step = part.split("/", 1)
            step = "/" + step
        if "-" in part:
            a, b = part.split("-", 1)
            part = f"{one(a)}-{one(b)}"
        else:
            part = one(part)
        out.append(part + step)
    return ",".join(out)


@dataclass
class CronSpec:
    """A parsed expression: croniter expression (sec last) and an optional year field."""

    expression: str
    croniter_expr: str
    year: str | None = None

    @classmethod
    def parse(cls, expression: str) -> "CronSpec":
        fields = expression.split()
        if len(fields) not in (6, 7):
            raise CronExpressionError(f"cron expression needs 6 or 7 fields (seconds first), got {len(fields)}: {expression!r}")
        sec, minute, hour, dom, month, dow = fields[:6]
        year = fields[6] if len(fields) == 7 else None
        expr = f"{minute} {hour} {dom} {month} {_translate_dow(dow)} {sec}"
        if not croniter.is_valid(expr):
            raise CronExpressionError(f"invalid cron expression {expression!r}")
        if year is not None and year != "*" and not re.fullmatch(r"[0-9,\-/]+", year):
            raise CronExpressionError(f"invalid year field {year!r}")
        return cls(expression, expr, year)

    def _year_ok(self, dt: datetime) -> bool:
        if self.year is None or self.year == "*":
            return True
        for part in self.year.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                if int(a) <= dt.year <= int(b):
                    return True
            elif part.isdigit() and int(part) == dt.year:
                return True
        return False

    def next_after(self, ts: float) -> float | None:
        it = croniter(self.croniter_expr, datetime.fromtimestamp(ts, timezone.utc))
        for _ in range(10000):
            nxt: datetime = it.get_next(datetime)
            if self._year_ok(nxt):
                return nxt.timestamp()
            if self.year and all(p.isdigit() and nxt.year > int(p) for p in re.split(r"[,\-]", self.year) if p.isdigit()):
                return None
        return None


@dataclass
class CronJob:
    trigger: TriggerEntry
    spec: CronSpec
    next_fire: float | None
    last_fire: float | None = None
    last_result: str | None = None
    last_error: str | None = None
    last_duration_ms: float | None = None
    runs: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        return {
            "function_id": self.trigger.function_id,
            "trigger_id": self.trigger.id,
            "expression": self.spec.expression,
            "next_fire": self.next_fire,
            "last_fire": self.last_fire,
            "last_result": self.last_result,
            "last_error": self.last_error,
            "last_duration_ms": self.last_duration_ms,
            "runs": self.runs,
        }


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


class CronModule:
    trigger_types = ("cron",)

    def __init__(self, engine: Engine, store: Store, *, redis_url: str | None = None, timeout: float = 300.0) -> None:
        self.engine = engine
        self.store = store
        self.redis_url = redis_url
        self.redis: Any = None
        self.jobs: dict[str, CronJob] = {}
        self.timeout = timeout
        engine.add_sink(self)

    async def start(self) -> None:
        if self.redis_url:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(self.redis_url)

    async def stop(self) -> None:
        for job in self.jobs.values():
            if job.task:
                job.task.cancel()
        if self.redis is not None:
            await self.redis.aclose()

    def trigger_added(self, trigger: TriggerEntry) -> None:
        try:
            spec = CronSpec.parse(str(trigger.config.get("expression", "")))
        except CronExpressionError as exc:
            self.engine.telemetry.engine_log("error", f"cron trigger rejected: {exc}", step=trigger.function_id)
            return
        old = self.jobs.pop(trigger.function_id, None)
        if old and old.task:
            old.task.cancel()
        job = CronJob(trigger=trigger, spec=spec, next_fire=spec.next_after(time.time()))
        if old is not None:
            job.last_fire, job.last_result, job.last_error, job.runs = old.last_fire, old.last_result, old.last_error, old.runs
        self.jobs[trigger.function_id] = job
        job.task = asyncio.create_task(self._run(job))

    def trigger_removed(self, trigger: TriggerEntry) -> None:
        job = self.jobs.get(trigger.function_id)
        if job is not None and job.trigger.id == trigger.id:
            if job.task:
                job.task.cancel()
            del self.jobs[trigger.function_id]

    async def _claim(self, job: CronJob, scheduled: float) -> bool:
        """True exactly once per (job, scheduled time)."""
        key = f"{job.trigger.function_id}"
        if self.redis is not None:
            ok = await self.redis.set(f"iii:cron:{key}:{int(scheduled)}", "1", nx=True, ex=3600)
            return bool(ok)
        last = await self.store.kv_get(SCOPE, key)
        if isinstance(last, (int, float)) and last >= scheduled:
            return False
        await self.store.kv_set(SCOPE, key, scheduled)
        return True

    async def _run(self, job: CronJob) -> None:
        while job.next_fire is not None:
            delay = job.next_fire - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled = job.next_fire
            job.next_fire = job.spec.next_after(max(time.time(), scheduled))
            if await self._claim(job, scheduled):
                asyncio.create_task(self.fire(job, scheduled))

    async def fire(self, job: CronJob, scheduled: float | None = None, *, manual: bool = False) -> dict[str, Any]:
        now = time.time()
        payload = {
            "trigger": "cron",
            "job_id": str(uuid.uuid4()),
            "scheduled_time": iso(scheduled or now),
            "actual_time": iso(now),
        }
        traceparent = new_traceparent()
        record = self.engine.telemetry.start_invocation(
            InvocationRecord(trace_id=trace_id_of(traceparent) or "", function_id=job.trigger.function_id, kind="cron", span_id=span_id_of(traceparent),
                             start=now, detail={"expression": job.spec.expression, "manual": manual})
        )
        job.last_fire = now
        job.runs += 1
        try:
            condition = job.trigger.config.get("_condition_path")
            if condition and not await self.engine.invoke(str(condition), payload, traceparent=traceparent, timeout=self.timeout):
                job.last_result = "skipped"
            else:
                await self.engine.invoke(job.trigger.function_id, payload, traceparent=traceparent, timeout=self.timeout)
                job.last_result = "ok"
                job.last_error = None
            record.outcome = "ok"
        except InvocationError as exc:
            job.last_result = "error"
            job.last_error = exc.message
            record.outcome = "error"
            record.error = exc.message
            self.engine.telemetry.engine_log("error", f"cron run failed: {exc.message}", trace_id=record.trace_id, step=job.trigger.function_id)
        record.end = time.time()
        job.last_duration_ms = round((record.end - now) * 1000, 3)
        return {"function_id": job.trigger.function_id, "result": job.last_result, "error": job.last_error, "trace_id": record.trace_id}
