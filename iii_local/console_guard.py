"""Who may use the stand-in's operator surfaces: the `/_console/*` API and the console page.

Rules (issue 14; the real engine 0.8.3 has neither surface, so no step depends on them):
- Without a console token the API answers only requests that came straight from a loopback
  address (no `Forwarded`/`X-Forwarded-For`/`X-Real-IP`: a proxy in front is not loopback)
  and name a loopback host in `Host` (`localhost`, `127.0.0.1`, `[::1]`): a DNS-rebinding
  page (`Host: rebind.evil.example`) is refused with 421. With a token, every request needs
  it (bearer or a console session) and may come from anywhere.
- A request with an `Origin` must be same-origin (`Origin`'s host:port is the `Host`).
- Every write (anything but GET/HEAD) needs `Content-Type: application/json` and
  `X-Console-Request: 1`: an HTML form or a `text/plain` fetch cannot send that header, and a
  cross-site fetch that does is preflighted, which `/_console/*` refuses (no CORS).
- Bound beyond loopback, the console and the engine's API need a token of at least 32 bytes,
  and the worker port a worker secret of at least 32 bytes: otherwise the engine does not start.
- Failed token attempts are throttled per client address (5 a minute, then 429 for every
  attempt, the right token included, until the window passes).
- Secrets are masked on the way out: values under keys whose name contains token, secret,
  password, key, authorization or signature, in state, log fields, span attributes,
  invocation details, dead letters and queue messages.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import time
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from iii_local.config import EngineConfigError
from iii_local.http_json import InvalidJson, loads_checked

CSRF_HEADER = "X-Console-Request"
REVEAL_HEADER = "X-Console-Reveal"
MIN_TOKEN_BYTES = 32
FORWARDED_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
WRITE_EXEMPT = frozenset({"GET", "HEAD"})
MASK = "••••••••"
SECRET_WORDS = ("token", "secret", "password", "key", "authorization", "signature")


class ConsoleConfigError(EngineConfigError):
    """An operator surface would be reachable from other machines without a strong enough secret."""


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None  # ::ffff:127.0.0.1 on a dual-stack socket
    return (mapped or ip).is_loopback


def check_exposure(host: str, token: str, *, what: str = "console_host", setting: str = "local_engine.console_token") -> None:
    """Refuse a listener beyond loopback without a secret of at least MIN_TOKEN_BYTES bytes."""
    if is_loopback(host):
        return
    if not token:
        raise ConsoleConfigError(f"{what} {host!r} is not a loopback address: set {setting} (or bind it to 127.0.0.1)")
    if len(token.encode()) < MIN_TOKEN_BYTES:
        raise ConsoleConfigError(f"{what} {host!r} is not a loopback address: {setting} must be at least {MIN_TOKEN_BYTES} bytes")


def host_name(request: web.Request) -> str:
    """The `Host` header without its port (`[::1]:3111` → `[::1]`)."""
    host = request.host
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0]


def direct_loopback(request: web.Request) -> bool:
    """The request came from a loopback address and through no proxy."""
    return is_loopback(request.remote) and not any(h in request.headers for h in FORWARDED_HEADERS)


def same_origin(request: web.Request) -> bool:
    """No `Origin`, or one whose host:port is this request's `Host`."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and netloc == request.host.lower()


def refusal(request: web.Request, *, token_set: bool) -> web.Response | None:
    """The answer that refuses a request to the API before authentication, or None to go on."""
    if not token_set and not direct_loopback(request):
        return _error(403, "the console API answers only loopback clients unless a console token is set")
    if not token_set and not is_loopback(host_name(request)):
        return _error(421, "unexpected Host header")
    if not same_origin(request):
        return _error(403, "cross-origin request refused")
    if request.method == "OPTIONS":
        return _error(403, "no cross-origin access to the console API")
    if request.method not in WRITE_EXEMPT:
        if request.content_type != "application/json":
            return _error(415, "a write needs Content-Type: application/json")
        if request.headers.get(CSRF_HEADER) != "1":
            return _error(403, f"a write needs the header {CSRF_HEADER}: 1")
    return None


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    return value[7:].strip() if value.startswith("Bearer ") else None


async def read_json_object(request: web.Request, max_bytes: int = 1024 * 1024) -> dict[str, Any]:
    """The request's JSON object (`{}` without a body); bad, too deep or too big → 400/413."""
    if not request.can_read_body:
        return {}
    buf = bytearray()
    async for chunk in request.content.iter_any():
        buf += chunk
        if len(buf) > max_bytes:
            raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(buf))
    raw = bytes(buf)
    try:
        data = loads_checked(raw)
    except InvalidJson as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"invalid JSON: {exc}"}), content_type="application/json") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "expected a JSON object"}), content_type="application/json")
    return data


class Throttle:
    """Failed attempts per client address: `limit` within `window` seconds, then blocked."""

    def __init__(self, limit: int = 5, window: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        q = self.failures.get(client)
        if not q:
            return 0.0
        now = time.monotonic()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self.failures[client]
            return 0.0
        return q[0] + self.window - now if len(q) >= self.limit else 0.0

    def failed(self, client: str) -> None:
        if client not in self.failures and len(self.failures) >= self.max_clients:
            self.failures.pop(next(iter(self.failures)))  # the oldest client goes first
        self.failures.setdefault(client, deque()).append(time.monotonic())

    def refusal(self, client: str) -> web.Response | None:
        wait = self.retry_after(client)
        if wait <= 0:
            return None
        resp = _error(429, "too many failed sign-in attempts; try again later")
        resp.headers["Retry-After"] = str(max(1, round(wait)))
        return resp


class Sessions:
    """Console sessions: random ids kept server-side until they expire or sign out."""

    def __init__(self, ttl: float, max_sessions: int = 1000) -> None:
        self.ttl = ttl
        self.max_sessions = max_sessions
        self.expiry: dict[str, float] = {}

    def create(self) -> str:
        now = time.monotonic()
        for sid in [s for s, t in self.expiry.items() if t <= now]:
            del self.expiry[sid]
        while len(self.expiry) >= self.max_sessions:
            self.expiry.pop(next(iter(self.expiry)))
        sid = secrets.token_urlsafe(32)
        self.expiry[sid] = now + self.ttl
        return sid

    def valid(self, sid: str) -> bool:
        expires = self.expiry.get(sid) if sid else None
        if expires is None:
            return False
        if expires <= time.monotonic():
            del self.expiry[sid]
            return False
        return True

    def drop(self, sid: str) -> None:
        self.expiry.pop(sid, None)


def is_secret_name(name: Any) -> bool:
    n = str(name).lower()
    return any(w in n for w in SECRET_WORDS)


def mask_secrets(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with the values of secret-named keys replaced by a mask, recursively."""
    if depth > 64:
        return MASK
    if isinstance(value, dict):
        return {k: (MASK if is_secret_name(k) else mask_secrets(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, depth + 1) for v in value]
    return value


def _masked_list(items: Any, field: str) -> Any:
    if not isinstance(items, list):
        return items
    return [{**i, field: mask_secrets(i.get(field))} if isinstance(i, dict) else i for i in items]


def mask_response(path: str, data: Any) -> Any:
    """A copy of an API answer with secrets masked: state values, log fields, span attributes,
    invocation details, dead-letter jobs and queue message data. `data` is left as it was."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    parts = path.split("/")  # ['', '_console', 'state', scope, key]
    if parts[2:3] == ["state"] and len(parts) == 4 and isinstance(out.get("items"), list):
        out["items"] = [
            {**i, "value": MASK if is_secret_name(i.get("key")) else mask_secrets(i.get("value"))} if isinstance(i, dict) else i
            for i in out["items"]
        ]
    elif parts[2:3] == ["state"] and len(parts) == 5:
        for name in ("value", "old_value", "new_value"):
            if name in out:
                out[name] = MASK if is_secret_name(parts[4]) else mask_secrets(out[name])
    for name, field in (("logs", "fields"), ("spans", "attributes"), ("invocations", "detail"), ("messages", "data")):
        if name in out:
            out[name] = _masked_list(out[name], field)
    if isinstance(out.get("dead_letters"), list):
        out["dead_letters"] = [
            {**e, "job": {**e["job"], "data": mask_secrets(e["job"].get("data"))}} if isinstance(e, dict) and isinstance(e.get("job"), dict) else e
            for e in out["dead_letters"]
        ]
    return out
