"""H3: which of the handler's result and the response channel makes the answer."""

import asyncio

from motia import ApiResponse, http

config = {
    "name": "Conf Http Answer",
    "flows": ["conformance"],
    "triggers": [
        http("GET", "/conformance/answer/result-first"),
        http("GET", "/conformance/answer/plain-status"),
        http("GET", "/conformance/answer/no-body-key"),
        http("GET", "/conformance/answer/nothing"),
        http("GET", "/conformance/answer/streamed"),
    ],
    "enqueues": [],
}

LATE = 0.5


def delay_channel_body(response):
    """Let the body frames and the close reach the engine LATE seconds after the invocation's
    result (motia writes them fire-and-forget after the handler returns; here they always lose)."""
    writer = response.writer
    send, close = writer.write, writer.close_async

    async def late_send(data):
        await asyncio.sleep(LATE)
        await send(data)

    async def late_close():
        await asyncio.sleep(LATE + 0.1)
        await close()

    writer.write = late_send
    writer.close_async = late_close


async def handler(request, ctx):
    path = ctx.trigger.path
    if path == "/conformance/answer/result-first":
        delay_channel_body(request.response)
        return ApiResponse(status=201, headers={"X-Step": "h3", "Content-Type": "text/x-step"},
                           body={"b": 1, "a": [1.5e-7, 1e16, "ü"]})
    if path == "/conformance/answer/plain-status":
        delay_channel_body(request.response)
        # motia sends set_status 202 on the channel, but the result has no `status_code`.
        return {"status": 202, "body": {"plain": True}}
    if path == "/conformance/answer/no-body-key":
        delay_channel_body(request.response)
        return {"status_code": 409}
    if path == "/conformance/answer/nothing":
        return None  # motia writes nothing to the channel and never closes it
    # streamed: everything on the channel before the handler returns
    response = request.response
    await response.status(206)
    await response.headers({"X-Step": "h3", "Content-Type": "text/plain"})
    await response.writer.write(b"part one, ")
    await response.writer.write(b"part two")
    await response.writer.close_async()
    return None
