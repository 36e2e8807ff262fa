"""The operators' JSON API: what each endpoint takes and answers (the steps in src/steps/system/
are thin; the page at /ops/ and the `bitbylaw-ops` command are its clients). Framework-free.

Every endpoint needs `Authorization: Bearer <OPS_TOKEN>` (compared in constant time,
services.platform.ledger.ops.authorize): no OPS_TOKEN configured → 503 (the API is off), a
missing or wrong token → 401; past ADVOWARE_PROXY_AUTH_FAILURE_LIMIT wrong tokens from one client
address, 429 until the window ends (src/glue/ops.check_token). There is no open mode, on loopback
or elsewhere. Bad input → 400 `{"error": "<reason>"}`; Redis (ledger, reports) unreachable → 503
`{"error"}`; a system the answer reads from that fails is named in the answer's `errors` instead (200).

| method | path | takes | answers |
| --- | --- | --- | --- |
| GET | `/ops/search?q=&limit=` | `q`: 1-200 characters (an EspoCRM id or name, an xAI file or collection id, a BetNr, a Kürzel); `limit` 1-50 per type (10) | 200 `{query, results: [{entity, name, matched}], errors}`; `matched`: `id`, `name`, `xaiId`, `xaiCollectionId`, `advowareId`, `kuerzel` |
| GET | `/ops/entities/{type}/{id}` | `type`: `document`, `party`, `bank_account`, `account`, `eviction_case`, `employee` (or the EspoCRM type); `id`: EspoCRM id or Kürzel | 200 the view: `{entity, name, found, state, summary, problems, notes, espocrm, counterparts, ledger, deletion_guard: {held, tombstones}, activity, errors, calls, read_at, actions}`; `state`: `not_found`, `dead`, `attention`, `syncing`, `in_sync`, `unknown` |
| POST | `/ops/entities/{type}/{id}/resync` | optional `{"full": bool}` (employees; default true) | 202 `{entity, queued: [{kind, entity_id, seq, outcome, topic}], prepared: [...]}`; 404 an employee without a calendar |
| GET | `/ops/audit?history=N` | `history` 0-30 summaries (10) | 200 `{report, history}`: the last report (null before the first audit), each finding with `repaired` (the repair queued from it, or null) |
| POST | `/ops/audit/run` | optional `{"checks": [...], "repair": bool}`; checks of `collections`, `documents`, `parties`, `bank_accounts`, `calendar` | 200 the new report (kept as the last), with `repairs` when `repair`; it stops after HTTP_AUDIT_SECONDS (the engine answers 504 after its REST timeout) |
| POST | `/ops/audit/repair` | `{"ids": [finding ids]}` or `{"all": true}` | 200 `{report_id, outcomes: [{finding_id, status, detail, marks}], queued, skipped, failed, unknown}`; 404 before the first audit |
| GET | `/ops/ledger?kind=&dead=1&limit=` | services.platform.ledger.ops | 200 `{stats, list, kind, marks}` |
| POST | `/ops/ledger/replay` | `{"kind"?, "ids"?}` | 200 `{replayed, enqueued, marks}` |

An entity `{type, id, espocrm_type, path}` names what the page links to (`path` is its view).
A report: `{id, started_at, finished_at, trigger, complete, findings_total, by_type, counts,
calls, calls_by_service, max_calls, max_seconds, checks: [{check, complete, note, examined,
calls, seconds, skipped_busy}], not_run, findings: [{id, type, subject, summary, why, key,
entity, details, repair: {action, description, events, record} | null, hint}], text}`; `text`
is the report in words. A repair outcome's `status`: `queued`, `skipped` (no automatic repair:
its hint), `failed`, `unknown` (no such finding in the last report).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.ops.audit.model import Check
from services.ops.audit.repair import MAX_REPAIRS
from services.ops.audit.store import HISTORY
from services.ops.search import DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY
from services.platform.ledger.ops import OpsRejected, int_param, json_object, query_value

HTTP_AUDIT_SECONDS = 20.0
"""An audit started over HTTP stops after this (below the engine's default REST timeout of 30 s,
III_REST_TIMEOUT_MS); the nightly cron has OPS_AUDIT_MAX_SECONDS."""


def _bool(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise OpsRejected(400, f"{name} must be true or false")
    return value


def parse_search(query: Mapping[str, Any] | None) -> tuple[str, int]:
    """`?q=...&limit=...` → (q, limit)."""
    q = str(query_value((query or {}).get("q")) or "").strip()
    if not q:
        raise OpsRejected(400, "q is required: an id or a name")
    if len(q) > MAX_QUERY or any(ord(c) < 32 for c in q):
        raise OpsRejected(400, f"q must be at most {MAX_QUERY} printable characters")
    return q, int_param((query or {}).get("limit"), "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)


def parse_resync(body: Any) -> bool:
    """`{"full"?: bool}` → full (default True)."""
    return _bool(json_object(body, {"full"}, '{"full"?}').get("full"), "full", True)


def parse_history(query: Mapping[str, Any] | None) -> int:
    return int_param((query or {}).get("history"), "history", 0, HISTORY, 10)


def parse_run(body: Any) -> tuple[list[Check] | None, bool]:
    """`{"checks"?: [...], "repair"?: bool}` → (checks or None for all, repair)."""
    data = json_object(body, {"checks", "repair"}, '{"checks"?, "repair"?}')
    raw = data.get("checks")
    checks: list[Check] | None = None
    if raw is not None:
        if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
            raise OpsRejected(400, "checks must be a non-empty list of names")
        try:
            checks = [Check(c) for c in raw]
        except ValueError:
            raise OpsRejected(400, f"unknown check in {raw!r} (checks: {', '.join(c.value for c in Check)})") from None
    return checks, _bool(data.get("repair"), "repair", False)


def parse_repair(body: Any) -> list[str] | None:
    """`{"ids": [...]}` → the ids; `{"all": true}` → None (every repairable finding)."""
    data = json_object(body, {"ids", "all"}, '{"ids": [...]} or {"all": true}')
    ids, everything = data.get("ids"), _bool(data.get("all"), "all", False)
    if everything and ids is None:
        return None
    if ids is None or everything:
        raise OpsRejected(400, 'name the findings ({"ids": [...]}) or ask for all ({"all": true}), not both or neither')
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in ids):
        raise OpsRejected(400, "ids must be a non-empty list of finding ids")
    if len(ids) > MAX_REPAIRS:
        raise OpsRejected(400, f"at most {MAX_REPAIRS} ids per request")
    return list(dict.fromkeys(ids))


__all__ = ["HTTP_AUDIT_SECONDS", "OpsRejected", "parse_history", "parse_repair", "parse_resync", "parse_run", "parse_search"]
