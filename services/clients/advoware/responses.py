"""Advoware's answers as the client sees them: `AdvowareResponse` (an answer as it came, for
the proxy), `message_of` (the error text of an ASP.NET answer: `Message` plus `ModelState`)
and `ResponseTooLargeError`. Knows nothing of Motia.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.clients.errors import PermanentError

SERVICE = "advoware"
"""The service name every Advoware error carries."""


def message_of(body: bytes) -> str:
    """The error text of an Advoware answer: ASP.NET `Message` (+ `ModelState`), else the text."""
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(doc, str):
        return doc[:300]
    if not isinstance(doc, dict):
        return text[:300]
    message = ""
    for key in ("Message", "message", "ExceptionMessage", "error", "error_description", "title"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            message = value
            break
    details: list[str] = []
    state = doc.get("ModelState") or doc.get("errors")
    if isinstance(state, dict):
        for value in state.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and item and item != message:
                    details.append(item)
    if details:
        message = f"{message} ({'; '.join(details)})" if message else "; ".join(details)
    return (message or text)[:300]



@dataclass(frozen=True)
class AdvowareResponse:
    """An Advoware answer as it came, for the proxy (no exception on 4xx/5xx)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    content_type: str

    @property
    def ok(self) -> bool:
        return self.status < 400

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The parsed JSON body, or None when the body is empty."""
        return json.loads(self.body) if self.body.strip() else None


class ResponseTooLargeError(PermanentError):
    """Advoware's answer exceeded `max_response_bytes`."""

    def __init__(self, limit: int, status: int) -> None:
        super().__init__(f"{SERVICE}: response larger than {limit} bytes (status {status})")
        self.limit = limit
        self.status = status
