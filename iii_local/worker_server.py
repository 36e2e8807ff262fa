"""The worker port (49134): the iii worker protocol, streaming channels and the OTel bridge.

- `GET /` upgrades to the worker websocket. The engine speaks first (`workerregistered`),
  then handles `registerfunction`/`registertrigger`/`unregister*`, `invokefunction` (a
  worker calling the engine, answered only when it carries an `invocation_id`) and
  `invocationresult`. Binary frames on the same socket are OTel bridge frames
  (`LOGS`/`OTLP`/`MTRC` + OTLP JSON); the SDK opens a separate socket for them.
  Protocol pings are answered automatically (aiohttp autoping).
- `GET /ws/channels/{id}?key=&dir=read|write` attaches a worker to a channel.

With `local_engine.worker_secret` set (required when the port is not on loopback), every
request to this port must carry it, or it is refused with 401 before the upgrade. iii-sdk
0.8.3 opens its sockets with `websockets.connect(url)` and nothing else (iii.py 176-185,
channels.py `build_channel_url` appends `/ws/channels/...` to the same `III_URL`, the OTel
bridge uses `III_BRIDGE_URL`), so the secret travels as the URL's user information:
`III_URL=ws://worker:<secret>@host:49134`, which `websockets` sends as
`Authorization: Basic` on every socket (a query parameter would end up in front of the
channel path and break channels). `Authorization: Bearer <secret>` is accepted as well.
Note that the SDK logs its `III_URL` at INFO ("Connected to ..."), so the worker's own output
shows the secret: keep it where the engine's log is.

A text frame that is not JSON (100,000 nested `[` included) is logged and skipped.

Both sockets decline permessage-deflate (`compress=False`): the worker offers it, but on
loopback compressing every small JSON frame only costs CPU on both sides.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from iii_local.engine import Engine
from iii_local.telemetry import decode_frame

log = logging.getLogger("iii_local.worker_server")
ENGINE_KEY = web.AppKey("engine", Engine)
SECRET_KEY = web.AppKey("worker_secret", str)

MAX_WS_MESSAGE = 64 * 1024 * 1024


async def worker_socket(request: web.Request) -> web.StreamResponse:
    engine: Engine = request.app[ENGINE_KEY]
    ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=MAX_WS_MESSAGE, compress=False)
    await ws.prepare(request)
    worker = engine.worker_connected(ws, request.remote or "")
    tasks: set[asyncio.Task[Any]] = set()
    try:
        await ws.send_str(json.dumps({"type": "workerregistered", "worker_id": worker.id}))
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    data = json.loads(msg.data)
                except (ValueError, RecursionError):
                    engine.telemetry.engine_log("warn", "worker sent invalid JSON", worker_id=worker.id)
                    continue
                if not isinstance(data, dict):
                    continue
                worker.telemetry_only = False
                mtype = data.get("type")
                if mtype == "registerfunction":
                    engine.register_function(worker, data)
                elif mtype == "registertrigger":
                    engine.register_trigger(worker, data)
                elif mtype == "unregisterfunction":
                    engine.unregister_function(worker, str(data.get("id")))
                elif mtype == "unregistertrigger":
                    engine.unregister_trigger(worker, str(data.get("id")))
                elif mtype == "invocationresult":
                    engine.invocation_result(worker, data)
                elif mtype == "invokefunction":
                    t = asyncio.create_task(engine.handle_worker_call(worker, data))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                else:
                    # registerservice, registertriggertype, triggerregistrationresult: nothing to do here.
                    pass
            elif msg.type == WSMsgType.BINARY:
                kind, records = decode_frame(msg.data)
                if kind == "logs":
                    for rec in records:
                        engine.telemetry.add_log(rec)
                elif kind == "spans":
                    for span in records:
                        engine.telemetry.add_span(span)
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        engine.worker_disconnected(worker)
    return ws


class _TransportReaper:
    """Free closed channel connections by reference counting instead of the cyclic GC.

    CPython 3.11's selector transport holds a bound method of itself (`_read_ready_cb`), so
    each closed connection is a reference cycle (transport, socket, method, dict) that waits
    for the cyclic garbage collector. Channel sockets open one connection per HTTP request;
    at a few hundred requests a second that garbage makes the engine's full collections
    longer and more frequent (tens of ms each, on the event loop). Every half second, the
    transports that have finished closing (`_sock` gone) drop that method.
    """

    def __init__(self) -> None:
        self.pending: list[Any] = []
        self.timer: asyncio.TimerHandle | None = None

    def add(self, transport: Any) -> None:
        if transport is None or "_read_ready_cb" not in getattr(transport, "__dict__", ()):
            return  # another event loop or Python: nothing to do
        self.pending.append(transport)
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(0.5, self.sweep)

    def sweep(self) -> None:
        self.timer = None
        still_open = []
        for tr in self.pending:
            if tr.is_closing() and getattr(tr, "_sock", None) is None:
                tr._read_ready_cb = None
            else:
                still_open.append(tr)
        self.pending = still_open
        if still_open:
            self.timer = asyncio.get_running_loop().call_later(0.5, self.sweep)


_reaper = _TransportReaper()


async def channel_socket(request: web.Request) -> web.StreamResponse:
    engine: Engine = request.app[ENGINE_KEY]
    _reaper.add(request.transport)
    ch = engine.channels.get(request.match_info["channel_id"], request.query.get("key", ""))
    direction = request.query.get("dir", "")
    if ch is None or direction not in ("read", "write"):
        return web.Response(status=404, text="Channel not found")
    ws = web.WebSocketResponse(autoping=True, max_msg_size=MAX_WS_MESSAGE, compress=False)
    await ws.prepare(request)
    ch.attached = True
    if direction == "read":
        # Engine → worker: forward items until the end of the stream, then close.
        while True:
            item = await ch.get()
            if item is None or ws.closed:
                break
            if isinstance(item, bytes):
                await ws.send_bytes(item)
            else:
                await ws.send_str(item)
        await ws.close()
    else:
        # Worker → engine: every frame goes into the channel; the close ends the stream.
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await ch.put(msg.data if type(msg.data) is bytes else bytes(msg.data))
                elif msg.type == WSMsgType.TEXT:
                    await ch.put(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            ch.close_nowait()
    return ws


def presented_secret(request: web.Request) -> str:
    """The secret a client presents: the password of `Authorization: Basic`, or a bearer token."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


@web.middleware
async def _require_secret(request: web.Request, handler: Any) -> web.StreamResponse:
    secret = request.app[SECRET_KEY]
    if secret and not hmac.compare_digest(presented_secret(request).encode(), secret.encode()):
        engine: Engine = request.app[ENGINE_KEY]
        engine.telemetry.engine_log("warn", "worker port: refused a client without the worker secret", remote=request.remote or "")
        return web.Response(status=401, text="worker secret required", headers={"WWW-Authenticate": 'Basic realm="iii worker port"'})
    result: web.StreamResponse = await handler(request)
    return result


def make_worker_app(engine: Engine, *, secret: str = "") -> web.Application:
    app = web.Application(client_max_size=MAX_WS_MESSAGE, middlewares=[_require_secret])
    app[ENGINE_KEY] = engine
    app[SECRET_KEY] = secret
    app.router.add_get("/", worker_socket)
    app.router.add_get("/ws/channels/{channel_id}", channel_socket)
    return app
