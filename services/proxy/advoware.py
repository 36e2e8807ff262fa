"""The Advoware proxy: lets the firm's other tools call the Advoware API without holding
its credentials. Knows nothing of Motia: the step glue (src/glue/proxy.py) answers.

`GET|POST|PUT|DELETE /advoware/proxy?endpoint=<path>&...` → `{api_base}<path>` with the
cached Advoware bearer token (services.clients.advoware.api.AdvowareAPI: HMAC-512 token flow,
Redis token cache, one refresh on 401). The answer is Advoware's status, content type
and body, byte for byte.

Order of checks (nothing leaves before all have passed):
1. No `ADVOWARE_PROXY_TOKEN` configured → 503 (the proxy never runs open).
2. `Authorization: Bearer <ADVOWARE_PROXY_TOKEN>` missing or wrong → 401 (constant-time compare).
3. `endpoint` fails `validate_endpoint` → 400 with the reason.
4. Body larger than `ADVOWARE_PROXY_MAX_BODY_BYTES` → 413; a body that is not what it
   claims (unparsable JSON, shorter than its Content-Length) → 400. How the body is taken
   from the engine (parsed JSON, or the raw stream for other content types) and how the
   answer goes back (through the response channel) is in services.proxy.http and src/glue/proxy.py.
Then the call: Advoware unreachable → 502, timed out → 504, answer larger than the limit
→ 502; all with a JSON body `{"error": <reason>, "source": "advoware-proxy"}`.

Only a few caller headers are forwarded (`FORWARDED_REQUEST_HEADERS`: content negotiation
and conditional requests); hop-by-hop headers, `Authorization`, cookies and everything
else stay behind. Only `FORWARDED_RESPONSE_HEADERS` come back (no `Set-Cookie`,
`WWW-Authenticate`, `Location` with Advoware's internal address, hop-by-hop headers).
Neither the caller's token nor Advoware's ever reaches a log line or a response.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from services.clients.advoware.paths import TOKEN_PATH
from services.clients.errors import ApiConnectionError, ApiError, IntegrationError, ValidationError
from services.clients.retry import NO_RETRY
from services.platform.logging import get_service_logger
from services.proxy.http import ProxyError, read_body

# --- constants --------------------------------------------------------------------------

PROXY_PATH = "/advoware/proxy"
ENDPOINT_PARAM = "endpoint"
MAX_ENDPOINT_LENGTH = 1024
"""Longer `endpoint` values are refused (real Advoware paths are far shorter)."""
MAX_DECODE_ROUNDS = 4
"""Percent-decoding is repeated until stable; still changing after this many rounds → refused."""
MAX_QUERY_PARAMS = 100
PROXY_TIMEOUT_CAP_SECONDS = 25.0
"""The proxy gives up on Advoware after min(ADVOWARE_API_TIMEOUT_SECONDS, this), so it
answers 504 itself before the engine's own 30 s request timeout does."""
DEFAULT_BODY_CONTENT_TYPE = "application/json"
ERROR_SOURCE = "advoware-proxy"

ALWAYS_BLOCKED_PREFIXES: tuple[str, ...] = (TOKEN_PATH,)
"""Never proxied, whatever the allow-list says: the token endpoint is the proxy's own business."""

_SAFE_PATH = re.compile(r"[A-Za-z0-9._~(),+=/-]+")
"""Characters a normalized endpoint may contain (no `%`, `;`, `:`, `@`, `?`, `#`, `\\`)."""
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

HOP_BY_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
     "transfer-encoding", "upgrade", "proxy-connection"}
)
AUTH_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "www-authenticate"})
FORWARDED_REQUEST_HEADERS = frozenset(
    {"accept", "accept-language", "content-type", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since"}
)
"""The only caller headers sent on to Advoware (the client sets Authorization itself)."""
FORWARDED_RESPONSE_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-language", "etag", "last-modified", "cache-control", "expires",
     "retry-after", "allow"}
)
"""The only Advoware response headers handed back to the caller."""


class ProxyMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    DELETE = "DELETE"


BODY_METHODS = frozenset({ProxyMethod.POST, ProxyMethod.PUT, ProxyMethod.DELETE})
"""Methods whose request body is forwarded (a GET's body is ignored)."""


# --- errors -----------------------------------------------------------------------------


class EndpointRejected(ValidationError):
    """The `endpoint` parameter is not a safe relative API path (→ 400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"endpoint rejected: {reason}")
        self.reason = reason


# --- pure decisions ---------------------------------------------------------------------


def _reject(reason: str) -> EndpointRejected:
    return EndpointRejected(reason)


def _is_control(ch: str) -> bool:
    return ch < " " or ch == "\x7f" or unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def _dot_segment(layer: str) -> bool:
    return any(seg.startswith(".") or seg.endswith(".") for seg in layer.split("/"))


_LAYER_CHECKS: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda s: any(_is_control(ch) for ch in s), "control characters (CR, LF, NUL, ...) are not allowed"),
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


def validate_endpoint(raw: Any, allowed_prefixes: Sequence[str] = ()) -> str:
    """The normalized relative API path for `raw` (no leading or trailing slash), or
    EndpointRejected with the reason.

    Refused: empty or longer than MAX_ENDPOINT_LENGTH; absolute URLs (`http:`, any
    `scheme:`), scheme-relative `//host`, backslashes, `@`, `:`, `?`, `#`, whitespace and
    control characters, `.`/`..` segments and empty segments (`a//b`) — in the raw value
    and in every layer of percent-decoding (`%2e%2e`, `%252e`, `%0d%0a`); characters
    outside `A-Z a-z 0-9 . _ ~ ( ) , + = -` after decoding; the token endpoint; and, when
    `allowed_prefixes` is not empty, paths not below one of them (segment-wise,
    case-insensitive). A single leading slash is accepted and dropped.
    """
    if not isinstance(raw, str) or not raw:
        raise _reject(f"the '{ENDPOINT_PARAM}' query parameter is required (a path such as api/v1/advonet/Beteiligte)")
    if len(raw) > MAX_ENDPOINT_LENGTH:
        raise _reject(f"longer than {MAX_ENDPOINT_LENGTH} characters")
    layers = [raw]
    current = raw
    for _ in range(MAX_DECODE_ROUNDS):
        try:
            decoded = unquote(current, errors="strict")
        except UnicodeDecodeError:
            raise _reject("percent-encoding that is not UTF-8") from None
        if decoded == current:
            break
        layers.append(decoded)
        current = decoded
    else:
        raise _reject(f"percent-encoded more than {MAX_DECODE_ROUNDS - 1} times")
    for predicate, reason in _LAYER_CHECKS:
        if any(predicate(layer) for layer in layers):
            raise _reject(reason)
    path = current[1:] if current.startswith("/") else current
    if path.endswith("/"):
        path = path[:-1]
    if not path:
        raise _reject("empty path")
    if any(segment == "" for segment in path.split("/")):
        raise _reject("empty path segments ('//') are not allowed")
    if not _SAFE_PATH.fullmatch(path):
        raise _reject("only letters, digits and . _ ~ ( ) , + = - / are allowed in the path")
    for blocked in ALWAYS_BLOCKED_PREFIXES:
        if _under(path, blocked):
            raise _reject(f"{blocked} is not available through the proxy")
    prefixes = [p for p in allowed_prefixes if _normalize_prefix(p)]
    if prefixes and not any(_under(path, p) for p in prefixes):
        raise _reject("path is not below an allowed prefix (ADVOWARE_PROXY_ALLOWED_PREFIXES)")
    return path


def _lower_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (headers or {}).items():
        if isinstance(v, (list, tuple)):
            v = v[0] if v else ""
        out[str(k).lower()] = str(v)
    return out


def _connection_listed(headers: Mapping[str, str]) -> set[str]:
    """Header names the sender declared hop-by-hop in `Connection`."""
    return {name.strip().lower() for name in headers.get("connection", "").split(",") if name.strip()}


def _safe_value(value: str) -> bool:
    return not any(_is_control(ch) for ch in value)


def filter_request_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The caller headers forwarded to Advoware: only FORWARDED_REQUEST_HEADERS, never a
    hop-by-hop or auth header (nor one named in `Connection`), never a value with CR/LF."""
    lowered = _lower_headers(headers)
    dropped = HOP_BY_HOP_HEADERS | AUTH_HEADERS | _connection_listed(lowered)
    return {
        k: v
        for k, v in lowered.items()
        if k in FORWARDED_REQUEST_HEADERS and k not in dropped and _safe_value(v)
    }


def filter_response_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Advoware's response headers handed to the caller (FORWARDED_RESPONSE_HEADERS only),
    with canonical capitalisation (`Content-Type`)."""
    lowered = _lower_headers(headers)
    dropped = HOP_BY_HOP_HEADERS | AUTH_HEADERS | _connection_listed(lowered)
    return {
        "-".join(part.capitalize() for part in k.split("-")): v
        for k, v in lowered.items()
        if k in FORWARDED_RESPONSE_HEADERS and k not in dropped and _safe_value(v)
    }


def bearer_token(headers: Mapping[str, Any] | None) -> str | None:
    """The credential of `Authorization: Bearer <token>` (scheme case-insensitive), else None."""
    value = _lower_headers(headers).get("authorization", "")
    scheme, _, credential = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def check_caller(headers: Mapping[str, Any] | None, expected: Any) -> None:
    """Raise ProxyError 503 when no proxy token is configured, 401 when the caller's
    bearer token is missing or wrong (constant-time comparison)."""
    secret = expected.get_secret_value() if hasattr(expected, "get_secret_value") else expected
    if not secret:
        raise ProxyError(503, "the Advoware proxy is disabled: ADVOWARE_PROXY_TOKEN is not configured")
    given = bearer_token(headers)
    challenge = {"WWW-Authenticate": 'Bearer realm="advoware-proxy"'}
    if given is None:
        raise ProxyError(401, "missing credentials: send Authorization: Bearer <proxy token>", challenge)
    if not hmac.compare_digest(given.encode("utf-8"), str(secret).encode("utf-8")):
        raise ProxyError(401, "invalid proxy token", challenge)


def forward_params(query_params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The caller's query parameters minus `endpoint`, in order (lists give repeated keys)."""
    out: list[tuple[str, str]] = []
    for key, value in (query_params or {}).items():
        if key == ENDPOINT_PARAM:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        out.extend((str(key), "" if v is None else str(v)) for v in values)
    if len(out) > MAX_QUERY_PARAMS:
        raise ProxyError(400, f"more than {MAX_QUERY_PARAMS} query parameters")
    return out


def endpoint_param(query_params: Mapping[str, Any] | None) -> Any:
    """The raw `endpoint` value; several values are refused (ambiguous)."""
    value = (query_params or {}).get(ENDPOINT_PARAM)
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise EndpointRejected(f"give '{ENDPOINT_PARAM}' exactly once")
        value = value[0]
    return value


def proxy_timeout(settings: Any) -> float:
    """Seconds the proxy waits for Advoware: the smaller of ADVOWARE_PROXY_TIMEOUT_SECONDS
    (default PROXY_TIMEOUT_CAP_SECONDS, below the engine's 30 s) and ADVOWARE_API_TIMEOUT_SECONDS."""
    advo = settings.advoware
    explicit = getattr(advo, "proxy_timeout_seconds", None) or PROXY_TIMEOUT_CAP_SECONDS
    return min(float(explicit), float(advo.timeout_seconds))


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyResult:
    """What the step answers: status, headers and body (bytes as they came, or JSON)."""

    status: int
    headers: dict[str, str]
    body: Any
    upstream: bool
    """True when this is Advoware's own answer (False: the proxy's error)."""

    @classmethod
    def error(cls, status: int, reason: str, headers: Mapping[str, str] | None = None) -> ProxyResult:
        return cls(
            status,
            {**(headers or {}), "Content-Type": "application/json"},
            {"error": reason, "source": ERROR_SOURCE},
            upstream=False,
        )


# --- I/O --------------------------------------------------------------------------------


async def forward(
    client: Any,
    method: ProxyMethod | str,
    endpoint: str,
    *,
    params: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_seconds: float = PROXY_TIMEOUT_CAP_SECONDS,
    max_response_bytes: int | None = None,
) -> ProxyResult:
    """Send one validated call through `client` (an AdvowareAPI) and turn the outcome into
    a ProxyResult: Advoware's answer as it is, or 502 (unreachable, bad token answer, too
    large) / 504 (no answer within `timeout_seconds`). Never retries (writes must not be
    repeated; callers decide), except the client's one token refresh on 401."""
    from services.clients.advoware.responses import ResponseTooLargeError

    method = ProxyMethod(str(method).upper())
    out_headers = dict(headers or {})
    if body is not None and "content-type" not in {k.lower() for k in out_headers}:
        out_headers["content-type"] = DEFAULT_BODY_CONTENT_TYPE
    try:
        async with asyncio.timeout(timeout_seconds):
            resp = await client.request(
                method.value,
                endpoint,
                params=list(params) or None,
                headers=out_headers,
                data=body,
                max_response_bytes=max_response_bytes,
                retry_policy=NO_RETRY,
            )
    except TimeoutError:
        return ProxyResult.error(504, f"Advoware did not answer within {timeout_seconds:g} s")
    except ResponseTooLargeError as exc:
        return ProxyResult.error(502, f"Advoware's answer is larger than the proxy's limit of {exc.limit} bytes")
    except ApiConnectionError as exc:
        if exc.timeout:
            return ProxyResult.error(504, "Advoware did not answer in time")
        return ProxyResult.error(502, "Advoware is unreachable (connection failed or was reset)")
    except ApiError as exc:  # the token request failed: our credentials, not the caller's
        return ProxyResult.error(502, f"could not obtain an Advoware token (status {exc.status})")
    except ValidationError:
        return ProxyResult.error(400, "endpoint rejected by the Advoware client")
    except IntegrationError:
        return ProxyResult.error(502, "the call to Advoware failed")
    resp_headers = filter_response_headers(resp.headers)
    body_out: bytes | None = resp.body if resp.body else None
    if body_out is not None and "Content-Type" not in resp_headers:
        resp_headers["Content-Type"] = "application/octet-stream"
    return ProxyResult(resp.status, resp_headers, body_out, upstream=True)


async def proxy_request(
    method: ProxyMethod | str,
    request: Any,
    ctx: Any,
    *,
    settings: Any = None,
    client: Any = None,
) -> ProxyResult:
    """Check the caller, validate the endpoint and body, forward; the ProxyResult to answer
    (the step glue src/glue/proxy.py `handle_proxy_request` writes it to the response channel)."""
    method = ProxyMethod(str(method).upper())
    log = get_service_logger("advoware_proxy", ctx)
    if settings is None:
        from services.platform.settings import get_settings

        settings = get_settings()
    advo = settings.advoware
    started = time.monotonic()
    query = getattr(request, "query_params", None) or {}
    try:
        check_caller(getattr(request, "headers", None), advo.proxy_token)
        endpoint = validate_endpoint(endpoint_param(query), advo.proxy_allowed_prefixes)
        params = forward_params(query)
        body = await read_body(request, advo.proxy_max_body_bytes) if method in BODY_METHODS else None
    except ProxyError as exc:
        log.warn(f"advoware proxy refused {method.value}: {exc.reason}", {"status": exc.status})
        return ProxyResult.error(exc.status, exc.reason, exc.headers)
    except EndpointRejected as exc:
        log.warn(
            f"advoware proxy refused {method.value}: {exc.reason}",
            {"status": 400, "endpoint": ascii(str(endpoint_param_safe(query)))[:120]},
        )
        return ProxyResult.error(400, f"invalid endpoint: {exc.reason}")
    if client is None:
        from services.platform.container import get_advoware

        client = get_advoware()
    result = await forward(
        client,
        method,
        endpoint,
        params=params,
        body=body,
        headers=filter_request_headers(getattr(request, "headers", None)),
        timeout_seconds=proxy_timeout(settings),
        max_response_bytes=advo.proxy_max_body_bytes,
    )
    data = {
        "method": method.value,
        "endpoint": endpoint,
        "status": result.status,
        "params": len(params),
        "request_bytes": len(body or b""),
        "response_bytes": len(result.body) if isinstance(result.body, (bytes, bytearray)) else 0,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    if result.upstream:
        log.info(f"advoware proxy {method.value} {endpoint} → {result.status}", data)
    else:
        log.warn(f"advoware proxy {method.value} {endpoint} failed: {result.body['error']}", data)
    return result


def endpoint_param_safe(query: Mapping[str, Any]) -> str:
    """The raw endpoint for a log line (never raises)."""
    try:
        value = endpoint_param(query)
    except EndpointRejected:
        value = (query or {}).get(ENDPOINT_PARAM)
    return "" if value is None else str(value)

