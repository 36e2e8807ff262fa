"""JSON read and written the way the real engine's `serde_json` does it (1.0.149, built
without `preserve_order` and `arbitrary_precision`).

Reading a request body (`parse_body`, views.rs 251-269: `serde_json::from_slice(..)
.unwrap_or(Value::Null)`): strict UTF-8 (no BOM), no `NaN`/`Infinity`, no lone surrogate
escapes, at most 127 nested arrays/objects; anything else is `None`. Object keys come out
**sorted** (serde_json's map is a BTreeMap), recursively. Integers outside i64/u64 and
`-0` become floats (serde_json's number rules); a float beyond f64 range is an error.

Writing an answer (`dumps`, axum's `Json(value)`): compact, keys sorted, non-ASCII as is,
control characters escaped as `\\u00XX`, floats in serde_json's layout (`1.0`, `1e+16`,
`1.5e-7`), non-finite floats as `null`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 127
"""serde_json's recursion limit: the 128th nested array/object is an error."""
I64_MIN = -(2**63)
U64_MAX = 2**64 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")
_NEEDS_EXACT = re.compile(r"\d[eE]|\d{20}")
"""In fast-path output: a float with an exponent or a very long integer (re-encode exactly)."""


class InvalidJson(ValueError):
    """Not JSON as serde_json reads it (the message says why)."""


def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InvalidJson("number out of range")
    return value


def _parse_int(text: str) -> int | float:
    value = int(text)
    if text == "-0":
        return -0.0  # serde_json: "Convert into a float ... on `-0`"
    if I64_MIN <= value <= U64_MAX:
        return value
    return _parse_float(text)


def _normalize(value: Any, depth: int) -> Any:
    """Sorted keys, depth and surrogate checks (raises InvalidJson)."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise InvalidJson("lone surrogate")
        return value
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise InvalidJson("recursion limit exceeded")
        out = {}
        for key in sorted(value):
            if _SURROGATE.search(key):
                raise InvalidJson("lone surrogate")
            out[key] = _normalize(value[key], depth + 1)
        return out
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise InvalidJson("recursion limit exceeded")
        return [_normalize(v, depth + 1) for v in value]
    return value


def loads_checked(raw: bytes) -> Any:
    """`raw` parsed as serde_json would (keys sorted), or InvalidJson saying why: nesting past
    127 levels is refused like serde_json's recursion limit (`remaining_depth: 128` in its
    de.rs, `ErrorCode::RecursionLimitExceeded`), never a RecursionError."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float, parse_int=_parse_int)
        return _normalize(value, 0)
    except RecursionError:
        raise InvalidJson("recursion limit exceeded") from None
    except InvalidJson:
        raise
    except ValueError as exc:  # UnicodeDecodeError and json.JSONDecodeError included
        raise InvalidJson(str(exc)) from None


def parse_body(raw: bytes) -> Any:
    """The `body` the real engine hands a worker for an `application/json` request: anything
    serde_json refuses (100,000 nested `[` included) is null (views.rs 251-269 `unwrap_or(Null)`)."""
    try:
        return loads_checked(raw)
    except InvalidJson:
        return None


def format_float(value: float) -> str:
    """An f64 as serde_json 1.0.149 (zmij) writes it: fixed notation for decimal exponents
    -5..=15 (`0.00001`, `1e15` as `1000000000000000.0`), otherwise `d.ddde+X` / `de-X`."""
    if math.isnan(value) or math.isinf(value):
        return "null"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0.0"
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    k = (int(exp_text) if exp_text else 0) - len(frac_part)  # value = int(digits) * 10**k
    digits = (int_part + frac_part).lstrip("0")
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    exp10 = k + length - 1  # 10**exp10 <= value < 10**(exp10 + 1)
    if -5 <= exp10 <= 15:
        if length - 1 <= exp10:
            return sign + digits + "0" * (exp10 + 1 - length) + ".0"
        if exp10 >= 0:
            return sign + digits[: exp10 + 1] + "." + digits[exp10 + 1 :]
        return sign + "0." + "0" * (-exp10 - 1) + digits
    head = digits[0] + ("." + digits[1:] if length > 1 else "")
    return f"{sign}{head}e{'+' if exp10 >= 0 else '-'}{abs(exp10)}"


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value) if I64_MIN <= value <= U64_MAX else format_float(float(value)))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=str)):
            if i:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        out.append(json.dumps(str(value), ensure_ascii=False))


def dumps(value: Any) -> bytes:
    """`value` as serde_json writes a `Value` (the body of an axum `Json` answer)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        text = None
    if text is None or _NEEDS_EXACT.search(text):
        parts: list[str] = []
        _write(value, parts)
        text = "".join(parts)
    return text.encode("utf-8")
