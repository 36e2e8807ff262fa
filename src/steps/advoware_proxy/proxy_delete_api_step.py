"""`DELETE /advoware/proxy?endpoint=<path>`: forwards a DELETE to the Advoware API (see README.md).

Thin: authentication, endpoint validation and forwarding live in services.proxy.advoware;
the answer goes through src.glue.proxy (the response channel).
"""

from motia import http

from services.proxy.advoware import PROXY_PATH, ProxyMethod
from src.glue.proxy import handle_proxy_request

config = {
    "name": "Advoware Proxy DELETE",
    "description": "Forwards DELETE requests to the Advoware API with the cached bearer token (caller needs the proxy token)",
    "flows": ["advoware-proxy"],
    "triggers": [http(ProxyMethod.DELETE.value, PROXY_PATH)],
    "enqueues": [],
}


async def handler(request, ctx):
    return await handle_proxy_request(ProxyMethod.DELETE, request, ctx)
