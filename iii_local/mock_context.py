"""`mock_context()` and friends: a FlowContext-like object for unit-testing a handler directly
(its logger records lines, `enqueue` records events, `state` is an in-memory store), and a
`MockRequest` for HTTP handlers. Re-exported by `iii_local.testing`."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from iii_local.state import apply_ops


class RecordingLogger:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, Any]] = []

    def _add(self, level: str, message: str, data: Any = None) -> None:
        self.records.append((level, message, data))

    def info(self, message: str, data: Any = None) -> None:
        self._add("info", message, data)

    def warn(self, message: str, data: Any = None) -> None:
        self._add("warn", message, data)

    warning = warn

    def error(self, message: str, data: Any = None) -> None:
        self._add("error", message, data)

    def debug(self, message: str, data: Any = None) -> None:
        self._add("debug", message, data)

    def messages(self, level: str | None = None) -> list[str]:
        return [m for lvl, m, _ in self.records if level is None or lvl == level]


class MemoryState:
    """The `ctx.state` API over a dict (scope → key → value)."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def get(self, scope: str, key: str) -> Any:
        return json.loads(json.dumps(self.data.get(scope, {}).get(key)))

    async def set(self, scope: str, key: str, value: Any) -> Any:
        old = self.data.get(scope, {}).get(key)
        self.data.setdefault(scope, {})[key] = json.loads(json.dumps(value))
        return {"old_value": old, "new_value": value}

    async def update(self, scope: str, key: str, ops: list[dict[str, Any]]) -> Any:
        old = self.data.get(scope, {}).get(key)
        new = apply_ops(old, ops)
        self.data.setdefault(scope, {})[key] = new
        return {"old_value": old, "new_value": new}

    async def delete(self, scope: str, key: str) -> Any:
        return self.data.get(scope, {}).pop(key, None)

    async def list(self, scope: str) -> list[Any]:
        return list(self.data.get(scope, {}).values())

    async def list_groups(self) -> list[str]:
        return sorted(s for s, v in self.data.items() if v)

    async def clear(self, scope: str) -> None:
        self.data.pop(scope, None)


@dataclass
class MockTrigger:
    type: str = "queue"
    index: int | None = 0
    path: str | None = None
    method: str | None = None
    topic: str | None = None
    expression: str | None = None


@dataclass
class MockContext:
    logger: RecordingLogger = field(default_factory=RecordingLogger)
    state: MemoryState = field(default_factory=MemoryState)
    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    trigger: MockTrigger = field(default_factory=MockTrigger)
    enqueued: list[dict[str, Any]] = field(default_factory=list)
    streams: dict[str, Any] = field(default_factory=dict)
    fail_enqueue: Exception | None = None

    async def enqueue(self, event: dict[str, Any]) -> None:
        if self.fail_enqueue is not None:
            raise self.fail_enqueue
        self.enqueued.append(json.loads(json.dumps(event)))

    def topics(self) -> list[str]:
        return [e["topic"] for e in self.enqueued]


def mock_context(trigger_type: str = "queue", **kw: Any) -> MockContext:
    """A FlowContext stand-in for calling a step's handler directly in a unit test."""
    return MockContext(trigger=MockTrigger(type=trigger_type), **kw)


@dataclass
class MockRequest:
    """What an HTTP step's handler receives (`request.body`, `.headers`, ...)."""

    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)
    path_params: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    raw_body: bytes | None = None

    @property
    def request_body(self) -> Any:
        return _BytesReader(self.raw_body if self.raw_body is not None else (json.dumps(self.body).encode() if self.body is not None else b""))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read_all(self) -> bytes:
        return self.data
