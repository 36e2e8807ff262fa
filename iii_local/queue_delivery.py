"""One delivery of a queue message to its subscribing function, as both queue adapters do it.

Engine 0.8.3 (`modules/queue/adapters/builtin/adapter.rs` 40-117, `redis_adapter.rs`
238-290): if the trigger has a condition function (`_condition_path`), it is called first;
an explicit `false` skips the handler (the message counts as handled), a failing condition
is a failed delivery. Then the function is called through `engine.call`, which has **no
timeout** (`engine/mod.rs` 803-846): a handler that never answers holds its slot for ever.
A failure is returned as the text the engine stores with a dead letter
(`format!("{:?}", ErrorBody)`).

The stand-in gives every delivery its own span id in the message's trace (the worker's
step span is its child) and records it as a `queue` invocation for the console.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from iii_local.engine import Engine, InvocationError, new_traceparent
from iii_local.jobs import error_body_debug
from iii_local.telemetry import InvocationRecord, span_id_of, trace_id_of


async def call_without_timeout(engine: Engine, function_id: str, data: Any, *, traceparent: str | None, baggage: str | None) -> Any:
    """`engine.call`: invoke and wait for the answer however long it takes."""
    fut, discard = await engine.start_call(function_id, data, traceparent=traceparent, baggage=baggage)
    try:
        return await fut
    finally:
        discard()


class DeliveryCounters:
    """What the operator views count: deliveries that succeeded, handlers running per topic."""

    def __init__(self) -> None:
        self.delivered = 0
        self.running: dict[str, int] = {}

    def total_running(self) -> int:
        return sum(self.running.values())


class FunctionHandler:
    """Calls one subscribing function (after its condition) for one message."""

    def __init__(self, engine: Engine, function_id: str, condition_function_id: str | None, counters: DeliveryCounters) -> None:
        self.engine = engine
        self.function_id = function_id
        self.condition_function_id = condition_function_id
        self.counters = counters

    async def deliver(self, topic: str, data: Any, *, traceparent: str | None, baggage: str | None,
                      job_id: str | None = None, attempt: int = 1, max_attempts: int | None = None) -> str | None:
        """Run the delivery; None when it succeeded (or the condition said no), else the error text."""
        trace_id = trace_id_of(traceparent)
        span = new_traceparent(trace_id)
        detail: dict[str, Any] = {"topic": topic}
        if job_id is not None:
            detail.update(job_id=job_id, max_attempts=max_attempts)
        record = self.engine.telemetry.start_invocation(
            InvocationRecord(trace_id=trace_id_of(span) or "", function_id=self.function_id, kind="queue", start=time.time(),
                             attempt=attempt, span_id=span_id_of(span), detail=detail)
        )
        self.counters.running[topic] = self.counters.running.get(topic, 0) + 1
        error: str | None = None
        try:
            if self.condition_function_id:
                try:
                    ok = await call_without_timeout(self.engine, self.condition_function_id, data, traceparent=span, baggage=baggage)
                except InvocationError as exc:
                    error = "Condition function error: " + error_body_debug(exc.code, exc.message)
                else:
                    if ok is False:
                        detail["skipped"] = True
                        return None
            if error is None:
                try:
                    await call_without_timeout(self.engine, self.function_id, data, traceparent=span, baggage=baggage)
                except InvocationError as exc:
                    error = error_body_debug(exc.code, exc.message)
            return error
        except asyncio.CancelledError:
            record.outcome = "error"
            record.error = "delivery cancelled"
            raise
        finally:
            self.counters.running[topic] -= 1
            record.end = time.time()
            if record.outcome == "running":
                record.outcome = "ok" if error is None else "error"
                record.error = error
            if error is None and record.outcome == "ok":
                self.counters.delivered += 1
