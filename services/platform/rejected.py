"""A request refused before any work is done: the one shape every HTTP entry point of ours
answers a refusal with (framework-free).

`status` is the HTTP status (a 4xx with the reason for bad input, 401/429 for a caller,
503 for an endpoint that is switched off) and `reason` says why, in words the caller can act
on; the answer's body is `{"error": reason}`. Each entry point raises its own subclass
(WebhookRejected, OpsRejected, the calendar API's RequestRejected, the proxy's ProxyError),
so a step catches only the refusals of its own checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Rejected(Exception):
    """The whole request is refused (nothing done, nothing queued)."""

    status: int
    reason: str

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""
        return {"error": self.reason}

    def __str__(self) -> str:
        return f"{self.status}: {self.reason}"
