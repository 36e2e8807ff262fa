"""`DELETE /advoware/proxy?endpoint=<path>`: forwards a DELETE to the Advoware API (see README.md).

Thin: authentication, endpoint validation and forwarding live in services.proxy.advoware;
the answer goes through src.glue.proxy (the response channel).
"""

from services.proxy.advoware import ProxyMethod
from src.glue.steps import proxy_step

config, handler = proxy_step(ProxyMethod.DELETE)
