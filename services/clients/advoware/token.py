"""Advoware's HMAC-512 token flow and its shared cache (external-apis.md §3). Knows nothing of
Motia.

Token: `POST {securityGateway}api/v1/Token` with a fresh nonce (uuid4) and a .NET-style
timestamp, signed with HMAC-SHA512 (`hmac512_signature`). `TokenProvider` keeps the token in
memory and, when a Redis client is given, in Redis under `cache_key` until shortly before
`expiration_utc`, so every worker process shares one token; Redis holds it sealed with a key
derived from the API key (`sealed.TokenSeal`: not readable by whoever reads Redis). Concurrent
callers in one process share one fetch (an asyncio lock); across processes a short Redis lock
(`SET NX PX` on `{cache_key}:lock`) lets one process fetch while the others wait and re-read
the cache. `invalidate` handles a 401: it drops the token (only if it is still the cached one)
unless the token is younger than `min_refresh_seconds`, so a 401 causes at most one gateway
login per token and interval, whatever the callers send.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, Unpack

import aiohttp

from services.clients.advoware import paths as P
from services.clients.advoware.responses import SERVICE, message_of
from services.clients.advoware.sealed import TokenSeal
from services.clients.errors import ApiError, api_error_for
from services.clients.http import connection_errors
from services.clients.retry import RetryPolicy, parse_retry_after, retry_async

try:  # redis is a dependency, but the client also works without a cache
    from redis.asyncio import Redis
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover
    Redis = Any  # type: ignore[misc,assignment]
    RedisError = OSError  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)

MIN_REFRESH_SECONDS = 30.0
"""Default of `TokenProvider(min_refresh_seconds=)`: a 401 drops only a token at least this old."""


def hmac512_signature(api_key_b64: str, product: int | str, app_id: str, nonce: str, timestamp: str) -> str:
    """`base64(HMAC-SHA512(key=base64decode(apiKey), "{Product}:{AppID}:{Nonce}:{RequestTimeStamp}"))`."""
    key = base64.b64decode(api_key_b64)
    message = f"{product}:{app_id}:{nonce}:{timestamp}".encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha512).digest()).decode("ascii")


def format_timestamp(dt: datetime | None = None) -> str:
    """UTC time in .NET's round-trip form with 7 fractional digits: `2021-01-29T14:04:26.7955547Z`.

    Naive datetimes are taken as UTC; None means now.
    """
    if dt is None:
        dt = datetime.now(UTC)
    elif dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond:06d}0Z"



@dataclass(frozen=True)
class CachedToken:
    """An access token with its expiry, the moment it should be replaced and when it was fetched."""

    access_token: str
    expiration_utc: str
    expires_at: float
    usable_until: float
    fetched_at: float

    def usable(self) -> bool:
        return time.time() < self.usable_until

    def to_json(self) -> str:
        return json.dumps(
            {
                "access_token": self.access_token,
                "expiration_utc": self.expiration_utc,
                "expires_at": self.expires_at,
                "usable_until": self.usable_until,
                "fetched_at": self.fetched_at,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> CachedToken:
        doc = json.loads(raw)
        return cls(
            str(doc["access_token"]), str(doc["expiration_utc"]), float(doc["expires_at"]), float(doc["usable_until"]),
            float(doc["fetched_at"]),
        )


_DELETE_IF_TOKEN = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, doc = pcall(cjson.decode, v)
if (not ok) or type(doc) ~= 'table' or doc['id'] == nil or doc['id'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
"""Drop the cached token if it is the one that failed (by its sealed `id`), or not a sealed value."""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""



def log_retry(what: str) -> Callable[[int, BaseException, float], None]:
    """A `retry_async` callback that logs each failed attempt of `what`."""

    def on_retry(attempt: int, exc: BaseException, delay: float) -> None:
        log.warning("advoware: %s attempt %d failed (%s); retrying in %.2fs", what, attempt, exc, delay)

    return on_retry


class AdvowareLogin(TypedDict):
    """One Advoware login, as the token request names it: the app's id and base64 API key,
    the Kanzlei, the Datenbank, the user and the password."""

    app_id: str
    api_key_b64: str
    kanzlei: str
    database: str
    user: str
    password: str


class TokenProvider:
    """The bearer token of one Advoware login: memory, then Redis, then the gateway."""

    def __init__(
        self,
        token_url: str,
        *,
        role: int,
        product: int,
        get_session: Callable[[], Awaitable[aiohttp.ClientSession]],
        retry_policy: Callable[[], RetryPolicy],
        redis: Redis | None = None,
        cache_key: str = "advoware:token",
        refresh_margin_seconds: float = 60,
        min_refresh_seconds: float = MIN_REFRESH_SECONDS,
        lock_ttl_seconds: float = 15.0,
        lock_poll_seconds: float = 0.05,
        **login: Unpack[AdvowareLogin],
    ) -> None:
        """`get_session` and `retry_policy` are the owning client's, read at each fetch.
        `min_refresh_seconds`: a 401 drops only a token at least this old (see `invalidate`)."""
        self.token_url = token_url
        self._login = login
        self.role = role
        self.product = product
        self._get_session = get_session
        self._retry_policy = retry_policy
        self._redis = redis
        self.cache_key = cache_key
        self.lock_key = f"{cache_key}:lock"
        self.refresh_margin_seconds = refresh_margin_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self._seal = TokenSeal(base64.b64decode(login["api_key_b64"]), cache_key)
        self._lock_ttl_ms = int(lock_ttl_seconds * 1000)
        self._lock_poll = lock_poll_seconds
        self._token: CachedToken | None = None
        self._token_lock = asyncio.Lock()
        self._failed_tokens: deque[str] = deque(maxlen=16)
        self.fetches = 0
        """How many tokens this provider fetched from the gateway (observability)."""

    @property
    def current(self) -> str | None:
        """The token held in memory, usable or not."""
        return self._token.access_token if self._token is not None else None

    async def get(self) -> str:
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

    async def invalidate(self, failed_token: str) -> bool:
        """Advoware answered 401 to `failed_token`: whether the call may be repeated with a new one.

        - Another token replaced it already (here, or another process through Redis): True,
          and no login of its own.
        - It was fetched less than `min_refresh_seconds` ago: False, it is kept. A fresh token
          that is refused is the endpoint's answer, not an expiry: without this rule a caller
          could make the service log in to the gateway on every request.
        - Else it is forgotten here and in Redis (only while it is still the cached one) and
          the next `get()` fetches once (one fetch per process under the lock, one across
          processes under the Redis lock): True.
        """
        tok = self._token
        if tok is None or tok.access_token != failed_token:
            return True
        age = time.time() - tok.fetched_at
        if age < self.min_refresh_seconds:
            log.info("advoware: 401 with a token fetched %.1f s ago: kept (at most one login per %g s)",
                     age, self.min_refresh_seconds)
            return False
        self._failed_tokens.append(failed_token)
        self._token = None
        if self._redis is not None:
            try:
                await self._redis.eval(_DELETE_IF_TOKEN, 1, self.cache_key, self._seal.token_id(failed_token))
            except (RedisError, OSError) as exc:
                log.warning("advoware: could not drop cached token in redis: %s", exc)
        return True

    async def _read_cache(self) -> CachedToken | None:
        assert self._redis is not None
        try:
            raw = await self._redis.get(self.cache_key)
        except (RedisError, OSError) as exc:
            log.warning("advoware: token cache unreadable: %s", exc)
            return None
        if not raw:
            return None
        document = self._seal.open(raw)
        if document is None:  # not sealed with our key (e.g. the plaintext of before): fetch and replace
            return None
        try:
            tok = CachedToken.from_json(document)
        except (ValueError, KeyError, TypeError):
            return None
        if not tok.usable() or tok.access_token in self._failed_tokens:
            return None
        return tok

    async def _write_cache(self, tok: CachedToken) -> None:
        assert self._redis is not None
        ttl_ms = int((tok.usable_until - time.time()) * 1000)
        if ttl_ms <= 0:
            return
        try:
            await self._redis.set(self.cache_key, self._seal.seal(tok.access_token, tok.to_json()), px=ttl_ms)
        except (RedisError, OSError) as exc:
            log.warning("advoware: could not cache token in redis: %s", exc)

    async def _try_lock(self, value: str) -> bool:
        """True when this process may fetch (lock taken, or Redis unusable)."""
        assert self._redis is not None
        try:
            return bool(await self._redis.set(self.lock_key, value, nx=True, px=self._lock_ttl_ms))
        except (RedisError, OSError) as exc:
            log.warning("advoware: token lock unavailable, fetching without it: %s", exc)
            return True

    async def _unlock(self, value: str) -> None:
        assert self._redis is not None
        try:
            await self._redis.eval(_RELEASE_LOCK, 1, self.lock_key, value)
        except (RedisError, OSError) as exc:
            log.warning("advoware: could not release token lock: %s", exc)

    async def _load_or_fetch(self) -> CachedToken:
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
        login = self._login
        return {
            F.APP_ID.value: login["app_id"],
            F.KANZLEI.value: login["kanzlei"],
            F.DATABASE.value: login["database"],
            F.USER.value: login["user"],
            F.ROLE.value: self.role,
            F.PRODUCT.value: self.product,
            F.PASSWORD.value: login["password"],
            F.NONCE.value: nonce,
            F.SIGNATURE.value: hmac512_signature(login["api_key_b64"], self.product, login["app_id"], nonce, stamp),
            F.TIMESTAMP.value: stamp,
        }

    async def _fetch_token_once(self) -> CachedToken:
        session = await self._get_session()
        with connection_errors(SERVICE, "POST", "token request"):
            async with session.post(self.token_url, json=self._token_request_body(), allow_redirects=False) as resp:
                body = await resp.read()
                if 300 <= resp.status < 400:  # never followed: the gateway's answer or nothing
                    raise ApiError(SERVICE, resp.status, "the token endpoint answered with a redirect (not followed)",
                                   method="POST", url=self.token_url)
                if resp.status >= 400:
                    raise api_error_for(
                        SERVICE,
                        resp.status,
                        message_of(body),
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
        self.fetches += 1
        log.info("advoware: fetched a new token, valid until %s", expiration)
        return CachedToken(access, expiration, expires_at, usable_until, now)

    async def _fetch_token(self) -> CachedToken:
        return await retry_async(self._fetch_token_once, self._retry_policy(), on_retry=log_retry("token"))

