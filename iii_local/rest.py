"""The REST module (port 3111): HTTP triggers routed to worker functions over channels.

Mirrors the real engine's `dynamic_handler`: routes from `http` triggers with `:param`
segments; the worker gets query/path params, lower-cased headers, the parsed JSON body
(for `application/json` only) and two channel refs; the answer is read from the response
channel (`set_status`/`set_headers` text frames, then binary body chunks), falling back
to the invocation's result. Handler error → 500 with an `error_id`; a false condition →
422; no answer in `default_timeout` → 504; unknown route → 404.
A response body whose channel ends promptly (no gap over `COALESCE_WAIT` between chunks, at
most `COALESCE_BYTES`) is sent whole with a Content-Length; a longer or slower one is
streamed (chunked) as it arrives.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from iii_local.channels import EMPTY, TIMEOUT, Channel
from iii_local.config import RestConfig
from iii_local.engine import Engine, InvocationError, TriggerEntry, new_traceparent
from iii_local.telemetry import InvocationRecord, span_id_of, trace_id_of

CHUNK = 64 * 1024
COALESCE_BYTES = 1024 * 1024  # a response body up to this size that ends promptly is sent whole
COALESCE_WAIT = 0.02  # seconds to wait for the next chunk or the end before streaming
NO_BODY_STATUSES = frozenset({204, 304})
TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def error_id() -> str:
    return format(time.time_ns() & 0xFFFFFFFFFFFF, "x")


@dataclass
class Route:
    method: str
    path: str  # registered api_path without leading slash
    segments: list[str]
    trigger: TriggerEntry

    @property
    def function_id(self) -> str:
        return self.trigger.function_id

    @property
    def static_score(self) -> int:
        return sum(1 for s in self.segments if not s.startswith(":"))


def split_path(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


class Router:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}

    def add(self, trigger: TriggerEntry) -> Route:
        cfg = trigger.config
        path = str(cfg.get("api_path", "")).lstrip("/")
        method = str(cfg.get("http_method", "GET")).upper()
        route = Route(method, path, split_path(path), trigger)
        self.routes[(method, "/".join(route.segments))] = route
        return route

    def remove(self, trigger: TriggerEntry) -> None:
        for key, route in list(self.routes.items()):
            if route.trigger.id == trigger.id:
                del self.routes[key]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        segs = split_path(path)
        best: tuple[Route, dict[str, str]] | None = None
        for route in self.routes.values():
            if route.method != method.upper() or len(route.segments) != len(segs):
                continue
            params: dict[str, str] = {}
            ok = True
            for pattern, actual in zip(route.segments, segs):
                if pattern.startswith(":"):
                    params[pattern[1:]] = actual
                elif pattern != actual:
                    ok = False
                    break
            if ok and (best is None or route.static_score > best[0].static_score):
                best = (route, params)
        return best


def response_from_result(result: Any) -> tuple[int, dict[str, str], Any] | None:
    """The fallback answer from a handler's returned dict (`status_code` or `status`)."""
    if not isinstance(result, dict):
        return None
    status = result.get("status_code", result.get("status", result.get("statusCode")))
    if status is None:
        return None
    try:
        code = int(status)
    except (TypeError, ValueError):
        return None
    headers = result.get("headers") if isinstance(result.get("headers"), dict) else {}
    return code, {str(k): str(v) for k, v in headers.items()}, result.get("body")


class RestModule:
    trigger_types = ("http",)

    def __init__(self, engine: Engine, config: RestConfig, *, max_request_bytes: int, console_routes: list[web.RouteDef] | None = None) -> None:
        self.engine = engine
        self.config = config
        self.max_request_bytes = max_request_bytes
        self.router = Router()
        self.semaphore = asyncio.Semaphore(max(1, config.concurrency_request_limit))
        self.timeout = config.default_timeout_ms / 1000
        self.console_routes = console_routes or []
        self.in_flight = 0
        engine.add_sink(self)

    def trigger_added(self, trigger: TriggerEntry) -> None:
        route = self.router.add(trigger)
        self.engine.telemetry.engine_log("debug", f"route {route.method} /{route.path}", step=trigger.function_id)

    def trigger_removed(self, trigger: TriggerEntry) -> None:
        self.router.remove(trigger)

    def make_app(self) -> web.Application:
        # Without CORS origins the middleware would do nothing: leave it out of the hot path.
        middlewares = [self._cors_middleware] if self.config.cors_origins else []
        app = web.Application(client_max_size=self.max_request_bytes, middlewares=middlewares)
        app.add_routes(self.console_routes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    @web.middleware
    async def _cors_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = origin is not None and (origin in self.config.cors_origins or "*" in self.config.cors_origins)
        if request.method == "OPTIONS" and allowed:
            methods = ", ".join(self.config.cors_methods or ["GET", "POST", "PUT", "DELETE", "OPTIONS"])
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Origin": origin or "",
                    "Access-Control-Allow-Methods": methods,
                    "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
                },
            )
        resp = await handler(request)
        if allowed and not resp.prepared:
            resp.headers["Access-Control-Allow-Origin"] = origin or ""
        return resp

    async def handle(self, request: web.Request) -> web.StreamResponse:
        found = self.router.match(request.method, request.path)
        if found is None:
            return web.json_response({"error": "Not Found", "method": request.method, "path": request.path}, status=404)
        route, path_params = found
        length = request.content_length
        if length is not None and length > self.max_request_bytes:
            return web.json_response(
                {"error": "Payload Too Large", "limit_bytes": self.max_request_bytes}, status=413
            )
        async with self.semaphore:
            self.in_flight += 1
            try:
                return await self._dispatch(request, route, path_params)
            finally:
                self.in_flight -= 1

    async def _dispatch(self, request: web.Request, route: Route, path_params: dict[str, str]) -> web.StreamResponse:
        engine = self.engine
        incoming = request.headers.get("traceparent", "")
        traceparent = incoming if incoming and TRACEPARENT_RE.match(incoming) else new_traceparent()
        trace_id = trace_id_of(traceparent) or ""
        record = engine.telemetry.start_invocation(
            InvocationRecord(trace_id=trace_id, function_id=route.function_id, kind="http", start=time.time(), span_id=span_id_of(traceparent),
                             detail={"method": request.method, "path": request.path})
        )
        content_type = request.headers.get("Content-Type", "")
        req_ch = engine.channels.create()
        res_ch = engine.channels.create()
        feeder: asyncio.Task[None] | None = None
        body: Any = None
        try:
            if "application/json" in content_type:
                try:
                    raw = await request.read()
                except web.HTTPRequestEntityTooLarge:
                    return self._finish(record, web.json_response({"error": "Payload Too Large", "limit_bytes": self.max_request_bytes}, status=413))
                try:
                    body = json.loads(raw) if raw else None
                except (ValueError, UnicodeDecodeError):
                    body = None
                # The body is in memory already: buffer it in the channel, no feeder task.
                for i in range(0, len(raw), CHUNK):
                    req_ch.put_nowait(raw[i : i + CHUNK])
                req_ch.close_nowait()
            else:
                feeder = asyncio.create_task(self._feed_stream(req_ch, request))
            data = {
                "query_params": {k: v for k, v in request.query.items()},
                "path_params": path_params,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "path": route.path,
                "method": request.method,
                "body": body,
                "trigger": {"type": "http", "path": route.path, "method": request.method},
                "request_body": req_ch.ref("read"),
                "response": res_ch.ref("write"),
            }
            condition = route.trigger.config.get("_condition_path")
            if condition:
                cond_input = {k: v for k, v in data.items() if k not in ("request_body", "response")}
                try:
                    ok = await engine.invoke(str(condition), cond_input, traceparent=traceparent, timeout=self.timeout)
                except InvocationError as exc:
                    return self._finish(record, self._error_500(exc), error=exc.message)
                if not ok:
                    return self._finish(record, web.json_response({"error": "Request condition not met", "skipped": True}, status=422))
            return await self._call_and_respond(request, route, data, traceparent, res_ch, record)
        finally:
            if feeder is not None:
                feeder.cancel()
            engine.channels.remove(req_ch.id)
            engine.channels.remove(res_ch.id)

    async def _feed_stream(self, ch: Channel, request: web.Request) -> None:
        total = 0
        try:
            async for chunk in request.content.iter_chunked(CHUNK):
                total += len(chunk)
                if total > self.max_request_bytes:
                    break
                await ch.put(bytes(chunk))
        finally:
            ch.close_nowait()

    def _error_500(self, exc: Exception) -> web.Response:
        eid = error_id()
        self.engine.telemetry.engine_log("error", "Internal server error", error_id=eid, error=str(exc))
        return web.json_response({"error": "internal server error", "error_id": eid}, status=500)

    def _finish(self, record: InvocationRecord, resp: web.StreamResponse, *, error: str | None = None) -> web.StreamResponse:
        record.end = time.time()
        status = resp.status
        record.detail["status"] = status
        record.outcome = "ok" if status < 500 else ("timeout" if status == 504 else "error")
        if error:
            record.error = error
        if record.trace_id and not resp.prepared:
            resp.headers["x-iii-trace-id"] = record.trace_id
        return resp

    def _timeout_504(self, record: InvocationRecord) -> web.StreamResponse:
        return self._finish(record, web.json_response({"error": "Gateway Timeout", "timeout_ms": int(self.timeout * 1000)}, status=504), error="timeout")

    async def _call_and_respond(
        self, request: web.Request, route: Route, data: dict[str, Any], traceparent: str, res_ch: Channel, record: InvocationRecord
    ) -> web.StreamResponse:
        """Invoke the handler and answer from its response channel, or from its result.

        One future (`waiter`) is woken by whichever comes first: a channel item or end,
        the invocation's answer, or a time limit; no task is created per request.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            call, discard = await self.engine.start_call(route.function_id, data, traceparent=traceparent)
        except InvocationError as exc:
            return self._finish(record, self._error_500(exc), error=str(exc))
        waiter: asyncio.Future[None] | None = None

        def wake(*_: Any) -> None:
            if waiter is not None and not waiter.done():
                waiter.set_result(False)

        def expire() -> None:
            if waiter is not None and not waiter.done():
                waiter.set_result(True)

        async def wait_until(when: float) -> bool:
            """Sleep until something happens; True if `when` came first."""
            nonlocal waiter
            waiter = loop.create_future()
            timer = loop.call_at(when, expire)
            try:
                return await waiter
            finally:
                timer.cancel()
                waiter = None

        res_ch.listener = wake
        call.add_done_callback(wake)
        status, headers = 200, {}
        first_chunk: bytes | None = None
        closed = False
        try:
            while True:
                item = res_ch.get_nowait()
                if item is not EMPTY:
                    if item is None:
                        closed = True
                        break
                    if isinstance(item, str):
                        status, headers = self._control(item, status, headers)
                        continue
                    first_chunk = item
                    break
                now = loop.time()
                if now >= deadline:
                    return self._timeout_504(record)
                if not call.done():
                    await wait_until(deadline)
                    continue
                exc = None if call.cancelled() else call.exception()
                if exc is None:
                    # As in the real engine, a returned response that arrives before the
                    # body answers at once (keeping its status and headers).
                    fallback = response_from_result(call.result()) if not call.cancelled() else None
                    if fallback is not None and fallback[2] is not None:
                        code, fheaders, fbody = fallback
                        return self._finish(record, self._body_response(code, {**fheaders, **headers}, fbody))
                    # The handler answered; the channel normally closes within milliseconds.
                    # If the worker never attached to it, fall back to the result soon.
                    limit = deadline if res_ch.attached else min(deadline, now + 0.5)
                    if await wait_until(limit) and not res_ch.items and not res_ch.closed:
                        break
                    continue
                if isinstance(exc, InvocationError) and exc.code == "timeout":
                    return self._timeout_504(record)
                # Like the real engine (which polls the channel first), a body already
                # on its way wins over an error in serialising the result.
                if res_ch.attached:
                    while True:
                        item = await res_ch.get(until=loop.time() + 0.5)
                        if isinstance(item, str):
                            status, headers = self._control(item, status, headers)
                            continue
                        if isinstance(item, bytes):
                            first_chunk = item
                        break
                    if first_chunk is not None:
                        break
                return self._finish(record, self._error_500(exc), error=str(exc))
            if first_chunk is None:
                # Channel closed (or never used) without a body: the result is the answer if it has one.
                if not call.done():
                    await wait_until(deadline)  # the channel has ended: only the call or the deadline wakes it
                if call.done() and not call.cancelled() and call.exception() is not None:
                    exc = call.exception()
                    return self._finish(record, self._error_500(exc), error=str(exc))
                fallback = response_from_result(call.result()) if call.done() and not call.cancelled() else None
                if fallback is not None and not closed:
                    code, fheaders, fbody = fallback
                    return self._finish(record, self._body_response(code, {**fheaders, **headers}, fbody))
                if fallback is not None and closed and fallback[2] is not None:
                    code, fheaders, fbody = fallback
                    return self._finish(record, self._body_response(status if status != 200 else code, {**fheaders, **headers}, fbody))
                return self._finish(record, web.Response(status=status, headers=headers))
            if status in NO_BODY_STATUSES:
                return self._finish(record, web.Response(status=status, headers=headers))
            # A body that ends promptly is sent whole (one write, Content-Length); one that
            # keeps coming is streamed as it arrives.
            res_ch.listener = None
            chunks = [first_chunk]
            size = len(first_chunk)
            while size <= COALESCE_BYTES:
                item = await res_ch.get(until=min(deadline, loop.time() + COALESCE_WAIT))
                if item is None:
                    return self._finish(record, web.Response(status=status, headers=headers, body=b"".join(chunks)))
                if item is TIMEOUT:
                    break
                if isinstance(item, bytes):
                    chunks.append(item)
                    size += len(item)
            resp_stream = web.StreamResponse(status=status, headers=headers)
            self._finish(record, resp_stream)
            await resp_stream.prepare(request)
            await resp_stream.write(b"".join(chunks))
            while True:
                item = await res_ch.get(until=max(loop.time() + 0.05, deadline))
                if item is None or item is TIMEOUT:
                    break
                if isinstance(item, bytes):
                    await resp_stream.write(item)
            await resp_stream.write_eof()
            return resp_stream
        finally:
            res_ch.listener = None
            call.remove_done_callback(wake)
            if call.done() and not call.cancelled():
                call.exception()  # retrieved: an error answered here is not "never retrieved"
            discard()

    @staticmethod
    def _control(msg: str, status: int, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        try:
            ctrl = json.loads(msg)
        except ValueError:
            return status, headers
        if not isinstance(ctrl, dict):
            return status, headers
        if ctrl.get("type") == "set_status":
            code = ctrl.get("status_code")
            if isinstance(code, int) and 100 <= code <= 599:
                status = code
        elif ctrl.get("type") == "set_headers" and isinstance(ctrl.get("headers"), dict):
            headers = {**headers, **{str(k): str(v) for k, v in ctrl["headers"].items() if isinstance(v, str)}}
        return status, headers

    @staticmethod
    def _body_response(status: int, headers: dict[str, str], body: Any) -> web.Response:
        if body is None or status in NO_BODY_STATUSES:
            return web.Response(status=status, headers=headers)
        if isinstance(body, (bytes, bytearray)):
            return web.Response(status=status, headers=headers, body=bytes(body))
        return web.Response(status=status, headers=headers, body=json.dumps(body).encode())
