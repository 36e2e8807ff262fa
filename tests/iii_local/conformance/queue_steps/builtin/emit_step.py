"""POST /cf/emit {topic, data, messageGroupId?}: enqueue exactly what was posted (the worker's enqueue path)."""

from motia import http

config = {
    "name": "Conf Emit",
    "flows": ["conformance"],
    "triggers": [http("POST", "/cf/emit")],
    "enqueues": ["cf.compete", "cf.retry", "cf.fifo", "cf.hang", "cf.limited", "cf.persist"],
}


async def handler(request, ctx):
    await ctx.enqueue(request.body)
    return {"status": 200, "body": {"trace_id": ctx.trace_id}}
