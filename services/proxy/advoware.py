"""The Advoware proxy: lets the firm's other tools call the Advoware API without holding
its credentials. Knows nothing of Motia: the step glue (src/glue/proxy.py) answers.

`GET|POST|PUT|DELETE /advoware/proxy?endpoint=<path>&...` → `{api_base}<path>` with the
cached Advoware bearer token (services.clients.advoware.api.AdvowareAPI: HMAC-512 token flow,
sealed Redis token cache, at most one refresh on 401 per token and interval). The answer is
Advoware's status, content type and body, byte for byte; a redirect is never followed.

Order of checks (nothing leaves before all have passed):
1. No caller configured (ADVOWARE_PROXY_TOKENS / ADVOWARE_PROXY_TOKEN) → 503 (never open);
   production without an allow-list → 503 (the settings refuse to start that way anyway).
2. The client address failed authentication too often → 429 with `Retry-After`
   (services.platform.auth: `AuthFailureLimiter`, under services.proxy.auth's `FAILURE_KEY_PREFIX`).
3. `Authorization: Bearer <token>` missing or no caller's → 401 (constant-time compare over
   every caller's token; the failure is counted); else the caller's name goes into the logs.
4. `endpoint` fails `validate_endpoint` → 400 with the reason; outside the scope (always-denied
   paths, ADVOWARE_PROXY_ALLOWED_PREFIXES with its methods) → 403 (services.proxy.endpoint).
5. Body larger than `ADVOWARE_PROXY_MAX_BODY_BYTES` → 413; a body that is not what it
   claims (unparsable JSON, shorter than its Content-Length) → 400. How the body is taken
   from the engine (parsed JSON, or the raw stream for other content types) and how the
   answer goes back (through the response channel) is in services.proxy.http and src/glue/proxy.py.
Then the call: Advoware unreachable → 502, timed out → 504, answer larger than the limit
→ 502, a redirect (3xx but 304) → 502; all with a JSON body `{"error": <reason>, "source": "advoware-proxy"}`.

Only a few caller headers are forwarded (`FORWARDED_REQUEST_HEADERS`: content negotiation
and conditional requests); hop-by-hop headers, `Authorization`, cookies and everything
else stay behind. Only `FORWARDED_RESPONSE_HEADERS` come back (no `Set-Cookie`,
`WWW-Authenticate`, `Location` with Advoware's internal address, hop-by-hop headers). Every
answer carries `SECURITY_HEADERS` (`nosniff`, a Content-Security-Policy that lets a browser
run or embed nothing). Neither the caller's token nor Advoware's ever reaches a log line or a
response.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from services.clients.errors import ApiConnectionError, ApiError, IntegrationError, ValidationError
from services.clients.retry import NO_RETRY
from services.platform.auth import AuthFailureLimiter, client_address, lower_headers
from services.platform.logging import get_service_logger
from services.platform.settings.values import AppMode
from services.proxy.auth import DISABLED_REASON, FAILURE_KEY_PREFIX, identify_caller
from services.proxy.endpoint import (
    ENDPOINT_PARAM,
    EndpointForbidden,
    EndpointRejected,
    is_control,
    validate_endpoint,
)
from services.proxy.http import ProxyError, read_body

# --- constants --------------------------------------------------------------------------

PROXY_PATH = "/advoware/proxy"
MAX_QUERY_PARAMS = 100
PROXY_TIMEOUT_CAP_SECONDS = 25.0
"""The proxy gives up on Advoware after min(ADVOWARE_API_TIMEOUT_SECONDS, this), so it
answers 504 itself before the engine's own 30 s request timeout does."""
DEFAULT_BODY_CONTENT_TYPE = "application/json"
ERROR_SOURCE = "advoware-proxy"
NOT_MODIFIED = 304
"""The one 3xx passed on (a conditional request's answer); every other 3xx is a 502."""

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
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
}
"""On every answer: a browser neither sniffs a type, runs a script, loads anything nor frames it."""


class ProxyMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    DELETE = "DELETE"


BODY_METHODS = frozenset({ProxyMethod.POST, ProxyMethod.PUT, ProxyMethod.DELETE})
"""Methods whose request body is forwarded (a GET's body is ignored)."""

__all__ = [
    "EndpointForbidden",
    "EndpointRejected",
    "ProxyError",
    "ProxyMethod",
    "ProxyResult",
    "forward",
    "proxy_request",
    "read_body",
    "validate_endpoint",
]


# --- pure decisions ---------------------------------------------------------------------


def _connection_listed(headers: Mapping[str, str]) -> set[str]:
    """Header names the sender declared hop-by-hop in `Connection`."""
    return {name.strip().lower() for name in headers.get("connection", "").split(",") if name.strip()}


def _safe_value(value: str) -> bool:
    return not any(is_control(ch) for ch in value)


def filter_request_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The caller headers forwarded to Advoware: only FORWARDED_REQUEST_HEADERS, never a
    hop-by-hop or auth header (nor one named in `Connection`), never a value with CR/LF."""
    lowered = lower_headers(headers)
    dropped = HOP_BY_HOP_HEADERS | AUTH_HEADERS | _connection_listed(lowered)
    return {
        k: v
        for k, v in lowered.items()
        if k in FORWARDED_REQUEST_HEADERS and k not in dropped and _safe_value(v)
    }


def filter_response_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """Advoware's response headers handed to the caller (FORWARDED_RESPONSE_HEADERS only),
    with canonical capitalisation (`Content-Type`)."""
    lowered = lower_headers(headers)
    dropped = HOP_BY_HOP_HEADERS | AUTH_HEADERS | _connection_listed(lowered)
    return {
        "-".join(part.capitalize() for part in k.split("-")): v
        for k, v in lowered.items()
        if k in FORWARDED_RESPONSE_HEADERS and k not in dropped and _safe_value(v)
    }


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


def limiter_for(settings: Any) -> AuthFailureLimiter:
    """The failed-authentication limiter of these settings, on the worker's shared Redis."""
    from services.platform.container import get_redis_client

    advo = settings.advoware
    return AuthFailureLimiter(
        get_redis_client(), limit=advo.proxy_auth_failure_limit, window_seconds=advo.proxy_auth_failure_window_seconds,
        key_prefix=FAILURE_KEY_PREFIX,
    )


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
    large, a redirect: the client never follows one) / 504 (no answer within `timeout_seconds`).
    Never retries (writes must not be repeated; callers decide), except the client's one
    token refresh on 401."""
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
    if 300 <= resp.status < 400 and resp.status != NOT_MODIFIED:
        return ProxyResult.error(502, f"Advoware answered with a redirect ({resp.status}); the proxy does not follow redirects")
    resp_headers = filter_response_headers(resp.headers)
    body_out: bytes | None = resp.body if resp.body else None
    if body_out is not None and "Content-Type" not in resp_headers:
        resp_headers["Content-Type"] = "application/octet-stream"
    return ProxyResult(resp.status, resp_headers, body_out, upstream=True)


async def authenticate(headers: Mapping[str, Any] | None, settings: Any, limiter: AuthFailureLimiter, address: str) -> str:
    """Checks 1-3 of the module docstring: the caller's name, or ProxyError 503/429/401 (a 401
    is counted against `address`)."""
    advo = settings.advoware
    callers = advo.proxy_callers
    if not callers:
        raise ProxyError(503, DISABLED_REASON)
    if getattr(settings, "mode", None) is AppMode.PRODUCTION and not advo.proxy_allowed_prefixes:
        raise ProxyError(503, "the Advoware proxy is not scoped: production requires ADVOWARE_PROXY_ALLOWED_PREFIXES")
    return await limiter.admit(address, lambda: identify_caller(headers, callers),
                               lambda wait, reason: ProxyError(429, reason, {"Retry-After": str(wait)}))


async def proxy_request(
    method: ProxyMethod | str,
    request: Any,
    ctx: Any,
    *,
    settings: Any = None,
    client: Any = None,
    limiter: AuthFailureLimiter | None = None,
) -> ProxyResult:
    """Check the caller, validate the endpoint and body, forward; the ProxyResult to answer,
    with SECURITY_HEADERS (the step glue src/glue/proxy.py `handle_proxy_request` writes it to
    the response channel). `settings`, `client` and `limiter` default to the worker's."""
    if settings is None:
        from services.platform.settings import get_settings

        settings = get_settings()
    result = await _proxy_request(ProxyMethod(str(method).upper()), request, ctx, settings, client, limiter)
    return replace(result, headers={**result.headers, **SECURITY_HEADERS})


async def _proxy_request(
    method: ProxyMethod, request: Any, ctx: Any, settings: Any, client: Any, limiter: AuthFailureLimiter | None
) -> ProxyResult:
    log = get_service_logger("advoware_proxy", ctx)
    advo = settings.advoware
    started = time.monotonic()
    headers = getattr(request, "headers", None)
    query = getattr(request, "query_params", None) or {}
    address = client_address(headers)
    caller = ""
    try:
        caller = await authenticate(headers, settings, limiter or limiter_for(settings), address)
        endpoint = validate_endpoint(endpoint_param(query), advo.proxy_allowed_prefixes, method.value)
        params = forward_params(query)
        body = await read_body(request, advo.proxy_max_body_bytes) if method in BODY_METHODS else None
    except ProxyError as exc:
        log.warn(f"advoware proxy refused {method.value}: {exc.reason}",
                 {"status": exc.status, "caller": caller or None, "client": address})
        return ProxyResult.error(exc.status, exc.reason, exc.headers)
    except EndpointRejected as exc:
        what = "endpoint not allowed" if isinstance(exc, EndpointForbidden) else "invalid endpoint"
        log.warn(
            f"advoware proxy refused {method.value} for {caller}: {exc.reason}",
            {"status": exc.status, "caller": caller, "endpoint": ascii(str(endpoint_param_safe(query)))[:120]},
        )
        return ProxyResult.error(exc.status, f"{what}: {exc.reason}")
    if client is None:
        from services.platform.container import get_advoware

        client = get_advoware()
    result = await forward(
        client,
        method,
        endpoint,
        params=params,
        body=body,
        headers=filter_request_headers(headers),
        timeout_seconds=proxy_timeout(settings),
        max_response_bytes=advo.proxy_max_body_bytes,
    )
    data = {
        "caller": caller,
        "method": method.value,
        "endpoint": endpoint,
        "status": result.status,
        "params": len(params),
        "request_bytes": len(body or b""),
        "response_bytes": len(result.body) if isinstance(result.body, (bytes, bytearray)) else 0,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
    }
    if result.upstream:
        log.info(f"advoware proxy {method.value} {endpoint} → {result.status} (caller {caller})", data)
    else:
        log.warn(f"advoware proxy {method.value} {endpoint} for {caller} failed: {result.body['error']}", data)
    return result


def endpoint_param_safe(query: Mapping[str, Any]) -> str:
    """The raw endpoint for a log line (never raises)."""
    try:
        value = endpoint_param(query)
    except EndpointRejected:
        value = (query or {}).get(ENDPOINT_PARAM)
    return "" if value is None else str(value)

