"""Context-aware logging for services, and redaction of secrets before anything is logged.

`get_service_logger(name, ctx)` writes through the Motia context's `ctx.logger`
(`info/warn/error/debug(message, data=None)`) when a context is given, else through the
stdlib logger `bitbylaw.<name>`. Structured fields go as `data`, redacted.

Every line logged inside a queued run is also kept for that run's entity
(services.platform.activity: the operators' "recent log lines and trace ids").

`redact()` / `redact_mapping()` mask values whose key looks secret (contains key, secret,
token, password, authorization, signature, cookie, credential, hmac) and credentials
embedded in strings (`Bearer …`, `Basic …`, `user:password@` in URLs).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from services.platform import activity as _activity

MASK = "***"

SENSITIVE_KEY_PARTS: tuple[str, ...] = (
    "key",
    "secret",
    "token",
    "password",
    "passwd",
    "authorization",
    "signature",
    "cookie",
    "credential",
    "hmac",
    "private",
)
"""A mapping key containing one of these (case-insensitive) has its value masked."""

SAFE_KEYS: frozenset[str] = frozenset(
    {"lock_key", "lockkey", "cache_key", "redis_key", "key_format", "keys_count", "token_expires_at"}
)
"""Keys that contain a sensitive word but hold nothing secret (e.g. a Redis lock key)."""

# "Bearer <credential>" / "Basic <credential>": 8+ token characters that look machine-made
# (a digit or symbol, or an upper-case letter after the first), so prose such as
# "Basic authentication failed" is left alone.
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})")
_MACHINE_MADE = re.compile(r"[0-9._~+/=-]|^.+[A-Z]")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@/]+@")
# `?token=…` / `&api_key=…` in a URL (the webhook token rides in EspoCRM's webhook URL).
_QUERY_PARAM = re.compile(r"([?&])([A-Za-z0-9_.\-\[\]]+)=([^&#\s\"'<>]+)")
_MAX_DEPTH = 20


def is_sensitive_key(key: Any) -> bool:
    """Whether a mapping key names a secret."""
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    if lowered in SAFE_KEYS:
        return False
    return any(part in lowered for part in SENSITIVE_KEY_PARTS)


def redact_text(text: str) -> str:
    """Mask bearer/basic credentials, URL passwords and secret-named query parameters
    (`?token=…`, `&api_key=…`: names as in `is_sensitive_key`) inside free text."""
    text = _BEARER.sub(
        lambda m: f"{m.group(1)}{m.group(2)}{MASK}" if _MACHINE_MADE.search(m.group(3)) else m.group(0), text
    )
    text = _QUERY_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}" if is_sensitive_key(m.group(2)) else m.group(0), text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)


def redact(value: Any, *, _depth: int = 0) -> Any:
    """A copy of `value` safe to log: mappings via `redact_mapping`, sequences item by item,
    strings with embedded credentials masked, pydantic SecretStr/SecretBytes masked."""
    if _depth > _MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        return redact_mapping(value, _depth=_depth)
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(v, _depth=_depth + 1) for v in value]
    if type(value).__name__ in ("SecretStr", "SecretBytes"):
        return MASK
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return value


def redact_mapping(data: Mapping[Any, Any], *, extra_keys: tuple[str, ...] = (), _depth: int = 0) -> dict[Any, Any]:
    """A copy of `data` with secret-looking keys masked, recursively (also HTTP headers)."""
    result: dict[Any, Any] = {}
    for key, value in data.items():
        lowered = key.lower() if isinstance(key, str) else key
        if is_sensitive_key(key) or (isinstance(lowered, str) and any(p in lowered for p in extra_keys)):
            result[key] = MASK if value not in (None, "") else value
        else:
            result[key] = redact(value, _depth=_depth + 1)
    return result


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


class ServiceLogger:
    """debug/info/warn/warning/error(message, data=None, **fields), redacting `data`.

    With a context, calls `ctx.logger.<level>(message, data)`; without, the stdlib logger
    `bitbylaw.<name>` with the fields appended as JSON. `bind(**fields)` returns a logger
    that adds those fields to every message.
    """

    def __init__(self, name: str, ctx: Any = None, fields: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.ctx = ctx
        self.fields: dict[str, Any] = dict(fields or {})
        self.stdlib = logging.getLogger(f"bitbylaw.{name}")

    def bind(self, **fields: Any) -> ServiceLogger:
        return ServiceLogger(self.name, self.ctx, {**self.fields, **fields})

    def debug(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self._emit("debug", message, data, fields)

    def info(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self._emit("info", message, data, fields)

    def warn(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self._emit("warn", message, data, fields)

    warning = warn

    def error(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self._emit("error", message, data, fields)

    def log(self, level: str, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Log at a level given by name (debug/info/warn/warning/error; unknown → info)."""
        level = level.lower()
        if level == "warning":
            level = "warn"
        if level in ("exception", "critical"):
            level = "error"
        self._emit(level if level in _LEVELS else "info", message, data, fields)

    def _payload(self, data: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        merged: dict[str, Any] = {**self.fields}
        if data:
            merged.update(data)
        merged.update(fields)
        for name, value in list(merged.items()):
            if isinstance(value, BaseException):
                merged[name] = f"{type(value).__name__}: {value}"
        return redact_mapping(merged) if merged else None

    def _emit(self, level: str, message: str, data: Mapping[str, Any] | None, fields: Mapping[str, Any]) -> None:
        payload = self._payload(data, fields)
        message = redact_text(str(message))
        _activity.note(level, message, payload)
        ctx_logger = getattr(self.ctx, "logger", None) if self.ctx is not None else None
        if ctx_logger is not None:
            method = getattr(ctx_logger, level, None)
            if method is None and level == "warn":
                method = getattr(ctx_logger, "warning", None)
            if method is not None:
                try:
                    if payload is None:
                        method(message)
                    else:
                        method(message, payload)
                    return
                except Exception:  # noqa: BLE001 - never let logging break the work
                    pass
        if not self.stdlib.isEnabledFor(_LEVELS[level]):
            return
        if payload:
            text = json.dumps(payload, default=str, ensure_ascii=False)
            self.stdlib.log(_LEVELS[level], "%s %s", message, text, extra={"data": payload})
        else:
            self.stdlib.log(_LEVELS[level], "%s", message)


def get_service_logger(name: str, ctx: Any = None) -> ServiceLogger:
    """A logger for service `name`, writing through `ctx.logger` when a context is given."""
    return ServiceLogger(name, ctx)
