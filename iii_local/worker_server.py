"""The worker port (49134): the iii worker protocol, streaming channels and the OTel bridge.

- `GET /` upgrades to the worker websocket. The engine speaks first (`workerregistered`),
  then handles `registerfunction`/`registertrigger`/`unregister*`, `invokefunction` (a
  worker calling the engine, answered only when it carries an `invocation_id`) and
  `invocationresult`. Binary frames on the same socket are OTel bridge frames
  (`LOGS`/`OTLP`/`MTRC` + OTLP JSON); the SDK opens a separate socket for them.
  Protocol pings are answered automatically (aiohttp autoping).
- `GET /ws/channels/{id}?key=&dir=read|write` attaches a worker to a channel.

Both sockets decline permessage-deflate (`compress=False`): the worker offers it, but on
loopback compressing every small JSON frame only costs CPU on both sides.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from iii_local.engine import Engine
from iii_local.telemetry import decode_frame

log = logging.getLogger("iii_local.worker_server")
ENGINE_KEY = web.AppKey("engine", Engine)

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
                except ValueError:
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


def make_worker_app(engine: Engine) -> web.Application:
    app = web.Application(client_max_size=MAX_WS_MESSAGE)
    app[ENGINE_KEY] = engine
    app.router.add_get("/", worker_socket)
    app.router.add_get("/ws/channels/{channel_id}", channel_socket)
    return app
