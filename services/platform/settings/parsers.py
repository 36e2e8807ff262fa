"""Parsers of single environment values: `str` in, typed value out, `ValueError` with a message
that names the problem but never echoes a secret.

The sections (`sections.py`) apply them as pydantic before-validators through `env_value(parse)`,
to values read from the environment only (`EnvText`, which the loader wraps them in): a value
given by field name in code (`XAISettings(api_base_url=...)`) or a default is left to pydantic.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, SecretStr

from services.platform.settings.constants import (
    ADVOWARE_PROXY_METHODS,
    ADVOWARE_PROXY_TOKEN_CHARS,
    ADVOWARE_PROXY_TOKEN_MIN_BYTES,
    WEBHOOK_TOKEN_CHARS,
)
from services.platform.settings.values import CollectionRule

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


class EnvText(str):
    """A value as read from the environment (stripped, never empty): the env parsers apply to it."""

    __slots__ = ()


def env_value(parse: Callable[[str], Any] = str) -> BeforeValidator:
    """A before-validator that parses environment text (as a plain `str`) and passes anything else on."""

    def validate(value: Any) -> Any:
        return parse(str(value)) if isinstance(value, EnvText) else value

    return BeforeValidator(validate)


def integer(minimum: int = 0, maximum: int | None = None) -> BeforeValidator:
    """An integer within [minimum, maximum]; "expected an integer" / "must be between ..."."""

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
        if isinstance(value, int) and (value < minimum or (maximum is not None and value > maximum)):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return BeforeValidator(parse)


def number(minimum: float = 0.0, *, exclusive: bool = True) -> BeforeValidator:
    """A finite number above `minimum` (or at least it, when not exclusive)."""

    def parse(value: Any) -> Any:
        shown = value
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {shown!r}") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {shown!r}")
            if value < minimum or (exclusive and value == minimum):
                raise ValueError(f"must be {'>' if exclusive else '>='} {minimum:g}, got {shown}")
        return value

    return BeforeValidator(parse)


def choice(enum: type[Enum]) -> BeforeValidator:
    """A member of `enum` by its (case-insensitive) value."""

    def parse(value: str) -> Enum:
        try:
            return enum(value.lower())
        except ValueError:
            allowed = "|".join(str(m.value) for m in enum)
            raise ValueError(f"expected one of {allowed}, got {value!r}") from None

    return env_value(parse)


def log_level(value: str) -> str:
    level = value.upper()
    if level == "WARN":
        level = "WARNING"
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {'|'.join(sorted(LOG_LEVELS))}, got {level!r}")
    return level


def http_url(value: str, *, trailing_slash: bool = False) -> str:
    """An http(s) URL with a host; the trailing slash removed (or ensured)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("not a valid http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {value!r}")
    if " " in value:
        raise ValueError(f"URL contains spaces: {value!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"invalid port in URL {value!r}") from None
    value = value.rstrip("/")
    return value + "/" if trailing_slash else value


def http_url_with_slash(value: str) -> str:
    return http_url(value, trailing_slash=True)


def redis_url(value: str) -> str:
    """redis://, rediss:// (numeric database path) or unix:// with a socket path. Never echoes the value."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018
    except ValueError:
        raise ValueError("not a redis:// URL") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("unix:// URL without a socket path")
        return value
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError("not a redis:// URL")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError("database in the URL path must be a number")
    return value


def redis_host(value: str) -> str:
    if any(c in value for c in "/@: ") and not value.startswith("["):
        raise ValueError(f"not a host name: {value!r}")
    return value


def base64_key(value: str) -> str:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64 (the key Advoware issued is base64-encoded)") from None
    if not decoded:
        raise ValueError("decodes to an empty key")
    return value


def _parse_pairs(value: str, *, what: str, secret: bool = False) -> list[tuple[str, str]]:
    """`a:b,c:d` → [(a, b), (c, d)]; splits at the first ':'. Secret values are never echoed."""
    pairs: list[tuple[str, str]] = []
    for position, entry in enumerate(value.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        left, colon, right = entry.partition(":")
        left, right = left.strip(), right.strip()
        if not colon or not left or not right:
            shown = f"#{position}" if secret else repr(entry)
            raise ValueError(f"entry {shown} is not {what}")
        pairs.append((left, right))
    return pairs


def webhook_secrets(value: str) -> dict[str, SecretStr]:
    """`webhookId:secret,...` (the secret may contain ':')."""
    result: dict[str, SecretStr] = {}
    for webhook_id, secret in _parse_pairs(value, what="webhookId:secret", secret=True):
        if any(c.isspace() for c in webhook_id):
            raise ValueError(f"webhook id {webhook_id!r} contains whitespace")
        if webhook_id in result:
            raise ValueError(f"webhook id {webhook_id!r} appears twice")
        result[webhook_id] = SecretStr(secret)
    if not result:
        raise ValueError("no webhookId:secret entries")
    return result


def webhook_token(value: str) -> SecretStr:
    """ESPOCRM_WEBHOOK_TOKEN rides in the webhook URL (`?token=...`), so it may only use the
    characters a URL carries unencoded (RFC 3986 unreserved): nginx hands the raw parameter on,
    the engine a decoded one, and both must be the same string. The error never shows the value."""
    if not set(value) <= WEBHOOK_TOKEN_CHARS:
        raise ValueError("may only contain A-Z a-z 0-9 - . _ ~ (it is sent in the webhook URL); e.g. `openssl rand -hex 32`")
    return SecretStr(value)


def key_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", value):
        raise ValueError(f"expected 1-40 characters of A-Z a-z 0-9 _ . -, got {value!r}")
    return value


def ledger_concurrency(value: str) -> dict[str, int]:
    """`kind:n,...`: runs of a ledger kind a worker holds at once (kinds of
    services.platform.ledger.policies.SyncKind, each at most once, n in 1..MAX_CONCURRENCY)."""
    from services.platform.ledger.policies import MAX_CONCURRENCY, SyncKind

    kinds = {k.value for k in SyncKind}
    result: dict[str, int] = {}
    for kind, number in _parse_pairs(value, what="kind:n"):
        if kind not in kinds:
            raise ValueError(f"unknown kind {kind!r} (kinds: {', '.join(sorted(kinds))})")
        if kind in result:
            raise ValueError(f"kind {kind!r} appears twice")
        try:
            limit = int(number)
        except ValueError:
            raise ValueError(f"{kind}: expected an integer, got {number!r}") from None
        if not 1 <= limit <= MAX_CONCURRENCY:
            raise ValueError(f"{kind}: must be between 1 and {MAX_CONCURRENCY}, got {limit}")
        result[kind] = limit
    return result


def cron_expression(value: str) -> str:
    from services.platform.ledger.cron import validate_expression

    return validate_expression(value.strip())


def _validate_calendar_mapping(pairs: list[tuple[Any, Any]]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    seen_ids: dict[str, str] = {}
    for kuerzel, calendar_id in pairs:
        if not isinstance(kuerzel, str) or not kuerzel.strip():
            raise ValueError("empty Kürzel")
        if not isinstance(calendar_id, str) or not calendar_id.strip():
            raise ValueError(f"empty calendar id for Kürzel {kuerzel!r}")
        kuerzel, calendar_id = kuerzel.strip(), calendar_id.strip()
        if any(c.isspace() for c in kuerzel) or any(c.isspace() for c in calendar_id):
            raise ValueError(f"whitespace in entry {kuerzel!r}")
        if kuerzel in mapping:
            raise ValueError(f"Kürzel {kuerzel!r} appears twice")
        if calendar_id in seen_ids:
            raise ValueError(f"calendar id {calendar_id!r} is mapped to both {seen_ids[calendar_id]!r} and {kuerzel!r}")
        mapping[kuerzel] = calendar_id
        seen_ids[calendar_id] = kuerzel
    return mapping


def calendar_mapping(value: str) -> dict[str, str]:
    """`KÜRZEL:calendarId,...`: unique Kürzel, unique calendar ids."""
    pairs = _parse_pairs(value, what="KÜRZEL:calendarId")
    if not pairs:
        raise ValueError("no KÜRZEL:calendarId entries")
    return _validate_calendar_mapping(list(pairs))


def _read_text(value: str) -> str:
    """The UTF-8 text of the file `value` names; ValueError (with the OS's reason) when unreadable."""
    try:
        return Path(value).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {value}: {exc.strerror or exc}") from None


def calendar_mapping_file(value: str) -> dict[str, str]:
    """A JSON file `{"KÜRZEL": "calendar id"}`; a Kürzel given twice is an error (not last-one-wins)."""
    text = _read_text(value)
    try:
        data = json.loads(text, object_pairs_hook=list)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{value} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list) or any(not isinstance(p, tuple) for p in data):
        raise ValueError(f'{value} must hold a JSON object {{"KÜRZEL": "calendar id"}}')
    if not data:
        raise ValueError(f"{value} holds no entries")
    return _validate_calendar_mapping(data)


def collection_rules(value: str) -> dict[str, CollectionRule]:
    """`EntityType:field=value;...`, at most one rule per entity type."""
    rules: dict[str, CollectionRule] = {}
    for entry in value.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        entity_type, colon, condition = entry.partition(":")
        field, eq, expected = condition.partition("=")
        entity_type, field, expected = entity_type.strip(), field.strip(), expected.strip()
        if not colon or not eq or not _IDENT.match(entity_type) or not _IDENT.match(field) or not expected:
            raise ValueError(f"entry {entry!r} is not EntityType:field=value")
        if entity_type in rules:
            raise ValueError(f"entity type {entity_type!r} appears twice")
        rules[entity_type] = CollectionRule(field, expected)
    if not rules:
        raise ValueError("no EntityType:field=value entries")
    return rules


_CALLER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_PROXY_PREFIX = re.compile(r"[A-Za-z0-9._~(),+=/-]+")


def proxy_allow_list(value: str) -> tuple[str, ...]:
    """ADVOWARE_PROXY_ALLOWED_PREFIXES: comma-separated `[METHODS:]prefix` entries, METHODS being
    `GET`, `GET|POST`, ... or `*`; a bare prefix allows every method. Normalized: leading and
    trailing slashes dropped, methods upper-case in the order of ADVOWARE_PROXY_METHODS (`*` and
    all four written as the bare prefix), the same entry once. `GET|POST:api/v1/Akten`."""
    result: list[str] = []
    for position, item in enumerate(value.split(","), start=1):
        item = item.strip()
        if not item:
            continue
        methods_text, colon, prefix = item.rpartition(":")
        prefix = prefix.strip().strip("/")
        if not prefix or not _PROXY_PREFIX.fullmatch(prefix):
            raise ValueError(f"entry #{position} ({item!r}) needs a path prefix of letters, digits and . _ ~ ( ) , + = - /")
        methods = {m.strip().upper() for m in methods_text.split("|")} if colon else {"*"}
        if "*" in methods and len(methods) == 1:
            methods = set(ADVOWARE_PROXY_METHODS)
        unknown = sorted(methods - set(ADVOWARE_PROXY_METHODS))
        if unknown:
            raise ValueError(f"entry #{position} ({item!r}): unknown method(s) {unknown}; use {'|'.join(ADVOWARE_PROXY_METHODS)} or *")
        ordered = [m for m in ADVOWARE_PROXY_METHODS if m in methods]
        entry = prefix if len(ordered) == len(ADVOWARE_PROXY_METHODS) else f"{'|'.join(ordered)}:{prefix}"
        if entry not in result:
            result.append(entry)
    return tuple(result)


def _caller_token(token: str, what: str) -> SecretStr:
    """A caller token: at least ADVOWARE_PROXY_TOKEN_MIN_BYTES of RFC 6750 b64token characters."""
    if not set(token) <= ADVOWARE_PROXY_TOKEN_CHARS:
        raise ValueError(f"{what} may only contain A-Z a-z 0-9 - . _ ~ + / = (e.g. `openssl rand -hex 32`)")
    if len(token.encode()) < ADVOWARE_PROXY_TOKEN_MIN_BYTES:
        raise ValueError(f"{what} is shorter than {ADVOWARE_PROXY_TOKEN_MIN_BYTES} bytes (e.g. `openssl rand -hex 32`)")
    return SecretStr(token)


def proxy_token(value: str) -> SecretStr:
    """ADVOWARE_PROXY_TOKEN: the one unnamed caller token (kept for compatibility)."""
    return _caller_token(value, "the token")


def proxy_tokens(value: str) -> dict[str, SecretStr]:
    """ADVOWARE_PROXY_TOKENS: `name:token,...`, names 1-40 of A-Z a-z 0-9 _ . -, each name and
    each token once. The error never shows a token."""
    result: dict[str, SecretStr] = {}
    seen: set[str] = set()
    for name, token in _parse_pairs(value, what="name:token", secret=True):
        if not _CALLER_NAME.fullmatch(name):
            raise ValueError(f"caller name {name!r} must be 1-40 of A-Z a-z 0-9 _ . -")
        if name in result:
            raise ValueError(f"caller name {name!r} appears twice")
        secret = _caller_token(token, f"the token of {name!r}")
        if token in seen:
            raise ValueError(f"the token of {name!r} is also another caller's (give every caller its own)")
        seen.add(token)
        result[name] = secret
    if not result:
        raise ValueError("no name:token entries")
    return result


def service_account_file(value: str) -> Path:
    """A readable JSON object with client_email and private_key."""
    path = Path(value)
    text = _read_text(value)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{value} is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError(f"{value} is not a service-account JSON object")
    missing = [k for k in ("client_email", "private_key") if not data.get(k)]
    if missing:
        raise ValueError(f"{value} lacks {', '.join(missing)} (not a service-account key file?)")
    return path
