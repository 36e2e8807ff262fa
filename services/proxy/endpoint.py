"""Which Advoware paths the proxy forwards: the `endpoint` parameter's syntax (400 when unsafe)
and the proxy's scope (403 when not allowed). Pure; knows nothing of Motia.

Scope, in this order:
1. Never forwarded, whatever the configuration says (`never_forwarded`): the token endpoint
   (the proxy's own business), the configurator (`AdvonetConfigurator`), ASP.NET's diagnostic
   handlers (any segment ending in `.axd`: `trace.axd`, `elmah.axd`, `WebResource.axd`, ...)
   and ELMAH's `elmah` route, at any depth and in any case.
2. The allow-list ADVOWARE_PROXY_ALLOWED_PREFIXES: entries `[METHODS:]prefix` (settings parser
   `proxy_allow_list`: `GET:api/v1/advonet/Mitarbeiter`, `GET|POST:api/v1/Akten`, a bare prefix
   = every method). The path must lie below a prefix (segment-wise, case-insensitive, like
   ASP.NET routing) whose entry allows the method. Required in production (the settings refuse
   to start without it while the proxy has callers); the sandbox has a default list. An empty
   list allows every path (tests and explicit sandbox configurations only).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from services.clients.advoware.paths import TOKEN_PATH
from services.clients.errors import ValidationError

ENDPOINT_PARAM = "endpoint"
MAX_ENDPOINT_LENGTH = 1024
"""Longer `endpoint` values are refused (real Advoware paths are far shorter)."""
MAX_DECODE_ROUNDS = 4
"""Percent-decoding is repeated until stable; still changing after this many rounds → refused."""
ALL_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})

ALWAYS_BLOCKED_PREFIXES: tuple[str, ...] = (TOKEN_PATH,)
"""Never proxied below these, whatever the allow-list says."""
BLOCKED_SEGMENTS = frozenset({"advonetconfigurator", "elmah"})
"""Never proxied when any path segment is one of these (case-insensitive)."""
BLOCKED_SEGMENT_SUFFIX = ".axd"
"""ASP.NET handlers (trace.axd, elmah.axd, ...): never proxied at any depth."""

_SAFE_PATH = re.compile(r"[A-Za-z0-9._~(),+=/-]+")
"""Characters a normalized endpoint may contain (no `%`, `;`, `:`, `@`, `?`, `#`, `\\`)."""
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class EndpointRejected(ValidationError):
    """The `endpoint` parameter is not a safe relative API path (→ 400)."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(f"endpoint rejected: {reason}")
        self.reason = reason


class EndpointForbidden(EndpointRejected):
    """A safe path the proxy does not forward (for this method): outside its scope (→ 403)."""

    status = 403


@dataclass(frozen=True)
class AllowRule:
    """One allow-list entry: a path prefix and the methods allowed below it."""

    prefix: str
    methods: frozenset[str]

    @classmethod
    def parse(cls, entry: str) -> AllowRule:
        """`GET|POST:api/v1/Akten` or a bare prefix (every method); slashes around it dropped."""
        methods_text, colon, prefix = entry.rpartition(":")
        methods = frozenset(m.strip().upper() for m in methods_text.split("|")) if colon else ALL_METHODS
        return cls(prefix.strip().strip("/"), ALL_METHODS if "*" in methods else methods)

    def covers(self, path: str) -> bool:
        return _under(path, self.prefix)


def is_control(ch: str) -> bool:
    return ch < " " or ch == "\x7f" or unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def _dot_segment(layer: str) -> bool:
    return any(seg.startswith(".") or seg.endswith(".") for seg in layer.split("/"))


_LAYER_CHECKS: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda s: any(is_control(ch) for ch in s), "control characters (CR, LF, NUL, ...) are not allowed"),
    (lambda s: "\\" in s, "backslashes are not allowed"),
    (lambda s: s.startswith("//"), "scheme-relative URLs ('//host') are not allowed; give a path below the API base"),
    (lambda s: "://" in s or bool(_SCHEME.match(s)), "absolute URLs are not allowed; give a path below the API base"),
    (lambda s: "@" in s, "'@' is not allowed"),
    (_dot_segment, "'.' and '..' segments (and segments starting or ending with '.') are not allowed"),
    (lambda s: ":" in s, "':' is not allowed"),
    (lambda s: "?" in s or "#" in s, "'?' and '#' are not allowed; pass query parameters as separate parameters"),
    (lambda s: any(ch.isspace() for ch in s), "whitespace is not allowed"),
)
"""What must not appear in any decoding layer of the endpoint, most telling reason first."""


def _normalize_prefix(prefix: str) -> str:
    return prefix.strip().strip("/").casefold()


def _under(path: str, prefix: str) -> bool:
    """Segment-wise, case-insensitive (like ASP.NET routing): `a/b` is under `a`, `ab` is not."""
    p = _normalize_prefix(prefix)
    if not p:
        return False
    folded = path.casefold()
    return folded == p or folded.startswith(p + "/")


def never_forwarded(path: str) -> str | None:
    """Why `path` is never proxied (the always-denied list), or None."""
    for blocked in ALWAYS_BLOCKED_PREFIXES:
        if _under(path, blocked):
            return f"{blocked} is not available through the proxy"
    for segment in path.casefold().split("/"):
        if segment in BLOCKED_SEGMENTS or segment.endswith(BLOCKED_SEGMENT_SUFFIX):
            return "Advoware's configurator and diagnostic handlers (*.axd, elmah) are not available through the proxy"
    return None


def rules_of(entries: Iterable[str | AllowRule]) -> list[AllowRule]:
    """The allow-list's rules (entries as the settings normalized them), empty prefixes dropped."""
    rules = [e if isinstance(e, AllowRule) else AllowRule.parse(e) for e in entries]
    return [r for r in rules if _normalize_prefix(r.prefix)]


def check_scope(path: str, allowed: Sequence[str | AllowRule], method: str | None = None) -> None:
    """EndpointForbidden unless the proxy forwards `method` (any method when None) to `path`."""
    denied = never_forwarded(path)
    if denied is not None:
        raise EndpointForbidden(denied)
    rules = rules_of(allowed)
    if not rules:
        return
    matching = [r for r in rules if r.covers(path)]
    if not matching:
        raise EndpointForbidden("path is not below an allowed prefix (ADVOWARE_PROXY_ALLOWED_PREFIXES)")
    if method is not None and not any(method.upper() in r.methods for r in matching):
        allowed_here = sorted(set().union(*(r.methods for r in matching)))
        raise EndpointForbidden(
            f"{method.upper()} is not allowed on this path (ADVOWARE_PROXY_ALLOWED_PREFIXES allows {'|'.join(allowed_here)})"
        )


def validate_endpoint(raw: Any, allowed_prefixes: Sequence[str | AllowRule] = (), method: str | None = None) -> str:
    """The normalized relative API path for `raw` (no leading or trailing slash), or
    EndpointRejected (400) with the reason, or EndpointForbidden (403) outside the scope.

    Refused as unsafe: empty or longer than MAX_ENDPOINT_LENGTH; absolute URLs (`http:`, any
    `scheme:`), scheme-relative `//host`, backslashes, `@`, `:`, `?`, `#`, whitespace and
    control characters, `.`/`..` segments and empty segments (`a//b`) — in the raw value
    and in every layer of percent-decoding (`%2e%2e`, `%252e`, `%0d%0a`); characters
    outside `A-Z a-z 0-9 . _ ~ ( ) , + = -` after decoding. Then the scope (`check_scope`:
    the always-denied paths, the allow-list and, when given, the method). A single leading
    slash is accepted and dropped.
    """
    if not isinstance(raw, str) or not raw:
        raise EndpointRejected(f"the '{ENDPOINT_PARAM}' query parameter is required (a path such as api/v1/advonet/Beteiligte)")
    if len(raw) > MAX_ENDPOINT_LENGTH:
        raise EndpointRejected(f"longer than {MAX_ENDPOINT_LENGTH} characters")
    layers = [raw]
    current = raw
    for _ in range(MAX_DECODE_ROUNDS):
        try:
            decoded = unquote(current, errors="strict")
        except UnicodeDecodeError:
            raise EndpointRejected("percent-encoding that is not UTF-8") from None
        if decoded == current:
            break
        layers.append(decoded)
        current = decoded
    else:
        raise EndpointRejected(f"percent-encoded more than {MAX_DECODE_ROUNDS - 1} times")
    for predicate, reason in _LAYER_CHECKS:
        if any(predicate(layer) for layer in layers):
            raise EndpointRejected(reason)
    path = current[1:] if current.startswith("/") else current
    if path.endswith("/"):
        path = path[:-1]
    if not path:
        raise EndpointRejected("empty path")
    if any(segment == "" for segment in path.split("/")):
        raise EndpointRejected("empty path segments ('//') are not allowed")
    if not _SAFE_PATH.fullmatch(path):
        raise EndpointRejected("only letters, digits and . _ ~ ( ) , + = - / are allowed in the path")
    check_scope(path, allowed_prefixes, method)
    return path
