"""POST /cfr/emit {topic, data}: enqueue exactly what was posted (the worker's enqueue path)."""

from motia import http

config = {
    "name": "Conf Redis Emit",
    "flows": ["conformance-redis"],
    "triggers": [http("POST", "/cfr/emit")],
    "enqueues": ["cfr.basic", "cfr.fail", "cfr.fanout", "cfr.burst"],
}


async def handler(request, ctx):
    await ctx.enqueue(request.body)
    return {"status": 200, "body": {"trace_id": ctx.trace_id}}
