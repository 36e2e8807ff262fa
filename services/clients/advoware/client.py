"""Advoware API client: the HMAC-signed token flow, a raw `request()` for the proxy and
typed calls for the sync steps (external-apis.md §3). Knows nothing of Motia.

Token: `POST {securityGateway}api/v1/Token` with a fresh nonce (uuid4) and a .NET-style
timestamp, signed with HMAC-SHA512 (`hmac512_signature`). The token is kept in memory and,
when a Redis client is given, in Redis under `token_cache_key` until shortly before
`expiration_utc`, so every worker process shares one token. Concurrent callers in one
process share one fetch (an asyncio lock); across processes a short Redis lock
(`SET NX PX`) lets one process fetch while the others wait and re-read the cache.
On a 401 from an API call the token that failed is dropped (only if it is still the
cached one), a new one is fetched once and the call is repeated once.

Every path and field name comes from `services.clients.advoware.paths`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timezone
from enum import StrEnum
from typing import Any, AsyncIterator, Mapping

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from services.clients.advoware import paths as P
from services.clients.errors import (
    ApiConnectionError,
    ApiError,
    ConfigError,
    IntegrationError,
    NotFoundError,
    PermanentError,
    ValidationError,
    api_error_for,
    is_retryable_status,
)
from services.clients.http import JsonHttpClient, connection_errors
from services.clients.retry import DEFAULT_POLICY, NO_RETRY, RetryPolicy, parse_retry_after, retry_async

try:  # redis is a dependency, but the client also works without a cache
    from redis.asyncio import Redis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover
    Redis = Any  # type: ignore[misc,assignment]
    RedisError = OSError  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)

SERVICE = "advoware"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods the raw `request()` retries (the proxy must not repeat writes)."""
TYPED_RETRY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods the typed calls retry; POST (create) is never repeated by the client."""
_STRIPPED_REQUEST_HEADERS = frozenset({"authorization", "host", "content-length", "transfer-encoding", "connection"})

# --- Pure helpers -----------------------------------------------------------------------


def hmac512_signature(api_key_b64: str, product: int | str, app_id: str, nonce: str, timestamp: str) -> str:
    """`base64(HMAC-SHA512(key=base64decode(apiKey), "{Product}:{AppID}:{Nonce}:{RequestTimeStamp}"))`."""
    key = base64.b64decode(api_key_b64)
    message = f"{product}:{app_id}:{nonce}:{timestamp}".encode("utf-8")
    return base64.b64encode(hmac.new(key, message, hashlib.sha512).digest()).decode("ascii")


def format_timestamp(dt: datetime | None = None) -> str:
    """UTC time in .NET's round-trip form with 7 fractional digits: `2021-01-29T14:04:26.7955547Z`.

    Naive datetimes are taken as UTC; None means now.
    """
    if dt is None:
        dt = datetime.now(timezone.utc)
    elif dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"


def _message_of(body: bytes) -> str:
    """The error text of an Advoware answer: ASP.NET `Message` (+ `ModelState`), else the text."""
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:300]
    if isinstance(doc, str):
        return doc[:300]
    if not isinstance(doc, dict):
        return text[:300]
    message = ""
    for key in ("Message", "message", "ExceptionMessage", "error", "error_description", "title"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            message = value
            break
    details: list[str] = []
    state = doc.get("ModelState") or doc.get("errors")
    if isinstance(state, dict):
        for value in state.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and item and item != message:
                    details.append(item)
    if details:
        message = f"{message} ({'; '.join(details)})" if message else "; ".join(details)
    return (message or text)[:300]


# --- Responses and errors -----------------------------------------------------------------


@dataclass(frozen=True)
class AdvowareResponse:
    """An Advoware answer as it came, for the proxy (no exception on 4xx/5xx)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    content_type: str

    @property
    def ok(self) -> bool:
        return self.status < 400

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The parsed JSON body, or None when the body is empty."""
        return json.loads(self.body) if self.body.strip() else None


class ResponseTooLargeError(PermanentError):
    """Advoware's answer exceeded `max_response_bytes`."""

    def __init__(self, limit: int, status: int) -> None:
        super().__init__(f"{SERVICE}: response larger than {limit} bytes (status {status})")
        self.limit = limit
        self.status = status


class _RetryableAnswer(ApiError):
    """Internal: a retryable status on an idempotent raw request (carries the answer)."""

    def __init__(self, response: AdvowareResponse) -> None:
        super().__init__(
            SERVICE, response.status, _message_of(response.body), retry_after=parse_retry_after(response.headers.get("Retry-After"))
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
        async with sess.get(url, params={P.DISCOVERY_QUERY_KANZLEI: kanzlei}) as resp:
            body = await resp.read()
            if resp.status >= 400:
                raise api_error_for(SERVICE, resp.status, _message_of(body), method="GET", url=url)
            doc = json.loads(body)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
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


# --- Token ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    access_token: str
    expiration_utc: str
    expires_at: float
    usable_until: float

    def usable(self) -> bool:
        return time.time() < self.usable_until

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "expiration_utc": self.expiration_utc,
                "expires_at": self.expires_at,
                "usable_until": self.usable_until,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> "_Token":
        doc = json.loads(raw)
        return cls(str(doc["access_token"]), str(doc["expiration_utc"]), float(doc["expires_at"]), float(doc["usable_until"]))


_DELETE_IF_TOKEN = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, doc = pcall(cjson.decode, v)
if (not ok) or doc['access_token'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# --- Client ----------------------------------------------------------------------------


class AdvowareAPI(JsonHttpClient):
    """Client of one Advoware installation (Kanzlei + Datenbank + user)."""

    service = SERVICE

    def __init__(
        self,
        base_url: str,
        token_url: str,
        *,
        app_id: str,
        api_key_b64: str,
        kanzlei: str,
        database: str,
        user: str,
        password: str,
        role: int = P.DEFAULT_ROLE,
        product: int = P.DEFAULT_PRODUCT,
        redis: "Redis | None" = None,
        token_cache_key: str = "advoware:token",
        refresh_margin_seconds: float = 60,
        timeout: float = 30.0,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        session: aiohttp.ClientSession | None = None,
        token_lock_ttl_seconds: float = 15.0,
        token_lock_poll_seconds: float = 0.05,
    ) -> None:
        """`base_url`: the API base (`https://host/`, `api/v1/...` lies below it).
        `token_url`: the token endpoint, or the security gateway base (then `api/v1/Token` is added)."""
        super().__init__(base_url, timeout=timeout, retry_policy=retry_policy, session=session)
        if token_url.rstrip("/").lower().endswith("/token"):
            self.token_url = token_url.rstrip("/")
        else:
            self.token_url = token_url.rstrip("/") + "/" + P.TOKEN_PATH
        try:
            base64.b64decode(api_key_b64, validate=True)
        except ValueError as exc:
            raise ConfigError("ADVOWARE api key is not valid base64") from exc
        self.app_id = app_id
        self._api_key_b64 = api_key_b64
        self.kanzlei = kanzlei
        self.database = database
        self.user = user
        self._password = password
        self.role = role
        self.product = product
        self._redis = redis
        self.token_cache_key = token_cache_key
        self.token_lock_key = f"{token_cache_key}:lock"
        self.refresh_margin_seconds = refresh_margin_seconds
        self._lock_ttl_ms = int(token_lock_ttl_seconds * 1000)
        self._lock_poll = token_lock_poll_seconds
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        self._failed_tokens: deque[str] = deque(maxlen=16)
        self.token_fetches = 0
        """How many tokens this instance fetched from the gateway (observability)."""

    # --- token --------------------------------------------------------------------------
    async def get_token(self) -> str:
        """A usable access token: memory, then Redis, then the gateway (one fetch at a time)."""
        tok = self._token
        if tok is not None and tok.usable():
            return tok.access_token
        async with self._token_lock:
            tok = self._token
            if tok is not None and tok.usable():
                return tok.access_token
            tok = await self._load_or_fetch()
            self._token = tok
            return tok.access_token

    async def invalidate_token(self, failed_token: str) -> None:
        """Forget `failed_token` here and in Redis, unless a newer token replaced it already."""
        self._failed_tokens.append(failed_token)
        if self._token is not None and self._token.access_token == failed_token:
            self._token = None
        if self._redis is not None:
            try:
                await self._redis.eval(_DELETE_IF_TOKEN, 1, self.token_cache_key, failed_token)  # type: ignore[misc]
            except (RedisError, OSError) as exc:
                log.warning("advoware: could not drop cached token in redis: %s", exc)

    async def _read_cache(self) -> _Token | None:
        assert self._redis is not None
        try:
            raw = await self._redis.get(self.token_cache_key)
        except (RedisError, OSError) as exc:
            log.warning("advoware: token cache unreadable: %s", exc)
            return None
        if not raw:
            return None
        try:
            tok = _Token.from_json(raw)
        except (ValueError, KeyError, TypeError):
            return None
        if not tok.usable() or tok.access_token in self._failed_tokens:
            return None
        return tok

    async def _write_cache(self, tok: _Token) -> None:
        assert self._redis is not None
        ttl_ms = int((tok.usable_until - time.time()) * 1000)
        if ttl_ms <= 0:
            return
        try:
            await self._redis.set(self.token_cache_key, tok.to_json(), px=ttl_ms)
        except (RedisError, OSError) as exc:
            log.warning("advoware: could not cache token in redis: %s", exc)

    async def _try_lock(self, value: str) -> bool:
        """True when this process may fetch (lock taken, or Redis unusable)."""
        assert self._redis is not None
        try:
            return bool(await self._redis.set(self.token_lock_key, value, nx=True, px=self._lock_ttl_ms))
        except (RedisError, OSError) as exc:
            log.warning("advoware: token lock unavailable, fetching without it: %s", exc)
            return True

    async def _unlock(self, value: str) -> None:
        assert self._redis is not None
        try:
            await self._redis.eval(_RELEASE_LOCK, 1, self.token_lock_key, value)  # type: ignore[misc]
        except (RedisError, OSError) as exc:
            log.warning("advoware: could not release token lock: %s", exc)

    async def _load_or_fetch(self) -> _Token:
        if self._redis is None:
            return await self._fetch_token()
        deadline = time.monotonic() + self._lock_ttl_ms / 1000 + 1.0
        while True:
            cached = await self._read_cache()
            if cached is not None:
                return cached
            lock_value = uuid.uuid4().hex
            if await self._try_lock(lock_value):
                try:
                    cached = await self._read_cache()  # written while we asked for the lock?
                    if cached is not None:
                        return cached
                    tok = await self._fetch_token()
                    await self._write_cache(tok)
                    return tok
                finally:
                    await self._unlock(lock_value)
            if time.monotonic() >= deadline:
                log.warning("advoware: waited too long for another process's token fetch; fetching")
                tok = await self._fetch_token()
                await self._write_cache(tok)
                return tok
            await asyncio.sleep(self._lock_poll)

    def _token_request_body(self) -> dict[str, Any]:
        nonce = str(uuid.uuid4())
        stamp = format_timestamp()
        F = P.TokenField
        return {
            F.APP_ID.value: self.app_id,
            F.KANZLEI.value: self.kanzlei,
            F.DATABASE.value: self.database,
            F.USER.value: self.user,
            F.ROLE.value: self.role,
            F.PRODUCT.value: self.product,
            F.PASSWORD.value: self._password,
            F.NONCE.value: nonce,
            F.SIGNATURE.value: hmac512_signature(self._api_key_b64, self.product, self.app_id, nonce, stamp),
            F.TIMESTAMP.value: stamp,
        }

    async def _fetch_token_once(self) -> _Token:
        session = await self._get_session()
        with connection_errors(SERVICE, "POST", "token request"):
            async with session.post(self.token_url, json=self._token_request_body()) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise api_error_for(
                        SERVICE,
                        resp.status,
                        _message_of(body),
                        method="POST",
                        url=self.token_url,
                        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                        body=body[:2000].decode("utf-8", "replace"),
                    )
        try:
            doc = json.loads(body)
            access = str(doc[P.TokenResponseField.ACCESS_TOKEN])
            expiration = str(doc[P.TokenResponseField.EXPIRATION_UTC])
            expires_at = P.parse_utc(expiration).timestamp()
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(SERVICE, 502, f"token answer without access_token/expiration_utc: {exc}") from exc
        if not access:
            raise ApiError(SERVICE, 502, "token answer with empty access_token")
        now = time.time()
        lifetime = max(0.0, expires_at - now)
        usable_until = expires_at - min(self.refresh_margin_seconds, lifetime / 2)
        self.token_fetches += 1
        log.info("advoware: fetched a new token, valid until %s", expiration)
        return _Token(access, expiration, expires_at, usable_until)

    async def _fetch_token(self) -> _Token:
        return await retry_async(self._fetch_token_once, self.retry_policy, on_retry=self._log_retry("token"))

    @staticmethod
    def _log_retry(what: str) -> Any:
        def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
            log.warning("advoware: %s attempt %d failed (%s); retrying in %.2fs", what, attempt, exc, delay)

        return on_retry

    # JsonHttpClient hooks (used by the inherited stream()).
    async def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.get_token()}"}

    async def on_auth_failure(self) -> bool:
        if self._token is not None:
            await self.invalidate_token(self._token.access_token)
        return True

    # --- raw exchange -------------------------------------------------------------------
    @staticmethod
    def _check_path(path: str) -> str:
        clean = path.lstrip("/")
        if "://" in clean or any(seg in ("..", ".") for seg in clean.split("?")[0].split("/")):
            raise ValidationError(f"advoware: refusing path {path!r}")
        return clean

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json_body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        max_response_bytes: int | None = None,
    ) -> AdvowareResponse:
        """One call with one token refresh on 401; connection trouble → ApiConnectionError."""
        session = await self._get_session()
        url = self.url(self._check_path(path))
        extra = {k: v for k, v in (headers or {}).items() if k.lower() not in _STRIPPED_REQUEST_HEADERS}
        for attempt in (1, 2):
            token = await self.get_token()
            all_headers = {"Accept": "application/json", **extra, "Authorization": f"Bearer {token}"}
            with connection_errors(SERVICE, method, path):
                async with session.request(
                    method, url, params=params, json=json_body, data=data, headers=all_headers
                ) as resp:
                    if resp.status == 401 and attempt == 1:
                        await resp.read()
                        log.info("advoware: 401 on %s %s, refreshing the token once", method, path)
                        await self.invalidate_token(token)
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
            return await retry_async(attempt, policy, on_retry=self._log_retry(f"{method} {path}"))
        except _RetryableAnswer as exc:
            return exc.response

    # --- typed calls --------------------------------------------------------------------
    def _error(self, resp: AdvowareResponse, method: str, path: str) -> ApiError:
        return api_error_for(
            SERVICE,
            resp.status,
            _message_of(resp.body),
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
        404 → NotFoundError, 409 → ConflictError, 400 → ApiError with Advoware's message)."""
        policy = self.retry_policy if method in TYPED_RETRY_METHODS else NO_RETRY
        attempts = 0

        async def attempt() -> AdvowareResponse | None:
            nonlocal attempts
            attempts += 1
            resp = await self._exchange(method, path, params=params, json_body=json_body)
            if resp.status == 404 and missing_ok_on_retry and attempts > 1:
                return None  # an earlier attempt deleted it before the connection broke
            if resp.status >= 400:
                raise self._error(resp, method, path)
            return resp

        resp = await retry_async(attempt, policy, on_retry=self._log_retry(f"{method} {path}"))
        if resp is None or not resp.body.strip():
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise ApiError(SERVICE, 502, f"{method} {path}: answer is not JSON") from exc

    @staticmethod
    def _outgoing(data: Mapping[str, Any], fields: type[StrEnum], read_only: frozenset[Any]) -> dict[str, Any]:
        """A request body: canonical field names, read-only fields dropped, dates formatted.

        datetimes must be naive wall-clock values (Advoware's `Datum` carries no zone).
        """
        out: dict[str, Any] = {}
        for key, value in P.normalize_record(data, fields).items():
            if key in read_only:
                continue
            if isinstance(value, datetime):
                if value.tzinfo is not None:
                    raise ValidationError(f"advoware: {key} must be a naive wall-clock datetime, got {value!r}")
                value = P.format_datetime(value)
            elif isinstance(value, date):
                value = P.format_date(value)
            elif isinstance(value, dtime):
                value = value.strftime(P.TIME_FORMAT)
            elif isinstance(value, StrEnum):
                value = value.value
            out[key] = value
        return out

    @staticmethod
    def _records(doc: Any, fields: type[StrEnum]) -> list[dict[str, Any]]:
        if not isinstance(doc, list):
            raise ApiError(SERVICE, 502, f"expected a JSON list, got {type(doc).__name__}")
        return [P.normalize_record(item, fields) for item in doc if isinstance(item, dict)]

    @staticmethod
    def _record(doc: Any, fields: type[StrEnum]) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise ApiError(SERVICE, 502, f"expected a JSON object, got {type(doc).__name__}")
        return P.normalize_record(doc, fields)

    # appointments ------------------------------------------------------------------------
    async def list_appointments(self, kuerzel: str, date_from: date | str, date_to: date | str) -> list[dict[str, Any]]:
        """Appointments of one employee (Anwalt or Sb) overlapping the days `date_from`..`date_to`."""
        q = P.TerminQuery
        params = {
            q.FROM.value: date_from if isinstance(date_from, str) else P.format_date(date_from),
            q.TO.value: date_to if isinstance(date_to, str) else P.format_date(date_to),
            q.KUERZEL.value: kuerzel,
        }
        return self._records(await self._call("GET", P.TERMINE_PATH, params=params), P.TerminField)

    async def get_appointment(self, frnr: int) -> dict[str, Any]:
        doc = await self._call("GET", P.TERMINE_PATH, params={P.TerminQuery.FRNR.value: str(frnr)})
        return self._record(doc, P.TerminField)

    async def create_appointment(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create an appointment (sent once, never retried) and return it with its `FrNr`."""
        body = self._outgoing(data, P.TerminField, P.TERMIN_READ_ONLY)
        doc = await self._call("POST", P.TERMINE_PATH, json_body=body)
        if isinstance(doc, dict):
            return self._record(doc, P.TerminField)
        try:
            frnr = int(doc)  # Advoware answers the new FrNr as a bare number
        except (TypeError, ValueError) as exc:
            raise ApiError(SERVICE, 502, f"create appointment: unexpected answer {doc!r}") from exc
        try:
            return await self.get_appointment(frnr)
        except IntegrationError as exc:
            log.warning("advoware: created appointment %s but could not read it back: %s", frnr, exc)
            return {**body, P.TerminField.FRNR.value: frnr}

    async def update_appointment(self, frnr: int, data: Mapping[str, Any], *, merge: bool = True) -> dict[str, Any]:
        """Update an appointment. Advoware's PUT replaces the whole record, so by default the
        current record is read and `data` laid over it (`merge=False` sends `data` alone)."""
        changes = self._outgoing(data, P.TerminField, P.TERMIN_READ_ONLY)
        if merge:
            current = self._outgoing(await self.get_appointment(frnr), P.TerminField, P.TERMIN_READ_ONLY)
            changes = {**current, **changes}
        body = {P.TerminField.FRNR.value: frnr, **changes}
        doc = await self._call("PUT", P.TERMINE_PATH, params={P.TerminQuery.FRNR.value: str(frnr)}, json_body=body)
        if isinstance(doc, dict):
            return self._record(doc, P.TerminField)
        return await self.get_appointment(frnr)

    async def delete_appointment(self, frnr: int) -> None:
        await self._call(
            "DELETE", P.TERMINE_PATH, params={P.TerminQuery.FRNR.value: str(frnr)}, missing_ok_on_retry=True
        )

    # employees and matters -------------------------------------------------------------
    async def list_employees(self) -> list[dict[str, Any]]:
        return self._records(await self._call("GET", P.MITARBEITER_PATH), P.MitarbeiterField)

    async def list_matters(self, *, page_size: int = P.DEFAULT_PAGE_SIZE) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        skip = 0
        while True:
            params = {P.BeteiligteQuery.SKIP.value: str(skip), P.BeteiligteQuery.TAKE.value: str(page_size)}
            page = self._records(await self._call("GET", P.AKTEN_PATH, params=params), P.AkteField)
            out.extend(page)
            if len(page) < page_size:
                return out
            skip += len(page)

    async def get_matter(self, nr: int) -> dict[str, Any]:
        return self._record(await self._call("GET", P.akte_path(nr)), P.AkteField)

    # parties -----------------------------------------------------------------------------
    async def _party_pages(self, filters: dict[str, str], page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
        q = P.BeteiligteQuery
        skip = 0
        while True:
            params = {**filters, q.SKIP.value: str(skip), q.TAKE.value: str(page_size)}
            page = self._records(await self._call("GET", P.BETEILIGTE_PATH, params=params), P.BeteiligterField)
            if page:
                yield page
            if len(page) < page_size:
                return
            skip += len(page)

    async def list_parties(
        self,
        changed_since: datetime | str | None = None,
        *,
        name: str | None = None,
        page_size: int = P.DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield pages of parties (ordered by BetNr), optionally only those changed since a UTC time."""
        filters: dict[str, str] = {}
        if changed_since is not None:
            if isinstance(changed_since, datetime):
                aware = changed_since if changed_since.tzinfo else changed_since.replace(tzinfo=timezone.utc)
                changed_since = P.format_utc(aware)
            filters[P.BeteiligteQuery.CHANGED_SINCE.value] = changed_since
        if name:
            filters[P.BeteiligteQuery.NAME.value] = name
        async for page in self._party_pages(filters, page_size):
            yield page

    async def get_party(self, betnr: int) -> dict[str, Any]:
        return self._record(await self._call("GET", P.beteiligter_path(betnr)), P.BeteiligterField)

    async def find_party_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        """The party whose `ExterneId` is `external_id` (e.g. the EspoCRM id), or None.

        Checks the field itself, so it stays correct if a server ignores the filter."""
        field_name = P.PARTY_EXTERNAL_ID_FIELD.value
        async for page in self._party_pages({P.BeteiligteQuery.EXTERNAL_ID.value: external_id}, P.DEFAULT_PAGE_SIZE):
            for party in page:
                if party.get(field_name) == external_id:
                    return party
        return None

    async def create_party(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create a party (sent once, never retried: look it up by external id before retrying)."""
        body = self._outgoing(data, P.BeteiligterField, P.BETEILIGTER_READ_ONLY)
        doc = await self._call("POST", P.BETEILIGTE_PATH, json_body=body)
        if isinstance(doc, dict):
            return self._record(doc, P.BeteiligterField)
        return await self.get_party(int(doc))

    async def update_party(self, betnr: int, data: Mapping[str, Any], *, merge: bool = True) -> dict[str, Any]:
        """Update a party; PUT replaces the record, so by default `data` is laid over the current one."""
        changes = self._outgoing(data, P.BeteiligterField, P.BETEILIGTER_READ_ONLY)
        if merge:
            current = self._outgoing(await self.get_party(betnr), P.BeteiligterField, P.BETEILIGTER_READ_ONLY)
            changes = {**current, **changes}
        doc = await self._call("PUT", P.beteiligter_path(betnr), json_body=changes)
        if isinstance(doc, dict):
            return self._record(doc, P.BeteiligterField)
        return await self.get_party(betnr)

    async def delete_party(self, betnr: int) -> None:
        """Delete a party; ConflictError (with Advoware's German reason) when matters use it."""
        await self._call("DELETE", P.beteiligter_path(betnr), missing_ok_on_retry=True)

    # bank accounts ---------------------------------------------------------------------
    async def list_bank_accounts(self, betnr: int) -> list[dict[str, Any]]:
        return self._records(await self._call("GET", P.bankverbindungen_path(betnr)), P.BankverbindungField)

    async def create_bank_account(self, betnr: int, data: Mapping[str, Any]) -> dict[str, Any]:
        body = self._outgoing(data, P.BankverbindungField, P.BANKVERBINDUNG_READ_ONLY)
        doc = await self._call("POST", P.bankverbindungen_path(betnr), json_body=body)
        return self._record(doc, P.BankverbindungField)

    async def update_bank_account(
        self, betnr: int, bank_id: int, data: Mapping[str, Any], *, merge: bool = True
    ) -> dict[str, Any]:
        """Update a bank account; by default `data` is laid over the current record."""
        changes = self._outgoing(data, P.BankverbindungField, P.BANKVERBINDUNG_READ_ONLY)
        if merge:
            id_field = P.BankverbindungField.ID.value
            current = next((b for b in await self.list_bank_accounts(betnr) if b.get(id_field) == bank_id), None)
            if current is None:
                raise NotFoundError(SERVICE, 404, f"Bankverbindung {bank_id} des Beteiligten {betnr} nicht gefunden")
            changes = {**self._outgoing(current, P.BankverbindungField, P.BANKVERBINDUNG_READ_ONLY), **changes}
        doc = await self._call("PUT", P.bankverbindung_path(betnr, bank_id), json_body=changes)
        return self._record(doc, P.BankverbindungField)

    async def delete_bank_account(self, betnr: int, bank_id: int) -> None:
        await self._call("DELETE", P.bankverbindung_path(betnr, bank_id), missing_ok_on_retry=True)
