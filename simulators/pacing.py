"""Production-like pacing for a simulator: a latency profile and a rate limit (both off by default).

Latency profile — `PUT /_sim/latency`, `GET /_sim/latency`, `DELETE /_sim/latency` (back to none):
`{"base_ms": 80, "per_mib_ms": 0, "routes": [{"method": "POST", "path": "^/v1/files$",
"base_ms": 300, "per_mib_ms": 80}]}`. Every API request (not `/_sim/`) waits `base_ms` before it
is handled, and `per_mib_ms` for every MiB of request body the handler read and of response
body it returned whole (a response the handler streamed itself is already sent and not slowed).
The first route whose method (`*` = any) and path regex (`re.search`) match replaces both
figures. A fault rule's `latency_ms` comes on top. The request log records the latency each
request was given (`latency_ms`) and its body bytes (`bytes`).

Rate limit — `PUT /_sim/rate-limit`, `GET /_sim/rate-limit`, `DELETE /_sim/rate-limit` (off):
`{"rate": 10, "burst": 10, "retry_after_share": 0.5, "path": ".*", "method": "*"}`. A token
bucket per credential (the `Authorization` header, else `X-Api-Key`, else the client address):
it refills `rate` tokens a second and holds at most `burst`. A matching request that finds
less than one token is answered **429 Too Many Requests** before it is handled and spends
nothing. A share `retry_after_share` (0..1, spread evenly: 0.5 = every second 429) of those
answers carries `Retry-After` in whole seconds (rounded up, at least 1, as RFC 9110's
delta-seconds), the time until the bucket holds a token again; the others carry none, so a
client must fall back to its own backoff. The body is the simulator's own error shape.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MIB = 1024 * 1024


@dataclass
class LatencyRoute:
    method: str = "*"
    path: str = ".*"
    base_ms: float = 0.0
    per_mib_ms: float = 0.0
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path)
        self.method = self.method.upper()
        _non_negative(self.base_ms, "base_ms")
        _non_negative(self.per_mib_ms, "per_mib_ms")

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and bool(self._regex.search(path))

    def public(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "base_ms": self.base_ms, "per_mib_ms": self.per_mib_ms}


@dataclass
class LatencyProfile:
    """What each request costs in time: `base_ms` up front, `per_mib_ms` per MiB of body."""

    base_ms: float = 0.0
    per_mib_ms: float = 0.0
    routes: list[LatencyRoute] = field(default_factory=list)

    def __post_init__(self) -> None:
        _non_negative(self.base_ms, "base_ms")
        _non_negative(self.per_mib_ms, "per_mib_ms")

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LatencyProfile:
        if not isinstance(spec, dict):
            raise TypeError("latency profile must be a JSON object")
        routes = [LatencyRoute(**_only(r, LatencyRoute)) for r in spec.get("routes") or []]
        return cls(float(spec.get("base_ms", 0)), float(spec.get("per_mib_ms", 0)), routes)

    def _figures(self, method: str, path: str) -> tuple[float, float]:
        for route in self.routes:
            if route.matches(method, path):
                return route.base_ms, route.per_mib_ms
        return self.base_ms, self.per_mib_ms

    def before_ms(self, method: str, path: str) -> float:
        """The delay before the request is handled."""
        return self._figures(method, path)[0]

    def size_ms(self, method: str, path: str, size: int) -> float:
        """The delay for `size` body bytes moved by the request."""
        return self._figures(method, path)[1] * size / MIB

    def public(self) -> dict[str, Any]:
        return {"base_ms": self.base_ms, "per_mib_ms": self.per_mib_ms, "routes": [r.public() for r in self.routes]}


@dataclass
class RateLimit:
    """A token bucket per credential; see the module docstring."""

    rate: float
    burst: float
    retry_after_share: float = 1.0
    path: str = ".*"
    method: str = "*"
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _regex: re.Pattern[str] = field(init=False, repr=False)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict, init=False, repr=False)
    _share: float = field(default=0.0, init=False, repr=False)
    limited: int = field(default=0, init=False)
    """429s answered so far."""

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1):
            raise ValueError("rate must be > 0 and burst >= 1")
        if not 0 <= self.retry_after_share <= 1:
            raise ValueError("retry_after_share must be between 0 and 1")
        self._regex = re.compile(self.path)
        self.method = self.method.upper()

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> RateLimit:
        if not isinstance(spec, dict):
            raise TypeError("rate limit must be a JSON object")
        return cls(**_only(spec, cls))

    def take(self, key: str, method: str, path: str) -> float | None:
        """Spend one token of `key`'s bucket: None when there was one (or the request is not
        limited), else the seconds until there will be one (nothing spent)."""
        if not (self.method in ("*", method.upper()) and self._regex.search(path)):
            return None
        now = self.clock()
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return None
        self._buckets[key] = (tokens, now)
        self.limited += 1
        return (1 - tokens) / self.rate

    def retry_after(self, wait: float) -> str | None:
        """The `Retry-After` value for this 429, or None for one that carries none."""
        self._share += self.retry_after_share
        if self._share < 1 - 1e-9:
            return None
        self._share -= 1
        return str(max(1, math.ceil(wait)))

    def public(self) -> dict[str, Any]:
        return {"rate": self.rate, "burst": self.burst, "retry_after_share": self.retry_after_share,
                "path": self.path, "method": self.method, "limited": self.limited}


def credential_of(request: web.Request) -> str:
    """Whose bucket a request spends from: its credential, else its address."""
    return request.headers.get("Authorization") or request.headers.get("X-Api-Key") or (request.remote or "")


@dataclass
class Pacing:
    """A simulator's latency profile and rate limit (None = off)."""

    latency: LatencyProfile = field(default_factory=LatencyProfile)
    rate_limit: RateLimit | None = None
    limited_body: dict[str, Any] = field(default_factory=lambda: {"error": "Too many requests"})
    """The 429's JSON body, in the simulator's error shape."""

    def reset(self) -> None:
        self.latency = LatencyProfile()
        self.rate_limit = None

    def limited_response(self, request: web.Request) -> web.Response | None:
        """A 429 when the request's bucket is empty, else None."""
        if self.rate_limit is None:
            return None
        wait = self.rate_limit.take(credential_of(request), request.method, request.path)
        if wait is None:
            return None
        value = self.rate_limit.retry_after(wait)
        headers = {"Retry-After": value} if value is not None else {}
        return web.json_response(self.limited_body, status=429, headers=headers)


def body_bytes(request: web.Request, response: web.StreamResponse | None) -> int:
    """Bytes of request body read plus response body returned whole (not yet sent)."""
    size = request.content.total_bytes
    if response is not None and not response.prepared and isinstance(response, web.Response):
        size += response.content_length or 0
    return size


def admin_routes(pacing: Pacing) -> list[web.RouteDef]:
    """`/_sim/latency` and `/_sim/rate-limit` (PUT sets, GET shows, DELETE turns off)."""

    def set_latency(value: LatencyProfile | None) -> None:
        pacing.latency = value or LatencyProfile()

    def set_rate_limit(value: RateLimit | None) -> None:
        pacing.rate_limit = value

    return [
        *_setting_routes("/_sim/latency", LatencyProfile.from_spec, lambda: pacing.latency, set_latency),
        *_setting_routes("/_sim/rate-limit", RateLimit.from_spec, lambda: pacing.rate_limit, set_rate_limit),
    ]


def _setting_routes(
    path: str, parse: Callable[[Any], Any], current: Callable[[], Any], assign: Callable[[Any], None]
) -> list[web.RouteDef]:
    """PUT (a spec, parsed; 400 when it is bad), GET and DELETE (back to off) of one setting."""

    async def show(request: web.Request) -> web.Response:
        value = current()
        return web.json_response(value.public() if value is not None else None)

    async def put(request: web.Request) -> web.Response:
        try:
            assign(parse(await request.json()))
        except (ValueError, TypeError, re.error) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return await show(request)

    async def delete(request: web.Request) -> web.Response:
        assign(None)
        return await show(request)

    return [web.put(path, put), web.get(path, show), web.delete(path, delete)]


def _only(spec: dict[str, Any], cls: type) -> dict[str, Any]:
    """The spec's keys that are init fields of `cls` (others are refused)."""
    fields = {n for n, f in cls.__dataclass_fields__.items() if f.init and not n.startswith("_") and n != "clock"}  # type: ignore[attr-defined]
    unknown = set(spec) - fields
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return dict(spec)


def _non_negative(value: float, name: str) -> None:
    if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0")
