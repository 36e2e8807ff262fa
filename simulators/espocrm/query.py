"""EspoCRM simulator: list parameters (`maxSize`, `offset`, `orderBy`, `select`) and the `where` filter language."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from simulators.espocrm.model import MAX_SIZE_LIMIT, EspoError, truthy


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
            return truthy(query_value)
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
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def same_value(a: Any, b: Any) -> bool:
    """Strict equality for change detection (True != 1)."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, (bool, int, float)):
        return (1, float(value))
    if isinstance(value, str):
        return (2, value.casefold())
    return (3, json.dumps(value, sort_keys=True, default=str))


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
        return self._date(r, a) == datetime.now(UTC).date()

    def _w_on(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d = self._date(r, a)
        return d is not None and d == _to_date(v)

    def _w_past(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        dt = _to_datetime(r.get(a))
        return dt is not None and dt < datetime.now(UTC)

    def _w_future(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        dt = _to_datetime(r.get(a))
        return dt is not None and dt > datetime.now(UTC)

    def _days(self, v: Any) -> int:
        try:
            return int(v)
        except (TypeError, ValueError):
            raise EspoError(400, "Bad where item. Value must be a number of days.") from None

    def _w_lastSevenDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        return self._w_lastXDays(r, a, 7)

    def _w_lastXDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d, today = self._date(r, a), datetime.now(UTC).date()
        return d is not None and today - timedelta(days=self._days(v)) <= d <= today

    def _w_nextXDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d, today = self._date(r, a), datetime.now(UTC).date()
        return d is not None and today <= d <= today + timedelta(days=self._days(v))

    def _w_olderThanXDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d = self._date(r, a)
        return d is not None and d < datetime.now(UTC).date() - timedelta(days=self._days(v))

    def _w_afterXDays(self, r: Mapping[str, Any], a: str, v: Any) -> bool:
        d = self._date(r, a)
        return d is not None and d > datetime.now(UTC).date() + timedelta(days=self._days(v))


