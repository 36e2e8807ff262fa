"""Logs and traces: the OTel bridge frames from workers, and the engine's own records.

Workers with `motia[otel]` send binary websocket frames `LOGS`/`OTLP`/`MTRC` + OTLP JSON.
`decode_frame` turns them into `LogRecord`s and `SpanRecord`s; `TelemetryStore` keeps a
bounded, trace-indexed history of those plus the engine's own invocation records
(HTTP requests, queue deliveries with their attempt number, cron runs), and renders log
lines for people: time, level, step, trace id, message and structured fields.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

LEVELS = {"debug": 10, "info": 20, "warn": 30, "warning": 30, "error": 40}


@dataclass
class LogRecord:
    time: float
    level: str
    message: str
    trace_id: str | None = None
    span_id: str | None = None
    step: str | None = None
    fields: Any = None
    source: str = "worker"
    seq: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SpanRecord:
    trace_id: str
    span_id: str
    name: str
    start: float
    end: float
    parent_span_id: str | None = None
    status: str = "unset"
    status_message: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    service: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration_ms"] = round((self.end - self.start) * 1000, 3)
        return d


@dataclass
class InvocationRecord:
    """The engine's view of one handler run within a trace."""

    trace_id: str
    function_id: str
    kind: str  # http | queue | cron
    start: float
    end: float | None = None
    outcome: str = "running"  # ok | error | timeout | running
    attempt: int = 1
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    span_id: str | None = None
    """The engine-side span id sent in this invocation's traceparent: the worker's step span
    is its child, which is how log lines are attributed to the right step."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["duration_ms"] = None if self.end is None else round((self.end - self.start) * 1000, 3)
        return d


def _any_value(v: dict[str, Any] | None) -> Any:
    if not v:
        return None
    if "stringValue" in v:
        s = v["stringValue"]
        return s
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_any_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: _any_value(kv.get("value")) for kv in v["kvlistValue"].get("values", [])}
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def _attrs(items: Iterable[dict[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: _any_value(a.get("value")) for a in (items or []) if "key" in a}


def _severity(text: str, number: int) -> str:
    t = (text or "").lower()
    if t in LEVELS:
        return "warn" if t == "warning" else t
    if number >= 17:
        return "error"
    if number >= 13:
        return "warn"
    if number >= 9:
        return "info"
    return "debug"


def decode_logs(payload: dict[str, Any]) -> list[LogRecord]:
    out: list[LogRecord] = []
    for rl in payload.get("resourceLogs", []) or []:
        for sl in rl.get("scopeLogs", []) or []:
            for lr in sl.get("logRecords", []) or []:
                attrs = _attrs(lr.get("attributes"))
                body = _any_value(lr.get("body")) if isinstance(lr.get("body"), dict) else lr.get("body")
                ts = int(lr.get("timeUnixNano") or lr.get("observedTimeUnixNano") or 0) / 1e9 or time.time()
                out.append(
                    LogRecord(
                        time=ts,
                        level=_severity(lr.get("severityText", ""), int(lr.get("severityNumber") or 0)),
                        message="" if body is None else str(body),
                        trace_id=lr.get("traceId") or None,
                        span_id=lr.get("spanId") or None,
                        step=attrs.get("function_name") or None,
                        fields=attrs.get("log.data"),
                    )
                )
    return out


def decode_spans(payload: dict[str, Any]) -> list[SpanRecord]:
    out: list[SpanRecord] = []
    for rs in payload.get("resourceSpans", []) or []:
        service = str(_attrs(rs.get("resource", {}).get("attributes")).get("service.name", ""))
        for ss in rs.get("scopeSpans", []) or []:
            for sp in ss.get("spans", []) or []:
                status = sp.get("status") or {}
                code = int(status.get("code") or 0)
                out.append(
                    SpanRecord(
                        trace_id=sp.get("traceId", ""),
                        span_id=sp.get("spanId", ""),
                        parent_span_id=sp.get("parentSpanId") or None,
                        name=sp.get("name", ""),
                        start=int(sp.get("startTimeUnixNano") or 0) / 1e9,
                        end=int(sp.get("endTimeUnixNano") or 0) / 1e9,
                        status={0: "unset", 1: "ok", 2: "error"}.get(code, "unset"),
                        status_message=status.get("message", ""),
                        attributes=_attrs(sp.get("attributes")),
                        service=service,
                    )
                )
    return out


def decode_frame(frame: bytes) -> tuple[str, list[Any]]:
    """Decode one OTel bridge frame; returns (kind, records). Unknown or broken frames → ("", [])."""
    prefix, body = frame[:4], frame[4:]
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return "", []
    try:
        if prefix == b"LOGS":
            return "logs", decode_logs(payload)
        if prefix == b"OTLP":
            return "spans", decode_spans(payload)
    except (RecursionError, AttributeError, TypeError, KeyError, ValueError):  # not OTLP JSON, or nested too deep
        return "", []
    if prefix == b"MTRC":
        return "metrics", []
    return "", []


def span_id_of(traceparent: str | None) -> str | None:
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[2] if len(parts) >= 4 and len(parts[2]) == 16 else None


def trace_id_of(traceparent: str | None) -> str | None:
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) >= 4 and len(parts[1]) == 32 else None


def step_name(function_id: str) -> str:
    """`steps::Document Sync::trigger::queue(x)` → `Document Sync`."""
    if function_id.startswith("steps::"):
        return function_id[len("steps::"):].split("::trigger::")[0]
    return function_id


def format_log_line(rec: LogRecord) -> str:
    """`2026-11-22T23:59:01.123Z INFO  [Step Name] trace=abcd1234 message {fields}`."""
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rec.time)) + f".{int(rec.time * 1000) % 1000:03d}Z"
    step = rec.step or rec.source
    trace = f" trace={rec.trace_id}" if rec.trace_id else ""
    fields = ""
    if rec.fields not in (None, "", {}, []):
        try:
            fields = " " + json.dumps(rec.fields, ensure_ascii=False, default=str, separators=(",", ":"))
        except (TypeError, ValueError):
            fields = f" {rec.fields!r}"
    return f"{t} {rec.level.upper():5} [{step}]{trace} {rec.message}{fields}"


class TelemetryStore:
    """Bounded in-memory history of logs, spans and invocations, indexed by trace id."""

    def __init__(self, max_logs: int = 50_000, max_traces: int = 10_000, log_file: str | None = None) -> None:
        self.logs: deque[LogRecord] = deque(maxlen=max_logs)
        self.max_traces = max_traces
        self.traces: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._seq = 0
        self._listeners: set[asyncio.Queue[LogRecord]] = set()
        self._log_file = open(log_file, "a", buffering=1) if log_file else None  # noqa: SIM115

    def _trace(self, trace_id: str) -> dict[str, Any]:
        tr = self.traces.get(trace_id)
        if tr is None:
            tr = {"trace_id": trace_id, "started": time.time(), "logs": [], "spans": [], "invocations": [], "span_steps": {}}
            self.traces[trace_id] = tr
            while len(self.traces) > self.max_traces:
                self.traces.popitem(last=False)
        return tr

    def add_log(self, rec: LogRecord) -> None:
        if rec.step is None and rec.trace_id and rec.source == "worker":
            rec.step = self._step_of_span(rec.trace_id, rec.span_id) or self._running_step(rec.trace_id, rec.time)
        self._seq += 1
        rec.seq = self._seq
        self.logs.append(rec)
        if rec.trace_id:
            logs = self._trace(rec.trace_id)["logs"]
            if len(logs) < 2000:
                logs.append(rec)
        if self._log_file is not None:
            self._log_file.write(json.dumps(rec.to_dict(), default=str) + "\n")
        for q in list(self._listeners):
            if q.qsize() < 10_000:
                q.put_nowait(rec)

    def engine_log(self, level: str, message: str, *, trace_id: str | None = None, step: str | None = None, **fields: Any) -> None:
        self.add_log(LogRecord(time=time.time(), level=level, message=message, trace_id=trace_id, step=step, fields=fields or None, source="engine"))

    def _step_of_span(self, trace_id: str, span_id: str | None) -> str | None:
        tr = self.traces.get(trace_id)
        if tr is None or not span_id:
            return None
        return tr["span_steps"].get(span_id)

    def _running_step(self, trace_id: str, at: float | None = None) -> str | None:
        """Until the worker's spans arrive (they are batched), a best guess for a log line's
        step: the invocation of its trace that was running when the line was written (the
        latest started, when several were)."""
        tr = self.traces.get(trace_id)
        if tr is None or not tr["invocations"]:
            return None
        invs: list[InvocationRecord] = tr["invocations"]
        if at:
            during = [i for i in invs if i.start <= at + 0.001 and (i.end is None or at <= i.end + 0.001)]
            if during:
                return step_name(max(during, key=lambda i: i.start).function_id)
        running = [i for i in invs if i.outcome == "running"]
        return step_name((running or invs)[-1].function_id)

    def add_span(self, span: SpanRecord) -> None:
        tr = self._trace(span.trace_id)
        if len(tr["spans"]) < 2000:
            tr["spans"].append(span)
        # A worker span whose parent is an invocation's engine span belongs to that step;
        # its children (enqueue, state calls) too. Correct earlier guesses for its logs.
        steps: dict[str, str] = tr["span_steps"]
        step = None
        for inv in tr["invocations"]:
            if inv.span_id and inv.span_id == span.parent_span_id:
                step = step_name(inv.function_id)
                break
        if step is None and span.parent_span_id:
            step = steps.get(span.parent_span_id)
        if step is not None:
            steps[span.span_id] = step
            for rec in tr["logs"]:
                if rec.span_id == span.span_id and rec.source == "worker":
                    rec.step = step

    def start_invocation(self, rec: InvocationRecord) -> InvocationRecord:
        self._seq += 1
        rec.seq = self._seq
        self._trace(rec.trace_id)["invocations"].append(rec)
        return rec

    def subscribe(self) -> asyncio.Queue[LogRecord]:
        q: asyncio.Queue[LogRecord] = asyncio.Queue()
        self._listeners.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[LogRecord]) -> None:
        self._listeners.discard(q)

    def query_logs(self, *, trace_id: str | None = None, level: str | None = None, after_seq: int = 0, limit: int = 500, step: str | None = None,
                   source: str | None = None) -> list[LogRecord]:
        """The last `limit` records after `after_seq` that match every filter given (`source`: "worker" or "engine")."""
        min_level = LEVELS.get((level or "debug").lower(), 10)
        records: Iterable[LogRecord] = self.traces.get(trace_id, {}).get("logs", []) if trace_id else self.logs
        out = [
            r
            for r in records
            if r.seq > after_seq and LEVELS.get(r.level, 20) >= min_level and (step is None or step == r.step)
            and (source is None or source == r.source)
        ]
        return out[-limit:]

    def trace_summary(self, tr: dict[str, Any]) -> dict[str, Any]:
        invs: list[InvocationRecord] = tr["invocations"]
        outcome = "ok"
        if any(i.outcome == "running" for i in invs):
            outcome = "running"
        if any(i.outcome in ("error", "timeout") for i in invs):
            outcome = "error"
        ends = [i.end for i in invs if i.end]
        root = invs[0] if invs else None
        return {
            "trace_id": tr["trace_id"],
            "started": tr["started"],
            "root": root.function_id if root else None,
            "kind": root.kind if root else None,
            "steps": sorted({i.function_id for i in invs}),
            "invocations": len(invs),
            "logs": len(tr["logs"]),
            "outcome": outcome,
            "duration_ms": round((max(ends) - tr["started"]) * 1000, 3) if ends else None,
        }

    def list_traces(self, *, limit: int = 100, step: str | None = None, outcome: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        out = []
        for tr in reversed(self.traces.values()):
            if since is not None and tr["started"] < since:
                break
            s = self.trace_summary(tr)
            if step and not any(step in f for f in s["steps"]):
                continue
            if outcome and s["outcome"] != outcome:
                continue
            out.append(s)
            if len(out) >= limit:
                break
        return out

    def get_trace(self, trace_id: str) -> dict[str, Any] | None:
        tr = self.traces.get(trace_id)
        if tr is None:
            return None
        return {
            **self.trace_summary(tr),
            "invocations": [i.to_dict() for i in tr["invocations"]],
            "spans": [s.to_dict() for s in tr["spans"]],
            "logs": [r.to_dict() for r in tr["logs"]],
        }
