"""The queue module: durable, per-subscriber, at-least-once delivery with retries and a DLQ.

`enqueue {topic, data, messageGroupId?}` writes one job per step subscribed to the topic
(Motia's documented fan-out; engine 0.8.3 made subscribers compete instead) and returns
only after the store has committed them. Each subscriber has a dispatcher honouring its
queue config: `maxRetries` (attempts = maxRetries + 1), `backoffDelayMs` with
`backoffType` exponential|fixed, `delaySeconds`, `concurrency`, `visibilityTimeout`
(the invocation timeout) and `type: fifo` (one message per `messageGroupId` at a time).
Without a step config the adapter's defaults apply (`max_attempts`, `backoff_ms`,
`concurrency`, `mode`). Exhausted jobs become dead letters (`{job, error, failed_at}`)
that can be listed and replayed. Jobs of a subscriber whose worker is gone wait for it.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
import time
from dataclasses import dataclass, field
from typing import Any

from iii_local.config import QueueConfig
from iii_local.engine import CallContext, Engine, InvocationError, TriggerEntry, new_traceparent
from iii_local.jobs import Job, JobState
from iii_local.store import Store
from iii_local.telemetry import InvocationRecord, span_id_of, trace_id_of


class EnqueueError(ValueError):
    pass


@dataclass
class SubscriberConfig:
    max_attempts: int
    backoff_ms: int
    backoff_type: str
    delay_seconds: float
    concurrency: int
    fifo: bool
    timeout: float

    @classmethod
    def from_trigger(cls, qc: dict[str, Any] | None, defaults: QueueConfig) -> "SubscriberConfig":
        qc = qc or {}
        max_retries = qc.get("maxRetries")
        return cls(
            max_attempts=int(max_retries) + 1 if max_retries is not None else defaults.max_attempts,
            backoff_ms=int(qc.get("backoffDelayMs") or defaults.backoff_ms),
            backoff_type="fixed" if qc.get("backoffType") == "fixed" else "exponential",
            delay_seconds=float(qc.get("delaySeconds") or 0),
            concurrency=int(qc.get("concurrency") or defaults.concurrency),
            fifo=(qc.get("type") == "fifo") if "type" in qc else defaults.mode == "fifo",
            timeout=float(qc.get("visibilityTimeout") or 30),
        )


@dataclass
class Subscriber:
    function_id: str
    topic: str
    config: SubscriberConfig
    active: bool = False
    ready: list[tuple[float, int, str]] = field(default_factory=list)  # heap of (available_at, seq, job id)
    in_flight: int = 0
    busy_groups: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class QueueModule:
    trigger_types = ("queue",)

    def __init__(self, engine: Engine, store: Store, defaults: QueueConfig, *, history_max: int = 10_000) -> None:
        self.engine = engine
        self.store = store
        self.defaults = defaults
        self.jobs: dict[str, Job] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self.topics: dict[str, set[str]] = {}
        self._seq = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.delivered = 0
        self.unrouted = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=history_max)
        self._history_seq = 0
        engine.register_builtin("enqueue", self._enqueue_builtin)
        engine.add_sink(self)

    async def start(self) -> None:
        """Reload subscriptions and unfinished jobs from the store (redelivering in-flight ones)."""
        for topic, sub_id, cfg in await self.store.load_subscriptions():
            self._ensure_subscriber(topic, sub_id, cfg)
        for job in sorted(await self.store.load_jobs(), key=lambda j: (j.created_at, j.seq)):
            self.jobs[job.id] = job
            self._seq = max(self._seq, job.seq)
            if job.state == JobState.READY:
                sub = self.subscribers.get(job.subscriber)
                if sub is None:
                    sub = self._ensure_subscriber(job.topic, job.subscriber, {})
                heapq.heappush(sub.ready, (job.available_at, job.seq, job.id))

    async def stop(self) -> None:
        self._closing = True
        for sub in self.subscribers.values():
            if sub.task is not None:
                sub.task.cancel()
        for t in list(self._tasks):
            t.cancel()

    # ----------------------------------------------------------------- registry

    def _ensure_subscriber(self, topic: str, function_id: str, queue_config: dict[str, Any]) -> Subscriber:
        sub = self.subscribers.get(function_id)
        cfg = SubscriberConfig.from_trigger(queue_config, self.defaults)
        if sub is None:
            sub = Subscriber(function_id=function_id, topic=topic, config=cfg)
            self.subscribers[function_id] = sub
        else:
            sub.config = cfg
            sub.topic = topic
        self.topics.setdefault(topic, set()).add(function_id)
        return sub

    def trigger_added(self, trigger: TriggerEntry) -> None:
        topic = str(trigger.config.get("topic", ""))
        if not topic:
            return
        qc = trigger.config.get("queue_config") or {}
        sub = self._ensure_subscriber(topic, trigger.function_id, qc)
        sub.active = True
        self._spawn(self.store.add_subscription(topic, trigger.function_id, qc))
        if sub.task is None or sub.task.done():
            sub.task = asyncio.create_task(self._run_subscriber(sub))
        sub.wake.set()

    def trigger_removed(self, trigger: TriggerEntry) -> None:
        sub = self.subscribers.get(trigger.function_id)
        if sub is not None:
            sub.active = False
            sub.wake.set()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ----------------------------------------------------------------- enqueue

    async def _enqueue_builtin(self, data: Any, ctx: CallContext) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("topic"), str) or not data["topic"]:
            raise EnqueueError("enqueue needs {topic: non-empty string, data: any}")
        await self.enqueue(data["topic"], data.get("data"), group_id=data.get("messageGroupId"), traceparent=ctx.traceparent)
        return None

    async def enqueue(self, topic: str, data: Any, *, group_id: str | None = None, traceparent: str | None = None) -> list[str]:
        """Persist one job per subscriber of `topic`; returns their ids once committed."""
        subs = [self.subscribers[s] for s in sorted(self.topics.get(topic, ()))]
        self._history_seq += 1
        self.history.append({"seq": self._history_seq, "topic": topic, "data": data, "group_id": group_id,
                             "trace_id": trace_id_of(traceparent), "time": time.time(), "subscribers": len(subs)})
        if not subs:
            self.unrouted += 1
            self.engine.telemetry.engine_log("warn", f"enqueue to topic {topic!r} with no subscriber: message dropped", trace_id=trace_id_of(traceparent), topic=topic)
            return []
        now = time.time()
        jobs = []
        for sub in subs:
            if sub.config.fifo and not group_id:
                raise EnqueueError(f"topic {topic!r} has a FIFO subscriber: messageGroupId is required")
            self._seq += 1
            jobs.append(
                Job(
                    topic=topic,
                    subscriber=sub.function_id,
                    data=data,
                    max_attempts=sub.config.max_attempts,
                    backoff_ms=sub.config.backoff_ms,
                    backoff_type=sub.config.backoff_type,
                    group_id=group_id,
                    traceparent=traceparent or new_traceparent(),
                    available_at=now + sub.config.delay_seconds,
                    created_at=now,
                    seq=self._seq,
                )
            )
        await self.store.put_jobs(jobs)
        for job, sub in zip(jobs, subs):
            self.jobs[job.id] = job
            heapq.heappush(sub.ready, (job.available_at, job.seq, job.id))
            sub.wake.set()
        return [j.id for j in jobs]

    # ----------------------------------------------------------------- delivery

    async def _run_subscriber(self, sub: Subscriber) -> None:
        while not self._closing:
            sub.wake.clear()
            delay = self._dispatch_ready(sub)
            try:
                await asyncio.wait_for(sub.wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass

    def _dispatch_ready(self, sub: Subscriber) -> float | None:
        """Start every job that may run now; return seconds until the next one is due."""
        if not sub.active:
            return None
        now = time.time()
        deferred: list[tuple[float, int, str]] = []
        next_due: float | None = None
        while sub.ready and sub.in_flight < sub.config.concurrency:
            available_at, seq, job_id = sub.ready[0]
            job = self.jobs.get(job_id)
            if job is None or job.state != JobState.READY:
                heapq.heappop(sub.ready)
                continue
            if available_at > now:
                next_due = available_at - now
                break
            heapq.heappop(sub.ready)
            if sub.config.fifo and job.group_id is not None and job.group_id in sub.busy_groups:
                deferred.append((available_at, seq, job_id))
                continue
            sub.in_flight += 1
            if sub.config.fifo and job.group_id is not None:
                sub.busy_groups.add(job.group_id)
            self._spawn(self._deliver(sub, job))
        for item in deferred:
            heapq.heappush(sub.ready, item)
        if next_due is None and sub.ready and sub.in_flight < sub.config.concurrency and not deferred:
            next_due = max(0.0, sub.ready[0][0] - now)
        return next_due

    async def _deliver(self, sub: Subscriber, job: Job) -> None:
        job.attempts_made += 1
        trace_id = trace_id_of(job.traceparent) or ""
        # Same trace, a span of its own per delivery: each subscriber's and each attempt's
        # worker span (and so its log lines) can be told apart.
        traceparent = new_traceparent(trace_id or None)
        record = self.engine.telemetry.start_invocation(
            InvocationRecord(trace_id=trace_id_of(traceparent) or "", function_id=sub.function_id, kind="queue", start=time.time(),
                             attempt=job.attempts_made, span_id=span_id_of(traceparent),
                             detail={"topic": job.topic, "job_id": job.id, "max_attempts": job.max_attempts})
        )
        error: str | None = None
        try:
            await self.engine.invoke(sub.function_id, job.data, traceparent=traceparent, timeout=sub.config.timeout)
        except InvocationError as exc:
            error = exc.message
            record.outcome = "timeout" if exc.code == "timeout" else "error"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            error = f"{type(exc).__name__}: {exc}"
            record.outcome = "error"
        record.end = time.time()
        try:
            if error is None:
                record.outcome = "ok"
                self.delivered += 1
                self.jobs.pop(job.id, None)
                await self.store.delete_job(job.id)
            else:
                record.error = error
                job.last_error = error
                if job.exhausted:
                    job.state = JobState.DEAD
                    job.failed_at = time.time()
                    await self.store.update_job(job)
                    self.engine.telemetry.engine_log(
                        "error", f"message moved to dead-letter queue after {job.attempts_made} attempt(s)",
                        trace_id=trace_id, step=sub.function_id, topic=job.topic, job_id=job.id, error=error,
                    )
                else:
                    delay = job.next_backoff_seconds()
                    job.available_at = time.time() + delay
                    await self.store.update_job(job)
                    heapq.heappush(sub.ready, (job.available_at, job.seq, job.id))
                    self.engine.telemetry.engine_log(
                        "warn", f"delivery failed (attempt {job.attempts_made}/{job.max_attempts}), retrying in {delay:.2f}s",
                        trace_id=trace_id, step=sub.function_id, topic=job.topic, job_id=job.id, error=error,
                    )
        finally:
            sub.in_flight -= 1
            if job.group_id is not None:
                sub.busy_groups.discard(job.group_id)
            sub.wake.set()

    # ----------------------------------------------------------------- operator surface

    def dead_letters(self, topic: str | None = None, subscriber: str | None = None) -> list[Job]:
        return sorted(
            (j for j in self.jobs.values() if j.state == JobState.DEAD and (topic is None or j.topic == topic)
             and (subscriber is None or j.subscriber == subscriber)),
            key=lambda j: j.failed_at or 0,
        )

    async def replay(self, job_ids: list[str] | None = None, *, topic: str | None = None) -> int:
        """Move dead letters back to their queue with a fresh attempt budget."""
        targets = [j for j in self.dead_letters(topic) if job_ids is None or j.id in job_ids]
        now = time.time()
        for job in targets:
            job.state = JobState.READY
            job.attempts_made = 0
            job.available_at = now
            job.failed_at = None
            await self.store.update_job(job)
            sub = self.subscribers.get(job.subscriber) or self._ensure_subscriber(job.topic, job.subscriber, {})
            heapq.heappush(sub.ready, (job.available_at, job.seq, job.id))
            sub.wake.set()
        return len(targets)

    async def discard(self, job_ids: list[str]) -> int:
        n = 0
        for jid in job_ids:
            job = self.jobs.get(jid)
            if job is not None and job.state == JobState.DEAD:
                self.jobs.pop(jid)
                await self.store.delete_job(jid)
                n += 1
        return n

    def stats(self) -> list[dict[str, Any]]:
        now = time.time()
        rows = []
        for sub in sorted(self.subscribers.values(), key=lambda s: (s.topic, s.function_id)):
            queued = retrying = dead = 0
            for j in self.jobs.values():
                if j.subscriber != sub.function_id:
                    continue
                if j.state == JobState.DEAD:
                    dead += 1
                elif j.attempts_made > 0 and j.available_at > now:
                    retrying += 1
                else:
                    queued += 1
            rows.append({
                "topic": sub.topic,
                "subscriber": sub.function_id,
                "active": sub.active,
                "depth": max(0, queued - sub.in_flight),
                "in_flight": sub.in_flight,
                "retrying": retrying,
                "dead": dead,
                "concurrency": sub.config.concurrency,
                "max_attempts": sub.config.max_attempts,
                "fifo": sub.config.fifo,
            })
        return rows

    @property
    def last_message_seq(self) -> int:
        return self._history_seq

    def messages(self, topic: str | None = None, after: int = 0, limit: int = 1000, trace_id: str | None = None) -> list[dict[str, Any]]:
        """Recently enqueued messages (what `watch(topic)` in the tester reads), oldest first:
        the first `limit` after sequence number `after` (page on with the last `seq`)."""
        out = [
            m for m in self.history
            if m["seq"] > after and (topic is None or m["topic"] == topic) and (trace_id is None or m["trace_id"] == trace_id)
        ]
        return out[:limit]

    def idle(self) -> bool:
        """No job is queued, retrying or running (dead letters don't count)."""
        return all(j.state == JobState.DEAD for j in self.jobs.values())
