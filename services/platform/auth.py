"""The bearer-token check and the limit on failed authentications, shared by every endpoint that
takes `Authorization: Bearer` (the Advoware proxy, services.proxy.auth; the calendar sync API;
the operators' API, services.platform.ledger.ops.authorize and src/glue/ops.check_token).
Knows nothing of Motia.

`bearer_token` reads the credential (scheme case-insensitive); `token_matches` compares it with
the expected one in constant time (`hmac.compare_digest` over SHA-256 digests, so not even the
length shows in the timing). The token itself never reaches a log line.

Failed authentication (`AuthFailureLimiter`): at most `limit` failures per client address and
`window_seconds` (a fixed window in Redis, `INCR` + `EXPIRE NX`, shared by every worker, under
the caller's `key_prefix`); past it, every request from that address is refused 429 until the
window ends, before any token is compared (`admit`: the one place that applies the limit). The address
(`client_address`) is the last `X-Forwarded-For` entry, which nginx's
`$proxy_add_x_forwarded_for` sets to the peer it saw and a client cannot forge through it;
without one (a caller on the engine's own port, which production binds to loopback) it is
`direct`. When Redis cannot be used the count is kept in this process (the limit then holds per
worker).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from services.platform.rejected import Rejected

try:
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover
    RedisError = OSError  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)
T = TypeVar("T")

DIRECT_ADDRESS = "direct"
"""The client address of a request without a usable X-Forwarded-For."""
TOO_MANY_REASON = "too many failed authentications from this address; retry in {wait} s"
_MEMORY_LIMIT = 10_000
"""In-process fallback: at most this many addresses are remembered."""


def _first(value: Any) -> str:
    """A header's value as text: the first of a repeated header's list."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return str(value)


def lower_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The headers by lower-case name, each the first value of a list."""
    return {str(key).lower(): _first(value) for key, value in (headers or {}).items()}


def header_value(headers: Mapping[str, Any] | None, name: str) -> str:
    """The value of header `name` (lower-case; matched case-insensitively; the first of a list), else ""."""
    for key, value in (headers or {}).items():
        if str(key).lower() == name:
            return _first(value)
    return ""


def bearer_token(headers: Mapping[str, Any] | None) -> str | None:
    """The credential of `Authorization: Bearer <token>` (scheme case-insensitive), else None."""
    scheme, _, credential = header_value(headers, "authorization").strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def token_digest(token: str) -> bytes:
    """What tokens are compared by: equal length whatever the token's."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_matches(given: str | None, expected: str) -> bool:
    """True when `given` is `expected`, compared in constant time (None never matches)."""
    return hmac.compare_digest(token_digest(given or ""), token_digest(expected)) and given is not None


def client_address(headers: Mapping[str, Any] | None) -> str:
    """The address failed attempts are counted against (see the module docstring)."""
    forwarded = header_value(headers, "x-forwarded-for")
    last = forwarded.split(",")[-1].strip() if forwarded else ""
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return DIRECT_ADDRESS


class AuthFailureLimiter:
    """Counts failed authentications per client address (see the module docstring)."""

    _memory: dict[str, tuple[int, float]] = {}
    """The in-process fallback, shared by every limiter of this process: key → (count, window end)."""

    def __init__(self, redis: Any, *, limit: int, window_seconds: float, key_prefix: str) -> None:
        self.redis = redis
        self.limit = limit
        self.window_ms = max(1, int(window_seconds * 1000))
        self.key_prefix = key_prefix

    def _key(self, address: str) -> str:
        return self.key_prefix + address

    async def admit(self, address: str, verify: Callable[[], T], too_many: Callable[[int, str], Rejected]) -> T:
        """`verify()`'s result, unless `address` is past the limit (then `too_many(wait, reason)`
        is raised before `verify` runs); a 401 `Rejected` from `verify` counts as a failure."""
        wait = await self.retry_after(address)
        if wait:
            raise too_many(wait, TOO_MANY_REASON.format(wait=wait))
        try:
            return verify()
        except Rejected as exc:
            if exc.status == 401:
                await self.record_failure(address)
            raise

    async def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again (0: it may now)."""
        if self.redis is not None:
            try:
                count, ttl_ms = await self.redis.pipeline(transaction=False).get(self._key(address)).pttl(
                    self._key(address)).execute()
                if count is not None and int(count) >= self.limit:
                    return max(1, math.ceil(max(int(ttl_ms), 0) / 1000))
                return 0
            except (RedisError, OSError) as exc:
                log.warning("failed-authentication counter %s unreadable, counting in this process: %s", self.key_prefix, exc)
        count, until = self._memory.get(self._key(address), (0, 0.0))
        now = time.monotonic()
        return max(1, math.ceil(until - now)) if count >= self.limit and until > now else 0

    async def record_failure(self, address: str) -> None:
        """One more failed authentication from `address` (the window starts with the first)."""
        if self.redis is not None:
            try:
                pipe = self.redis.pipeline(transaction=True)
                await pipe.incr(self._key(address)).pexpire(self._key(address), self.window_ms, nx=True).execute()
                return
            except (RedisError, OSError) as exc:
                log.warning("failed-authentication counter %s not written, counting in this process: %s", self.key_prefix, exc)
        now = time.monotonic()
        memory = type(self)._memory
        if len(memory) >= _MEMORY_LIMIT:
            for key in [k for k, (_, until) in memory.items() if until <= now]:
                del memory[key]
            while len(memory) >= _MEMORY_LIMIT:
                del memory[min(memory, key=lambda k: memory[k][1])]
        count, until = memory.get(self._key(address), (0, 0.0))
        if until <= now:
            count, until = 0, now + self.window_ms / 1000
        memory[self._key(address)] = (count + 1, until)
