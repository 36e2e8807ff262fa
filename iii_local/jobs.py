"""Queue jobs and subscription settings of the builtin queue, as engine 0.8.3 models them.

`Job` is `builtins/queue.rs` `Job` (lines 27-104): every job takes the adapter's
`max_attempts` and `backoff_ms` when it is pushed (`Job::new`, called from `push` with
`self.config`), whatever the subscribing step declares. Times are milliseconds since the
epoch, like the real job records. The backoff before retry n is `backoff_ms * 2^(n-1)`
(`calculate_backoff`, with `attempts_made` already incremented).

`SubscriptionConfig` is what `BuiltinQueueAdapter::subscribe` keeps of a step's queue
config (`modules/queue/subscriber_config.rs`, `adapters/builtin/adapter.rs` 194-202): of it
only `concurrency` and the mode (`type: fifo`) are ever read by the workers
(`queue.rs` 559-625, 757-771); `maxRetries` and `backoffDelayMs` are carried and ignored,
`visibilityTimeout`, `delaySeconds` and `backoffType` are parsed and dropped.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any


def now_ms() -> int:
    return int(time.time() * 1000)


class QueueMode(StrEnum):
    CONCURRENT = "concurrent"
    FIFO = "fifo"

    @classmethod
    def parse(cls, value: Any) -> QueueMode:
        """`"fifo"` is FIFO; anything else (`standard`, `concurrent`, junk) is concurrent."""
        return cls.FIFO if value == "fifo" else cls.CONCURRENT


@dataclass
class Job:
    """One message in one topic's job list (`queue:{topic}:jobs:{id}`)."""

    id: str
    queue: str
    data: Any
    attempts_made: int
    max_attempts: int
    backoff_delay_ms: int
    created_at: int
    process_at: int | None = None
    group_id: str | None = None
    traceparent: str | None = None
    baggage: str | None = None

    @classmethod
    def new(cls, queue: str, data: Any, max_attempts: int, backoff_delay_ms: int,
            traceparent: str | None = None, baggage: str | None = None) -> Job:
        """`Job::new`: a fresh id, no attempt made yet, no group (the enqueue path never sets one)."""
        return cls(id=str(uuid.uuid4()), queue=queue, data=data, attempts_made=0, max_attempts=max_attempts,
                   backoff_delay_ms=backoff_delay_ms, created_at=now_ms(), traceparent=traceparent, baggage=baggage)

    def increment_attempts(self) -> None:
        self.attempts_made += 1

    @property
    def exhausted(self) -> bool:
        return self.attempts_made >= self.max_attempts

    def calculate_backoff(self) -> int:
        """Milliseconds before the next attempt: `backoff_delay_ms * 2^(attempts_made - 1)`."""
        return self.backoff_delay_ms * (2 ** max(0, self.attempts_made - 1))

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _JOB_FIELDS}

    @classmethod
    def from_dict(cls, d: Any) -> Job | None:
        """A stored record back into a job; None when it does not parse (the engine skips those)."""
        if not isinstance(d, dict):
            return None
        try:
            return cls(**{k: d[k] for k in _JOB_FIELDS if k in d})
        except TypeError:
            return None


_JOB_FIELDS = tuple(f.name for f in fields(Job))


def _u64(value: Any) -> int | None:
    """serde's `as_u64`: a non-negative integer, else nothing."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


@dataclass(frozen=True)
class SubscriptionConfig:
    """A step's `queue_config` as the builtin adapter keeps it (None fields: adapter default)."""

    concurrency: int | None = None
    max_attempts: int | None = None  # from maxRetries: carried, never read by a worker
    backoff_ms: int | None = None  # from backoffDelayMs: carried, never read by a worker
    mode: QueueMode | None = None

    @classmethod
    def from_trigger(cls, queue_config: Any) -> SubscriptionConfig | None:
        """`SubscriberQueueConfig::from_value` + the adapter's mapping; None when no known field is set."""
        if not isinstance(queue_config, dict):
            return None
        mode = queue_config.get("type")
        known = {
            "type": mode if isinstance(mode, str) else None,
            "maxRetries": _u64(queue_config.get("maxRetries")),
            "concurrency": _u64(queue_config.get("concurrency")),
            "visibilityTimeout": _u64(queue_config.get("visibilityTimeout")),
            "delaySeconds": _u64(queue_config.get("delaySeconds")),
            "backoffType": queue_config.get("backoffType") if isinstance(queue_config.get("backoffType"), str) else None,
            "backoffDelayMs": _u64(queue_config.get("backoffDelayMs")),
        }
        if all(v is None for v in known.values()):
            return None
        return cls(
            concurrency=known["concurrency"],
            max_attempts=known["maxRetries"],
            backoff_ms=known["backoffDelayMs"],
            mode=QueueMode.parse(known["type"]) if known["type"] is not None else None,
        )


def error_body_debug(code: str, message: str) -> str:
    """The error text a failed job carries: Rust's `format!("{:?}", ErrorBody)`."""
    return f"ErrorBody {{ code: {json.dumps(code, ensure_ascii=False)}, message: {json.dumps(message, ensure_ascii=False)} }}"
