"""The operators' page is served by the project's own step (src/steps/system/ops_page_api_step.py)
through the real stack: as HTML with its own headers (written to the response channel, which is
what survives the real engine, row H3), a CSP that allows no inline script, only allow-listed
assets, and no data without the token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from motia import ApiResponse

from iii_local.testing import MockRequest, MotiaTester, Response, mock_context
from services.ops.page import ASSETS, ASSETS_PREFIX, PAGE, PAGE_PATH, WEB, asset, page, redirect_to_page
from src.steps.system.ops_page_api_step import handler

HTML_SCRIPTS = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)
WRITES_HTML = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(|setAttribute\(\s*[\"']on")


def header(r: Any, name: str) -> str:
    return next((str(v) for k, v in r.headers.items() if k.lower() == name.lower()), "")


async def raw_get(stack: MotiaTester, path: str) -> Response:
    """GET `path` exactly as written (no normalising of `%2e%2e`, no following of redirects)."""
    async with aiohttp.ClientSession() as session, \
            session.get(yarl.URL(stack.base_url + path, encoded=True), allow_redirects=False) as resp:
        return Response(resp.status, dict(resp.headers), await resp.read())


def assert_guarded(r: Any) -> None:
    assert header(r, "X-Content-Type-Options") == "nosniff", dict(r.headers)
    csp = header(r, "Content-Security-Policy")
    for rule in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'",
                 "base-uri 'none'", "form-action 'none'"):
        assert rule in csp, (rule, csp)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert header(r, "Referrer-Policy") == "no-referrer"


async def test_the_page_is_html_with_its_headers_and_needs_no_token(stack: MotiaTester) -> None:
    r = await stack.get("/ops/")
    assert r.status == 200, r.text
    assert header(r, "Content-Type").startswith("text/html"), dict(r.headers)  # not JSON-encoded by the engine
    assert_guarded(r)
    assert header(r, "Cache-Control") == "no-store"
    assert r.text.lstrip().lower().startswith("<!doctype html>") and 'id="signin-form"' in r.text
    scripts = HTML_SCRIPTS.findall(r.text)
    assert scripts and all('src="/ops/assets/' in attrs and not body.strip() for attrs, body in scripts), scripts  # no inline script
    assert not re.search(r"\son[a-z]+\s*=", r.text, re.I) and "style=" not in r.text  # no inline handlers or styles
    assert "token=" not in r.text.lower()


async def test_ops_without_slash_redirects_to_the_page(stack: MotiaTester) -> None:
    r = await raw_get(stack, "/ops")
    assert r.status == 308 and header(r, "Location") == "/ops/", (r.status, dict(r.headers))


@pytest.mark.parametrize("name", sorted(ASSETS))
async def test_every_allowed_asset_is_served_with_its_type(stack: MotiaTester, name: str) -> None:
    r = await stack.get(f"/ops/assets/{name}")
    assert r.status == 200, (name, r.text)
    assert header(r, "Content-Type") == ASSETS[name]
    assert_guarded(r)
    assert r.body == (WEB / name).read_bytes()


@pytest.mark.parametrize("name", ["index.html", "page.py", "..%2fpage.py", "%2e%2e%2fapi.py", "APP.JS", "app.js.map", "style.css%00", "x"])
async def test_anything_else_under_assets_is_404(stack: MotiaTester, name: str) -> None:
    r = await raw_get(stack, f"/ops/assets/{name}")
    assert r.status == 404, (name, r.status, r.text)
    assert_guarded(r)
    assert "import" not in r.text and "<html" not in r.text.lower()


def test_every_file_of_the_page_is_allow_listed_and_no_script_writes_html() -> None:
    files = {p.name for p in WEB.iterdir() if p.is_file()}
    assert files == set(ASSETS) | {PAGE}, files ^ (set(ASSETS) | {PAGE})
    for name in ASSETS:
        text = (WEB / name).read_text()
        assert not WRITES_HTML.search(text), f"{name}: data must become text nodes, never HTML"
        if name.endswith(".js"):
            imports = re.findall(r"from \"\./([^\"]+)\"", text)
            assert all(i in ASSETS for i in imports), (name, imports)  # a module the route would not serve


async def test_without_a_response_channel_the_answers_are_motia_responses() -> None:
    """The step called without the engine's response channel (send_answer's fallback) returns the answer it would write."""
    assert page().status == 200 and page().headers["Content-Type"].startswith("text/html")
    assert asset("../page.py").status == 404 and asset("app.js").status == 200
    assert redirect_to_page().headers["Location"] == "/ops/"
    assert Path(WEB / PAGE).read_bytes() == page().body
    for route, params, expected in ((PAGE_PATH, {}, page()), (ASSETS_PREFIX + ":name", {"name": "app.js"}, asset("app.js")),
                                    ("/ops", {}, redirect_to_page())):
        ctx = mock_context("http")
        ctx.trigger.path = route
        r = await handler(MockRequest(method="GET", path_params=params), ctx)
        assert isinstance(r, ApiResponse), (route, r)
        assert (r.status, r.headers, r.body) == (expected.status, expected.headers, expected.body), route
