"""HTTP answers of the steps (Motia's ApiResponse)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from motia import ApiResponse


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> ApiResponse:
    """An ApiResponse with a JSON content type (status survives the real engine's result path)."""
    return ApiResponse(status=status, body=body, headers={"Content-Type": "application/json", **(headers or {})})
