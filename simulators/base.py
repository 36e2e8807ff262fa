"""What every simulator shares: fault injection, the request log and the admin API.

Admin API (no auth; simulators bind to 127.0.0.1 only):
- `POST /_sim/faults` `{"method": "GET"|"*", "path": "<regex>", "status": 503, "rate": 1.0,
  "times": null|N, "retry_after": 2, "latency_ms": 0, "reset": false, "body": {...}}` → `{"id"}`.
  A rule matches requests whose method and path (regex, `re.search`) match; with probability
  `rate` it injects: first `latency_ms` of delay, then either a connection reset (`reset`),
  or an error answer with `status` (and `Retry-After` when given), or nothing more (latency only,
  when `status` is 0/None). `times` makes it one-shot (1) or N-shot; it is removed when spent.
- `GET /_sim/faults` list; `DELETE /_sim/faults` clear all; `DELETE /_sim/faults/{id}` one.
- `GET /_sim/requests?path=<regex>&method=M` the request log `[{"method","path","query","status","ts"}]`;
  `DELETE /_sim/requests` clears it.
- `POST /_sim/reset` drops all data, faults, pacing and log (then re-seeds the simulator's own seed
  when `{"seed": true}`); `POST /_sim/seed` loads a JSON document (shape defined by each simulator).
- `/_sim/latency` (a production-like latency profile: base and per-MiB delay, per route) and
  `/_sim/rate-limit` (a token bucket per credential answering 429): see `simulators.pacing`.
  The request log's `latency_ms` is the delay a request was given, `bytes` its body bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.pacing import Pacing, admin_routes, body_bytes

SIM_PREFIX = "/_sim/"
LATENCY_KEY = web.RequestKey("sim_latency_ms", float)
"""The delay (ms) the simulator gave a request, for the log."""
BYTES_KEY = web.RequestKey("sim_bytes", int)


@dataclass
class FaultRule:
    id: int
    method: str = "*"
    path: str = ".*"
    status: int | None = 503
    rate: float = 1.0
    times: int | None = None
    retry_after: float | None = None
    latency_ms: int = 0
    reset: bool = False
    body: Any = None
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method.upper())) and bool(self._regex.search(path))

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


@dataclass
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    ts: float
    headers: dict[str, str]
    latency_ms: float = 0.0
    bytes: int = 0


class SimulatorState:
    """Faults and request log of one simulator; subclasses keep their data beside it."""

    def __init__(self) -> None:
        self.faults: list[FaultRule] = []
        self.requests: list[RequestRecord] = []
        self._ids = itertools.count(1)
        self.max_log = 100_000
        self.pacing = Pacing()

    def add_fault(self, spec: dict[str, Any]) -> FaultRule:
        allowed = {k: spec[k] for k in FaultRule.__dataclass_fields__ if k in spec and not k.startswith("_") and k != "id"}
        rule = FaultRule(id=next(self._ids), **allowed)
        self.faults.append(rule)
        return rule

    def pick_fault(self, method: str, path: str) -> FaultRule | None:
        for rule in list(self.faults):
            if not rule.matches(method, path):
                continue
            if rule.rate < 1.0 and random.random() >= rule.rate:
                continue
            if rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    self.faults.remove(rule)
            return rule
        return None

    def log(self, request: web.Request, status: int) -> None:
        if len(self.requests) >= self.max_log:
            del self.requests[: self.max_log // 10]
        self.requests.append(
            RequestRecord(
                method=request.method,
                path=request.path,
                query=request.query_string,
                status=status,
                ts=time.time(),
                headers={k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "x-api-key")},
                latency_ms=request.get(LATENCY_KEY, 0.0),
                bytes=request.get(BYTES_KEY, 0),
            )
        )

    def reset(self) -> None:
        """Drop faults, pacing and log; simulators extend this to drop their data."""
        self.faults.clear()
        self.requests.clear()
        self.pacing.reset()


STATE_KEY = web.AppKey("sim_state", SimulatorState)


async def _delay(request: web.Request, ms: float) -> None:
    """Sleep `ms` and add it to the request's logged latency."""
    if ms > 0:
        request[LATENCY_KEY] = request.get(LATENCY_KEY, 0.0) + ms
        await asyncio.sleep(ms / 1000)


async def _handled(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], state: SimulatorState) -> web.StreamResponse:
    """The handler's answer, after the latency profile's size-proportional delay, logged."""
    try:
        resp = await handler(request)
    except web.HTTPException as exc:
        await _finish(request, state, None, exc.status)
        raise
    await _finish(request, state, resp, resp.status)
    return resp


async def _finish(request: web.Request, state: SimulatorState, resp: web.StreamResponse | None, status: int) -> None:
    request[BYTES_KEY] = size = body_bytes(request, resp)
    await _delay(request, state.pacing.latency.size_ms(request.method, request.path, size))
    state.log(request, status)


@web.middleware
async def fault_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if request.path.startswith(SIM_PREFIX):
        return await handler(request)
    await _delay(request, state.pacing.latency.before_ms(request.method, request.path))
    limited = state.pacing.limited_response(request)
    if limited is not None:
        state.log(request, limited.status)
        return limited
    rule = state.pick_fault(request.method, request.path)
    if rule is not None:
        await _delay(request, rule.latency_ms)
        if rule.reset:
            state.log(request, 0)
            transport = request.transport
            if transport is not None:
                # Abort the TCP connection without an answer: the client sees a reset.
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    import socket
                    import struct

                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    except OSError:
                        pass
                transport.abort()
            raise ConnectionResetError("fault injection: connection reset")
        if rule.status:
            headers = {}
            if rule.retry_after is not None:
                headers["Retry-After"] = str(rule.retry_after if rule.retry_after % 1 else int(rule.retry_after))
            body = rule.body if rule.body is not None else {"error": f"injected fault {rule.status}"}
            resp = web.json_response(body, status=rule.status, headers=headers)
            state.log(request, rule.status)
            return resp
    return await _handled(request, handler, state)


def _admin_routes(state: SimulatorState, on_reset: Callable[[bool], None], on_seed: Callable[[Any], None]) -> list[web.RouteDef]:
    async def add_fault(request: web.Request) -> web.Response:
        try:
            spec = await request.json()
            rule = state.add_fault(spec)
        except (ValueError, TypeError, re.error) as exc:
            return json_error(400, str(exc))
        return web.json_response({"id": rule.id})

    async def list_faults(request: web.Request) -> web.Response:
        return web.json_response([r.public() for r in state.faults])

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.json_response({"cleared": True})

    async def delete_fault(request: web.Request) -> web.Response:
        fid = int(request.match_info["fid"])
        state.faults[:] = [r for r in state.faults if r.id != fid]
        return web.json_response({"deleted": fid})

    async def list_requests(request: web.Request) -> web.Response:
        path_re = re.compile(request.query.get("path", ".*"))
        method = request.query.get("method", "*").upper()
        out = [asdict(r) for r in state.requests if path_re.search(r.path) and method in ("*", r.method)]
        return web.json_response(out)

    async def clear_requests(request: web.Request) -> web.Response:
        state.requests.clear()
        return web.json_response({"cleared": True})

    async def reset(request: web.Request) -> web.Response:
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = {}
        state.reset()
        on_reset(bool(body.get("seed", False)))
        return web.json_response({"reset": True})

    async def seed(request: web.Request) -> web.Response:
        try:
            doc = await request.json()
            on_seed(doc)
        except (ValueError, TypeError, KeyError) as exc:
            return json_error(400, str(exc))
        return web.json_response({"seeded": True})

    return [
        web.post("/_sim/faults", add_fault),
        web.get("/_sim/faults", list_faults),
        web.delete("/_sim/faults", clear_faults),
        web.delete("/_sim/faults/{fid}", delete_fault),
        web.get("/_sim/requests", list_requests),
        web.delete("/_sim/requests", clear_requests),
        web.post("/_sim/reset", reset),
        web.post("/_sim/seed", seed),
    ]


def make_app(
    state: SimulatorState,
    *,
    on_reset: Callable[[bool], None] = lambda seed: None,
    on_seed: Callable[[Any], None] = lambda doc: None,
    client_max_size: int = 64 * 1024 * 1024,
) -> web.Application:
    """An aiohttp app with the fault middleware and admin routes; add the API routes to it."""
    app = web.Application(middlewares=[fault_middleware], client_max_size=client_max_size)
    app[STATE_KEY] = state
    app.add_routes(_admin_routes(state, on_reset, on_seed))
    app.add_routes(admin_routes(state.pacing))
    return app


def read_seed(seed: dict[str, Any] | str | Path | None) -> dict[str, Any] | None:
    """A seed document given as such or as the path of a JSON file."""
    if isinstance(seed, (str, Path)):
        return json.loads(Path(seed).read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    return seed


def make_seeded_app(
    state: SimulatorState,
    seed: dict[str, Any] | str | Path | None,
    *,
    load: Callable[[dict[str, Any]], None],
    drop: Callable[[], None],
) -> web.Application:
    """`make_app` for a simulator whose data is loaded from a seed document: the seed is
    loaded now, `/_sim/seed` loads more, `/_sim/reset` drops everything (and with
    `{"seed": true}` loads the original seed again)."""
    doc = read_seed(seed)
    if doc:
        load(doc)

    def on_reset(reseed: bool) -> None:
        drop()
        if reseed and doc:
            load(doc)

    return make_app(state, on_reset=on_reset, on_seed=load)


def json_error(status: int, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer with a JSON body `{"error": message}`."""
    return web.json_response({"error": message}, status=status, headers=headers or {})


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
