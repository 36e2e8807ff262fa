"""The engine core: workers, the function and trigger registry, and invocation both ways.

Modules (REST, queue, cron) subscribe to trigger registrations through `TriggerSink`s.
Engine-provided functions (`enqueue`, `state::*`, `engine::*`) are plain coroutines in
`builtins`; everything else is invoked on the worker that registered it.

The registry is the real engine's (engine/src/function.rs 79-91, engine/mod.rs 462-501 and
746-798, trigger.rs): function ids are one map, a worker's disconnect removes its ids and
its triggers, its unanswered invocations fail with `invocation_stopped`; invocations a worker
makes get `_caller_worker_id` added to their object data (engine/mod.rs 330-341).

One deviation, a security fix no step can depend on (row P2): the real engine lets any
worker overwrite or unregister any function or trigger id, so a second client on the worker
port takes over a live worker's function (and the bearer tokens its callers send). Here a
function id, a trigger id, or an HTTP route (method and path) held by **another live
worker** is refused: the registration or unregistration is dropped and logged as a warning.
The holder itself may re-register (the newest registration wins, as in the engine), and once
it has disconnected anyone may take the id. A refused registration waits (at most
`WAITING_MAX`): when the holder disconnects, the waiting registrations of live workers are
applied in the order they came, so a worker that reconnected before its old connection was
seen to close still gets its functions. A disconnect removes only the ids the worker still holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from iii_local.channels import ChannelManager
from iii_local.telemetry import TelemetryStore

log = logging.getLogger("iii_local.engine")

Builtin = Callable[[Any, "CallContext"], Awaitable[Any]]

WAITING_MAX = 10_000
"""Refused registrations kept to retry when their holder disconnects (the oldest go first)."""

NO_TIMEOUT = math.inf
"""`invoke(..., timeout=NO_TIMEOUT)`: wait for the answer for ever, like the real engine's
`engine.call` for queue and cron invocations (engine/mod.rs 803-846: no timeout)."""


class InvocationError(Exception):
    """A function answered with an error, timed out, or its worker went away."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class CallContext:
    """Who is calling an engine function, and in which trace."""

    worker: WorkerConnection | None = None
    traceparent: str | None = None
    baggage: str | None = None


@dataclass
class FunctionEntry:
    id: str
    worker: WorkerConnection
    description: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass
class TriggerEntry:
    id: str
    trigger_type: str
    function_id: str
    config: dict[str, Any]
    worker: WorkerConnection

    def public(self) -> dict[str, Any]:
        cfg = dict(self.config)
        return {"id": self.id, "trigger_type": self.trigger_type, "function_id": self.function_id, "config": cfg}


class TriggerSink(Protocol):
    """A module that serves triggers. A sink whose triggers claim something only one worker may
    hold (the REST module's routes) also has `holder(trigger) -> WorkerConnection | None`: the
    worker holding what `trigger` would replace."""

    trigger_types: tuple[str, ...]

    def trigger_added(self, trigger: TriggerEntry) -> None: ...
    def trigger_removed(self, trigger: TriggerEntry) -> None: ...


@dataclass
class WorkerConnection:
    id: str
    ws: web.WebSocketResponse
    remote: str = ""
    connected_at: float = field(default_factory=time.time)
    functions: set[str] = field(default_factory=set)
    triggers: set[str] = field(default_factory=set)
    pending: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    telemetry_only: bool = True  # until it sends a protocol message

    async def send(self, msg: dict[str, Any]) -> None:
        # aiohttp writes an uncompressed frame in one transport write (and locks around
        # compressed ones), so concurrent senders never interleave frames.
        if self.ws.closed:
            raise InvocationError("worker_disconnected", f"worker {self.id} is disconnected")
        await self.ws.send_str(_dumps(msg))

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "remote": self.remote,
            "connected_at": self.connected_at,
            "functions": sorted(self.functions),
            "pending_invocations": len(self.pending),
            **{k: v for k, v in self.metadata.items() if k in ("runtime", "version", "name", "pid", "os")},
        }


_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _expire(fut: asyncio.Future[Any], function_id: str) -> None:
    if not fut.done():
        fut.set_exception(InvocationError("timeout", f"Invocation of '{function_id}' timed out"))


def new_traceparent(trace_id: str | None = None) -> str:
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


class Engine:
    def __init__(self, telemetry: TelemetryStore, *, default_timeout: float = 30.0) -> None:
        self.telemetry = telemetry
        self.channels = ChannelManager()
        self.functions: dict[str, FunctionEntry] = {}
        self.triggers: dict[str, TriggerEntry] = {}
        self.workers: dict[str, WorkerConnection] = {}
        self.builtins: dict[str, Builtin] = {}
        self.sinks: list[TriggerSink] = []
        self.default_timeout = default_timeout
        self.function_waiters: list[asyncio.Future[None]] = []
        self.waiting: list[tuple[WorkerConnection, dict[str, Any]]] = []  # refused registrations
        self.started_at = time.time()
        self._register_engine_builtins()

    # ------------------------------------------------------------------ registry

    def add_sink(self, sink: TriggerSink) -> None:
        self.sinks.append(sink)

    def register_builtin(self, function_id: str, fn: Builtin) -> None:
        self.builtins[function_id] = fn

    def is_live(self, worker: WorkerConnection) -> bool:
        """Still connected (its disconnect has not been handled and its socket is open)."""
        return worker.id in self.workers and not worker.ws.closed

    def _held_by_other(self, worker: WorkerConnection, holder: WorkerConnection | None, what: str,
                       retry: dict[str, Any] | None = None) -> bool:
        """True (and a warning logged) when another live worker holds `what`; a refused
        registration (`retry`) waits for the holder to disconnect."""
        if holder is None or holder is worker or not self.is_live(holder):
            return False
        self.telemetry.engine_log("warn", f"refused: {what} is held by another live worker", worker_id=worker.id,
                                  holder_id=holder.id, remote=worker.remote)
        if retry is not None:
            if len(self.waiting) >= WAITING_MAX:
                self.waiting.pop(0)
            self.waiting.append((worker, retry))
        return True

    def _retry_waiting(self) -> None:
        """Apply the refused registrations of live workers again (functions before triggers)."""
        waiting, self.waiting = self.waiting, []
        live = [(w, msg) for w, msg in waiting if self.is_live(w)]
        for w, msg in sorted(live, key=lambda item: item[1].get("type") != "registerfunction"):
            if msg.get("type") == "registerfunction":
                self.register_function(w, msg)
            else:
                self.register_trigger(w, msg)

    def register_function(self, worker: WorkerConnection, msg: dict[str, Any]) -> None:
        fid = str(msg.get("id") or "")
        if not fid:
            return
        held = self.functions.get(fid)
        if self._held_by_other(worker, held.worker if held else None, f"function {fid!r}", retry=msg):
            return
        # function.rs 79-91: a map insert (the same worker, or one whose holder has gone).
        self.functions[fid] = FunctionEntry(fid, worker, msg.get("description"), msg.get("metadata"))
        worker.functions.add(fid)
        for w in self.function_waiters:
            if not w.done():
                w.set_result(None)
        self.function_waiters.clear()

    def unregister_function(self, worker: WorkerConnection, fid: str) -> None:
        """engine/mod.rs 498-501 removes it whoever holds it; here not when another live worker does."""
        worker.functions.discard(fid)
        held = self.functions.get(fid)
        if held is None or self._held_by_other(worker, held.worker, f"function {fid!r}"):
            return
        del self.functions[fid]

    def register_trigger(self, worker: WorkerConnection, msg: dict[str, Any]) -> None:
        tid = str(msg.get("id") or "")
        ttype = str(msg.get("trigger_type") or "")
        fid = str(msg.get("function_id") or "")
        if not tid or not ttype or not fid:
            self.telemetry.engine_log("warn", "ignored malformed registertrigger", message_fields=msg)
            return
        old = self.triggers.get(tid)
        if self._held_by_other(worker, old.worker if old else None, f"trigger {tid!r}", retry=msg):
            return
        config = msg.get("config") if isinstance(msg.get("config"), dict) else {}
        entry = TriggerEntry(tid, ttype, fid, config, worker)
        for sink in self.sinks:
            holder = getattr(sink, "holder", None)
            if ttype in sink.trigger_types and holder is not None and self._held_by_other(worker, holder(entry), f"the {ttype} trigger of {fid!r}", retry=msg):
                return
        if old is not None:
            self._remove_trigger(old)
        self.triggers[tid] = entry
        worker.triggers.add(tid)
        handled = False
        for sink in self.sinks:
            if ttype in sink.trigger_types:
                sink.trigger_added(entry)
                handled = True
        if not handled:
            self.telemetry.engine_log("debug", f"trigger type {ttype!r} has no module here; kept for listing", step=fid)

    def _remove_trigger(self, entry: TriggerEntry) -> None:
        self.triggers.pop(entry.id, None)
        entry.worker.triggers.discard(entry.id)
        for sink in self.sinks:
            if entry.trigger_type in sink.trigger_types:
                sink.trigger_removed(entry)

    def unregister_trigger(self, worker: WorkerConnection, tid: str) -> None:
        """trigger.rs `unregister_trigger` removes it by id whoever registered it; here not when
        another live worker did."""
        entry = self.triggers.get(tid)
        if entry is not None and not self._held_by_other(worker, entry.worker, f"trigger {tid!r}"):
            self._remove_trigger(entry)

    # ------------------------------------------------------------------ workers

    def worker_connected(self, ws: web.WebSocketResponse, remote: str) -> WorkerConnection:
        worker = WorkerConnection(id=str(uuid.uuid4()), ws=ws, remote=remote)
        self.workers[worker.id] = worker
        return worker

    def worker_disconnected(self, worker: WorkerConnection) -> None:
        self.workers.pop(worker.id, None)
        held_any = bool(worker.functions or worker.triggers)
        self.waiting = [(w, msg) for w, msg in self.waiting if w is not worker]
        for tid in list(worker.triggers):
            entry = self.triggers.get(tid)
            if entry is not None and entry.worker is worker:
                self._remove_trigger(entry)
        for fid in list(worker.functions):
            held = self.functions.get(fid)
            if held is not None and held.worker is worker:  # engine/mod.rs 746-798 removes it even from a newer holder
                del self.functions[fid]
        worker.functions.clear()
        if held_any and self.waiting:
            self._retry_waiting()
        for fut in list(worker.pending.values()):
            if not fut.done():  # invocation/mod.rs 59-68 `halt_invocation`
                fut.set_exception(InvocationError("invocation_stopped", "Invocation stopped"))
        worker.pending.clear()
        if not worker.telemetry_only:
            self.telemetry.engine_log("warn", "worker disconnected", worker_id=worker.id, pid=worker.metadata.get("pid"))

    async def wait_for_function(self, function_id: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while function_id not in self.functions and function_id not in self.builtins:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.function_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                return False
        return True

    # ------------------------------------------------------------------ invocation

    async def invoke(
        self,
        function_id: str,
        data: Any,
        *,
        traceparent: str | None = None,
        baggage: str | None = None,
        timeout: float | None = None,
        caller: WorkerConnection | None = None,
    ) -> Any:
        """Invoke a function (builtin or on its worker) and return its result."""
        builtin = self.builtins.get(function_id)
        if builtin is not None:
            return await builtin(data, CallContext(worker=caller, traceparent=traceparent, baggage=baggage))
        fut, discard = await self.start_call(function_id, data, traceparent=traceparent, baggage=baggage)
        limit = timeout if timeout is not None else self.default_timeout
        timer = None if math.isinf(limit) else asyncio.get_running_loop().call_later(limit, _expire, fut, function_id)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            discard()

    async def start_call(
        self, function_id: str, data: Any, *, traceparent: str | None = None, baggage: str | None = None
    ) -> tuple[asyncio.Future[Any], Callable[[], None]]:
        """Send an invocation and return (future of its result, discard).

        `discard()` forgets the invocation (a late answer is then ignored); call it when done.
        A builtin runs as a task. There is no timeout here: the caller keeps its own.
        """
        builtin = self.builtins.get(function_id)
        if builtin is not None:
            task = asyncio.ensure_future(builtin(data, CallContext(traceparent=traceparent, baggage=baggage)))

            def cancel() -> None:
                task.cancel()

            return task, cancel
        entry = self.functions.get(function_id)
        if entry is None:
            raise InvocationError("function_not_found", f"Function {function_id} not found")
        worker = entry.worker
        inv_id = str(uuid.uuid4())
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.pending[inv_id] = fut
        msg: dict[str, Any] = {"type": "invokefunction", "invocation_id": inv_id, "function_id": function_id, "data": data}
        if traceparent:
            msg["traceparent"] = traceparent
        if baggage:
            msg["baggage"] = baggage

        def discard() -> None:
            worker.pending.pop(inv_id, None)
            if not fut.done():
                fut.cancel()

        try:
            await worker.send(msg)
        except (ConnectionResetError, RuntimeError) as exc:
            discard()
            raise InvocationError("worker_disconnected", str(exc)) from exc
        except BaseException:
            discard()
            raise
        return fut, discard

    def invocation_result(self, worker: WorkerConnection, msg: dict[str, Any]) -> None:
        fut = worker.pending.pop(str(msg.get("invocation_id")), None)
        if fut is None or fut.done():
            return
        err = msg.get("error")
        if err:
            if isinstance(err, dict):
                fut.set_exception(InvocationError(str(err.get("code", "invocation_failed")), str(err.get("message", err))))
            else:
                fut.set_exception(InvocationError("invocation_failed", str(err)))
        else:
            fut.set_result(msg.get("result"))

    async def handle_worker_call(self, worker: WorkerConnection, msg: dict[str, Any]) -> None:
        """A worker invokes a function (engine builtin or another worker's)."""
        inv_id = msg.get("invocation_id")
        fid = str(msg.get("function_id") or "")
        data = msg.get("data")
        if isinstance(data, dict):
            data = {**data, "_caller_worker_id": worker.id}
        try:
            result = await self.invoke(
                fid,
                data,
                traceparent=msg.get("traceparent"),
                baggage=msg.get("baggage"),
                timeout=NO_TIMEOUT,  # remember_invocation (engine/mod.rs 178-220) has none
                caller=worker,
            )
            if inv_id:
                answer: dict[str, Any] = {"type": "invocationresult", "invocation_id": inv_id, "function_id": fid}
                if result is not None:
                    answer["result"] = result
                await worker.send(answer)
        except InvocationError as exc:
            if inv_id:
                await self._answer_error(worker, inv_id, fid, exc.code, exc.message)
        except Exception as exc:  # noqa: BLE001 - any failure becomes an error answer
            log.exception("engine function %s failed", fid)
            if inv_id:
                await self._answer_error(worker, inv_id, fid, "invocation_failed", f"{type(exc).__name__}: {exc}")

    async def _answer_error(self, worker: WorkerConnection, inv_id: str, fid: str, code: str, message: str) -> None:
        try:
            await worker.send(
                {"type": "invocationresult", "invocation_id": inv_id, "function_id": fid, "error": {"code": code, "message": message}}
            )
        except InvocationError:
            pass

    # ------------------------------------------------------------------ engine builtins

    def _register_engine_builtins(self) -> None:
        async def workers_register(data: Any, ctx: CallContext) -> None:
            if ctx.worker is not None and isinstance(data, dict):
                ctx.worker.metadata.update(data)
            return None

        async def functions_list(data: Any, ctx: CallContext) -> dict[str, Any]:
            return {"functions": [{"function_id": f.id, "description": f.description, "metadata": f.metadata} for f in self.functions.values()]}

        async def workers_list(data: Any, ctx: CallContext) -> dict[str, Any]:
            return {"workers": [w.public() for w in self.workers.values() if not w.telemetry_only]}

        self.register_builtin("engine::workers::register", workers_register)
        self.register_builtin("engine::functions::list", functions_list)
        self.register_builtin("engine::workers::list", workers_list)
