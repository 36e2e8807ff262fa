"""Fixtures for the console's browser tests: headless Debian Chromium driven by Playwright.

Without /usr/bin/chromium (or the playwright package) the tests skip with a message, except
in CI (CI=true), where they fail: CI must prove the page works. Screenshots go to a temporary
folder, or to docs/console/ when CONSOLE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from iii_local.testing import MotiaTester, free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
STEPS = Path(__file__).resolve().parent.parent / "iii_local" / "steps"
COMPAT_FUNCTIONS = 12
DOCS = Path(__file__).resolve().parent.parent.parent / "docs" / "console"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} — CI must run the console's browser tests (.ci/run installs chromium and playwright)")
    pytest.skip(f"{reason}: apt-get install -y chromium && pip install -r requirements.txt to run the console tests")


class ConsoleTester(MotiaTester):
    """MotiaTester whose engine also serves the console page on a free port."""

    def __init__(self, *args: Any, console_port: int | None = None, console_token: str = "", **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.console_port = console_port or free_port()
        self.console_token = console_token

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    def write_config(self) -> Path:
        path = super().write_config()
        data = yaml.safe_load(path.read_text())
        data.setdefault("local_engine", {}).update(
            {"console_host": "127.0.0.1", "console_port": self.console_port, "console_token": self.console_token}
        )
        path.write_text(yaml.safe_dump(data))
        return path


async def emit_until_a_handles(engine: MotiaTester, first: int) -> tuple[int, str]:
    """Emit to compat.fanout until Compat Fanout A (which logs) got one: (n, trace id).

    Its two subscribers compete (engine 0.8.3, Q1): each message reaches the one whose worker
    polls first. A burst of 15 is more than one worker's 10 permits, so both get some."""
    import asyncio

    for start in range(first, first + 45, 15):
        ns = list(range(start, start + 15))
        rs = await asyncio.gather(*(engine.post("/compat/emit", {"topic": "compat.fanout", "data": {"n": n}}) for n in ns))
        assert all(r.status == 202 for r in rs)
        await engine.wait_idle()
        state = await engine.state_list("compat.fanout")
        for n, r in zip(ns, rs):
            if f"A:{n}" in state:
                return n, r.json()["trace_id"]
    raise AssertionError("Compat Fanout A never got a message")


async def applied(page: Any, query: str) -> None:
    """Wait until the traces table shows the result of exactly this query (`since` aside)."""
    await page.wait_for_function(f"() => document.querySelector('#traces-body').dataset.query === {json.dumps(query)}", timeout=15_000)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        return DOCS
    return tmp_path_factory.mktemp("console-shots")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is not installed")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        await browser.close()
        await pw.stop()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[ConsoleTester]:
    t = ConsoleTester(STEPS, rest_timeout_ms=3000, queue_defaults={"backoff_ms": 100})
    await t.start(wait_functions=COMPAT_FUNCTIONS)
    try:
        yield t
    finally:
        await t.stop()
