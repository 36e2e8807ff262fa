"""Attacks on the console page's sign-in (issue 14), against the console the engine serves:
a cookie replayed after sign-out or expiry, a cookie without `Secure` behind TLS, token
guessing, a cross-site sign-in, a network-facing console with a short token, a nesting bomb."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from iii_local.config import EngineConfig, LocalEngineConfig, RestConfig
from iii_local.console_server import COOKIE, ConsoleConfigError, ConsoleServer
from iii_local.server import LocalEngine
from iii_local.testing import PROJECT_ROOT, free_port

TOKEN = "console-token-" + "k" * 40


def _config(tmp_path: Path, **local: Any) -> EngineConfig:
    return EngineConfig(port=free_port(), host="127.0.0.1", base_dir=tmp_path, rest=RestConfig(port=free_port()),
                        local=LocalEngineConfig(**{"console_host": "127.0.0.1", "console_port": free_port(), "console_token": TOKEN, **local}))


async def _engine(tmp_path: Path, **local: Any) -> LocalEngine:
    le = LocalEngine(_config(tmp_path, **local), run_exec=False)
    await le.start()
    assert le.console is not None
    return le


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[LocalEngine]:
    le = await _engine(tmp_path)
    try:
        yield le
    finally:
        await le.stop()


class Client:
    """A browser-like client that keeps the console cookie by hand (aiohttp's jar skips IP hosts)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cookie = ""
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any) -> tuple[int, dict[str, str], str]:
        hdrs = {"Origin": self.url, **({"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}), **(headers or {})}
        async with self.session.request(method, self.url + path, headers=hdrs, allow_redirects=False, **kw) as r:
            return r.status, {k: v for k, v in r.headers.items()}, await r.text()

    async def sign_in(self, token: str, headers: dict[str, str] | None = None) -> tuple[int, SimpleCookie]:
        status, hdrs, _ = await self.request("POST", "/login", headers=headers, data={"token": token})
        jar: SimpleCookie = SimpleCookie(hdrs.get("Set-Cookie", ""))
        if COOKIE in jar:
            self.cookie = jar[COOKIE].value
        return status, jar


async def test_a_cookie_dies_on_sign_out_and_at_expiry(console: LocalEngine, tmp_path: Path) -> None:
    assert console.console is not None
    async with Client(console.console.url) as c:
        status, jar = await c.sign_in(TOKEN)
        assert status == 303
        morsel = jar[COOKIE]
        assert morsel["max-age"] == str(8 * 3600) and morsel["httponly"] and morsel["samesite"] == "Strict"
        assert not morsel["secure"]  # plain HTTP on loopback
        assert TOKEN not in morsel.value
        assert (await c.request("GET", "/_console/status"))[0] == 200
        stolen = c.cookie
        assert (await c.request("POST", "/logout"))[0] == 303
        c.cookie = stolen  # the cookie kept (or stolen) from before the sign-out
        assert (await c.request("GET", "/_console/status"))[0] == 401

    short = await _engine(tmp_path, console_session_ttl_s=1)
    try:
        assert short.console is not None
        async with Client(short.console.url) as c:
            status, jar = await c.sign_in(TOKEN)
            assert status == 303 and jar[COOKIE]["max-age"] == "1"
            assert (await c.request("GET", "/_console/status"))[0] == 200
            await asyncio.sleep(1.3)
            assert (await c.request("GET", "/_console/status"))[0] == 401  # the server forgot it, whatever the browser keeps
    finally:
        await short.stop()


async def test_the_cookie_is_secure_behind_tls(console: LocalEngine, tmp_path: Path) -> None:
    assert console.console is not None
    async with Client(console.console.url) as c:
        _, jar = await c.sign_in(TOKEN, headers={"X-Forwarded-Proto": "https"})
        assert jar[COOKIE]["secure"]
    forced = await _engine(tmp_path, console_cookie_secure="always")
    try:
        assert forced.console is not None
        async with Client(forced.console.url) as c:
            _, jar = await c.sign_in(TOKEN)
            assert jar[COOKIE]["secure"]
    finally:
        await forced.stop()


async def test_token_guessing_is_throttled(console: LocalEngine) -> None:
    assert console.console is not None
    async with Client(console.console.url) as c:
        for _ in range(5):
            status, _ = await c.sign_in("guess")
            assert status == 401
        status, jar = await c.sign_in(TOKEN)
        assert status == 429 and COOKIE not in jar, "the right token still works while throttled: guessing goes on"
        status, headers, _ = await c.request("GET", "/_console/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 429 and int(headers["Retry-After"]) > 0


async def test_a_cross_site_sign_in_is_refused(console: LocalEngine) -> None:
    """Login CSRF: a foreign page signing the browser in to a session of the attacker's choosing."""
    assert console.console is not None
    async with Client(console.console.url) as c:
        status, jar = await c.sign_in(TOKEN, headers={"Origin": "https://evil.example"})
        assert status == 403 and COOKIE not in jar
        status, jar = await c.sign_in(TOKEN, headers={"Origin": "null"})
        assert status == 403 and COOKIE not in jar


async def test_a_network_facing_console_needs_a_token_of_32_bytes(tmp_path: Path) -> None:
    with pytest.raises(ConsoleConfigError, match="32 bytes"):
        await ConsoleServer(host="0.0.0.0", port=0, token="short-token", engine_url="http://127.0.0.1:1").start()
    cfg = _config(tmp_path, console_host="0.0.0.0", console_token="short-token")
    with pytest.raises(ConsoleConfigError, match="32 bytes"):
        await LocalEngine(cfg, run_exec=False).start()
    proc = subprocess.run([sys.executable, "-m", "iii_local", "console", "--host", "0.0.0.0", "--port", "0", "--token", "short-token"],
                          cwd=str(PROJECT_ROOT), capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert proc.returncode == 2 and "32 bytes" in proc.stderr, proc.stderr
    ok = ConsoleServer(host="0.0.0.0", port=0, token=TOKEN, engine_url="http://127.0.0.1:1")
    await ok.start()
    await ok.stop()


async def test_a_nesting_bomb_is_a_400_on_the_console_page_api(console: LocalEngine) -> None:
    assert console.console is not None
    async with Client(console.console.url) as c:
        await c.sign_in(TOKEN)
        for bomb in (b"[" * 100_000, b"{\"a\":" * 100_000):
            status, _, text = await c.request("POST", "/_console/cron/trigger", data=bomb,
                                              headers={"Content-Type": "application/json", "X-Console-Request": "1"})
            assert status == 400, text
