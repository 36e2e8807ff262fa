"""The worker port (49134): the iii worker protocol, streaming channels and the OTel bridge.

- `GET /` upgrades to the worker websocket. The engine speaks first (`workerregistered`),
  then handles `registerfunction`/`registertrigger`/`unregister*`, `invokefunction` (a
  worker calling the engine, answered only when it carries an `invocation_id`) and
  `invocationresult`. Binary frames on the same socket are OTel bridge frames
  (`LOGS`/`OTLP`/`MTRC` + OTLP JSON); the SDK opens a separate socket for them.
  Protocol pings are answered automatically (aiohttp autoping).
- `GET /ws/channels/{id}?key=&dir=read|write` attaches a worker to a channel.
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

MAX_WS_MESSAGE = 64 * 1024 * 1024


async def worker_socket(request: web.Request) -> web.StreamResponse:
    engine: Engine = request.app["engine"]
    ws = web.WebSocketResponse(autoping=True, heartbeat=None, max_msg_size=MAX_WS_MESSAGE)
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


async def channel_socket(request: web.Request) -> web.StreamResponse:
    engine: Engine = request.app["engine"]
    ch = engine.channels.get(request.match_info["channel_id"], request.query.get("key", ""))
    direction = request.query.get("dir", "")
    if ch is None or direction not in ("read", "write"):
        return web.Response(status=404, text="Channel not found")
    ws = web.WebSocketResponse(autoping=True, max_msg_size=MAX_WS_MESSAGE)
    await ws.prepare(request)
    ch.attached.set()
    if direction == "read":
        # Engine → worker: forward items until the end marker, then close.
        while True:
            item = await ch.queue.get()
            if item is None:
                break
            if ws.closed:
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
                if msg.type == WSMsgType.TEXT:
                    await ch.queue.put(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ch.queue.put(bytes(msg.data))
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            await ch.close()
    return ws


def make_worker_app(engine: Engine) -> web.Application:
    app = web.Application(client_max_size=MAX_WS_MESSAGE)
    app["engine"] = engine
    app.router.add_get("/", worker_socket)
    app.router.add_get("/ws/channels/{channel_id}", channel_socket)
    return app
