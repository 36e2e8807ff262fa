"""The REST module (port 3111): HTTP triggers answered the way the real engine 0.8.3 does.

Reproduces `dynamic_handler` (engine/src/modules/rest_api/views.rs, iii/v0.8.3); routing
and CORS are in `http_routes`, serde_json's reading and writing in `http_json`.

Request (views.rs 246-305):
- Content type containing `application/json` (case-sensitive, the first Content-Type
  header): the body is read whole and parsed into `body` (keys sorted; invalid → null).
  Nothing is written to the request channel, and the engine keeps the channel's sender
  until the request is answered: a worker reading `request_body` waits until then, which
  for a handler that waits on it means the timeout (504) (H1; channels/mod.rs 95-98).
- Any other content type: `body` is null and the raw bytes are streamed into the request
  channel, which closes at the end (H2).
- Headers lower-cased (a value that is not visible ASCII arrives as ""), query parameters
  decoded (the last of a repeated key wins), path parameters raw, `path` = the trigger's
  `api_path` as registered. An incoming `traceparent` is not used: every request starts a
  new trace (the engine's HTTP span has no parent).

Answer (views.rs 360-465): the response channel is read first (`set_status`/`set_headers`
text frames, then binary chunks); as soon as a binary chunk arrives, or the channel closes,
the answer is streamed with that status and those headers. If the handler's result arrives
first and is not null, the answer is `Json(result["body"])` (`{}` when absent) with
`result["status_code"]` (200 when absent): headers and `set_status` are dropped (H3). A null
result leaves the channel as the only source: nothing written and never closed → 504.
Handler error → 500 `{"error":"internal server error","error_id"}`; a condition returning
exactly `false` → 422; no answer within `default_timeout` → 504 with an empty body (axum's
TimeoutLayer; a streamed body is not timed). No request body size limit (H4).

Deviations for development and sandbox use (issue 14; no step can tell, as the handler gets
the same data): a matched route's body is read whole **before** the request takes its
concurrency slot, within a read deadline (408), refused past `local_engine.max_body_bytes`
when set (413), and never passed on when it broke off (400): see `http_body`. The timeout
then starts with the handler. Any JSON body serde_json refuses (100,000 nested `[` included:
its recursion limit is 128) arrives as null, as in the engine, never as a 500.

Operator extras: `x-iii-trace-id` on every answer of a route, an invocation record per
request in the telemetry, and the `/_console` routes on the same port.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from iii_local.channels import EMPTY, Channel
from iii_local.config import RestConfig
from iii_local.engine import Engine, InvocationError, TriggerEntry, WorkerConnection, new_traceparent
from iii_local.http_body import Body, BodyRefused, read_body
from iii_local.http_json import dumps, parse_body
from iii_local.http_routes import Cors, Resolution, Route, Router
from iii_local.telemetry import InvocationRecord, span_id_of, trace_id_of

__all__ = ["RestModule", "Router", "Route", "http_response_from_result"]

CHUNK = 64 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def error_id() -> str:
    return format(time.time_ns() & 0xFFFFFFFFFFFF, "x")


def visible_ascii(value: str) -> str:
    """`HeaderValue::to_str().unwrap_or("")`: only visible ASCII and tab survive."""
    return value if all(" " <= ch <= "~" or ch == "\t" for ch in value) else ""


def http_response_from_result(result: Any) -> tuple[int, Any]:
    """`HttpResponse::from_function_return` (types.rs 46-67) and `StatusCode::from_u16(code as u16)`:
    the status from an unsigned integer `status_code` (else 200), the body (else `{}`)."""
    status = 200
    body: Any = {}
    if isinstance(result, dict):
        code = result.get("status_code")
        if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < 2**64:
            truncated = code & 0xFFFF
            status = truncated if 100 <= truncated <= 999 else 200
        body = result.get("body", {})
    return status, body


def json_response(status: int, value: Any) -> web.Response:
    return web.Response(status=status, body=dumps(value), content_type="application/json")


@dataclass
class Streamed:
    """The answer is the response channel: this status, these headers, then the body chunks."""

    status: int
    headers: dict[str, str]
    first_chunk: bytes | None


class RestModule:
    trigger_types = ("http",)

    def __init__(self, engine: Engine, config: RestConfig, *, console_routes: list[web.RouteDef] | None = None,
                 max_body_bytes: int = 0, body_timeout: float | None = None) -> None:
        self.engine = engine
        self.config = config
        self.router = Router(config.concurrency_request_limit)
        self.cors = Cors(config)
        self.timeout = config.default_timeout_ms / 1000
        self.max_body_bytes = max(0, max_body_bytes)
        self.body_timeout = body_timeout or self.timeout
        self.console_routes = console_routes or []
        self.in_flight = 0
        engine.add_sink(self)

    def trigger_added(self, trigger: TriggerEntry) -> None:
        route = self.router.add(trigger)
        self.engine.telemetry.engine_log("debug", f"route {route.method} {route.api_path}", step=trigger.function_id)

    def trigger_removed(self, trigger: TriggerEntry) -> None:
        self.router.remove(trigger)

    def holder(self, trigger: TriggerEntry) -> WorkerConnection | None:
        """The worker whose route (same method and path) `trigger` would replace."""
        held = self.router.holder(trigger)
        return held.worker if held is not None else None

    def make_app(self) -> web.Application:
        app = web.Application()
        app.add_routes(self.console_routes)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    # ------------------------------------------------------------------ routing

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "OPTIONS":
            return self.cors.preflight(request)
        found = self.router.resolve(request.method, request.rel_url.raw_path)
        if found.kind is Resolution.ROUTE and found.route is not None:
            try:
                body = await read_body(request, limit=self.max_body_bytes, timeout=self.body_timeout)
            except BodyRefused as exc:
                self.engine.telemetry.engine_log("warn", f"request refused: {exc.text}", step=found.route.function_id,
                                                 status=exc.status, path=request.path)
                refused = json_response(exc.status, {"error": exc.text})
                refused.force_close()
                self.cors.decorate(request, refused)
                return refused
            try:
                async with found.route.semaphore:
                    self.in_flight += 1
                    try:
                        return await self._dispatch(request, found.route, found.params, body)
                    finally:
                        self.in_flight -= 1
            finally:
                body.close()
        if found.kind is Resolution.METHOD_NOT_ALLOWED:
            resp = web.Response(status=405, headers={"Allow": found.allow})
        elif found.kind is Resolution.NOT_REGISTERED:
            resp = web.Response(status=404, text="Not Found")
        else:
            resp = web.Response(status=404)
        self.cors.decorate(request, resp)
        return resp

    # ------------------------------------------------------------------ one request

    async def _dispatch(self, request: web.Request, route: Route, path_params: dict[str, str], raw: Body) -> web.StreamResponse:
        engine = self.engine
        traceparent = new_traceparent()
        record = engine.telemetry.start_invocation(
            InvocationRecord(trace_id=trace_id_of(traceparent) or "", function_id=route.function_id, kind="http", start=time.time(),
                             span_id=span_id_of(traceparent), detail={"method": request.method, "path": request.path})
        )
        req_ch = engine.channels.create()
        res_ch = engine.channels.create()
        feeder: asyncio.Task[None] | None = None
        discard: list[Any] = []
        try:
            try:
                async with asyncio.timeout(self.timeout) as deadline:
                    content_type = visible_ascii(request.headers.get("Content-Type", ""))
                    body: Any = None
                    if "application/json" in content_type:
                        body = parse_body(raw.read_all())
                    else:
                        feeder = asyncio.create_task(self._feed_stream(req_ch, raw))
                    data = self._request_data(request, route, path_params, body, req_ch, res_ch)
                    answer = await self._answer(route, data, traceparent, res_ch, discard, record)
            except TimeoutError:
                if not deadline.expired():
                    raise
                return self._finish(request, record, web.Response(status=504), error="timeout")
            if feeder is None:
                # H1: the engine drops the request channel's sender when it returns the answer.
                # (H2: the sender belongs to the feeding task, which goes on to the end.)
                req_ch.close_nowait()
            if isinstance(answer, web.StreamResponse):
                return self._finish(request, record, answer)
            return await self._stream(request, record, answer, res_ch)
        finally:
            for forget in discard:
                forget()
            if feeder is not None:
                feeder.cancel()
            engine.channels.remove(req_ch.id)
            engine.channels.remove(res_ch.id)

    @staticmethod
    def _request_data(request: web.Request, route: Route, path_params: dict[str, str], body: Any,
                      req_ch: Channel, res_ch: Channel) -> dict[str, Any]:
        """The `HttpRequest` the worker gets (types.rs 24-37)."""
        return {
            "query_params": {k: v for k, v in request.query.items()},
            "path_params": path_params,
            "headers": {k.lower(): visible_ascii(v) for k, v in request.headers.items()},
            "path": route.api_path,
            "method": request.method,
            "body": body,
            "trigger": {"type": "http", "path": route.api_path, "method": request.method},
            "request_body": req_ch.ref("read"),
            "response": res_ch.ref("write"),
        }

    async def _feed_stream(self, ch: Channel, raw: Body) -> None:
        """H2: the raw bytes into the request channel, then its end (a body that broke off
        never gets here: `http_body`)."""
        try:
            for chunk in raw.chunks(CHUNK):
                await ch.put(chunk)
        finally:
            ch.close_nowait()

    def _error_500(self, exc: BaseException, record: InvocationRecord) -> web.Response:
        record.error = str(exc)
        eid = error_id()
        self.engine.telemetry.engine_log("error", "Internal server error", error_id=eid, error=str(exc))
        return json_response(500, {"error": "internal server error", "error_id": eid})

    async def _answer(self, route: Route, data: dict[str, Any], traceparent: str, res_ch: Channel,
                      discard: list[Any], record: InvocationRecord) -> web.StreamResponse | Streamed:
        """Condition, invocation, then whichever decides the answer first (views.rs 314-465)."""
        engine = self.engine
        condition = route.trigger.config.get("_condition_path")
        if condition:
            cond_input = {k: v for k, v in data.items() if k not in ("request_body", "response")}
            try:
                ok = await engine.invoke(str(condition), cond_input, traceparent=traceparent, timeout=self.timeout + 1)
            except InvocationError as exc:
                return self._error_500(exc, record)
            if ok is False:  # check_condition: only an explicit false skips the handler
                return json_response(422, {"error": "Request condition not met", "skipped": True})
        try:
            call, forget = await engine.start_call(route.function_id, data, traceparent=traceparent)
        except InvocationError as exc:
            return self._error_500(exc, record)
        discard.append(forget)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] | None = None

        def wake(*_: Any) -> None:
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        status, headers = 200, {}
        res_ch.listener = wake
        call.add_done_callback(wake)
        try:
            # Phase 1: the channel first (a biased select), then the invocation's result.
            while True:
                item = res_ch.get_nowait()
                if item is None:
                    return Streamed(status, headers, None)
                if isinstance(item, str):
                    status, headers = self._control(item, status, headers)
                    continue
                if item is not EMPTY:
                    return Streamed(status, headers, item)
                if call.done():
                    break
                waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    waiter = None
            exc = call.exception()
            if exc is not None:
                return self._error_500(exc, record)
            result = call.result()
            if result is not None:
                code, body = http_response_from_result(result)
                return json_response(code, body)  # H3: the result's status and body only
            # Phase 2: the handler returned nothing; only the channel can answer now.
            res_ch.listener = None
            while True:
                item = await res_ch.get()
                if item is None:
                    return Streamed(status, headers, None)
                if isinstance(item, str):
                    status, headers = self._control(item, status, headers)
                    continue
                return Streamed(status, headers, item)
        finally:
            res_ch.listener = None
            call.remove_done_callback(wake)

    @staticmethod
    def _control(msg: str, status: int, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        """`apply_control_message` (views.rs 38-72)."""
        try:
            ctrl = json.loads(msg)
        except ValueError:
            return status, headers
        if not isinstance(ctrl, dict):
            return status, headers
        if ctrl.get("type") == "set_status":
            code = ctrl.get("status_code")
            if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
                status = code
        elif ctrl.get("type") == "set_headers" and isinstance(ctrl.get("headers"), dict):
            headers = {**headers, **{str(k): v for k, v in ctrl["headers"].items() if isinstance(v, str)}}
        return status, headers

    async def _stream(self, request: web.Request, record: InvocationRecord, answer: Streamed, res_ch: Channel) -> web.StreamResponse:
        """The answer from the response channel: status, headers (invalid ones skipped), the
        body chunks as they come until the channel ends (views.rs 467-516)."""
        resp = web.StreamResponse(status=answer.status)
        for name, value in answer.headers.items():
            if _TOKEN.match(name) and not any((ch < " " and ch != "\t") or ch == "\x7f" for ch in value):
                resp.headers.add(name, value)
        self._finish(request, record, resp)
        if answer.status in NO_BODY_STATUSES or request.method == "HEAD":
            return resp
        await resp.prepare(request)
        if answer.first_chunk is not None:
            await resp.write(answer.first_chunk)
            while True:
                item = await res_ch.get()
                if item is None:
                    break
                if isinstance(item, bytes):
                    await resp.write(item)
        await resp.write_eof()
        return resp

    def _finish(self, request: web.Request, record: InvocationRecord, resp: web.StreamResponse, *, error: str | None = None) -> web.StreamResponse:
        record.end = time.time()
        status = resp.status
        record.detail["status"] = status
        record.outcome = "ok" if status < 500 else ("timeout" if status == 504 else "error")
        if error:
            record.error = error
        self.cors.decorate(request, resp)
        if record.trace_id:
            resp.headers["x-iii-trace-id"] = record.trace_id
        return resp
