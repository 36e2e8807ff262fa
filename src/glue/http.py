"""HTTP answers of the steps.

Two ways, because of the real engine's result path (engine 0.8.3, row H3 of ARCHITECTURE.md;
views.rs 380-465 at iii/v0.8.3): a handler's returned result that reaches the engine before the
response channel's body is answered as `Json(body)` with `status_code` alone, headers dropped.
- `json_response`: a Motia `ApiResponse` for JSON answers (the status survives; the body is
  JSON either way).
- `send_answer`: status, headers and raw bytes written to the response channel itself (then
  closed, the handler returns None), for answers whose headers or bytes matter: the Advoware
  proxy's, the operators' page (text/html, its CSP). Without a response channel (a unit test's
  mock request) it returns the equivalent `ApiResponse` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from motia import ApiResponse

from services.proxy.http import body_bytes


def json_response(status: int, body: Any) -> ApiResponse:
    """An ApiResponse with a JSON content type (status survives the real engine's result path)."""
    return ApiResponse(status=status, body=body, headers={"Content-Type": "application/json"})


async def send_answer(request: Any, status: int, headers: Mapping[str, str], body: Any, log: Any = None,
                      what: str = "answer") -> ApiResponse | None:
    """Answer through the response channel (status, headers, body, close) and return None;
    without a channel writer, return the equivalent Motia ApiResponse instead. A channel the
    engine has closed already (its timeout) is logged as a warning through `log`."""
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
            log.warn(f"{what} not delivered: {type(exc).__name__}", {"status": status})
    return None
