"""The Advoware proxy's side of the engine's HTTP contract: how it gets the request body and
how it answers, so that it works on the real iii engine 0.8.3 (and the stand-in that copies it).

Request body (engine/src/modules/rest_api/views.rs 246-289 at iii/v0.8.3):
- Content type containing `application/json` (the engine's own, case-sensitive test): the
  engine has parsed the body into `request.body` and keeps the request channel open and
  empty until the answer, so the channel is **never read**. The parsed value is re-encoded
  as compact JSON (the engine sorted the object keys). A JSON content type with a body the
  engine could not parse (or a literal `null`) arrives as `None` → 400.
- Any other content type: `request.body` is None and the raw bytes come through the request
  channel. They are read up to the proxy's limit: past it the read stops and the answer is
  413; a body shorter than its declared Content-Length (the client went away; the engine
  just ends the stream) is refused with 400. Nothing cut short is ever passed on.
- A declared Content-Length above the limit is refused with 413 before anything is read.

Answer: `body_bytes` is what goes into the response channel; writing it (status, headers,
bytes, close: views.rs 380-465) is the step glue's, src/glue/http.py `send_answer`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.platform.auth import header_value
from services.platform.rejected import Rejected

ENGINE_JSON_MARK = "application/json"
"""views.rs 251: `content_type.contains("application/json")` decides parsed vs streamed."""


@dataclass
class ProxyError(Rejected):
    """The proxy itself answers (nothing, or nothing more, goes to Advoware), with `headers`
    of its own (Retry-After, WWW-Authenticate)."""

    headers: dict[str, str] = field(default_factory=dict)


def engine_parsed_json(headers: Mapping[str, Any] | None) -> bool:
    """True when the engine parsed the body into `request.body` (and holds the channel)."""
    return ENGINE_JSON_MARK in header_value(headers, "content-type")


def declared_length(headers: Mapping[str, Any] | None) -> int | None:
    value = header_value(headers, "content-length").strip()
    return int(value) if value.isdigit() else None


def _too_large(limit: int) -> ProxyError:
    return ProxyError(413, f"request body larger than {limit} bytes")


async def _read_stream(reader: Any, limit: int) -> bytes:
    """The channel's bytes; ProxyError 413 as soon as more than `limit` arrive (the rest is
    not read: the reader is closed)."""
    if not hasattr(reader, "__aiter__"):
        data = await reader.read_all()
        if len(data) > limit:
            raise _too_large(limit)
        return bytes(data)
    buf = bytearray()
    async for chunk in reader:
        buf += chunk
        if len(buf) > limit:
            close = getattr(reader, "close_async", None)
            if close is not None:
                await close()
            raise _too_large(limit)
    return bytes(buf)


async def read_body(request: Any, limit: int) -> bytes | None:
    """The body to send to Advoware (None when there is none), by the rules above."""
    headers = getattr(request, "headers", None)
    declared = declared_length(headers)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    if engine_parsed_json(headers):
        parsed = getattr(request, "body", None)
        if parsed is None:
            if declared or header_value(headers, "transfer-encoding"):
                raise ProxyError(400, "the JSON request body could not be parsed (invalid JSON or a literal null); "
                                      "send other content with a non-JSON Content-Type")
            return None
        raw = json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if len(raw) > limit:
            raise _too_large(limit)
        return raw
    reader = getattr(request, "request_body", None)
    if reader is None:
        return None
    try:
        raw = await _read_stream(reader, limit)
    except ProxyError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken channel: refuse rather than send a part
        raise ProxyError(400, "the request body could not be read completely") from exc
    if declared is not None and len(raw) != declared:
        raise ProxyError(400, f"the request body ended after {len(raw)} of {declared} declared bytes")
    return raw or None


def body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    return json.dumps(body, ensure_ascii=False).encode("utf-8")
