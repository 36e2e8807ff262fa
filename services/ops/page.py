"""The operators' page (`GET /ops/`, `GET /ops/assets/{name}`): plain HTML, JavaScript modules
and CSS from services/ops/web/, no build step. Framework-free; the step
(src/steps/system/ops_page_api_step.py) writes what this returns to the engine's response
channel, because the real engine would JSON-encode a returned body and drop its headers (row H3).

Rules:
- The page holds no data and needs no token: its script asks for the ops token (a sign-in
  form), keeps it in the tab's sessionStorage (never a cookie, never a URL) and sends it as
  `Authorization: Bearer` to the JSON API (services/ops/api.py) on every request.
- Only the files named in ASSETS are served, by exact name (no paths, no directory listing);
  anything else under /ops/assets/ is 404.
- Every answer carries `X-Content-Type-Options: nosniff` and a CSP that lets the page run only
  its own scripts and styles and talk only to its own origin (no inline script or style, no
  framing, no forms posted anywhere, no base URL changes), `Referrer-Policy: no-referrer`;
  the page itself is `no-store`, the assets are revalidated (`no-cache`).
- `GET /ops` (no slash) redirects to `/ops/` (308), so the page has one address.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WEB = Path(__file__).with_name("web")
PAGE_PATH = "/ops/"
ASSETS_PREFIX = "/ops/assets/"

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".txt": "text/plain; charset=utf-8"}
"""Content types by file suffix."""
PAGE = "index.html"
MODULES = ("app.js", "api.js", "dom.js", "entity.js", "counterparts.js", "ledger.js", "audit.js")
"""The page's JavaScript modules (app.js imports the others)."""
ASSETS: dict[str, str] = {name: TYPES[Path(name).suffix] for name in (*MODULES, "style.css")}
"""The allow-list of /ops/assets/{name}: file name → content type."""

CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


@dataclass(frozen=True)
class PageAnswer:
    """What the step writes to the response channel."""

    status: int
    headers: dict[str, str]
    body: bytes


def headers_for(content_type: str, *, cache: str) -> dict[str, str]:
    """The headers of every answer of the page's routes (module docstring)."""
    return {
        "Content-Type": content_type,
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": CSP,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": cache,
    }


def _not_found(what: str) -> PageAnswer:
    return PageAnswer(404, headers_for(TYPES[".txt"], cache="no-store"), f"not found: {what}\n".encode())


def page() -> PageAnswer:
    """The page (index.html)."""
    return PageAnswer(200, headers_for(TYPES[".html"], cache="no-store"), (WEB / PAGE).read_bytes())


def redirect_to_page() -> PageAnswer:
    """`/ops` → `/ops/` (308: the method is kept)."""
    return PageAnswer(308, {**headers_for(TYPES[".txt"], cache="no-store"), "Location": PAGE_PATH}, b"")


def asset(name: str) -> PageAnswer:
    """One file of ASSETS by its exact name (as the URL has it: not decoded), else 404."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return _not_found(f"{ASSETS_PREFIX}{name[:80]}")
    return PageAnswer(200, headers_for(content_type, cache="no-cache"), (WEB / name).read_bytes())


__all__ = ["ASSETS", "ASSETS_PREFIX", "CSP", "PAGE_PATH", "PageAnswer", "asset", "headers_for", "page", "redirect_to_page"]
