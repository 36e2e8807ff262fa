"""The Advoware proxy step's glue: run services.proxy.advoware.proxy_request (caller check,
endpoint and body validation, forwarding) and answer through the engine's response channel.

Why the channel (views.rs 380-465 at iii/v0.8.3): a handler's returned result that reaches the
engine before the response channel's body is answered as `Json(body)` with `status_code`
alone: headers are dropped and bytes cannot be sent at all. The proxy therefore writes
status, headers and body to the response channel itself, closes it and returns nothing;
without a response channel (a unit test's mock request) it returns the Motia `ApiResponse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from motia import ApiResponse

from services.platform.logging import get_service_logger
from services.proxy.advoware import ProxyMethod, proxy_request
from services.proxy.http import body_bytes


async def send_answer(request: Any, status: int, headers: Mapping[str, str], body: Any, log: Any = None) -> ApiResponse | None:
    """Answer through the response channel (status, headers, body, close) and return None;
    without a channel writer, return the equivalent Motia ApiResponse instead."""
    response = getattr(request, "response", None)
    writer = getattr(response, "writer", None)
    if response is None or writer is None or not hasattr(writer, "close_async"):
        return ApiResponse(status=status, body=body, headers=dict(headers))
    try:
        await response.status(status)
        if headers:
            await response.headers(dict(headers))
        data = body_bytes(body)
        if data:
            await writer.write(data)
        await writer.close_async()
    except Exception as exc:  # noqa: BLE001 - the engine has answered already (e.g. its timeout)
        if log is not None:
            log.warn(f"advoware proxy answer not delivered: {type(exc).__name__}", {"status": status})
    return None


async def handle_proxy_request(method: ProxyMethod | str, request: Any, ctx: Any, **options: Any) -> ApiResponse | None:
    """The whole proxy step: authenticate, validate, forward (services.proxy.advoware), answer.
    `options` (`settings`, `client`) go to services.proxy.advoware.proxy_request unchanged.
    The answer is written to the response channel (status, headers and bytes survive the real
    engine) and None is returned; without a channel (a mock request) the ApiResponse is
    returned instead."""
    result = await proxy_request(method, request, ctx, **options)
    return await send_answer(request, result.status, result.headers, result.body, get_service_logger("advoware_proxy", ctx))
