"""Queue jobs: one message for one subscriber, and the rules that move it along."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class JobState(str, Enum):
    READY = "ready"
    DEAD = "dead"


@dataclass
class Job:
    """A queued message for one subscribing function (at-least-once)."""

    topic: str
    subscriber: str
    data: Any
    max_attempts: int
    backoff_ms: int
    backoff_type: str = "exponential"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    group_id: str | None = None
    traceparent: str | None = None
    attempts_made: int = 0
    available_at: float = field(default_factory=time.time)
    created_at: float = field(default_factory=time.time)
    seq: int = 0
    state: JobState = JobState.READY
    last_error: str | None = None
    failed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Job":
        d = dict(d)
        d["state"] = JobState(d.get("state", "ready"))
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def exhausted(self) -> bool:
        return self.attempts_made >= self.max_attempts

    def next_backoff_seconds(self) -> float:
        """Delay before the next attempt: base * 2^(attempts-1), or fixed."""
        if self.backoff_type == "fixed":
            return self.backoff_ms / 1000
        return self.backoff_ms * (2 ** max(0, self.attempts_made - 1)) / 1000

    def dlq_entry(self) -> dict[str, Any]:
        """The shape the real engine stores in `queue:{topic}:dlq`."""
        return {
            "job": {
                "id": self.id,
                "topic": self.topic,
                "subscriber": self.subscriber,
                "data": self.data,
                "attempts_made": self.attempts_made,
                "max_attempts": self.max_attempts,
                "group_id": self.group_id,
                "traceparent": self.traceparent,
            },
            "error": self.last_error,
            "failed_at": self.failed_at,
        }
