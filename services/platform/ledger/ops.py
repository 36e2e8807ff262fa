"""The operators' view of the ledger, shared by the HTTP steps (GET /ops/ledger,
POST /ops/ledger/replay) and the CLI (`python -m services.platform.ledger`). Framework-free.

Authorization: `Authorization: Bearer <OPS_TOKEN>`, compared in constant time (services.platform.auth); no token
configured → 503 (the endpoints are off), missing/wrong → 401. The token is never logged.

Input: `query_value`, `int_param` and `json_object` read every /ops endpoint's query and JSON body
(these and services.ops.api); bad input → OpsRejected(400).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.platform.auth import bearer_token, token_matches
from services.platform.ledger.policies import SyncKind
from services.platform.ledger.store import Ledger, MarkResult
from services.platform.rejected import Rejected

MAX_LIMIT = 1000
MAX_REPLAY_IDS = 1000


class OpsRejected(Rejected):
    """An operators' request refused (no OPS_TOKEN, a wrong one, bad parameters)."""


def authorize(headers: Mapping[str, Any] | None, expected: str | None) -> None:
    """Raise OpsRejected(503) when no OPS_TOKEN is configured, (401) without the right bearer token."""
    if not expected:
        raise OpsRejected(503, "operator API disabled: OPS_TOKEN is not configured")
    if not token_matches(bearer_token(headers), expected):
        raise OpsRejected(401, "missing or wrong bearer token")


def query_value(value: Any) -> Any:
    """A query parameter's value: the first of a repeated one."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def int_param(value: Any, name: str, low: int, high: int, default: int) -> int:
    """A query parameter as an integer in [low, high] (`default` when absent); OpsRejected(400) otherwise."""
    value = query_value(value)
    if value in (None, ""):
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise OpsRejected(400, f"{name} must be an integer, got {str(value)[:40]!r}") from None
    if not low <= number <= high:
        raise OpsRejected(400, f"{name} must be between {low} and {high}")
    return number


def json_object(body: Any, allowed: set[str], shape: str) -> Mapping[str, Any]:
    """A JSON body as an object with only `allowed` fields ({} when empty); OpsRejected(400) otherwise."""
    if body in (None, "", b""):
        return {}
    if not isinstance(body, Mapping):
        raise OpsRejected(400, f"body must be a JSON object {shape}")
    unknown = set(body) - allowed
    if unknown:
        raise OpsRejected(400, f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    return body


def parse_kind(value: Any) -> SyncKind | None:
    value = query_value(value)
    if value in (None, ""):
        return None
    try:
        return SyncKind(str(value))
    except ValueError:
        allowed = ", ".join(k.value for k in SyncKind)
        raise OpsRejected(400, f"unknown kind {value!r} (one of: {allowed})") from None


def parse_view_query(query: Mapping[str, Any] | None) -> tuple[SyncKind | None, bool, int]:
    """`?kind=document&dead=1&limit=100` → (kind, dead, limit)."""
    q = query or {}
    dead = str(query_value(q.get("dead")) or "").strip().lower() in ("1", "true", "yes")
    limit = int_param(q.get("limit"), "limit", 1, MAX_LIMIT, 100)
    return parse_kind(q.get("kind")), dead, limit


def parse_replay_body(body: Any) -> tuple[SyncKind | None, list[str] | None]:
    """`{"kind"?: "document", "ids"?: ["..."]}` → (kind, ids); no ids = every dead mark."""
    body = json_object(body, {"kind", "ids"}, '{"kind"?, "ids"?}')
    ids = body.get("ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            raise OpsRejected(400, "ids must be a list of entity ids")
        if len(ids) > MAX_REPLAY_IDS:
            raise OpsRejected(400, f"at most {MAX_REPLAY_IDS} ids per request")
    return parse_kind(body.get("kind")), ids


async def ledger_view(ledger: Ledger, *, kind: SyncKind | None = None, dead: bool = False, limit: int = 100) -> dict[str, Any]:
    """Counts per kind plus the dead (or the live: pending, retrying) marks."""
    marks = await (ledger.dead(kind, limit=limit) if dead else ledger.live(kind, limit=limit))
    return {
        "stats": await ledger.stats(),
        "list": "dead" if dead else "live",
        "kind": kind.value if kind else None,
        "marks": [m.as_json() for m in marks],
    }


def replay_summary(replayed: list[MarkResult], enqueued: int) -> dict[str, Any]:
    return {
        "replayed": len(replayed),
        "enqueued": enqueued,
        "marks": [{"kind": m.kind.value, "entity_id": m.entity_id, "seq": m.seq} for m in replayed],
    }
