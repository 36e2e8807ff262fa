"""The queue module: the `enqueue` function and the `queue` trigger type, over one adapter.

Engine 0.8.3 `modules/queue/queue.rs`: `enqueue` takes `{topic, data}` (other fields, such
as Motia's `messageGroupId`, are ignored by serde; a missing `topic` or `data` is a
`deserialization_error`, an empty topic `topic_not_set`) and hands the message to the
adapter with the caller's trace context; it answers as soon as the adapter returned,
whatever happened there. A `queue` trigger subscribes its function to the topic with the
trigger's `queue_config` and `_condition_path`; unregistering it (also when its worker
disconnects) unsubscribes. The adapters:

- `modules::queue::BuiltinQueueAdapter` (default): `iii_local/queue_builtin.py`.
- `modules::queue::RedisAdapter`: `iii_local/queue_redis.py` (publish/subscribe only).

Operator extras no step can reach: per-topic stats, the stored dead letters (listing only,
no redrive), the recent message history (what the tester's `watch(topic)` reads) and an
idle check for tests.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

from iii_local.config import QUEUE_REDIS, QueueConfig
from iii_local.engine import CallContext, Engine, InvocationError, TriggerEntry, new_traceparent
from iii_local.queue_builtin import BuiltinQueueAdapter
from iii_local.queue_delivery import DeliveryCounters, FunctionHandler
from iii_local.queue_redis import RedisQueueAdapter
from iii_local.telemetry import trace_id_of


class EnqueueError(InvocationError):
    """The `enqueue` input did not deserialize, or its topic is empty."""


def parse_enqueue(data: Any) -> tuple[str, Any]:
    """`QueueInput {topic: String, data: Value}` the way serde reads it."""
    if not isinstance(data, dict):
        raise EnqueueError("deserialization_error", "Failed to deserialize input for enqueue: expected struct QueueInput")
    if "topic" not in data:
        raise EnqueueError("deserialization_error", "Failed to deserialize input for enqueue: missing field `topic`")
    if "data" not in data:
        raise EnqueueError("deserialization_error", "Failed to deserialize input for enqueue: missing field `data`")
    if not isinstance(data["topic"], str):
        raise EnqueueError("deserialization_error", "Failed to deserialize input for enqueue: invalid type for `topic`, expected a string")
    if not data["topic"]:
        raise EnqueueError("topic_not_set", "Topic is not set")
    return data["topic"], data["data"]


class QueueModule:
    trigger_types = ("queue",)

    def __init__(self, engine: Engine, config: QueueConfig, *, data_path: Path | None = None, history_max: int = 10_000) -> None:
        self.engine = engine
        self.config = config
        self.counters = DeliveryCounters()
        self.adapter: BuiltinQueueAdapter | RedisQueueAdapter
        if config.adapter == QUEUE_REDIS:
            self.adapter = RedisQueueAdapter(config.redis_url, self.counters, engine.telemetry)
        else:
            self.adapter = BuiltinQueueAdapter(config, data_path)
        self.subscribed_topics: set[str] = set()  # every topic subscribed since the engine started
        self.history: deque[dict[str, Any]] = deque(maxlen=history_max)
        self._history_seq = 0
        engine.register_builtin("enqueue", self._enqueue_builtin)
        engine.add_sink(self)

    async def start(self) -> None:
        await self.adapter.start()

    async def stop(self) -> None:
        await self.adapter.stop()

    # ----------------------------------------------------------------- triggers

    def trigger_added(self, trigger: TriggerEntry) -> None:
        topic = trigger.config.get("topic")
        if not isinstance(topic, str) or not topic:
            self.engine.telemetry.engine_log("warn", "Topic is not set for trigger", step=trigger.function_id)
            return
        condition = trigger.config.get("_condition_path")
        handler = FunctionHandler(self.engine, trigger.function_id, condition if isinstance(condition, str) else None, self.counters)
        self.adapter.subscribe(topic, trigger.id, handler, trigger.config.get("queue_config"))
        self.subscribed_topics.add(topic)

    def trigger_removed(self, trigger: TriggerEntry) -> None:
        topic = trigger.config.get("topic")
        self.adapter.unsubscribe(topic if isinstance(topic, str) else "", trigger.id)

    # ----------------------------------------------------------------- enqueue

    async def _enqueue_builtin(self, data: Any, ctx: CallContext) -> None:
        topic, payload = parse_enqueue(data)
        await self.enqueue(topic, payload, traceparent=ctx.traceparent, baggage=ctx.baggage)
        return None

    async def enqueue(self, topic: str, data: Any, *, traceparent: str | None = None, baggage: str | None = None) -> list[str]:
        """Hand one message to the adapter; returns the builtin job's id ([] for Redis)."""
        traceparent = traceparent or new_traceparent()
        self._history_seq += 1
        self.history.append({"seq": self._history_seq, "topic": topic, "data": data, "trace_id": trace_id_of(traceparent),
                             "time": time.time(), "subscribers": self.adapter.subscriber_count(topic)})
        return await self.adapter.enqueue(topic, data, traceparent, baggage)

    # ----------------------------------------------------------------- operator surface

    @property
    def delivered(self) -> int:
        return self.counters.delivered

    def stats(self) -> list[dict[str, Any]]:
        """One row per topic (subscribed now, or holding jobs): depth, retrying, in flight, stranded, dead."""
        rows = []
        for topic in self.adapter.topics():
            st = self.adapter.topic_stats(topic)
            rows.append({
                "topic": topic,
                "adapter": self.adapter.kind,
                "active": bool(st["subscribers"]),
                "max_attempts": self.config.max_attempts if self.adapter.kind == "builtin" else None,
                **st,
            })
        return rows

    def store_info(self) -> dict[str, Any]:
        return {"adapter": self.adapter.kind, **self.adapter.store_info()}

    def dead_letters(self, topic: str | None = None) -> list[dict[str, Any]]:
        """The entries under `queue:{topic}:dlq` (`{topic, job, error, failed_at}`), newest first."""
        return self.adapter.dead_letters(topic)

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
        """No delivery is running and no job waits or retries on a topic that has had a subscriber.

        Jobs on topics nobody ever subscribed to wait for ever (and don't count), nor do dead
        letters or jobs stranded in `active` by a crash."""
        return self.counters.total_running() == 0 and not self.adapter.pending(self.subscribed_topics)
