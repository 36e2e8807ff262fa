"""H2/H4: answers at once through the response channel, then reads the whole request body
(a streamed answer is not timed; the request body has no size limit)."""

import hashlib
import json

from motia import http

config = {
    "name": "Conf Http Stream First",
    "flows": ["conformance"],
    "triggers": [http("POST", "/conformance/body/stream-first")],
    "enqueues": [],
}


async def handler(request, ctx):
    response = request.response
    await response.status(200)
    await response.headers({"content-type": "application/json"})
    await response.writer.write(b" ")  # the first chunk: from here on the engine streams, untimed
    raw = await request.request_body.read_all()
    await response.writer.write(json.dumps({"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}).encode())
    await response.writer.close_async()
    return None
