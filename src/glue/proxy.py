"""The Advoware proxy step's glue: run services.proxy.advoware.proxy_request (caller check,
endpoint and body validation, forwarding) and answer through the engine's response channel.

Why the channel (views.rs 380-465 at iii/v0.8.3): a handler's returned result that reaches the
engine before the response channel's body is answered as `Json(body)` with `status_code`
alone: headers are dropped and bytes cannot be sent at all. The proxy therefore writes
status, headers and body to the response channel itself (src.glue.http.send_answer), closes
it and returns nothing; without a response channel (a unit test's mock request) it returns
the Motia `ApiResponse`.
"""

from __future__ import annotations

from typing import Any

from motia import ApiResponse

from services.platform.logging import get_service_logger
from services.proxy.advoware import ProxyMethod, proxy_request
from src.glue.http import send_answer


async def handle_proxy_request(method: ProxyMethod | str, request: Any, ctx: Any, **options: Any) -> ApiResponse | None:
    """The whole proxy step: authenticate, validate, forward (services.proxy.advoware), answer.
    `options` (`settings`, `client`) go to services.proxy.advoware.proxy_request unchanged.
    The answer is written to the response channel (status, headers and bytes survive the real
    engine) and None is returned; without a channel (a mock request) the ApiResponse is
    returned instead."""
    result = await proxy_request(method, request, ctx, **options)
    return await send_answer(request, result.status, result.headers, result.body, get_service_logger("advoware_proxy", ctx),
                             "advoware proxy answer")
