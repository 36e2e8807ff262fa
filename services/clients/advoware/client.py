"""Advoware's HTTP client: one token-authenticated exchange with at most one token refresh on
401 (`TokenProvider.invalidate` decides: never for a token younger than `min_refresh_seconds`),
a raw `request()` for the proxy (answers as they come, only idempotent methods retried) and
`_call()` for the typed calls (JSON or a typed error; POST never repeated). Redirects are never
followed (`follow_redirects = False`, also for the token and discovery requests): a 3xx is
Advoware's answer (the proxy decides what to make of it), an error for the typed calls. Knows
nothing of Motia. The token flow is `token.TokenProvider`; the resource calls are `api.AdvowareAPI`;
the configurator lookup is `discover_urls`.

Every path and field name comes from `services.clients.advoware.paths`.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Unpack

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from services.clients.advoware import paths as P
from services.clients.advoware.responses import SERVICE, AdvowareResponse, ResponseTooLargeError, message_of
from services.clients.advoware.token import MIN_REFRESH_SECONDS, AdvowareLogin, TokenProvider, log_retry
from services.clients.errors import (
    ApiConnectionError,
    ApiError,
    ConfigError,
    ValidationError,
    api_error_for,
    is_retryable_status,
)
from services.clients.http import JsonHttpClient, RequestParts
from services.clients.retry import DEFAULT_POLICY, NO_RETRY, RetryPolicy, parse_retry_after, retry_async

try:  # redis is a dependency, but the client also works without a cache
    from redis.asyncio import Redis
except ImportError:  # pragma: no cover
    Redis = Any  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods the raw `request()` retries (the proxy must not repeat writes)."""
TYPED_RETRY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods the typed calls retry; POST (create) is never repeated by the client."""
_STRIPPED_REQUEST_HEADERS = frozenset({"authorization", "host", "content-length", "transfer-encoding", "connection"})


class _RetryableAnswer(ApiError):
    """Internal: a retryable status on an idempotent raw request (carries the answer)."""

    def __init__(self, response: AdvowareResponse) -> None:
        super().__init__(
            SERVICE, response.status, message_of(response.body), retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
        self.response = response


@dataclass(frozen=True)
class AdvowareUrls:
    """Result of the configurator lookup."""

    api_base: str
    security_gateway: str
    relay_url: str = ""
    connector_url: str = ""


async def discover_urls(
    configurator_base: str,
    kanzlei: str,
    *,
    session: aiohttp.ClientSession | None = None,
    timeout: float = 15.0,
) -> AdvowareUrls:
    """`GET {configurator_base}AdvonetConfigurator/api/Url?Kanzlei=` → API base (connectorUrl,
    else relayUrl) and security gateway. `configurator_base` is e.g. `https://www2.advo-net.net/`."""
    url = configurator_base.rstrip("/") + "/" + P.DISCOVERY_PATH
    own = session is None
    sess = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
    try:
        async with sess.get(url, params={P.DISCOVERY_QUERY_KANZLEI: kanzlei}, allow_redirects=False) as resp:
            body = await resp.read()
            if resp.status >= 300:  # a redirect is never followed
                raise api_error_for(SERVICE, resp.status, message_of(body), method="GET", url=url)
            doc = json.loads(body)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise ApiConnectionError(SERVICE, f"discovery failed: {exc}") from exc
    finally:
        if own:
            await sess.close()
    relay = doc.get(P.DiscoveryField.RELAY_URL) or ""
    connector = doc.get(P.DiscoveryField.CONNECTOR_URL) or ""
    gateway = doc.get(P.DiscoveryField.SECURITY_GATEWAY) or ""
    if not (connector or relay) or not gateway:
        raise ApiError(SERVICE, 502, "discovery answer without relayUrl/connectorUrl/securityGateway")
    return AdvowareUrls(api_base=connector or relay, security_gateway=gateway, relay_url=relay, connector_url=connector)


class AdvowareHttpClient(JsonHttpClient):
    """The HTTP side of one Advoware installation (Kanzlei + Datenbank + user)."""

    service = SERVICE
    follow_redirects = False

    def __init__(
        self,
        base_url: str,
        token_url: str,
        *,
        role: int = P.DEFAULT_ROLE,
        product: int = P.DEFAULT_PRODUCT,
        redis: Redis | None = None,
        token_cache_key: str = "advoware:token",
        refresh_margin_seconds: float = 60,
        min_token_refresh_seconds: float = MIN_REFRESH_SECONDS,
        timeout: float = 30.0,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        session: aiohttp.ClientSession | None = None,
        token_lock_ttl_seconds: float = 15.0,
        token_lock_poll_seconds: float = 0.05,
        **login: Unpack[AdvowareLogin],
    ) -> None:
        """`base_url`: the API base (`https://host/`, `api/v1/...` lies below it).
        `token_url`: the token endpoint, or the security gateway base (then `api/v1/Token` is added).
        `min_token_refresh_seconds`: a 401 drops only a token at least this old (TokenProvider.invalidate)."""
        super().__init__(base_url, timeout=timeout, retry_policy=retry_policy, session=session)
        if not token_url.rstrip("/").lower().endswith("/token"):
            token_url = token_url.rstrip("/") + "/" + P.TOKEN_PATH
        try:
            base64.b64decode(login["api_key_b64"], validate=True)
        except ValueError as exc:
            raise ConfigError("ADVOWARE api key is not valid base64") from exc
        self.tokens = TokenProvider(
            token_url.rstrip("/"),
            role=role,
            product=product,
            get_session=self._get_session,
            retry_policy=lambda: self.retry_policy,
            redis=redis,
            cache_key=token_cache_key,
            refresh_margin_seconds=refresh_margin_seconds,
            min_refresh_seconds=min_token_refresh_seconds,
            lock_ttl_seconds=token_lock_ttl_seconds,
            lock_poll_seconds=token_lock_poll_seconds,
            **login,
        )

    @property
    def token_url(self) -> str:
        return self.tokens.token_url

    @property
    def token_cache_key(self) -> str:
        return self.tokens.cache_key

    @property
    def token_fetches(self) -> int:
        """How many tokens this client fetched from the gateway (observability)."""
        return self.tokens.fetches

    async def get_token(self) -> str:
        """A usable access token (see `TokenProvider.get`)."""
        return await self.tokens.get()

    async def invalidate_token(self, failed_token: str) -> bool:
        """After a 401 with `failed_token`: whether to repeat the call (see `TokenProvider.invalidate`)."""
        return await self.tokens.invalidate(failed_token)

    # JsonHttpClient hooks (used by the inherited stream()).
    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.get_token()}"}

    async def on_auth_failure(self) -> bool:
        current = self.tokens.current
        return True if current is None else await self.invalidate_token(current)

    # --- raw exchange -------------------------------------------------------------------
    @staticmethod
    def _check_path(path: str) -> str:
        clean = path.lstrip("/")
        if "://" in clean or any(seg in ("..", ".") for seg in clean.split("?")[0].split("/")):
            raise ValidationError(f"advoware: refusing path {path!r}")
        return clean

    async def _exchange(
        self, method: str, path: str, *, max_response_bytes: int | None = None, **parts: Unpack[RequestParts]
    ) -> AdvowareResponse:
        """One call, repeated once after a 401 when `invalidate_token` allows it (else the 401 is
        the answer); connection trouble → ApiConnectionError."""
        self._check_path(path)
        extra = {k: v for k, v in (parts.get("headers") or {}).items() if k.lower() not in _STRIPPED_REQUEST_HEADERS}
        for attempt in (1, 2):
            token = await self.get_token()
            all_headers = {"Accept": "application/json", **extra, "Authorization": f"Bearer {token}"}
            async with self.open_response(method, path, all_headers, parts) as resp:
                if resp.status == 401 and attempt == 1 and await self.invalidate_token(token):
                    await resp.read()
                    log.info("advoware: 401 on %s %s, repeating it once with a new token", method, path)
                    continue
                body = await self._read_limited(resp, max_response_bytes)
                return AdvowareResponse(
                    status=resp.status,
                    headers=CIMultiDictProxy(CIMultiDict(resp.headers)),
                    body=body,
                    content_type=resp.content_type,
                )
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _read_limited(resp: aiohttp.ClientResponse, limit: int | None) -> bytes:
        if limit is None:
            return await resp.read()
        if resp.content_length is not None and resp.content_length > limit:
            raise ResponseTooLargeError(limit, resp.status)
        buf = bytearray()
        async for chunk in resp.content.iter_chunked(65536):
            buf += chunk
            if len(buf) > limit:
                raise ResponseTooLargeError(limit, resp.status)
        return bytes(buf)

    async def request(  # type: ignore[override]
        self,
        method: str,
        path: str,
        params: Any = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        data: Any = None,
        max_response_bytes: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> AdvowareResponse:
        """Send any call and return Advoware's answer as it is, error statuses included.

        Only GET/HEAD/OPTIONS are retried (connection errors and retryable statuses, per
        policy; the last answer is returned). Writes are sent once. A 401 that survives the
        one token refresh is returned like any other status. Raises ApiConnectionError when
        Advoware cannot be reached, the token fetch's typed error when no token can be had,
        and ResponseTooLargeError past `max_response_bytes`.
        """
        method = method.upper()
        policy = (retry_policy or self.retry_policy) if method in IDEMPOTENT_METHODS else NO_RETRY

        async def attempt() -> AdvowareResponse:
            resp = await self._exchange(
                method, path, params=params, json_body=json_body, data=data, headers=headers,
                max_response_bytes=max_response_bytes,
            )
            if method in IDEMPOTENT_METHODS and is_retryable_status(resp.status):
                raise _RetryableAnswer(resp)
            return resp

        try:
            return await retry_async(attempt, policy, on_retry=log_retry(f"{method} {path}"))
        except _RetryableAnswer as exc:
            return exc.response

    # --- typed calls --------------------------------------------------------------------
    def _error(self, resp: AdvowareResponse, method: str, path: str) -> ApiError:
        return api_error_for(
            SERVICE,
            resp.status,
            message_of(resp.body),
            method=method,
            url=self.url(path),
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            body=resp.body[:2000].decode("utf-8", "replace"),
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json_body: Any = None,
        missing_ok_on_retry: bool = False,
    ) -> Any:
        """A typed call: JSON result, or a typed error (401 after refresh → AuthError,
        404 → NotFoundError, 409 → ConflictError, 400 → ApiError with Advoware's message, a
        redirect (not followed) → ApiError with its status)."""
        policy = self.retry_policy if method in TYPED_RETRY_METHODS else NO_RETRY
        attempts = 0

        async def attempt() -> AdvowareResponse | None:
            nonlocal attempts
            attempts += 1
            resp = await self._exchange(method, path, params=params, json_body=json_body)
            if resp.status == 404 and missing_ok_on_retry and attempts > 1:
                return None  # an earlier attempt deleted it before the connection broke
            if resp.status >= 300:
                raise self._error(resp, method, path)
            return resp

        resp = await retry_async(attempt, policy, on_retry=log_retry(f"{method} {path}"))
        if resp is None or not resp.body.strip():
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise ApiError(SERVICE, 502, f"{method} {path}: answer is not JSON") from exc
