"""The cron module, as the real engine 0.8.3 runs it (engine/src/modules/cron/).

- One job per **trigger id** (structs.rs 222-273); the iii SDK makes trigger ids random per
  worker process (`str(uuid.uuid4())` in iii/iii.py `register_trigger`), so a restarted worker
  registers new jobs, and two workers (or two engines) with the same step run it twice.
- Each job loops (structs.rs 89-219): next time after now (`cron_expr`, the `cron` crate's
  rules: seconds first, UTC, Sunday = 1), sleep, try the adapter's lock for the trigger id,
  run the condition and the function **inline** (a run longer than the interval skips the
  ticks it overlaps), release the lock. No timeout (Q3), no retry of a failed run (C1).
  The event is `{trigger: "cron", job_id: <trigger id>, scheduled_time, actual_time}` in
  RFC 3339 with `+00:00`.
- `KvCronAdapter` (adapters/kv_adapter.rs): a lock table local to the engine process, TTL
  30 s. `RedisCronAdapter` (adapters/redis_adapter.rs 23-27, 79-139): `SET cron_lock:{trigger
  id} <instance uuid> NX PX 30000`, released after the run by a compare-and-delete script.
  Neither dedups across engines, because trigger ids differ per worker process (C2).

Operator extras of the stand-in: `jobs` for the console listing and `fire(manual=True)`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from iii_local.cron_expr import CronExpressionError, CronSchedule
from iii_local.engine import NO_TIMEOUT, Engine, InvocationError, TriggerEntry, new_traceparent
from iii_local.telemetry import InvocationRecord, span_id_of, trace_id_of

__all__ = ["CronExpressionError", "CronSchedule", "CronModule", "CronJob", "LastRun", "KvCronLock", "RedisCronLock", "rfc3339"]

LOCK_TTL_MS = 30_000  # redis_adapter.rs 24, kv_adapter.rs 19
LOCK_PREFIX = "cron_lock:"  # redis_adapter.rs 27

_RELEASE = """
if redis.call("get", KEYS[1]) == ARGV[1] then
    return redis.call("del", KEYS[1])
else
    return 0
end
"""


class CronLock(Protocol):
    async def try_acquire(self, job_id: str) -> bool: ...
    async def release(self, job_id: str) -> None: ...
    async def close(self) -> None: ...


class KvCronLock:
    """`KvCronAdapter`: locks in this engine process only (owner = a uuid per adapter)."""

    def __init__(self, ttl_ms: int = LOCK_TTL_MS) -> None:
        self.ttl_ms = ttl_ms
        self.owner = str(uuid.uuid4())
        self.locks: dict[str, tuple[str, float]] = {}

    async def try_acquire(self, job_id: str) -> bool:
        now = time.time() * 1000
        held = self.locks.get(job_id)
        if held is not None and held[1] > now:
            return False
        self.locks[job_id] = (self.owner, now + self.ttl_ms)
        return True

    async def release(self, job_id: str) -> None:
        held = self.locks.get(job_id)
        if held is not None and held[0] == self.owner:
            del self.locks[job_id]

    async def close(self) -> None:
        return None


class RedisCronLock:
    """`RedisCronAdapter`: `cron_lock:{trigger id}` in Redis, 30 s TTL; errors count as not acquired."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.instance_id = str(uuid.uuid4())
        self.redis: Any = None

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(self.redis_url, decode_responses=True)
        await self.redis.ping()  # the real adapter fails the engine start when Redis is down

    async def try_acquire(self, job_id: str) -> bool:
        try:
            return bool(await self.redis.set(LOCK_PREFIX + job_id, self.instance_id, nx=True, px=LOCK_TTL_MS))
        except Exception:  # noqa: BLE001 - redis_adapter.rs 102-105: logged, not acquired
            return False

    async def release(self, job_id: str) -> None:
        try:
            await self.redis.eval(_RELEASE, 1, LOCK_PREFIX + job_id, self.instance_id)
        except Exception:  # noqa: BLE001 - redis_adapter.rs 135-137: logged
            pass

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def rfc3339(ns: int) -> str:
    """chrono's `to_rfc3339()` for a UTC time: `+00:00`, fraction of 0, 3, 6 or 9 digits (AutoSi)."""
    secs, nanos = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos == 0:
        frac = ""
    elif nanos % 1_000_000 == 0:
        frac = f".{nanos // 1_000_000:03d}"
    elif nanos % 1_000 == 0:
        frac = f".{nanos // 1_000:06d}"
    else:
        frac = f".{nanos:09d}"
    return f"{base}{frac}+00:00"


@dataclass(frozen=True)
class LastRun:
    """How a job's latest finished fire went; the next one to finish replaces it whole, so
    the time, result, error and duration shown always belong to the same run."""

    fired_at: float
    result: str  # ok | skipped | error
    error: str | None
    duration_ms: float


@dataclass
class CronJob:
    trigger: TriggerEntry
    schedule: CronSchedule
    next_fire: float | None = None
    last: LastRun | None = None
    runs: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def public(self) -> dict[str, Any]:
        last = self.last
        return {
            "function_id": self.trigger.function_id,
            "trigger_id": self.trigger.id,
            "expression": self.schedule.expression,
            "next_fire": self.next_fire,
            "last_fire": last.fired_at if last else None,
            "last_result": last.result if last else None,
            "last_error": last.error if last else None,
            "last_duration_ms": last.duration_ms if last else None,
            "runs": self.runs,
        }


class CronModule:
    trigger_types: tuple[str, ...] = ("cron",)

    def __init__(self, engine: Engine, *, redis_url: str | None = None) -> None:
        self.engine = engine
        self.redis_url = redis_url
        self.lock: CronLock = KvCronLock()
        self.jobs: dict[str, CronJob] = {}  # by trigger id
        engine.add_sink(self)

    async def start(self) -> None:
        if self.redis_url:
            lock = RedisCronLock(self.redis_url)
            await lock.open()
            self.lock = lock
        else:
            self.engine.telemetry.engine_log(
                "warn", "KvCronAdapter uses process-local locks; cron jobs may run on every engine instance", step="cron"
            )

    async def stop(self) -> None:
        for job_id, job in list(self.jobs.items()):
            if job.task:
                job.task.cancel()
            await self.lock.release(job_id)
        await self.lock.close()

    def job_for_function(self, function_id: str) -> CronJob | None:
        """The console's manual trigger: the job of a function id (or of its step name)."""
        for job in self.jobs.values():
            if job.trigger.function_id == function_id:
                return job
        step = function_id.split("::trigger::")[0]
        matches = [j for j in self.jobs.values() if j.trigger.function_id.split("::trigger::")[0] == step]
        return matches[0] if len(matches) == 1 else None

    def trigger_added(self, trigger: TriggerEntry) -> None:
        expression = trigger.config.get("expression")
        if not isinstance(expression, str) or not expression:
            self.engine.telemetry.engine_log("error", f"Cron expression is not set for trigger {trigger.id}", step=trigger.function_id)
            return
        if trigger.id in self.jobs:
            self.engine.telemetry.engine_log("error", f"Cron job '{trigger.id}' is already registered", step=trigger.function_id)
            return
        try:
            schedule = CronSchedule.parse(expression)
        except CronExpressionError as exc:
            self.engine.telemetry.engine_log("error", f"Invalid cron expression '{expression}': {exc}", step=trigger.function_id)
            return
        job = CronJob(trigger=trigger, schedule=schedule)
        self.jobs[trigger.id] = job
        job.task = asyncio.create_task(self._run(job))

    def trigger_removed(self, trigger: TriggerEntry) -> None:
        job = self.jobs.pop(trigger.id, None)
        if job is not None:
            if job.task:
                job.task.cancel()  # aborts a run in progress, like `task_handle.abort()`
            asyncio.ensure_future(self.lock.release(trigger.id))

    async def _run(self, job: CronJob) -> None:
        """structs.rs 89-219: one iteration per scheduled time, the run awaited inline."""
        last: float = 0.0
        while True:
            # `upcoming(Utc)` is strictly after now; tokio never wakes early, asyncio may by a
            # hair, so never before the time just served either.
            job.next_fire = job.schedule.next_after(max(time.time(), last))
            if job.next_fire is None:
                self.engine.telemetry.engine_log("warn", "No upcoming schedule found for cron job", step=job.trigger.function_id)
                return
            await asyncio.sleep(max(0.0, job.next_fire - time.time()))
            scheduled = last = job.next_fire
            if not await self.lock.try_acquire(job.trigger.id):
                continue  # "another instance is handling it"
            try:
                await self.fire(job, scheduled)
            finally:
                await self.lock.release(job.trigger.id)

    async def fire(self, job: CronJob, scheduled: float | None = None, *, manual: bool = False) -> dict[str, Any]:
        """Run the condition (skip only on a literal `false` or an error) and the function once."""
        now_ns = time.time_ns()
        now = now_ns / 1e9
        payload = {
            "trigger": "cron",
            "job_id": job.trigger.id,
            "scheduled_time": rfc3339(int(round((scheduled if scheduled is not None else now) * 1e9))),
            "actual_time": rfc3339(now_ns),
        }
        traceparent = new_traceparent()
        record = self.engine.telemetry.start_invocation(
            InvocationRecord(trace_id=trace_id_of(traceparent) or "", function_id=job.trigger.function_id, kind="cron", span_id=span_id_of(traceparent),
                             start=now, detail={"expression": job.schedule.expression, "manual": manual})
        )
        job.runs += 1
        result = "ok"
        error: str | None = None
        try:
            if await self._condition_holds(job, payload, traceparent):
                await self.engine.invoke(job.trigger.function_id, payload, traceparent=traceparent, timeout=NO_TIMEOUT)
            else:
                result = "skipped"
            record.outcome = "ok"
        except InvocationError as exc:
            result, error = "error", exc.message
            record.outcome = "error"
            record.error = exc.message
            self.engine.telemetry.engine_log("error", f"Cron job execution failed: {exc.message}", trace_id=record.trace_id, step=job.trigger.function_id)
        record.end = time.time()
        job.last = LastRun(fired_at=now, result=result, error=error, duration_ms=round((record.end - now) * 1000, 3))
        return {"function_id": job.trigger.function_id, "result": result, "error": error, "trace_id": record.trace_id}

    async def _condition_holds(self, job: CronJob, payload: dict[str, Any], traceparent: str) -> bool:
        """condition.rs: true unless the condition function answers exactly `false`; its error raises."""
        condition = job.trigger.config.get("_condition_path")
        if not isinstance(condition, str) or not condition:
            return True
        result = await self.engine.invoke(condition, payload, traceparent=traceparent, timeout=NO_TIMEOUT)
        return result is not False
