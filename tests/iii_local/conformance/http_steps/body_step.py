"""H1/H2: what a worker gets for a request body, and what reading the request channel does."""

import hashlib
import time

from motia import http

config = {
    "name": "Conf Http Body",
    "flows": ["conformance"],
    "triggers": [http("POST", "/conformance/body/parsed"), http("POST", "/conformance/body/read")],
    "enqueues": [],
}


def _key_orders(value, path="$"):
    """The key order of every object in `value`, as the worker received it."""
    orders = {}
    if isinstance(value, dict):
        orders[path] = list(value)
        for k, v in value.items():
            orders.update(_key_orders(v, f"{path}.{k}"))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            orders.update(_key_orders(v, f"{path}[{i}]"))
    return orders


async def handler(request, ctx):
    if ctx.trigger.path == "/conformance/body/parsed":
        # Never touches request_body: the parsed value is all there is for JSON.
        return {"status_code": 200, "body": {"body": request.body, "key_orders": _key_orders(request.body)}}
    started = time.monotonic()
    raw = await request.request_body.read_all()
    waited = time.monotonic() - started
    record = {"bytes": len(raw), "waited": round(waited, 3), "body_is_none": request.body is None}
    await ctx.state.set("conformance.body", request.headers.get("x-test-id", "none"), record)
    return {"status_code": 200, "body": {**record, "sha256": hashlib.sha256(raw).hexdigest()}}
