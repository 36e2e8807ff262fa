"""Routing and CORS of the REST module, as the real engine's axum router does them.

Routes (modules/rest_api/api_core.rs 144-277, axum 0.8 / matchit 0.8):
- A trigger's `api_path` becomes the axum path `/` + path with `:name` segments as
  `{name}`; the registry key is `METHOD:path` without leading slashes (a second trigger
  with the same key replaces the first).
- The request path is matched **raw** (percent-encoded, not normalised): segment by
  segment, a `{param}` takes one non-empty segment, a static segment wins over a
  parameter at the first position where they differ; a trailing slash is a different path.
  Path parameters are handed over as they appear in the URL (not percent-decoded,
  views.rs 74-101).
- No path matches → 404 with an empty body (axum's fallback). The path matches but not the
  method → 405 with an `Allow` header; a GET route also takes HEAD, and the engine then
  finds no `HEAD:` registry entry → 404 `Not Found` as plain text (views.rs 567-576).
- Each route has its own `concurrency_request_limit` (axum's `Router::layer` wraps every
  endpoint in its own ConcurrencyLimit).

CORS (api_core.rs 279-322, tower-http 0.6.8 `CorsLayer`), on every answer of the engine's
routes, 404 and 405 included:
- no `cors` config → permissive: `Access-Control-Allow-Origin: *`,
  `Access-Control-Expose-Headers: *`; with `cors`: origins (any when the list is empty or
  holds `*`, else the request's `Origin` echoed when listed) and methods (any when empty).
- `Vary: origin, access-control-request-method, access-control-request-headers` always.
- Every OPTIONS request is answered by the layer itself (200, empty, allow-methods and
  allow-headers `*` or the configured list): a handler never sees an OPTIONS request.
  (An explicit `cors:` section with empty lists still counts as permissive here.)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import Enum

from aiohttp import web

from iii_local.config import RestConfig
from iii_local.engine import TriggerEntry

ANY = "*"
VARY = "origin, access-control-request-method, access-control-request-headers"


def split_path(path: str) -> list[str]:
    """The segments of an axum path or a request path (`/a/b/` → `a`, `b`, ``)."""
    return path.split("/")[1:] if path.startswith("/") else path.split("/")


def router_key(method: str, api_path: str) -> str:
    """`build_router_key`: upper-case method, path without leading slashes (`/` stays `/`)."""
    path = "/" if api_path == "/" else api_path.lstrip("/")
    return f"{method.upper()}:{path}"


@dataclass
class Route:
    method: str
    api_path: str  # as the trigger registered it: the `path` a worker gets
    segments: list[str]  # of the axum path; `:name` for parameters
    trigger: TriggerEntry
    semaphore: asyncio.Semaphore

    @property
    def function_id(self) -> str:
        return self.trigger.function_id

    @property
    def shape(self) -> tuple[str, ...]:
        """The axum path with parameter names left out (same shape → same axum route)."""
        return tuple(":" if s.startswith(":") else s for s in self.segments)

    def params(self, actual: list[str]) -> dict[str, str]:
        return {p[1:]: a for p, a in zip(self.segments, actual) if p.startswith(":")}


class Resolution(Enum):
    ROUTE = "route"
    NO_ROUTE = "no_route"  # 404, empty body
    NOT_REGISTERED = "not_registered"  # 404 "Not Found" (HEAD on a GET route)
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405 with Allow


@dataclass
class Match:
    kind: Resolution
    route: Route | None = None
    params: dict[str, str] = field(default_factory=dict)
    allow: str = ""


def _fits(shape: tuple[str, ...], actual: list[str]) -> bool:
    if len(shape) != len(actual):
        return False
    return all(s == a if s != ":" else a != "" for s, a in zip(shape, actual))


def _priority(shape: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(1 if s == ":" else 0 for s in shape)


class Router:
    """The routes of the http triggers, grouped by axum path as axum merges them."""

    def __init__(self, concurrency_limit: int = 1024) -> None:
        self.routes: dict[str, Route] = {}
        self.by_shape: dict[tuple[str, ...], list[Route]] = {}
        self.concurrency_limit = max(1, concurrency_limit)

    def _reshape(self) -> None:
        self.by_shape = {}
        for route in self.routes.values():
            self.by_shape.setdefault(route.shape, []).append(route)

    def add(self, trigger: TriggerEntry) -> Route:
        cfg = trigger.config
        api_path = str(cfg.get("api_path", ""))
        method = str(cfg.get("http_method", "GET")).upper()
        axum_path = api_path if api_path.startswith("/") else "/" + api_path
        route = Route(method, api_path, split_path(axum_path), trigger, asyncio.Semaphore(self.concurrency_limit))
        self.routes[router_key(method, api_path)] = route
        self._reshape()
        return route

    def holder(self, trigger: TriggerEntry) -> TriggerEntry | None:
        """The trigger whose route `trigger` would replace (same method and path), if any."""
        cfg = trigger.config
        route = self.routes.get(router_key(str(cfg.get("http_method", "GET")), str(cfg.get("api_path", ""))))
        return route.trigger if route is not None else None

    def remove(self, trigger: TriggerEntry) -> None:
        for key, route in list(self.routes.items()):
            if route.trigger.id == trigger.id:
                del self.routes[key]
        self._reshape()

    def resolve(self, method: str, raw_path: str) -> Match:
        actual = split_path(raw_path)
        fitting = [s for s in self.by_shape if _fits(s, actual)]
        if not fitting:
            return Match(Resolution.NO_ROUTE)
        at_path = self.by_shape[min(fitting, key=_priority)]
        method = method.upper()
        for route in at_path:
            if route.method == method:
                return Match(Resolution.ROUTE, route, route.params(actual))
        methods = [r.method for r in at_path]
        if method == "HEAD" and "GET" in methods:
            return Match(Resolution.NOT_REGISTERED)
        allow: list[str] = []
        for m in methods:
            allow.extend(["GET", "HEAD"] if m == "GET" else [m])
        return Match(Resolution.METHOD_NOT_ALLOWED, allow=",".join(dict.fromkeys(allow)))

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        """The route and its path parameters, or None (no route for this method)."""
        found = self.resolve(method, raw_path)
        return (found.route, found.params) if found.route is not None else None


class Cors:
    """tower-http's CorsLayer as the REST module configures it."""

    def __init__(self, config: RestConfig) -> None:
        origins, methods = list(config.cors_origins), list(config.cors_methods)
        self.permissive = not origins and not methods
        self.origins: list[str] | None = None if (not origins or ANY in origins) else origins
        self.methods = ANY if not methods else ",".join(methods)

    def _allow_origin(self, request: web.Request) -> str | None:
        if self.origins is None:
            return ANY
        origin = request.headers.get("Origin")
        return origin if origin in self.origins else None

    def preflight(self, request: web.Request) -> web.Response:
        """Any OPTIONS request: answered here, 200 with an empty body."""
        headers = {"Vary": VARY, "Access-Control-Allow-Methods": self.methods, "Access-Control-Allow-Headers": ANY}
        origin = self._allow_origin(request)
        if origin is not None:
            headers["Access-Control-Allow-Origin"] = origin
        return web.Response(status=200, headers=headers)

    def decorate(self, request: web.Request, resp: web.StreamResponse) -> None:
        """Add the layer's headers to an answer that is not prepared yet."""
        resp.headers.add("Vary", VARY)
        origin = self._allow_origin(request)
        if origin is not None:
            resp.headers["Access-Control-Allow-Origin"] = origin
        if self.permissive:
            resp.headers["Access-Control-Expose-Headers"] = ANY
