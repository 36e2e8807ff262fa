"""Topics, queue payloads and the request checks of the calendar sync steps (pure, no I/O).

Topics: `calendar.sync.all` (fan out to every mapped employee) and
`calendar.sync.employee` (one employee). Payloads are `SyncAllJob` / `EmployeeSyncJob`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from services.clients.errors import ValidationError
from services.platform.models import SyncSource
from services.platform.rejected import Rejected

TOPIC_SYNC_ALL = "calendar.sync.all"
TOPIC_SYNC_EMPLOYEE = "calendar.sync.employee"
API_PATH = "/advoware/calendar/sync"
CRON_EXPRESSION = "0 */15 * * * *"


class _Job(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    full: bool = False
    """Ignore the Google sync token and list the whole window again."""
    source: SyncSource = SyncSource.MANUAL
    requested_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_queue(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class SyncAllJob(_Job):
    """Payload of `calendar.sync.all`."""


class EmployeeSyncJob(_Job):
    """Payload of `calendar.sync.employee`."""

    kuerzel: str

    @field_validator("kuerzel")
    @classmethod
    def _kuerzel(cls, value: str) -> str:
        value = value.strip()
        if not value or any(c.isspace() or c == ":" for c in value) or len(value) > 50:
            raise ValueError("Kürzel must be non-empty, without whitespace or ':'")
        return value


class SyncRequest(BaseModel):
    """Body of `POST /advoware/calendar/sync` (all fields optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kuerzel: str | None = None
    full: bool = False


J = TypeVar("J", bound=_Job)


def parse_job(model: type[J], data: Any) -> J:
    try:
        return model.model_validate(data if data is not None else {})
    except PydanticValidationError as exc:
        raise ValidationError(f"invalid {model.__name__}: {exc.errors(include_url=False)}") from exc


class RequestRejected(Rejected):
    """A calendar sync request refused: bad body (400), unknown Kürzel (404)."""


def parse_request(body: Any, query: Mapping[str, Any], mapping: Mapping[str, str]) -> SyncRequest:
    """The request from the JSON body (or the query string: `?kuerzel=MM&full=true`)."""
    data: dict[str, Any] = {}
    if body not in (None, "", b""):
        if not isinstance(body, Mapping):
            raise RequestRejected(400, "body must be a JSON object")
        data.update(body)
    for key in ("kuerzel", "full"):
        if key in query and key not in data:
            value: Any = query[key]
            if isinstance(value, list):
                value = value[0] if value else None
            if key == "full" and isinstance(value, str):
                value = value.strip().lower() in ("1", "true", "yes", "ja")
            data[key] = value
    try:
        req = SyncRequest.model_validate(data)
    except PydanticValidationError as exc:
        raise RequestRejected(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from exc
    if req.kuerzel is not None:
        kuerzel = req.kuerzel.strip()
        match = next((k for k in mapping if k.upper() == kuerzel.upper()), None)
        if match is None:
            raise RequestRejected(404, f"no calendar mapping for Kürzel {kuerzel!r}")
        req = SyncRequest(kuerzel=match, full=req.full)
    return req


def employee_jobs(mapping: Mapping[str, str], *, full: bool, source: SyncSource) -> list[dict[str, Any]]:
    """One `calendar.sync.employee` event per mapped employee."""
    return [
        {"topic": TOPIC_SYNC_EMPLOYEE, "data": EmployeeSyncJob(kuerzel=k, full=full, source=source).to_queue()}
        for k in sorted(mapping)
    ]


__all__ = [
    "API_PATH",
    "CRON_EXPRESSION",
    "EmployeeSyncJob",
    "RequestRejected",
    "SyncAllJob",
    "SyncRequest",
    "TOPIC_SYNC_ALL",
    "TOPIC_SYNC_EMPLOYEE",
    "employee_jobs",
    "parse_job",
    "parse_request",
]
