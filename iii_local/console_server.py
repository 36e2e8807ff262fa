"""The console web page (`iii-cli console` on port 3113): static page + a guarded, read-mostly API.

`ConsoleServer` serves `iii_local/console_web/` and a whitelist of the engine's
`/_console/*` endpoints (reads and a manual cron run; no state writes). It runs either
inside the engine (`routes=console_routes(le)`, started by `LocalEngine.start()`) or
standalone (`engine_url=...`, `python -m iii_local console`), proxying to a running engine.
Secrets are masked on the way out (`console_guard.mask_response`). Bound to loopback by
default; on any other address a console token of at least 32 bytes is required, given as
`Authorization: Bearer` or through the sign-in form. The form starts a server-side session:
a random id in an HttpOnly, SameSite=Strict cookie with `Max-Age` (`session_ttl`, 8 h),
`Secure` when the request came over TLS or with `X-Forwarded-Proto: https` (`cookie_secure`
"auto"; "always"/"never" force it), forgotten on sign-out and at expiry. Failed sign-ins and
wrong bearer tokens are throttled per client address (5 a minute → 429). Requests with a
foreign `Origin` are refused; without a token only loopback `Host` names are served (no DNS
rebinding). The token is passed on to the engine's API, which enforces it too.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from iii_local.console_guard import (
    CSRF_HEADER,
    MASK,
    ConsoleConfigError,
    Sessions,
    Throttle,
    bearer,
    check_exposure,
    host_name,
    is_loopback,
    is_secret_name,
    mask_response,
    mask_secrets,
    same_origin,
)

__all__ = ["ConsoleServer", "ConsoleConfigError", "MASK", "check_exposure", "is_loopback", "is_secret_name", "mask_secrets"]

log = logging.getLogger("iii_local.console")

WEB_DIR = Path(__file__).resolve().parent / "console_web"
COOKIE = "iii_console"
STATE_ITEMS_MAX = 500
SESSION_TTL = 8 * 3600.0

# The only engine endpoints the page may use: reads and a manual cron run.
ALLOWED: tuple[tuple[str, str], ...] = (
    ("GET", "/_console/functions"),
    ("GET", "/_console/status"),
    ("GET", "/_console/cron"),
    ("POST", "/_console/cron/trigger"),
    ("GET", "/_console/state"),
    ("GET", "/_console/state/{scope}"),
    ("GET", "/_console/state/{scope}/{key}"),
    ("GET", "/_console/logs"),
    ("GET", "/_console/traces"),
    ("GET", "/_console/traces/{trace_id}"),
    ("GET", "/_console/queues"),
    ("GET", "/_console/dlq"),
)

STATIC = {
    "/": ("index.html", "text/html"),
    "/index.html": ("index.html", "text/html"),
    "/app.js": ("app.js", "application/javascript"),
    "/style.css": ("style.css", "text/css"),
}

CSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


def _mask_response(path: str, data: Any, query: dict[str, str]) -> Any:
    """Secrets masked; a state scope's items sorted by key and cut at `limit` (500), with `total`."""
    data = mask_response(path, data)
    parts = path.split("/")  # ['', '_console', 'state', scope]
    if isinstance(data, dict) and parts[2:3] == ["state"] and len(parts) == 4 and isinstance(data.get("items"), list):
        try:
            limit = max(1, min(int(query.get("limit", STATE_ITEMS_MAX)), 10_000))
        except ValueError:
            limit = STATE_ITEMS_MAX
        items = sorted(data["items"], key=lambda i: str(i.get("key")))
        data["total"] = len(items)
        data["items"] = items[:limit]
    return data


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConsoleServer:
    """The console page and its API, either over an engine's routes or proxying to its URL."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 3113,
        token: str = "",
        engine_url: str | None = None,
        routes: list[web.RouteDef] | None = None,
        web_dir: Path = WEB_DIR,
        session_ttl: float = SESSION_TTL,
        cookie_secure: str = "auto",
    ) -> None:
        if (engine_url is None) == (routes is None):
            raise ValueError("give either engine_url (proxy) or routes (in-process)")
        self.host = host
        self.port = port
        self.token = token
        self.engine_url = engine_url.rstrip("/") if engine_url else None
        self.routes = routes
        self.web_dir = web_dir
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sessions = Sessions(session_ttl)
        self.throttle = Throttle()
        self.cookie_secure = cookie_secure

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and serve; raises ConsoleConfigError when exposed without a token, OSError when the port is taken."""
        check_exposure(self.host, self.token)
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        if self.port == 0 and runner.addresses:
            self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ app

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard, self._mask], client_max_size=1024 * 1024)
        for path in STATIC:
            app.router.add_get(path, self._static)
        app.router.add_get("/login", self._login_page)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        if self.routes is not None:
            allowed = set(ALLOWED)
            app.add_routes([r for r in self.routes if (r.method, r.path) in allowed])  # type: ignore[attr-defined]
        else:
            for method, path in ALLOWED:
                app.router.add_route(method, path, self._proxy)
        app.on_cleanup.append(self._close_session)
        return app

    async def _close_session(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _authorized(self, request: web.Request) -> bool:
        """No token configured, the right bearer token, or a live session cookie."""
        if not self.token:
            return True
        given = bearer(request)
        if given is not None:
            if self._token_ok(given):
                return True
            self.throttle.failed(request.remote or "")
            return False
        return self.sessions.valid(request.cookies.get(COOKIE, ""))

    def _host_ok(self, request: web.Request) -> bool:
        """Without a token, only loopback Host names (no DNS-rebinding access from web pages)."""
        return bool(self.token) or is_loopback(host_name(request)) or host_name(request) == self.host

    def _secure(self, request: web.Request) -> bool:
        if self.cookie_secure in ("always", "never"):
            return self.cookie_secure == "always"
        return request.secure or request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._host_ok(request):
            return web.json_response({"error": "unexpected Host header"}, status=421)
        if not same_origin(request):
            return web.json_response({"error": "cross-origin request refused"}, status=403)
        path = request.path
        api = path.startswith("/_console/")
        if self.token and path != "/style.css" and bearer(request) is not None:
            throttled = self.throttle.refusal(request.remote or "")
            if throttled is not None:
                return throttled
        if path not in ("/login", "/style.css") and not self._authorized(request):
            if api:
                return web.json_response({"error": "sign in to the console", "login": True}, status=401)
            raise web.HTTPSeeOther("/login")
        if api and request.method != "GET" and request.headers.get(CSRF_HEADER) != "1":
            return web.json_response({"error": f"{CSRF_HEADER}: 1 header required"}, status=403)
        if api and self.token and self.routes is not None:
            # In-process: the engine's routes check the same token in the Authorization header.
            request = request.clone(headers={**request.headers, "Authorization": f"Bearer {self.token}"})
        resp = await handler(request)
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with the
        # page's own form posts and fetches, which the Origin check must refuse.
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp

    @web.middleware
    async def _mask(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resp = await handler(request)
        if not request.path.startswith("/_console/") or not isinstance(resp, web.Response) or resp.body is None:
            return resp
        if not (resp.content_type or "").endswith("json"):
            return resp
        body = resp.body if isinstance(resp.body, (bytes, bytearray)) else resp.text.encode()
        try:
            data = json.loads(body)
        except ValueError:
            return resp
        data = _mask_response(request.path, data, dict(request.query))
        return web.json_response(data, status=resp.status, dumps=lambda o: json.dumps(o, default=str))

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name, ctype = STATIC[request.path]
        body = (self.web_dir / name).read_bytes()
        if name == "index.html" and self.token:
            # Behind a token: a sign-out button (POST /logout drops the session cookie).
            body = body.replace(
                b"<!--SIGN-OUT-->",
                b'<form method="post" action="/logout" class="signout"><button type="submit" data-testid="sign-out">Sign out</button></form>',
            )
        resp = web.Response(body=body, content_type=ctype, charset="utf-8")
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Frame-Options"] = "DENY"
        return resp

    # ------------------------------------------------------------------ login

    def _login_html(self, error: str = "") -> str:
        err = f'<p class="login-error" data-testid="login-error">{html.escape(error)}</p>' if error else ""
        return (
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>iii console · sign in</title>"
            '<link rel="stylesheet" href="/style.css"></head><body class="login">'
            '<form method="post" action="/login" class="login-box"><h1>iii console</h1>'
            f"{err}<label>Console token <input type=password name=token autocomplete=current-password autofocus></label>"
            '<button type="submit">Sign in</button></form></body></html>'
        )

    async def _login_page(self, request: web.Request) -> web.Response:
        if not self.token or self._authorized(request):
            raise web.HTTPSeeOther("/")
        return self._login_response("")

    def _login_response(self, error: str, status: int = 200) -> web.Response:
        resp = web.Response(text=self._login_html(error), content_type="text/html", status=status)
        resp.headers["Content-Security-Policy"] = CSP
        return resp

    async def _login(self, request: web.Request) -> web.StreamResponse:
        """Sign in: throttled per client address (checked before the token, so a throttled
        client learns nothing), then a new server-side session in a cookie that expires."""
        if not self.token:
            raise web.HTTPSeeOther("/")
        client = request.remote or ""
        throttled = self.throttle.refusal(client)
        if throttled is not None:
            resp = self._login_response("Too many failed attempts; try again in a minute.", status=429)
            resp.headers["Retry-After"] = throttled.headers["Retry-After"]
            return resp
        form = await request.post()
        if not self._token_ok(str(form.get("token", ""))):
            self.throttle.failed(client)
            return self._login_response("Wrong token.", status=401)
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(COOKIE, self.sessions.create(), httponly=True, samesite="Strict", path="/",
                        max_age=int(self.sessions.ttl), secure=self._secure(request))
        raise resp

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        """Sign out: the session id is forgotten on the server, the cookie dropped."""
        self.sessions.drop(request.cookies.get(COOKIE, ""))
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(COOKIE, path="/")
        raise resp

    # ------------------------------------------------------------------ proxy

    async def _proxy(self, request: web.Request) -> web.Response:
        assert self.engine_url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        headers = {"Content-Type": "application/json"}
        if request.method not in ("GET", "HEAD"):
            headers[CSRF_HEADER] = "1"  # checked by _guard already; the engine checks it again
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = await request.read() if request.can_read_body else None
        try:
            async with self._session.request(request.method, self.engine_url + request.raw_path, data=body, headers=headers) as resp:
                data = await resp.read()
                ctype = resp.content_type or "application/json"
                return web.Response(body=data, status=resp.status, content_type=ctype)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return web.json_response({"error": f"engine unreachable at {self.engine_url}: {exc}"}, status=502)
