"""Who may use the Advoware proxy: named caller tokens, compared in constant time, and a limit on
failed attempts per client address. Knows nothing of Motia.

Callers (settings `AdvowareSettings.proxy_callers`): `ADVOWARE_PROXY_TOKENS=name:token,...`
(several at once, so each tool is named in the logs and a token can be rotated without
downtime: add the new one, move the caller, remove the old one) plus, for compatibility,
`ADVOWARE_PROXY_TOKEN` as the caller `default`. Every token has at least 32 bytes (the settings
refuse shorter ones). `identify_caller` compares the presented token with every configured one
(`hmac.compare_digest` over SHA-256 digests, so neither a token's length nor which one matched
shows in the timing) and gives the caller's name; the token itself never reaches a log line.

Failed authentication (`AuthFailureLimiter`): at most `limit` failures per client address and
`window_seconds` (a fixed window in Redis, `INCR` + `EXPIRE NX`, shared by every worker);
past it, every request from that address is answered 429 with `Retry-After` until the window
ends, before any token is compared. The address (`client_address`) is the last
`X-Forwarded-For` entry, which nginx's `$proxy_add_x_forwarded_for` sets to the peer it saw and a
client cannot forge through it; without one (a caller on the engine's own port, which
production binds to loopback) it is `direct`. When Redis cannot be used the count is kept in
this process (the limit then holds per worker).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from services.proxy.http import ProxyError, header_value

try:
    from redis.exceptions import RedisError
except ImportError:  # pragma: no cover
    RedisError = OSError  # type: ignore[misc,assignment]

log = logging.getLogger(__name__)

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="advoware-proxy"'}
DIRECT_ADDRESS = "direct"
"""The client address of a request without a usable X-Forwarded-For."""
FAILURE_KEY_PREFIX = "advoware:proxy:authfail:"
DISABLED_REASON = "the Advoware proxy is disabled: neither ADVOWARE_PROXY_TOKENS nor ADVOWARE_PROXY_TOKEN is configured"
_MEMORY_LIMIT = 10_000
"""In-process fallback: at most this many addresses are remembered."""


def bearer_token(headers: Mapping[str, Any] | None) -> str | None:
    """The credential of `Authorization: Bearer <token>` (scheme case-insensitive), else None."""
    scheme, _, credential = header_value(headers, "authorization").strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def _reveal(secret: Any) -> str:
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else secret
    return "" if value is None else str(value)


def identify_caller(headers: Mapping[str, Any] | None, callers: Mapping[str, Any]) -> str:
    """The name of the caller whose token `Authorization: Bearer` carries.

    ProxyError 503 when no caller is configured (the proxy never runs open), 401 (with a
    `WWW-Authenticate` challenge) when the token is missing or matches none. Every configured
    token is compared, in constant time, whatever matched before."""
    tokens = {name: _reveal(secret) for name, secret in sorted(callers.items())}
    tokens = {name: token for name, token in tokens.items() if token}
    if not tokens:
        raise ProxyError(503, DISABLED_REASON)
    given = bearer_token(headers)
    if given is None:
        raise ProxyError(401, "missing credentials: send Authorization: Bearer <proxy token>", dict(CHALLENGE))
    digest = hashlib.sha256(given.encode("utf-8")).digest()
    found = ""
    for name, token in tokens.items():
        same = hmac.compare_digest(digest, hashlib.sha256(token.encode("utf-8")).digest())
        found = name if same and not found else found
    if not found:
        raise ProxyError(401, "invalid proxy token", dict(CHALLENGE))
    return found


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
    """The in-process fallback, shared by every limiter of this process: address → (count, window end)."""

    def __init__(self, redis: Any, *, limit: int, window_seconds: float, key_prefix: str = FAILURE_KEY_PREFIX) -> None:
        self.redis = redis
        self.limit = limit
        self.window_ms = max(1, int(window_seconds * 1000))
        self.key_prefix = key_prefix

    def _key(self, address: str) -> str:
        return self.key_prefix + address

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
                log.warning("advoware proxy: failed-authentication counter unreadable, counting in this process: %s", exc)
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
                log.warning("advoware proxy: failed-authentication counter not written, counting in this process: %s", exc)
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
