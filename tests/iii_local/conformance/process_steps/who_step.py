"""GET /p/who → the pid of the worker process that ran the handler."""

import os

from motia import http

config = {"name": "P Who", "flows": ["conformance"], "triggers": [http("GET", "/p/who")], "enqueues": []}


async def handler(request, ctx):
    return {"status": 200, "body": {"pid": os.getpid()}}
