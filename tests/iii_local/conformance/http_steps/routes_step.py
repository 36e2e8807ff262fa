"""H4/H5: routes, path parameters, methods; a slow route for the concurrency limit."""

import asyncio

from motia import http

config = {
    "name": "Conf Http Routes",
    "flows": ["conformance"],
    "triggers": [
        http("GET", "/conformance/items/:id"),
        http("POST", "/conformance/items/:id"),
        http("GET", "/conformance/items/special"),
        http("GET", "/conformance/slow"),
        http("GET", "/conformance/slow-too"),
    ],
    "enqueues": [],
}


async def handler(request, ctx):
    if ctx.trigger.path in ("/conformance/slow", "/conformance/slow-too"):
        await asyncio.sleep(float(request.query_params.get("s", "0.6")))
        return {"status_code": 200, "body": {"slept": True}}
    return {"status_code": 200, "body": {"route": ctx.trigger.path, "method": request.method,
                                         "path_params": request.path_params, "query_params": request.query_params,
                                         "trace_id": ctx.trace_id}}
