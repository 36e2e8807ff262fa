"""HTTP behaviours the compatibility tests exercise through the real worker."""

import asyncio
import hashlib
import json

from motia import http

config = {
    "name": "Compat Api",
    "flows": ["compat"],
    "triggers": [
        http("POST", "/compat/echo/:id"),
        http("GET", "/compat/binary"),
        http("GET", "/compat/error"),
        http("GET", "/compat/slow"),
        http("POST", "/compat/raw"),
        http("POST", "/compat/emit"),
        http("POST", "/compat/status/:code"),
    ],
    "enqueues": ["compat.fanout", "compat.flaky", "compat.slow"],
}


async def stream(response, status, headers, body: bytes) -> None:
    """Answer through the response channel before returning (status and headers survive on
    engine 0.8.3 only this way: a returned result that arrives first is answered as
    Json(body) with its status_code alone, and bytes in a result cannot be sent at all)."""
    await response.status(status)
    await response.headers(headers)
    await response.writer.write(body)
    await response.writer.close_async()


async def handler(request, ctx):
    path = ctx.trigger.path
    if path == "/compat/echo/:id":
        ctx.logger.info("echo", {"id": request.path_params.get("id")})
        body = {
            "path_params": request.path_params,
            "query_params": request.query_params,
            "body": request.body,
            "method": request.method,
            "content_type": request.headers.get("content-type"),
            "custom": request.headers.get("x-custom"),
            "trace_id": ctx.trace_id,
        }
        await stream(request.response, 201, {"X-Echo": "yes", "Content-Type": "application/json"}, json.dumps(body).encode())
        return None
    if path == "/compat/binary":
        data = bytes(range(256)) * 1024  # 256 KiB, several channel frames
        await stream(request.response, 200, {"Content-Type": "application/octet-stream"}, data)
        return None
    if path == "/compat/error":
        raise RuntimeError("boom from handler")
    if path == "/compat/slow":
        await asyncio.sleep(float(request.query_params.get("s", "5")))
        return {"status": 200, "body": {"slept": True}}
    if path == "/compat/raw":
        raw = await request.request_body.read_all()
        return {"status": 200, "body": {"length": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}}
    if path == "/compat/emit":
        body = request.body or {}
        await ctx.enqueue({"topic": body["topic"], "data": body.get("data")})
        return {"status_code": 202, "body": {"queued": True, "trace_id": ctx.trace_id}}
    if path == "/compat/status/:code":
        return {"status_code": int(request.path_params["code"]), "body": {"code": int(request.path_params["code"])}}
    return {"status": 500, "body": {"error": "unexpected"}}
