"""Simulator of the EspoCRM REST API (`/api/v1`, see external-apis.md §1).

Faithful to EspoCRM where it is documented or visible in its source:
- Auth: `X-Api-Key`, `X-Hmac-Authorization` (`base64(key + ":" + hex(HMAC-SHA256(secret, "METHOD /path")))`,
  path after `/api/v1`, no query), `Authorization: Basic` (and `Espo-Authorization`). When the
  simulator has an HMAC secret, the key alone is refused (an HMAC API user can't use plain key
  auth). Failure → 401 with `X-Status-Reason`.
- Errors carry their reason in `X-Status-Reason`; bodies are empty except for a duplicate
  (409, reason `duplicate`, body = JSON list of the duplicates) and a validation failure
  (400, body `{"messageTranslation": {"label": "validationFailure", ...}}`).
- Lists: `maxSize` defaults to the limit 200 (as EspoCRM does when it is missing); more than 200
  → **403** "Max size should not exceed 200. Use offset and limit." `orderBy`/`order`, `select`
  (`id` always included), `where` as PHP bracket query or `searchParams` JSON, `X-No-Total: true`
  gives total -1 (more records) / -2 (no more). Default order `createdAt desc`; ties (and every
  order) are broken by `id` in the same direction, so offset paging is stable.
- String comparisons (equals, in, contains, like, ordering) ignore case like MySQL's `_ci` collation.
- Create answers **200** with the record (EspoCRM does not use 201); ids are 17 hex chars like
  `Util::generateId()` (uniqid + 4 random hex). `createdAt`/`modifiedAt` are `YYYY-MM-DD HH:MM:SS` UTC.
- Duplicate check on create (unless `X-Skip-Duplicate-Check: true`): for `CBeteiligte` and
  `Account`, a record with the same `name` (trimmed, case-insensitive) is a duplicate → 409.
- Update (PUT/PATCH) stores changed attributes only and answers the full record; `modifiedAt`
  moves only when something changed. Delete answers `true`.
- Enum fields of the project's data model are validated (see ENUM_OPTIONS) → 400.
- Relationships (see DEFAULT_LINKS) are symmetric; `{link}Ids` on create/update sets many-many
  links; a one-to-many link is stored as the child's `{link}Id`/`{link}Name`.
- Attachments: `POST Attachment` with a `data:` URI, `GET Attachment/file/{id}` raw bytes.
- Outgoing webhooks like EspoCRM's queue: per webhook, items are batched (≤ 50) into one signed
  JSON array (PHP `json_encode` bytes, `Signature` + legacy `X-Signature` headers). Only
  2xx/3xx succeed; 410 deletes the webhook; connection failure (0), 401, 403, 404, 405, 408, 500,
  503 are retried (real EspoCRM: 4 attempts, 10 minutes apart — here `webhook_attempts` and
  `webhook_retry_interval`, default 4 × 2 s); any other status fails at once. New items go out
  after a quiet period of `webhook_debounce` (50 ms; at the latest 1 s after the oldest, or at
  once when 50 are waiting), so bursts form batches (real EspoCRM sends from its cron job);
  one request per webhook is in flight at a time; sending never blocks API answers. `update` items hold the changed attributes (without `modifiedAt`) + `id`, only when
  something changed; `fieldUpdate.{field}` items hold `id` + the field's attributes.

Project-specific [I], emulating the firm's EspoCRM customisations:
- Link notifications: a webhook registered for `CDokumente.link` / `CDokumente.unlink` receives
  `[{"entityType": <other type>, "entityId": <other id>, "documentId": <doc id>}]` whenever a
  document is (un)linked from either side; for other types `{X}.link` items are
  `{"id", "entityType", "entityId"}`. EspoCRM core sends no `update` for link changes, nor do we.
- Document hook (`doc_hooks=True`): when a `CDokumente` record gets a new `fileId`, `fileName`,
  `md5sum` and `sha256` are filled from the attachment (unless given), a created document
  defaults to `fileStatus` `new`, and an update that replaces the file of a document whose
  status is not `new` sets `fileStatus` `changed` (unless given).

Admin (besides simulators.base): `POST /_sim/seed` loads
`{"entities": {"CDokumente": [...]}, "attachments": [{"id","name","type","contentBase64"|"path"}],
  "links": [{"entityType","id","link","foreignId"|"foreignIds"}],
  "webhooks": [{"id"?,"event","url","secretKey"?}]}` (paths relative to simulators/seed/);
`GET|DELETE /_sim/webhook-deliveries`; `GET /_sim/webhooks`; `POST /_sim/webhooks/flush?timeout=5`
(waits until no webhook item is pending); `GET /_sim/entities/{entityType}` (raw records).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import aiohttp
from aiohttp import web

from services.espocrm_webhooks import (
    MAX_BATCH_SIZE,
    WebhookAction,
    WebhookEvent,
    legacy_signature,
    php_json_encode,
    sign_body,
)
from simulators.base import STATE_KEY, SimulatorState, make_app

API_PREFIX = "/api/v1"
SEED_DIR = Path(__file__).resolve().parent / "seed"
DEMO_SEED_PATH = SEED_DIR / "espocrm_demo.json"
MAX_SIZE_LIMIT = 200
REASON_HEADER = "X-Status-Reason"
ENTITY_NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
READ_ONLY_ATTRIBUTES = ("id", "createdAt", "modifiedAt", "deleted")
RETRY_STATUSES = frozenset({0, 401, 403, 404, 405, 408, 500, 503})
WEBHOOK_SKIP_ATTRIBUTES = frozenset({"isFollowed", "modifiedAt", "modifiedBy", "modifiedById", "modifiedByName"})


# --- data model of the firm's CRM ---------------------------------------------------------


class EntityTypeName(str, Enum):
    DOKUMENTE = "CDokumente"
    BETEILIGTE = "CBeteiligte"
    BANKVERBINDUNGEN = "CBankverbindungen"
    RAEUMUNGSKLAGE = "Raeumungsklage"
    ACCOUNT = "Account"
    ATTACHMENT = "Attachment"
    WEBHOOK = "Webhook"


class FileStatus(str, Enum):
    NEW = "new"
    CHANGED = "changed"
    SYNCED = "synced"


class XaiSyncStatus(str, Enum):
    NO_SYNC = "no_sync"
    PENDING_SYNC = "pending_sync"
    CLEAN = "clean"
    UNCLEAN = "unclean"
    FAILED = "failed"


class AdvowareSyncStatus(str, Enum):
    PENDING_SYNC = "pending_sync"
    CLEAN = "clean"
    FAILED = "failed"
    CONFLICT = "conflict"


class AccountStatus(str, Enum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"


class RaeumungsklageStatus(str, Enum):
    OFFEN = "Offen"
    ABGESCHLOSSEN = "Abgeschlossen"


def _options(enum_cls: type[Enum]) -> tuple[str, ...]:
    return tuple(str(m.value) for m in enum_cls)  # type: ignore[attr-defined]


ENUM_OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    EntityTypeName.DOKUMENTE.value: {
        "fileStatus": _options(FileStatus),
        "xaiSyncStatus": _options(XaiSyncStatus),
    },
    EntityTypeName.BETEILIGTE.value: {"syncStatus": _options(AdvowareSyncStatus)},
    EntityTypeName.BANKVERBINDUNGEN.value: {"syncStatus": _options(AdvowareSyncStatus)},
    EntityTypeName.ACCOUNT.value: {"status": _options(AccountStatus)},
    EntityTypeName.RAEUMUNGSKLAGE.value: {"status": _options(RaeumungsklageStatus)},
}

DUPLICATE_CHECK_TYPES: frozenset[str] = frozenset({EntityTypeName.BETEILIGTE.value, EntityTypeName.ACCOUNT.value})


class LinkKind(str, Enum):
    MANY_MANY = "manyMany"
    HAS_MANY = "hasMany"  # entity side has many; the foreign side belongsTo via `{foreign_link}Id`


@dataclass(frozen=True)
class LinkDef:
    """A symmetric relationship: `entity_type.link` <-> `foreign_type.foreign_link`."""

    entity_type: str
    link: str
    foreign_type: str
    foreign_link: str
    kind: LinkKind = LinkKind.MANY_MANY

    @property
    def fk(self) -> str:
        """For HAS_MANY: the child's foreign-key attribute."""
        return f"{self.foreign_link}Id"

    @property
    def fk_name(self) -> str:
        return f"{self.foreign_link}Name"


DEFAULT_LINKS: tuple[LinkDef, ...] = (
    LinkDef("CDokumente", "beteiligte", "CBeteiligte", "dokumente"),
    LinkDef("CDokumente", "raeumungsklagen", "Raeumungsklage", "dokumente"),
    LinkDef("CDokumente", "accounts", "Account", "dokumente"),
    LinkDef("CBeteiligte", "bankverbindungen", "CBankverbindungen", "beteiligte", LinkKind.HAS_MANY),
)


# --- helpers --------------------------------------------------------------------------------


class EspoError(Exception):
    """An error answer: status, `X-Status-Reason`, optional body."""

    def __init__(self, status: int, reason: str, body: Any = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body

    def response(self) -> web.Response:
        safe = self.reason.encode("latin-1", "replace").decode("latin-1").replace("\n", " ")
        headers = {REASON_HEADER: safe}
        if self.body is None:
            return web.Response(status=self.status, headers=headers)
        return web.json_response(self.body, status=self.status, headers=headers)


def now_str() -> str:
    return datetime.now(timezone.utc).strftime(DATETIME_FORMAT)


def generate_id() -> str:
    """17 hex chars like EspoCRM's `uniqid()` (8 + 5 hex) plus 4 random hex."""
    t = time.time()
    return f"{int(t):08x}{int((t % 1) * 1_000_000):05x}{secrets.token_hex(2)}"


def generate_secret() -> str:
    return secrets.token_hex(16)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def parse_php_query(items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Parse `a[0][b]=x&a[0][c][]=y` pairs into nested dicts like PHP's `$_GET`."""
    root: dict[str, Any] = {}
    key_re = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
    for key, value in items:
        m = key_re.match(key)
        if not m:
            root[key] = value
            continue
        parts = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))]
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            if part == "":
                ints = [int(k) for k in node if k.lstrip("-").isdigit()]
                part = str(max(ints) + 1 if ints else 0)
            if i == len(parts) - 1:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return root


def php_listify(obj: Any) -> Any:
    """Turn PHP-style dicts with integer keys into lists (in insertion order, like `foreach`)."""
    if isinstance(obj, dict):
        if obj and all(isinstance(k, str) and k.lstrip("-").isdigit() for k in obj):
            return [php_listify(v) for v in obj.values()]
        return {k: php_listify(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [php_listify(v) for v in obj]
    return obj


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _coerce(record_value: Any, query_value: Any) -> Any:
    """Query-string values are strings; compare them as the record's type."""
    if isinstance(query_value, str) and not isinstance(record_value, str):
        if isinstance(record_value, bool):
            return _truthy(query_value)
        if isinstance(record_value, (int, float)):
            try:
                return float(query_value)
            except ValueError:
                return query_value
    if isinstance(record_value, str) and isinstance(query_value, (int, float)) and not isinstance(query_value, bool):
        return str(query_value)
    return query_value


def _eq(record_value: Any, query_value: Any) -> bool:
    if record_value is None or query_value is None:
        return False
    q = _coerce(record_value, query_value)
    if isinstance(record_value, bool) != isinstance(q, bool):
        return False
    return bool(_norm(record_value) == _norm(q))


def _cmp(record_value: Any, query_value: Any) -> int | None:
    if record_value is None or query_value is None:
        return None
    a, b = _norm(record_value), _norm(_coerce(record_value, query_value))
    try:
        return (a > b) - (a < b)
    except TypeError:
        return None


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        if ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("^" + "".join(out) + "$", re.IGNORECASE | re.DOTALL)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _to_date(value: Any) -> date | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _to_datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _same(a: Any, b: Any) -> bool:
    """Strict equality for change detection (True != 1)."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, (bool, int, float)):
        return (1, float(value))
    if isinstance(value, str):
        return (2, value.casefold())
    return (3, json.dumps(value, sort_keys=True, default=str))


# --- search params and where ----------------------------------------------------------------


@dataclass
class SearchParams:
    where: list[dict[str, Any]] = field(default_factory=list)
    max_size: int = MAX_SIZE_LIMIT
    offset: int = 0
    order_by: str | None = None
    order: str = "DESC"
    select: list[str] | None = None


def _int_param(value: Any, name: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise EspoError(400, f"{name} must be integer.")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value.strip())
    raise EspoError(400, f"{name} must be integer.")


def parse_search_params(query_pairs: list[tuple[str, str]], max_size_limit: int = MAX_SIZE_LIMIT) -> SearchParams:
    """Search params from a request's query (PHP bracket style or `searchParams` JSON)."""
    flat = dict(query_pairs)
    if "searchParams" in flat:
        try:
            raw = json.loads(flat["searchParams"])
        except ValueError:
            raise EspoError(400, "Invalid search params JSON.") from None
        if not isinstance(raw, dict):
            raise EspoError(400, "Invalid search params JSON.")
    else:
        parsed = parse_php_query(query_pairs)
        raw = {
            "where": parsed.get("whereGroup", parsed.get("where")),
            "maxSize": parsed.get("maxSize"),
            "offset": parsed.get("offset"),
            "orderBy": parsed.get("orderBy") or parsed.get("sortBy"),
            "order": parsed.get("order"),
            "select": parsed.get("attributeSelect") or parsed.get("select"),
        }
        if not raw["order"] and parsed.get("asc"):
            raw["order"] = "ASC" if parsed.get("asc") == "true" else "DESC"
    where = php_listify(raw.get("where"))
    if not isinstance(where, list):
        where = []
    for item in where:
        if not isinstance(item, dict):
            raise EspoError(400, "Bad where item.")
    max_size = _int_param(raw.get("maxSize"), "maxSize")
    if max_size is None:
        max_size = max_size_limit
    if max_size > max_size_limit:
        raise EspoError(403, f"Max size should not exceed {max_size_limit}. Use offset and limit.")
    if max_size < 0:
        raise EspoError(400, "maxSize must be non-negative.")
    offset = _int_param(raw.get("offset"), "offset") or 0
    if offset < 0:
        raise EspoError(400, "offset must be non-negative.")
    order = raw.get("order")
    order = str(order).upper() if order else None
    if order is not None and order not in ("ASC", "DESC"):
        raise EspoError(400, "order value is bad.")
    select = raw.get("select")
    if isinstance(select, str):
        select = [s.strip() for s in select.split(",") if s.strip()]
    elif isinstance(select, dict):
        select = [str(s) for s in php_listify(select)] if php_listify(select) else None
    elif select is not None and not isinstance(select, list):
        raise EspoError(400, "select must be a list or comma-separated string.")
    order_by = raw.get("orderBy") or None
    if order_by is not None and not isinstance(order_by, str):
        raise EspoError(400, "orderBy must be string.")
    return SearchParams(
        where=where,
        max_size=max_size,
        offset=offset,
        order_by=order_by,
        order=order or ("ASC" if order_by else "DESC"),
        select=select or None,
    )


class WhereEvaluator:
    """Decides whether a record matches EspoCRM where items."""

    def __init__(self, related_ids: Callable[[str, str, str], list[str]], entity_type: str) -> None:
        self._related_ids = related_ids
        self._entity_type = entity_type

    def match_all(self, record: Mapping[str, Any], items: list[dict[str, Any]]) -> bool:
        return all(self.match(record, item) for item in items)

    def match(self, record: Mapping[str, Any], item: Any) -> bool:
        if not isinstance(item, dict):
            raise EspoError(400, "Bad where item.")
        kind = item.get("type")
        if not isinstance(kind, str) or not kind:
            raise EspoError(400, "Bad where item. No type.")
        value = item.get("value")
        if kind in ("and", "or", "not"):
            subs = _as_list(php_listify(value))
            if kind == "and":
                return all(self.match(record, s) for s in subs)
            if kind == "or":
                return any(self.match(record, s) for s in subs)
            return not all(self.match(record, s) for s in subs)
        attribute = item.get("attribute")
        if not isinstance(attribute, str) or not attribute:
            raise EspoError(400, f"Bad where item '{kind}'. No attribute.")
        handler = getattr(self, "_w_" + kind, None)
        if handler is None:
            raise EspoError(400, f"Unknown where item type '{kind}'.")
        return bool(handler(record, attribute, php_listify(value)))

    # comparison
    def _w_equals(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return _eq(r.get(a), v)

    def _w_notEquals(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return r.get(a) is not None and not _eq(r.get(a), v)

    def _w_in(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return any(_eq(r.get(a), x) for x in _as_list(v))

    def _w_notIn(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return r.get(a) is not None and not any(_eq(r.get(a), x) for x in _as_list(v))

    def _w_isNull(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return r.get(a) is None

    def _w_isNotNull(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return r.get(a) is not None

    def _w_isTrue(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return r.get(a) is True or r.get(a) == 1

    def _w_isFalse(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return r.get(a) is False or r.get(a) is None or r.get(a) == 0

    def _w_greaterThan(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        c = _cmp(r.get(a), v)
        return c is not None and c > 0

    def _w_lessThan(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        c = _cmp(r.get(a), v)
        return c is not None and c < 0

    def _w_greaterThanOrEquals(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        c = _cmp(r.get(a), v)
        return c is not None and c >= 0

    def _w_lessThanOrEquals(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        c = _cmp(r.get(a), v)
        return c is not None and c <= 0

    def _w_between(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        bounds = _as_list(v)
        if len(bounds) != 2:
            raise EspoError(400, "Bad where item 'between'. Value must be [from, to].")
        lo, hi = _cmp(r.get(a), bounds[0]), _cmp(r.get(a), bounds[1])
        return lo is not None and hi is not None and lo >= 0 and hi <= 0

    # text
    def _text(self, r: Mapping[str, Any], a: str) -> str | None:
        value = r.get(a)
        return None if value is None else str(value).casefold()

    def _w_contains(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        t = self._text(r, a)
        return t is not None and str(v).casefold() in t

    def _w_notContains(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        t = self._text(r, a)
        return t is not None and str(v).casefold() not in t

    def _w_startsWith(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        t = self._text(r, a)
        return t is not None and t.startswith(str(v).casefold())

    def _w_endsWith(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        t = self._text(r, a)
        return t is not None and t.endswith(str(v).casefold())

    def _w_like(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        value = r.get(a)
        return value is not None and bool(_like_regex(str(v)).match(str(value)))

    def _w_notLike(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        value = r.get(a)
        return value is not None and not _like_regex(str(v)).match(str(value))

    # arrays
    def _array(self, r: Mapping[str, Any], a: str) -> list[Any]:
        value = r.get(a)
        return value if isinstance(value, list) else []

    def _w_arrayAnyOf(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        have = self._array(r, a)
        return any(_eq(x, y) for x in have for y in _as_list(v))

    def _w_arrayNoneOf(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return not self._w_arrayAnyOf(r, a, v)

    def _w_arrayAllOf(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        have = self._array(r, a)
        return all(any(_eq(x, y) for x in have) for y in _as_list(v))

    def _w_arrayIsEmpty(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return not self._array(r, a)

    def _w_arrayIsNotEmpty(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return bool(self._array(r, a))

    # links: attribute is the link name
    def _linked(self, r: Mapping[str, Any], link: str) -> set[str]:
        return set(self._related_ids(self._entity_type, str(r.get("id")), link))

    def _w_linkedWith(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return bool(self._linked(r, a) & {str(x) for x in _as_list(v)})

    def _w_notLinkedWith(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return not self._w_linkedWith(r, a, v)

    def _w_isLinked(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return bool(self._linked(r, a))

    def _w_isNotLinked(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return not self._linked(r, a)

    # dates (UTC)
    def _date(self, r: Mapping[str, Any], a: str) -> date | None:
        return _to_date(r.get(a))

    def _w_today(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return self._date(r, a) == datetime.now(timezone.utc).date()

    def _w_on(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d = self._date(r, a)
        return d is not None and d == _to_date(v)

    def _w_past(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        dt = _to_datetime(r.get(a))
        return dt is not None and dt < datetime.now(timezone.utc)

    def _w_future(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        dt = _to_datetime(r.get(a))
        return dt is not None and dt > datetime.now(timezone.utc)

    def _days(self, v: Any) -> int:
        try:
            return int(v)
        except (TypeError, ValueError):
            raise EspoError(400, "Bad where item. Value must be a number of days.") from None

    def _w_lastSevenDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return self._w_lastXDays(r, a, 7)

    def _w_lastXDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d, today = self._date(r, a), datetime.now(timezone.utc).date()
        return d is not None and today - timedelta(days=self._days(v)) <= d <= today

    def _w_nextXDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d, today = self._date(r, a), datetime.now(timezone.utc).date()
        return d is not None and today <= d <= today + timedelta(days=self._days(v))

    def _w_olderThanXDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d = self._date(r, a)
        return d is not None and d < datetime.now(timezone.utc).date() - timedelta(days=self._days(v))

    def _w_afterXDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d = self._date(r, a)
        return d is not None and d > datetime.now(timezone.utc).date() + timedelta(days=self._days(v))


# --- outgoing webhooks ----------------------------------------------------------------------


@dataclass
class Webhook:
    id: str
    event: str
    url: str
    secret_key: str
    is_active: bool = True
    created_at: str = field(default_factory=now_str)

    def public(self) -> dict[str, Any]:
        parsed = WebhookEvent.parse(self.event)
        return {
            "id": self.id,
            "event": self.event,
            "url": self.url,
            "secretKey": self.secret_key,
            "isActive": self.is_active,
            "entityType": parsed.entity_type,
            "type": parsed.action.value,
            "field": parsed.field,
            "createdAt": self.created_at,
            "modifiedAt": self.created_at,
        }


@dataclass
class QueueItem:
    seq: int
    webhook_id: str
    event: str
    data: dict[str, Any]
    enqueued: float
    due: float
    attempts: int = 0


class WebhookDispatcher:
    """EspoCRM's webhook queue, in memory: batching, signing, retries, 410 handling."""

    def __init__(
        self,
        *,
        debounce: float = 0.05,
        batch_size: int = MAX_BATCH_SIZE,
        max_attempts: int = 4,
        retry_interval: float = 2.0,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.debounce = debounce
        self.max_wait = max(1.0, 10 * debounce)
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.retry_interval = retry_interval
        self.timeout = aiohttp.ClientTimeout(total=timeout, connect=connect_timeout)
        self.webhooks: dict[str, Webhook] = {}
        self.queue: list[QueueItem] = []
        self.deliveries: list[dict[str, Any]] = []
        self._seq = itertools.count(1)
        self._inflight: set[str] = set()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sends: set[asyncio.Task[None]] = set()

    # registry
    def register(self, event: str, url: str, *, webhook_id: str | None = None, secret_key: str | None = None) -> Webhook:
        WebhookEvent.parse(event)  # raises ValueError
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"Webhook url must be http(s): {url!r}")
        hook = Webhook(id=webhook_id or generate_id(), event=event, url=url, secret_key=secret_key or generate_secret())
        self.webhooks[hook.id] = hook
        return hook

    def remove(self, webhook_id: str) -> bool:
        found = self.webhooks.pop(webhook_id, None) is not None
        self.queue = [i for i in self.queue if i.webhook_id != webhook_id]
        return found

    def has_event(self, event: str) -> bool:
        return any(h.is_active and h.event == event for h in self.webhooks.values())

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Queue one item for every active webhook of `event`."""
        now = self._now()
        for hook in self.webhooks.values():
            if hook.is_active and hook.event == event:
                self.queue.append(QueueItem(next(self._seq), hook.id, event, dict(data), now, now))
        self._poke()

    def reset(self) -> None:
        self.webhooks.clear()
        self.queue.clear()
        self.deliveries.clear()
        self._poke()

    def pending(self) -> int:
        return len(self.queue)

    # lifecycle
    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._session = aiohttp.ClientSession(timeout=self.timeout)
        self._task = asyncio.create_task(self._run(), name="espocrm-webhook-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for task in list(self._sends):
            task.cancel()
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._task = None
        self._session = None

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        deadline = self._now() + timeout
        while self.queue or self._inflight:
            if self._now() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def _ready(self, items: list[QueueItem], now: float) -> tuple[list[QueueItem], float | None]:
        """The items of one webhook to send now, else when to look again.

        Fresh items wait for a quiet period of `debounce` (at most `max_wait` after the
        oldest, or until a full batch is there); retried items go as soon as they are due.
        """
        due = [i for i in items if i.due <= now]
        if any(i.attempts for i in due):
            return due[: self.batch_size], None
        if due:
            newest = max(i.enqueued for i in due)
            oldest = min(i.enqueued for i in due)
            if len(due) >= self.batch_size or now >= newest + self.debounce or now >= oldest + self.max_wait:
                return due[: self.batch_size], None
            return [], min(newest + self.debounce, oldest + self.max_wait)
        return [], min(i.due for i in items)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = self._now()
            next_due: float | None = None
            for webhook_id in list(dict.fromkeys(i.webhook_id for i in self.queue)):
                if webhook_id in self._inflight:
                    continue
                hook = self.webhooks.get(webhook_id)
                if hook is None:
                    self.queue = [i for i in self.queue if i.webhook_id != webhook_id]
                    continue
                batch, wake_at = self._ready([i for i in self.queue if i.webhook_id == webhook_id], now)
                if batch:
                    self._inflight.add(webhook_id)
                    task = asyncio.create_task(self._send(hook, batch))
                    self._sends.add(task)
                    task.add_done_callback(self._sends.discard)
                elif wake_at is not None:
                    next_due = wake_at if next_due is None else min(next_due, wake_at)
            timeout = None if next_due is None else max(0.0, next_due - now)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def _send(self, hook: Webhook, items: list[QueueItem]) -> None:
        try:
            body = php_json_encode([i.data for i in items])
            headers = {
                "Content-Type": "application/json",
                "Signature": sign_body(hook.id, hook.secret_key, body),
                "X-Signature": legacy_signature(hook.id, hook.secret_key, body),
            }
            code, error = 0, None
            assert self._session is not None
            try:
                async with self._session.post(hook.url, data=body, headers=headers) as resp:
                    code = resp.status
                    await resp.read()
            except asyncio.TimeoutError:
                code, error = 408, "timeout"
            except (aiohttp.ClientError, OSError) as exc:
                code, error = 0, f"{type(exc).__name__}: {exc}"
            self._settle(hook, items, code, error, body)
        finally:
            self._inflight.discard(hook.id)
            self._poke()

    def _settle(self, hook: Webhook, items: list[QueueItem], code: int, error: str | None, body: bytes) -> None:
        live = [i for i in items if i in self.queue]
        attempt = max((i.attempts for i in live), default=0) + 1
        if 200 <= code < 400:
            outcome = "success"
            self._drop(live)
        elif code == 410:
            outcome = "webhook_deleted"
            self.remove(hook.id)
        elif code in RETRY_STATUSES:
            outcome = "retry"
            for item in live:
                item.attempts += 1
                item.due = self._now() + self.retry_interval
            exhausted = [i for i in live if i.attempts >= self.max_attempts]
            if exhausted:
                outcome = "failed"
                self._drop(exhausted)
        else:
            outcome = "failed"
            self._drop(live)
        self.deliveries.append(
            {
                "webhookId": hook.id,
                "event": hook.event,
                "url": hook.url,
                "attempt": attempt,
                "status": code,
                "error": error,
                "outcome": outcome,
                "items": len(items),
                "body": body.decode("ascii"),
                "ts": time.time(),
            }
        )

    def _drop(self, items: list[QueueItem]) -> None:
        ids = {id(i) for i in items}
        self.queue = [i for i in self.queue if id(i) not in ids]


# --- the CRM state ----------------------------------------------------------------------------


@dataclass
class Attachment:
    id: str
    name: str
    type: str
    content: bytes
    role: str = "Attachment"
    related_type: str | None = None
    field_name: str | None = None
    parent_type: str | None = None
    parent_id: str | None = None
    created_at: str = field(default_factory=now_str)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "size": len(self.content),
            "role": self.role,
            "relatedType": self.related_type,
            "field": self.field_name,
            "parentType": self.parent_type,
            "parentId": self.parent_id,
            "createdAt": self.created_at,
        }


class EspoCRMState(SimulatorState):
    """Records, links, attachments and webhooks of one simulated EspoCRM."""

    def __init__(
        self,
        api_key: str,
        hmac_secret: str | None = None,
        basic: tuple[str, str] | None = None,
        *,
        dispatcher: WebhookDispatcher | None = None,
        links: Iterable[LinkDef] = DEFAULT_LINKS,
        doc_hooks: bool = True,
        max_size_limit: int = MAX_SIZE_LIMIT,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.hmac_secret = hmac_secret
        self.basic = basic
        self.doc_hooks = doc_hooks
        self.max_size_limit = max_size_limit
        self.dispatcher = dispatcher or WebhookDispatcher()
        self.entities: dict[str, dict[str, dict[str, Any]]] = {}
        self.attachments: dict[str, Attachment] = {}
        self.link_defs: list[LinkDef] = []
        self._sides: dict[tuple[str, str], tuple[LinkDef, bool]] = {}
        self._fwd: dict[LinkDef, dict[str, set[str]]] = {}
        self._rev: dict[LinkDef, dict[str, set[str]]] = {}
        for ld in links:
            self.add_link_def(ld)
        self.initial_seed: dict[str, Any] | None = None

    def reset(self) -> None:
        super().reset()
        self.entities.clear()
        self.attachments.clear()
        for ld in self.link_defs:
            self._fwd[ld] = {}
            self._rev[ld] = {}
        self.dispatcher.reset()

    # --- auth
    def authenticate(self, request: web.Request) -> None:
        headers = request.headers
        hmac_header = headers.get("X-Hmac-Authorization")
        if hmac_header:
            try:
                decoded = base64.b64decode(hmac_header, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                raise EspoError(401, "Bad HMAC authorization header.") from None
            key, _, given = decoded.partition(":")
            if self.hmac_secret is None or not hmac.compare_digest(key.encode(), self.api_key.encode()):
                raise EspoError(401, "Wrong API key.")
            path = request.rel_url.raw_path[len(API_PREFIX) :] or "/"
            expected = hmac.new(
                self.hmac_secret.encode(), f"{request.method} {path}".encode(), hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(expected.encode(), given.lower().encode()):
                raise EspoError(401, "HMAC signature mismatch.")
            return
        api_key = headers.get("X-Api-Key")
        if api_key is not None:
            if self.hmac_secret is not None:
                raise EspoError(401, "API user requires HMAC authorization.")
            if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
                raise EspoError(401, "Wrong API key.")
            return
        basic_raw: str | None = None
        auth = headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            basic_raw = auth[6:].strip()
        elif headers.get("Espo-Authorization"):
            basic_raw = headers["Espo-Authorization"].strip()
        if basic_raw is not None:
            try:
                user, _, password = base64.b64decode(basic_raw, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError):
                raise EspoError(401, "Bad basic authorization header.") from None
            if self.basic is None or not (
                hmac.compare_digest(user.encode(), self.basic[0].encode())
                and hmac.compare_digest(password.encode(), self.basic[1].encode())
            ):
                raise EspoError(401, "Wrong username or password.")
            return
        raise EspoError(401, "No credentials.")

    # --- links
    def add_link_def(self, ld: LinkDef) -> None:
        self.link_defs.append(ld)
        self._sides[(ld.entity_type, ld.link)] = (ld, True)
        self._sides[(ld.foreign_type, ld.foreign_link)] = (ld, False)
        self._fwd[ld] = {}
        self._rev[ld] = {}

    def links_of(self, entity_type: str) -> list[str]:
        return [link for (etype, link) in self._sides if etype == entity_type]

    def side(self, entity_type: str, link: str) -> tuple[LinkDef, bool]:
        found = self._sides.get((entity_type, link))
        if found is None:
            raise EspoError(404, f"Link '{link}' does not exist in '{entity_type}'.")
        return found

    def other_type(self, entity_type: str, link: str) -> str:
        ld, primary = self.side(entity_type, link)
        return ld.foreign_type if primary else ld.entity_type

    def related_ids(self, entity_type: str, record_id: str, link: str) -> list[str]:
        ld, primary = self.side(entity_type, link)
        if ld.kind is LinkKind.MANY_MANY:
            index = self._fwd[ld] if primary else self._rev[ld]
            return sorted(index.get(record_id, ()))
        children = self.entities.get(ld.foreign_type, {})
        if primary:
            return [cid for cid, rec in children.items() if rec.get(ld.fk) == record_id]
        child = children.get(record_id)
        parent = child.get(ld.fk) if child else None
        return [parent] if parent else []

    def require(self, entity_type: str, record_id: str, *, what: str = "Record") -> dict[str, Any]:
        rec = self.entities.get(entity_type, {}).get(record_id)
        if rec is None:
            raise EspoError(404, f"{what} {entity_type} '{record_id}' not found.")
        return rec

    def link(self, entity_type: str, record_id: str, link: str, foreign_id: str, *, notify: bool = True) -> bool:
        """Relate two existing records; returns False when they already were."""
        ld, primary = self.side(entity_type, link)
        self.require(entity_type, record_id)
        other = self.other_type(entity_type, link)
        self.require(other, foreign_id, what="Related record")
        if ld.kind is LinkKind.MANY_MANY:
            a, b = (record_id, foreign_id) if primary else (foreign_id, record_id)
            if b in self._fwd[ld].get(a, set()):
                return False
            self._fwd[ld].setdefault(a, set()).add(b)
            self._rev[ld].setdefault(b, set()).add(a)
        else:
            parent_id, child_id = (record_id, foreign_id) if primary else (foreign_id, record_id)
            child = self.entities[ld.foreign_type][child_id]
            previous = child.get(ld.fk)
            if previous == parent_id:
                return False
            child[ld.fk] = parent_id
            child[ld.fk_name] = self.entities[ld.entity_type][parent_id].get("name")
            if previous and notify:
                self._notify_link(WebhookAction.UNLINK, ld.foreign_type, child_id, ld.entity_type, previous)
        if notify:
            self._notify_link(WebhookAction.LINK, entity_type, record_id, other, foreign_id)
        return True

    def unlink(self, entity_type: str, record_id: str, link: str, foreign_id: str, *, notify: bool = True) -> bool:
        ld, primary = self.side(entity_type, link)
        self.require(entity_type, record_id)
        other = self.other_type(entity_type, link)
        if ld.kind is LinkKind.MANY_MANY:
            a, b = (record_id, foreign_id) if primary else (foreign_id, record_id)
            if b not in self._fwd[ld].get(a, set()):
                return False
            self._fwd[ld][a].discard(b)
            self._rev[ld][b].discard(a)
        else:
            parent_id, child_id = (record_id, foreign_id) if primary else (foreign_id, record_id)
            child = self.entities.get(ld.foreign_type, {}).get(child_id)
            if child is None or child.get(ld.fk) != parent_id:
                return False
            child[ld.fk] = None
            child[ld.fk_name] = None
        if notify:
            self._notify_link(WebhookAction.UNLINK, entity_type, record_id, other, foreign_id)
        return True

    def _notify_link(self, action: WebhookAction, type_a: str, id_a: str, type_b: str, id_b: str) -> None:
        for own_type, own_id, other_type, other_id in ((type_a, id_a, type_b, id_b), (type_b, id_b, type_a, id_a)):
            event = f"{own_type}.{action.value}"
            if not self.dispatcher.has_event(event):
                continue
            if own_type == EntityTypeName.DOKUMENTE.value:
                data = {"entityType": other_type, "entityId": other_id, "documentId": own_id}
            else:
                data = {"id": own_id, "entityType": other_type, "entityId": other_id}
            self.dispatcher.emit(event, data)

    def _drop_links_of(self, entity_type: str, record_id: str) -> None:
        for ld in self.link_defs:
            if ld.kind is not LinkKind.MANY_MANY:
                continue
            if ld.entity_type == entity_type:
                for b in self._fwd[ld].pop(record_id, set()):
                    self._rev[ld].get(b, set()).discard(record_id)
            if ld.foreign_type == entity_type:
                for a in self._rev[ld].pop(record_id, set()):
                    self._fwd[ld].get(a, set()).discard(record_id)

    # --- records
    def _validate(self, entity_type: str, data: Mapping[str, Any]) -> None:
        for attr, options in ENUM_OPTIONS.get(entity_type, {}).items():
            if attr in data and data[attr] is not None and data[attr] not in options:
                raise EspoError(
                    400,
                    f"validationFailure: {entity_type}.{attr} must be one of {', '.join(options)}",
                    {"messageTranslation": {"label": "validationFailure", "scope": None,
                                            "data": {"field": attr, "type": "valid"}}},
                )

    def _split_link_input(self, entity_type: str, data: dict[str, Any]) -> dict[str, list[str]]:
        """Pull `{link}Ids` of many-many / has-many links out of the input."""
        out: dict[str, list[str]] = {}
        for link in self.links_of(entity_type):
            ld, primary = self.side(entity_type, link)
            key = f"{link}Ids"
            if key in data and (ld.kind is LinkKind.MANY_MANY or primary):
                value = data.pop(key)
                data.pop(f"{link}Names", None)
                if value is None:
                    value = []
                if not isinstance(value, list):
                    raise EspoError(400, f"{key} must be an array.")
                out[link] = [str(v) for v in value]
        return out

    def _belongs_to_input(self, entity_type: str, data: dict[str, Any]) -> None:
        for link in self.links_of(entity_type):
            ld, primary = self.side(entity_type, link)
            if ld.kind is LinkKind.HAS_MANY and not primary and ld.fk in data:
                parent_id = data[ld.fk]
                if parent_id:
                    parent = self.require(ld.entity_type, parent_id, what="Related record")
                    data[ld.fk_name] = parent.get("name")
                else:
                    data[ld.fk] = None
                    data[ld.fk_name] = None

    def _document_hook(self, entity_type: str, data: dict[str, Any], old: Mapping[str, Any] | None) -> None:
        if not self.doc_hooks or entity_type != EntityTypeName.DOKUMENTE.value:
            return
        file_id = data.get("fileId")
        if old is None:
            data.setdefault("fileStatus", FileStatus.NEW.value)
        changed = "fileId" in data and (old is None or old.get("fileId") != file_id)
        if not changed:
            return
        att = self.attachments.get(file_id) if file_id else None
        if att is not None:
            data.setdefault("fileName", att.name)
            data.setdefault("md5sum", hashlib.md5(att.content).hexdigest())
            data.setdefault("sha256", hashlib.sha256(att.content).hexdigest())
        if old is not None and "fileStatus" not in data and old.get("fileStatus") != FileStatus.NEW.value:
            data["fileStatus"] = FileStatus.CHANGED.value

    def _find_duplicates(self, entity_type: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
        if entity_type not in DUPLICATE_CHECK_TYPES:
            return []
        name = data.get("name")
        if not isinstance(name, str) or not name.strip():
            return []
        key = name.strip().casefold()
        return [
            dict(r)
            for r in self.entities.get(entity_type, {}).values()
            if isinstance(r.get("name"), str) and r["name"].strip().casefold() == key
        ]

    def create(self, entity_type: str, data: dict[str, Any], *, skip_duplicate_check: bool = False) -> dict[str, Any]:
        data = {k: v for k, v in data.items() if k not in READ_ONLY_ATTRIBUTES}
        link_input = self._split_link_input(entity_type, data)
        self._validate(entity_type, data)
        self._belongs_to_input(entity_type, data)
        for link, ids in link_input.items():
            for fid in ids:
                self.require(self.other_type(entity_type, link), fid, what="Related record")
        if not skip_duplicate_check:
            dups = self._find_duplicates(entity_type, data)
            if dups:
                raise EspoError(409, "duplicate", dups)
        self._document_hook(entity_type, data, None)
        store = self.entities.setdefault(entity_type, {})
        record_id = generate_id()
        while record_id in store:
            record_id = generate_id()
        stamp = now_str()
        record = {"id": record_id, **data, "createdAt": stamp, "modifiedAt": stamp}
        store[record_id] = record
        self.dispatcher.emit(f"{entity_type}.create", dict(record))
        for link, ids in link_input.items():
            for fid in ids:
                self.link(entity_type, record_id, link, fid)
        self._notify_belongs_to(entity_type, record_id, {}, record)
        return dict(record)

    def _notify_belongs_to(self, entity_type: str, record_id: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        for link in self.links_of(entity_type):
            ld, primary = self.side(entity_type, link)
            if ld.kind is LinkKind.HAS_MANY and not primary and old.get(ld.fk) != new.get(ld.fk):
                if old.get(ld.fk):
                    self._notify_link(WebhookAction.UNLINK, entity_type, record_id, ld.entity_type, old[ld.fk])
                if new.get(ld.fk):
                    self._notify_link(WebhookAction.LINK, entity_type, record_id, ld.entity_type, new[ld.fk])

    def update(self, entity_type: str, record_id: str, data: dict[str, Any]) -> dict[str, Any]:
        record = self.require(entity_type, record_id)
        data = {k: v for k, v in data.items() if k not in READ_ONLY_ATTRIBUTES}
        link_input = self._split_link_input(entity_type, data)
        self._validate(entity_type, data)
        self._belongs_to_input(entity_type, data)
        for link, ids in link_input.items():
            for fid in ids:
                self.require(self.other_type(entity_type, link), fid, what="Related record")
        self._document_hook(entity_type, data, record)
        old = dict(record)
        changed = {k: v for k, v in data.items() if k not in record or not _same(record[k], v)}
        if changed:
            record.update(changed)
            record["modifiedAt"] = now_str()
            payload = {k: v for k, v in changed.items() if k not in WEBHOOK_SKIP_ATTRIBUTES}
            if payload:
                self.dispatcher.emit(f"{entity_type}.update", {**payload, "id": record_id})
                self._emit_field_updates(entity_type, record, payload)
            self._notify_belongs_to(entity_type, record_id, old, record)
        for link, ids in link_input.items():
            current = set(self.related_ids(entity_type, record_id, link))
            for fid in sorted(current - set(ids)):
                self.unlink(entity_type, record_id, link, fid)
            for fid in ids:
                if fid not in current:
                    self.link(entity_type, record_id, link, fid)
        return dict(record)

    def _emit_field_updates(self, entity_type: str, record: Mapping[str, Any], changed: Mapping[str, Any]) -> None:
        prefix = f"{entity_type}.{WebhookAction.FIELD_UPDATE.value}."
        for event in {h.event for h in self.dispatcher.webhooks.values() if h.is_active and h.event.startswith(prefix)}:
            fld = event[len(prefix) :]
            attrs = [fld] if fld in record else [a for a in (f"{fld}Id", f"{fld}Name", f"{fld}Ids", f"{fld}Names") if a in record]
            if any(a in changed for a in attrs):
                self.dispatcher.emit(event, {"id": record["id"], **{a: record.get(a) for a in attrs}})

    def delete(self, entity_type: str, record_id: str) -> None:
        self.require(entity_type, record_id)
        del self.entities[entity_type][record_id]
        self._drop_links_of(entity_type, record_id)
        self.dispatcher.emit(f"{entity_type}.delete", {"id": record_id})

    def search(self, entity_type: str, params: SearchParams, candidates: Iterable[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], int]:
        evaluator = WhereEvaluator(self.related_ids, entity_type)
        pool = candidates if candidates is not None else self.entities.get(entity_type, {}).values()
        matched = [r for r in pool if evaluator.match_all(r, params.where)]
        order_by = params.order_by or "createdAt"
        matched.sort(key=lambda r: (_sort_key(r.get(order_by)), str(r.get("id"))), reverse=params.order == "DESC")
        page = matched[params.offset : params.offset + params.max_size]
        if params.select:
            wanted = ["id", *[s for s in params.select if s != "id"]]
            page = [{k: r.get(k) for k in wanted} for r in page]
        else:
            page = [dict(r) for r in page]
        return page, len(matched)

    # --- attachments
    def add_attachment(self, att: Attachment) -> Attachment:
        self.attachments[att.id] = att
        return att

    # --- seed
    def load_seed(self, doc: Mapping[str, Any], base_dir: Path = SEED_DIR) -> None:
        """Add the records, attachments, links and webhooks of a seed document."""
        if not isinstance(doc, Mapping):
            raise ValueError("seed must be a JSON object")
        for spec in doc.get("linkDefs", []):
            self.add_link_def(
                LinkDef(spec["entityType"], spec["link"], spec["foreignEntityType"], spec["foreignLink"],
                        LinkKind(spec.get("kind", LinkKind.MANY_MANY.value)))
            )
        for spec in doc.get("attachments", []):
            if "contentBase64" in spec:
                content = base64.b64decode(spec["contentBase64"])
            elif "path" in spec:
                try:
                    content = (base_dir / spec["path"]).read_bytes()
                except OSError as exc:
                    raise ValueError(f"attachment file {spec['path']!r}: {exc}") from None
            else:
                content = str(spec.get("content", "")).encode("utf-8")
            self.add_attachment(
                Attachment(
                    id=spec.get("id") or generate_id(),
                    name=spec["name"],
                    type=spec.get("type", "application/octet-stream"),
                    content=content,
                    role=spec.get("role", "Attachment"),
                    related_type=spec.get("relatedType"),
                    field_name=spec.get("field"),
                )
            )
        for entity_type, records in doc.get("entities", {}).items():
            if not ENTITY_NAME_RE.match(entity_type):
                raise ValueError(f"bad entity type {entity_type!r}")
            store = self.entities.setdefault(entity_type, {})
            for rec in records:
                rec = dict(rec)
                rec.setdefault("id", generate_id())
                stamp = now_str()
                rec.setdefault("createdAt", stamp)
                rec.setdefault("modifiedAt", rec["createdAt"])
                store[rec["id"]] = rec
        for spec in doc.get("links", []):
            ids = spec.get("foreignIds") or [spec["foreignId"]]
            for fid in ids:
                try:
                    self.link(spec["entityType"], spec["id"], spec["link"], fid, notify=False)
                except EspoError as exc:
                    raise ValueError(f"bad link {spec}: {exc.reason}") from None
        for spec in doc.get("webhooks", []):
            self.dispatcher.register(spec["event"], spec["url"], webhook_id=spec.get("id"), secret_key=spec.get("secretKey"))


def load_seed_file(path: Path | str = DEMO_SEED_PATH) -> dict[str, Any]:
    """Read a seed JSON file (the demo seed by default)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- HTTP ---------------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise EspoError(400, "Invalid JSON.") from None


async def _object_body(request: web.Request) -> dict[str, Any]:
    body = await _json_body(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise EspoError(400, "Body must be a JSON object.")
    return body


def _entity_type(request: web.Request) -> str:
    entity_type = request.match_info["entityType"]
    if not ENTITY_NAME_RE.match(entity_type):
        raise EspoError(404, f"Unknown entity type '{entity_type}'.")
    return entity_type


def _list_response(request: web.Request, page: list[dict[str, Any]], total: int, params: SearchParams) -> web.Response:
    if _truthy(request.headers.get("X-No-Total", "")):
        total = -1 if params.offset + len(page) < total else -2
    return web.json_response({"total": total, "list": page})


def _routes(state: EspoCRMState) -> list[web.RouteDef]:
    def params_of(request: web.Request) -> SearchParams:
        return parse_search_params(list(request.rel_url.query.items()), state.max_size_limit)

    async def app_user(request: web.Request) -> web.Response:
        return web.json_response({"user": {"id": "sim-api-user", "userName": "api", "type": "api", "isAdmin": False}})

    # webhooks
    async def webhook_create(request: web.Request) -> web.Response:
        body = await _object_body(request)
        try:
            hook = state.dispatcher.register(str(body.get("event", "")), str(body.get("url", "")))
        except ValueError as exc:
            raise EspoError(400, str(exc)) from None
        return web.json_response(hook.public())

    async def webhook_list(request: web.Request) -> web.Response:
        hooks = [h.public() for h in state.dispatcher.webhooks.values()]
        return web.json_response({"total": len(hooks), "list": hooks})

    def hook_of(request: web.Request) -> Webhook:
        hook = state.dispatcher.webhooks.get(request.match_info["id"])
        if hook is None:
            raise EspoError(404, f"Webhook '{request.match_info['id']}' not found.")
        return hook

    async def webhook_get(request: web.Request) -> web.Response:
        return web.json_response(hook_of(request).public())

    async def webhook_update(request: web.Request) -> web.Response:
        hook = hook_of(request)
        body = await _object_body(request)
        if "url" in body:
            hook.url = str(body["url"])
        if "isActive" in body:
            hook.is_active = bool(body["isActive"])
        return web.json_response(hook.public())

    async def webhook_delete(request: web.Request) -> web.Response:
        state.dispatcher.remove(hook_of(request).id)
        return web.json_response(True)

    # attachments
    async def attachment_create(request: web.Request) -> web.Response:
        body = await _object_body(request)
        data_uri = body.get("file")
        if not isinstance(data_uri, str) or not data_uri.startswith("data:"):
            raise EspoError(400, "No file contents (expected a data: URI in 'file').")
        header, sep, payload = data_uri.partition(",")
        if not sep or not header.endswith(";base64"):
            raise EspoError(400, "File contents must be a base64 data URI.")
        try:
            content = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise EspoError(400, "Bad base64 file contents.") from None
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise EspoError(400, "No attachment name.")
        if not body.get("field") or not (body.get("relatedType") or body.get("parentType")):
            raise EspoError(400, "Attachment needs 'field' and 'relatedType' (or 'parentType').")
        mime = body.get("type") or header[5:].split(";")[0] or "application/octet-stream"
        att = state.add_attachment(
            Attachment(
                id=generate_id(),
                name=name,
                type=str(mime),
                content=content,
                role=str(body.get("role") or "Attachment"),
                related_type=body.get("relatedType"),
                field_name=body.get("field"),
                parent_type=body.get("parentType"),
                parent_id=body.get("parentId"),
            )
        )
        return web.json_response(att.public())

    def attachment_of(request: web.Request) -> Attachment:
        att = state.attachments.get(request.match_info["id"])
        if att is None:
            raise EspoError(404, f"Attachment '{request.match_info['id']}' not found.")
        return att

    async def attachment_file(request: web.Request) -> web.Response:
        att = attachment_of(request)
        quoted = urllib.parse.quote(att.name)
        ascii_name = att.name.encode("ascii", "replace").decode("ascii").replace('"', "")
        return web.Response(
            body=att.content,
            headers={
                "Content-Type": att.type,
                "Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}",
            },
        )

    async def attachment_get(request: web.Request) -> web.Response:
        return web.json_response(attachment_of(request).public())

    async def attachment_delete(request: web.Request) -> web.Response:
        state.attachments.pop(attachment_of(request).id)
        return web.json_response(True)

    # records
    async def list_records(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        params = params_of(request)
        page, total = state.search(entity_type, params)
        return _list_response(request, page, total, params)

    async def create_record(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        body = await _object_body(request)
        skip = _truthy(request.headers.get("X-Skip-Duplicate-Check", "false"))
        return web.json_response(state.create(entity_type, body, skip_duplicate_check=skip))

    async def get_record(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        return web.json_response(dict(state.require(entity_type, request.match_info["id"])))

    async def update_record(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        body = await _object_body(request)
        return web.json_response(state.update(entity_type, request.match_info["id"], body))

    async def delete_record(request: web.Request) -> web.Response:
        state.delete(_entity_type(request), request.match_info["id"])
        return web.json_response(True)

    async def list_related(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        record_id, link = request.match_info["id"], request.match_info["link"]
        state.require(entity_type, record_id)
        other = state.other_type(entity_type, link)
        params = params_of(request)
        store = state.entities.get(other, {})
        candidates = [store[i] for i in state.related_ids(entity_type, record_id, link) if i in store]
        page, total = state.search(other, params, candidates)
        return _list_response(request, page, total, params)

    async def _link_ids(request: web.Request) -> list[str]:
        body = await _object_body(request)
        if body.get("ids") is not None:
            ids = body["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise EspoError(400, "'ids' must be an array of strings.")
            return ids
        if isinstance(body.get("id"), str) and body["id"]:
            return [body["id"]]
        raise EspoError(400, "No 'id' or 'ids' in the body.")

    async def link_records(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        ids = await _link_ids(request)
        record_id, link = request.match_info["id"], request.match_info["link"]
        other = state.other_type(entity_type, link)
        state.require(entity_type, record_id)
        for fid in ids:
            state.require(other, fid, what="Related record")
        for fid in ids:
            state.link(entity_type, record_id, link, fid)
        return web.json_response(True)

    async def unlink_records(request: web.Request) -> web.Response:
        entity_type = _entity_type(request)
        ids = await _link_ids(request)
        record_id, link = request.match_info["id"], request.match_info["link"]
        state.require(entity_type, record_id)
        state.other_type(entity_type, link)
        for fid in ids:
            state.unlink(entity_type, record_id, link, fid)
        return web.json_response(True)

    p = API_PREFIX
    return [
        web.get(f"{p}/App/user", app_user),
        web.post(f"{p}/Webhook", webhook_create),
        web.get(f"{p}/Webhook", webhook_list),
        web.get(f"{p}/Webhook/{{id}}", webhook_get),
        web.put(f"{p}/Webhook/{{id}}", webhook_update),
        web.patch(f"{p}/Webhook/{{id}}", webhook_update),
        web.delete(f"{p}/Webhook/{{id}}", webhook_delete),
        web.post(f"{p}/Attachment", attachment_create),
        web.get(f"{p}/Attachment/file/{{id}}", attachment_file),
        web.get(f"{p}/Attachment/{{id}}", attachment_get),
        web.delete(f"{p}/Attachment/{{id}}", attachment_delete),
        web.get(f"{p}/{{entityType}}", list_records),
        web.post(f"{p}/{{entityType}}", create_record),
        web.get(f"{p}/{{entityType}}/{{id}}", get_record),
        web.put(f"{p}/{{entityType}}/{{id}}", update_record),
        web.patch(f"{p}/{{entityType}}/{{id}}", update_record),
        web.delete(f"{p}/{{entityType}}/{{id}}", delete_record),
        web.get(f"{p}/{{entityType}}/{{id}}/{{link}}", list_related),
        web.post(f"{p}/{{entityType}}/{{id}}/{{link}}", link_records),
        web.delete(f"{p}/{{entityType}}/{{id}}/{{link}}", unlink_records),
    ]


def _admin_routes(state: EspoCRMState) -> list[web.RouteDef]:
    async def deliveries(request: web.Request) -> web.Response:
        return web.json_response(state.dispatcher.deliveries)

    async def clear_deliveries(request: web.Request) -> web.Response:
        state.dispatcher.deliveries.clear()
        return web.json_response({"cleared": True})

    async def webhooks(request: web.Request) -> web.Response:
        out = []
        for hook in state.dispatcher.webhooks.values():
            item = hook.public()
            item["pending"] = sum(1 for i in state.dispatcher.queue if i.webhook_id == hook.id)
            out.append(item)
        return web.json_response(out)

    async def flush(request: web.Request) -> web.Response:
        timeout = float(request.query.get("timeout", "5"))
        idle = await state.dispatcher.wait_idle(timeout)
        return web.json_response({"idle": idle, "pending": state.dispatcher.pending()})

    async def raw_entities(request: web.Request) -> web.Response:
        return web.json_response(list(state.entities.get(request.match_info["entityType"], {}).values()))

    return [
        web.get("/_sim/webhook-deliveries", deliveries),
        web.delete("/_sim/webhook-deliveries", clear_deliveries),
        web.get("/_sim/webhooks", webhooks),
        web.post("/_sim/webhooks/flush", flush),
        web.get("/_sim/entities/{entityType}", raw_entities),
    ]


def _auth_middleware(state: EspoCRMState) -> Callable[..., Any]:
    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        try:
            state.authenticate(request)
            return await handler(request)
        except EspoError as exc:
            return exc.response()

    return middleware


def create_app(
    api_key: str,
    hmac_secret: str | None = None,
    basic: tuple[str, str] | None = None,
    seed: dict[str, Any] | None = None,
    *,
    webhook_debounce: float = 0.05,
    webhook_batch_size: int = MAX_BATCH_SIZE,
    webhook_attempts: int = 4,
    webhook_retry_interval: float = 2.0,
    webhook_timeout: float = 10.0,
    doc_hooks: bool = True,
    links: Iterable[LinkDef] = DEFAULT_LINKS,
) -> web.Application:
    """The EspoCRM simulator app; serve it with simulators.runner.start_app."""
    dispatcher = WebhookDispatcher(
        debounce=webhook_debounce,
        batch_size=webhook_batch_size,
        max_attempts=webhook_attempts,
        retry_interval=webhook_retry_interval,
        timeout=webhook_timeout,
    )
    state = EspoCRMState(api_key, hmac_secret, basic, dispatcher=dispatcher, links=links, doc_hooks=doc_hooks)
    state.initial_seed = seed
    if seed:
        state.load_seed(seed)

    def on_reset(reseed: bool) -> None:
        if reseed and state.initial_seed:
            state.load_seed(state.initial_seed)

    app = make_app(state, on_reset=on_reset, on_seed=state.load_seed)
    app.middlewares.append(_auth_middleware(state))
    app.add_routes(_admin_routes(state))
    app.add_routes(_routes(state))

    async def lifecycle(app: web.Application) -> Any:
        await dispatcher.start()
        yield
        await dispatcher.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


def state_of(app: web.Application) -> EspoCRMState:
    """The simulator state behind an app made by create_app."""
    state = app[STATE_KEY]
    assert isinstance(state, EspoCRMState)
    return state
