"""`modules::queue::BuiltinQueueAdapter`: engine 0.8.3's builtin queue, rule for rule.

Source: `builtins/queue.rs` (tag iii/v0.8.3) and `modules/queue/adapters/builtin/adapter.rs`.

- One job list per topic (`queue:{topic}:waiting`, 301-315). `enqueue` pushes one job per
  message (`push`, 317-353), whoever subscribes; every subscription of the topic runs its
  own worker over that same list, so subscribers **compete**: each message reaches one
  function. A message for a topic nobody subscribes to waits there.
- Every job takes the adapter's `max_attempts`/`backoff_ms` (`Job::new(.., self.config..)`).
  A failed job is retried after `backoff_ms * 2^(attempt-1)` (the `delayed` sorted set,
  `nack` 464-504) and moved to `queue:{topic}:dlq` as `{job, error, failed_at}` when
  exhausted (`move_to_dlq` 506-529). Nothing lists or redrives dead letters for a step.
- Mode and concurrency are per subscription (`subscribe` 559-625). Concurrent: a `Worker`
  polls every 100 ms with a semaphore of `concurrency` (step's, else the adapter's); a job
  popped without a free permit goes back to the *head* of the list (757-833). FIFO: the
  enqueue path never sets a group, so every job is in group `default`: one job at a time
  per subscription, retried inline (its worker waits through the backoff, 689-746), polled
  every `poll_interval_ms`; `concurrency` > 1 → `GroupedFifoWorker`, else `FifoWorker`, whose
  inline run dies with the subscription (835-1000). `messageGroupId` is not read at all.
- A popped job is in `queue:{topic}:active` until acked or nacked. After a restart nothing
  looks at that list again (`rebuild_from_storage` 221-295): jobs in flight at a crash are
  never delivered again. Job records without any saved list are requeued.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iii_local.config import QueueConfig
from iii_local.jobs import Job, QueueMode, SubscriptionConfig, now_ms
from iii_local.queue_delivery import FunctionHandler
from iii_local.queue_kv import QueueKvStore

log = logging.getLogger("iii_local.queue")

JobHandler = Callable[[Job], Awaitable[str | None]]
"""Handles one job: None when it succeeded, else the error text."""

WORKER_POLL_MS = 100  # `Worker::new` hard-codes it; the FIFO workers use poll_interval_ms


async def _ticks(interval_ms: int) -> AsyncIterator[None]:
    """`tokio::time::interval` (burst): the first tick at once, missed ticks fire immediately."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while True:
        delay = start + n * interval_ms / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield
        n += 1


def waiting_key(queue: str) -> str:
    return f"queue:{queue}:waiting"


def active_key(queue: str) -> str:
    return f"queue:{queue}:active"


def delayed_key(queue: str) -> str:
    return f"queue:{queue}:delayed"


def dlq_key(queue: str) -> str:
    return f"queue:{queue}:dlq"


def job_key(queue: str, job_id: str) -> str:
    return f"queue:{queue}:jobs:{job_id}"


class BuiltinQueue:
    """The job lists and their workers (`BuiltinQueue`)."""

    def __init__(self, kv: QueueKvStore, config: QueueConfig) -> None:
        self.kv = kv
        self.config = config
        self.workers: dict[str, asyncio.Task[None]] = {}
        self.claimed: dict[str, set[str]] = {}  # topic → ids of jobs a live task is working on
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ storage (rules of queue.rs)

    def rebuild_from_storage(self) -> None:
        """On start: saved lists → only move due delayed jobs; no saved list → requeue every job record."""
        if not self.kv.has_queue_state("queue:"):
            now = now_ms()
            for key in self.kv.list_job_keys("queue:"):
                if ":jobs:" not in key:
                    continue
                job = Job.from_dict(self.kv.get_job(key))
                if job is None:
                    continue
                if job.process_at is not None and job.process_at > now:
                    self.kv.zadd(delayed_key(job.queue), job.process_at, job.id)
                else:
                    self.kv.lpush(waiting_key(job.queue), job.id)
            return
        names = {k.split(":")[1] for k in self.kv.list_job_keys("queue:") if ":jobs:" in k and len(k.split(":")) >= 2}
        for name in names:
            self.move_delayed_to_waiting(name)

    def push(self, queue: str, data: Any, traceparent: str | None = None, baggage: str | None = None) -> str:
        job = Job.new(queue, data, self.config.max_attempts, self.config.backoff_ms, traceparent, baggage)
        self.kv.set_job(job_key(queue, job.id), job.to_dict())
        self.kv.lpush(waiting_key(queue), job.id)
        return job.id

    def pop(self, queue: str) -> Job | None:
        job_id = self.kv.rpop(waiting_key(queue))
        if job_id is None:
            return None
        self.kv.lpush(active_key(queue), job_id)
        return Job.from_dict(self.kv.get_job(job_key(queue, job_id)))

    def ack(self, queue: str, job_id: str) -> None:
        self.kv.lrem(active_key(queue), 1, job_id)
        self.kv.delete_job(job_key(queue, job_id))

    def nack(self, queue: str, job_id: str, error: str) -> Job | None:
        """Count the failed attempt; retry after the backoff or move to the DLQ. Returns the job."""
        job = Job.from_dict(self.kv.get_job(job_key(queue, job_id)))
        if job is None:
            self.kv.lrem(active_key(queue), 1, job_id)
            log.warning("Job not found for nack: %s %s", queue, job_id)
            return None
        job.increment_attempts()
        if job.exhausted:
            self.move_to_dlq(queue, job, error)
            return job
        self.kv.lrem(active_key(queue), 1, job_id)
        job.process_at = now_ms() + job.calculate_backoff()
        self.kv.set_job(job_key(queue, job_id), job.to_dict())
        self.kv.zadd(delayed_key(queue), job.process_at, job_id)
        return job

    def move_to_dlq(self, queue: str, job: Job, error: str) -> None:
        self.kv.lrem(active_key(queue), 1, job.id)
        entry = {"job": job.to_dict(), "error": error, "failed_at": now_ms()}
        self.kv.lpush(dlq_key(queue), json.dumps(entry, separators=(",", ":"), ensure_ascii=False, default=str))
        self.kv.delete_job(job_key(queue, job.id))
        log.warning("Job exhausted, moved to DLQ: %s %s after %d attempt(s)", queue, job.id, job.attempts_made)

    def move_delayed_to_waiting(self, queue: str) -> None:
        key = delayed_key(queue)
        for job_id in self.kv.zrangebyscore(key, 0, now_ms()):
            self.kv.zrem(key, job_id)
            self.kv.rpush(waiting_key(queue), job_id)  # the oldest end: retried jobs go first

    # ------------------------------------------------------------ subscriptions

    def subscribe(self, queue: str, handler: JobHandler, config: SubscriptionConfig | None) -> str:
        handle = str(uuid.uuid4())
        mode = (config.mode if config and config.mode else None) or QueueMode.parse(self.config.mode)
        concurrency = config.concurrency if config and config.concurrency is not None else self.config.concurrency
        if mode == QueueMode.FIFO:
            run = self._grouped_fifo_worker(queue, handler, concurrency) if concurrency > 1 else self._fifo_worker(queue, handler)
        else:
            run = self._worker(queue, handler, concurrency)
        self.workers[handle] = asyncio.create_task(run)
        return handle

    def unsubscribe(self, handle: str) -> None:
        """Abort the subscription's worker; deliveries it spawned run on (a FIFO worker's inline one dies)."""
        task = self.workers.pop(handle, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = [*self.workers.values(), *self._tasks]
        self.workers.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_handler(self, handler: JobHandler, job: Job) -> str | None:
        try:
            return await handler(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in delivery is a failed attempt, not a dead worker
            log.exception("queue delivery failed")
            return f"{type(exc).__name__}: {exc}"

    # ------------------------------------------------------------ workers

    async def _worker(self, queue: str, handler: JobHandler, concurrency: int) -> None:
        """`Worker`: every 100 ms move due retries, then start jobs while permits last."""
        permits = [concurrency]

        async def process(job: Job) -> None:
            claimed = self.claimed.setdefault(queue, set())
            claimed.add(job.id)
            try:
                error = await self._run_handler(handler, job)
                if error is None:
                    self.ack(queue, job.id)
                else:
                    self.nack(queue, job.id, error)
            finally:
                claimed.discard(job.id)
                permits[0] += 1

        async for _ in _ticks(WORKER_POLL_MS):
            self.move_delayed_to_waiting(queue)
            while True:
                job = self.pop(queue)
                if job is None:
                    break
                if permits[0] <= 0:
                    self.kv.lpush(waiting_key(queue), job.id)  # back to the head: behind newer jobs
                    self.kv.lrem(active_key(queue), 1, job.id)
                    break
                permits[0] -= 1
                self._spawn(process(job))

    async def _inline_retry(self, queue: str, handler: JobHandler, job: Job) -> None:
        """`process_job_with_inline_retry`: retry in place (the job stays active) until done or dead."""
        claimed = self.claimed.setdefault(queue, set())
        claimed.add(job.id)
        try:
            while True:
                error = await self._run_handler(handler, job)
                if error is None:
                    self.ack(queue, job.id)
                    return
                job.increment_attempts()
                if job.exhausted:
                    self.move_to_dlq(queue, job, error)
                    return
                await asyncio.sleep(job.calculate_backoff() / 1000)
                self.kv.set_job(job_key(queue, job.id), job.to_dict())
        finally:
            claimed.discard(job.id)

    async def _grouped_fifo_worker(self, queue: str, handler: JobHandler, max_groups: int) -> None:
        active_groups: set[str] = set()

        async def process(job: Job, group: str) -> None:
            try:
                await self._inline_retry(queue, handler, job)
            finally:
                active_groups.discard(group)

        async for _ in _ticks(self.config.poll_interval_ms):
            self.move_delayed_to_waiting(queue)
            skipped: list[str] = []
            while len(active_groups) < max_groups:
                job = self.pop(queue)
                if job is None:
                    break
                group = job.group_id or "default"
                if group in active_groups:
                    skipped.append(job.id)
                    continue
                active_groups.add(group)
                self._spawn(process(job, group))
            for job_id in skipped:  # back in pop order: the first skipped is next
                self.kv.lpush(waiting_key(queue), job_id)
                self.kv.lrem(active_key(queue), 1, job_id)

    async def _fifo_worker(self, queue: str, handler: JobHandler) -> None:
        async for _ in _ticks(self.config.poll_interval_ms):
            self.move_delayed_to_waiting(queue)
            job = self.pop(queue)
            if job is not None:
                await self._inline_retry(queue, handler, job)


@dataclass
class _Subscription:
    topic: str
    trigger_id: str
    function_id: str
    config: SubscriptionConfig | None
    handle: str


class BuiltinQueueAdapter:
    """`enqueue` = push one job; one worker per subscribing trigger; the DLQ kept for operators."""

    kind = "builtin"

    def __init__(self, config: QueueConfig, data_path: Path | None) -> None:
        self.config = config
        self.kv = QueueKvStore(store_method=config.store_method, file_path=data_path,
                               save_interval_ms=getattr(config, "save_interval_ms", 5000))
        self.queue = BuiltinQueue(self.kv, config)
        self.subscriptions: dict[str, _Subscription] = {}  # "{topic}:{trigger id}" →

    async def start(self) -> None:
        await self.kv.open()
        self.queue.rebuild_from_storage()

    async def stop(self) -> None:
        await self.queue.stop()
        await self.kv.close()

    async def enqueue(self, topic: str, data: Any, traceparent: str | None, baggage: str | None) -> list[str]:
        return [self.queue.push(topic, data, traceparent, baggage)]

    def subscribe(self, topic: str, trigger_id: str, handler: FunctionHandler, queue_config: Any) -> None:
        config = SubscriptionConfig.from_trigger(queue_config)

        async def handle(job: Job) -> str | None:
            return await handler.deliver(job.queue, job.data, traceparent=job.traceparent, baggage=job.baggage,
                                         job_id=job.id, attempt=job.attempts_made + 1, max_attempts=job.max_attempts)

        key = f"{topic}:{trigger_id}"
        old = self.subscriptions.pop(key, None)
        if old is not None:  # the map entry is replaced; the old worker is never stopped
            log.debug("queue trigger %s subscribed again", key)
        handle = self.queue.subscribe(topic, handle, config)
        self.subscriptions[key] = _Subscription(topic, trigger_id, handler.function_id, config, handle)

    def unsubscribe(self, topic: str, trigger_id: str) -> None:
        sub = self.subscriptions.pop(f"{topic}:{trigger_id}", None)
        if sub is None:
            log.warning("No subscription found to unsubscribe: %s %s", topic, trigger_id)
            return
        self.queue.unsubscribe(sub.handle)

    def subscriber_count(self, topic: str) -> int:
        return sum(1 for s in self.subscriptions.values() if s.topic == topic)

    # ------------------------------------------------------------ operator views

    def store_info(self) -> dict[str, Any]:
        return self.kv.info()

    def topics(self) -> list[str]:
        names = {s.topic for s in self.subscriptions.values()}
        for key in self.kv.keys():
            parts = key.split(":")
            if len(parts) >= 3 and parts[0] == "queue":
                names.add(":".join(parts[1:-1]))
        return sorted(names)

    def topic_stats(self, topic: str) -> dict[str, Any]:
        claimed = self.queue.claimed.get(topic, set())
        active = self.kv.lrange(active_key(topic))
        subs = [s for s in self.subscriptions.values() if s.topic == topic]
        return {
            "depth": self.kv.llen(waiting_key(topic)),
            "retrying": self.kv.zcard(delayed_key(topic)),
            "in_flight": len(claimed),
            "stranded": len([j for j in active if j not in claimed]),
            "dead": self.kv.llen(dlq_key(topic)),
            "subscribers": [
                {
                    "function_id": s.function_id,
                    "mode": str((s.config.mode if s.config and s.config.mode else None) or QueueMode.parse(self.config.mode)),
                    "concurrency": s.config.concurrency if s.config and s.config.concurrency is not None else self.config.concurrency,
                }
                for s in sorted(subs, key=lambda s: s.function_id)
            ],
        }

    def dead_letters(self, topic: str | None = None) -> list[dict[str, Any]]:
        """`queue:{topic}:dlq` as stored (newest first), each with its topic."""
        out = []
        for name in [topic] if topic else self.topics():
            for raw in self.kv.lrange(dlq_key(name)):
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    out.append({"topic": name, **entry})
        return out

    def pending(self, topics: set[str]) -> bool:
        """Jobs are running, or waiting/retrying on one of `topics`."""
        if any(self.queue.claimed.values()):
            return True
        return any(self.kv.llen(waiting_key(t)) or self.kv.zcard(delayed_key(t)) for t in topics)
