"""`modules::queue::RedisAdapter`: engine 0.8.3's Redis queue adapter is publish/subscribe.

Source: `modules/queue/adapters/redis_adapter.rs` (tag iii/v0.8.3).

- `enqueue` (93-130) PUBLISHes `{"__trace": {traceparent, baggage}, "data": ...}` on the
  channel named like the topic. Nothing is stored: no retries, no dead letters, no replay.
  A message published while no engine is subscribed is gone; a failed publish is only
  logged (the `enqueue` call still succeeds).
- `subscribe` (132-308) keeps one Redis subscription per topic and engine: only the
  *first* trigger of a topic subscribes; a second subscribing function on the same engine
  gets nothing. Every engine subscribed to the channel gets every message. For each
  message the trigger's condition is checked in the receive loop, then the handler is
  spawned: no concurrency limit, and a failure is only logged.
- `unsubscribe` (310-330) ends the subscription only when the trigger id is the one that
  subscribed. When the subscription's connection drops, its receive loop ends and is not
  restarted (the redis-rs message stream simply finishes).
- The adapter connects when the engine starts (5 s timeout); no Redis → no engine.

Redis pub/sub ignores the database number in the URL: engines on `/0` and `/2` of one
server hear each other, as with the real adapter.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from iii_local.engine import InvocationError
from iii_local.queue_delivery import DeliveryCounters, FunctionHandler, call_without_timeout
from iii_local.telemetry import TelemetryStore

log = logging.getLogger("iii_local.queue")

CONNECT_TIMEOUT = 5.0  # modules/redis.rs DEFAULT_REDIS_CONNECTION_TIMEOUT
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def _no_retry() -> Any:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Retry(NoBackoff(), 0)


def unwrap(payload: Any) -> tuple[Any, str | None, str | None]:
    """(data, traceparent, baggage): the envelope only when `__trace` is an object and `data` is present."""
    if isinstance(payload, dict) and isinstance(payload.get("__trace"), dict) and "data" in payload:
        trace = payload["__trace"]
        tp = trace.get("traceparent")
        bg = trace.get("baggage")
        return payload["data"], tp if isinstance(tp, str) else None, bg if isinstance(bg, str) else None
    return payload, None, None


@dataclass
class _Subscription:
    trigger_id: str
    function_id: str
    task: asyncio.Task[None]


class RedisQueueAdapter:
    """Publish on enqueue; one subscriber task per topic; a spawned handler per message."""

    kind = "redis"

    def __init__(self, redis_url: str, counters: DeliveryCounters, telemetry: TelemetryStore | None = None) -> None:
        self.redis_url = redis_url
        self.counters = counters
        self.telemetry = telemetry
        self.publisher: Any = None
        self.subscriptions: dict[str, _Subscription] = {}  # topic →
        self._tasks: set[asyncio.Task[None]] = set()
        self.published = 0
        self.publish_errors = 0

    async def start(self) -> None:
        import redis.asyncio as aioredis

        self.publisher = aioredis.from_url(self.redis_url, retry=_no_retry())
        try:
            await asyncio.wait_for(self.publisher.ping(), CONNECT_TIMEOUT)
        except TimeoutError as exc:
            raise RuntimeError(f"Redis connection timed out after {CONNECT_TIMEOUT}s. Please ensure Redis is running at: {self.redis_url}") from exc
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError(f"Failed to connect to Redis at {self.redis_url}: {exc}") from exc

    async def stop(self) -> None:
        tasks = [s.task for s in self.subscriptions.values()] + list(self._tasks)
        self.subscriptions.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.publisher is not None:
            await self.publisher.aclose()
            self.publisher = None

    async def enqueue(self, topic: str, data: Any, traceparent: str | None, baggage: str | None) -> list[str]:
        envelope = {"__trace": {"traceparent": traceparent, "baggage": baggage}, "data": data}
        try:
            await self.publisher.publish(topic, _dumps(envelope))
            self.published += 1
        except Exception as exc:  # noqa: BLE001 - the real adapter logs and returns
            self.publish_errors += 1
            self._log("error", "Failed to publish to Redis queue", topic=topic, error=str(exc))
        return []

    def subscribe(self, topic: str, trigger_id: str, handler: FunctionHandler, queue_config: Any) -> None:
        if topic in self.subscriptions:
            log.warning("Already subscribed to topic %s (trigger %s gets nothing)", topic, trigger_id)
            return
        task = asyncio.create_task(self._receive(topic, handler))
        self.subscriptions[topic] = _Subscription(trigger_id, handler.function_id, task)

    def unsubscribe(self, topic: str, trigger_id: str) -> None:
        sub = self.subscriptions.get(topic)
        if sub is None:
            log.warning("No active subscription found for topic %s", topic)
            return
        if sub.trigger_id != trigger_id:
            log.warning("Subscription ID mismatch, not unsubscribing %s (%s)", topic, trigger_id)
            return
        del self.subscriptions[topic]
        sub.task.cancel()

    def subscriber_count(self, topic: str) -> int:
        return 1 if topic in self.subscriptions else 0

    async def _receive(self, topic: str, handler: FunctionHandler) -> None:
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.redis_url, retry=_no_retry())
        pubsub = client.pubsub()
        try:
            try:
                await pubsub.subscribe(topic)
            except Exception as exc:  # noqa: BLE001
                self._log("error", "Failed to subscribe to Redis channel", topic=topic, error=str(exc))
                return
            while True:
                try:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the stream ends; nothing subscribes again
                    self._log("error", "Redis subscription ended: the topic gets nothing until its trigger is registered again", topic=topic, error=str(exc))
                    return
                if msg is None or msg.get("type") != "message":
                    continue
                try:
                    payload = json.loads(msg["data"])
                except (ValueError, TypeError) as exc:
                    log.error("Failed to parse message as JSON on %s: %s", topic, exc)
                    continue
                data, traceparent, baggage = unwrap(payload)
                if handler.condition_function_id and not await self._condition(handler, data):
                    continue
                self._spawn(self._invoke(topic, handler, data, traceparent, baggage))
        finally:
            try:
                await pubsub.aclose()
                await client.aclose()
            except Exception:  # noqa: BLE001
                pass

    def _log(self, level: str, message: str, **fields: Any) -> None:
        getattr(log, "warning" if level == "warn" else level)("%s %s", message, fields)
        if self.telemetry is not None:
            self.telemetry.engine_log(level, message, step="queue", **fields)

    async def _condition(self, handler: FunctionHandler, data: Any) -> bool:
        try:
            return await call_without_timeout(handler.engine, str(handler.condition_function_id), data, traceparent=None, baggage=None) is not False
        except InvocationError as exc:
            self._log("error", "Error invoking condition function", function=handler.condition_function_id, error=exc.message)
            return False

    async def _invoke(self, topic: str, handler: FunctionHandler, data: Any, traceparent: str | None, baggage: str | None) -> None:
        plain = FunctionHandler(handler.engine, handler.function_id, None, handler.counters)
        error = await plain.deliver(topic, data, traceparent=traceparent, baggage=baggage)
        if error is not None:
            handler.engine.telemetry.engine_log("error", "Failed to invoke function for queue job", step=handler.function_id, topic=topic, error=error)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ operator views

    def store_info(self) -> dict[str, Any]:
        return {"store_method": "redis publish/subscribe (nothing stored)", "published": self.published, "publish_errors": self.publish_errors}

    def topics(self) -> list[str]:
        return sorted(self.subscriptions)

    def topic_stats(self, topic: str) -> dict[str, Any]:
        sub = self.subscriptions.get(topic)
        return {
            "depth": 0, "retrying": 0, "in_flight": self.counters.running.get(topic, 0), "stranded": 0, "dead": 0,
            "subscribers": [{"function_id": sub.function_id, "mode": "pubsub", "concurrency": None}] if sub else [],
        }

    def dead_letters(self, topic: str | None = None) -> list[dict[str, Any]]:
        return []

    def pending(self, topics: set[str]) -> bool:
        return bool(self._tasks)

