"""The console inside the engine process: 10,000 recorded traces, access control, standalone proxy."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from iii_local.config import EngineConfig, LocalEngineConfig, RestConfig
from iii_local.console_server import MASK, ConsoleConfigError, ConsoleServer, mask_secrets
from iii_local.server import LocalEngine
from iii_local.telemetry import InvocationRecord, LogRecord
from iii_local.testing import PROJECT_ROOT, free_port
from tests.console.conftest import ConsoleTester, applied
from tests.processes import stop_process

TIMEOUT = 15_000
SEEDED = 10_000
TOKEN = "t0ken-for-tests"


def engine_config(tmp_path: Path, *, rest: bool = False, **local: Any) -> EngineConfig:
    cfg = EngineConfig(port=free_port(), host="127.0.0.1", base_dir=tmp_path)
    if rest:
        cfg.rest = RestConfig(port=free_port(), host="127.0.0.1")
    cfg.local = LocalEngineConfig(**{"console_host": "127.0.0.1", "console_port": free_port(), **local})
    return cfg


def seed(le: LocalEngine, n: int) -> None:
    """n traces of one queue run each; every 50th failed; each with a log line carrying a secret."""
    tel = le.telemetry
    now = time.time()
    for i in range(n):
        tid = f"{i:032x}"
        fid = f"steps::Seed Step {i % 20}::trigger::queue(seed.{i % 20})"
        rec = tel.start_invocation(InvocationRecord(trace_id=tid, function_id=fid, kind="queue", start=now - (n - i),
                                                    detail={"topic": f"seed.{i % 20}", "job_id": f"job{i}", "max_attempts": 3}))
        tel.traces[tid]["started"] = rec.start  # one trace a second over the last 10,000 s
        rec.end = rec.start + 0.004
        rec.outcome = "error" if i % 50 == 0 else "ok"
        rec.error = "seeded failure" if i % 50 == 0 else None
        tel.add_log(LogRecord(time=rec.start, level="info", message=f"seed {i}", trace_id=tid, step=f"Seed Step {i % 20}",
                              fields={"i": i, "api_token": "SEED-SECRET"}))


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[LocalEngine]:
    le = LocalEngine(engine_config(tmp_path), run_exec=False)
    await le.start()
    seed(le, SEEDED)
    try:
        yield le
    finally:
        await le.stop()


async def _rows(page: Any) -> int:
    return int(await page.evaluate("() => document.querySelectorAll('#traces-body tr[data-key]').length"))


async def test_traces_view_stays_fast_with_10k_traces(page: Any, seeded: LocalEngine) -> None:
    assert seeded.console is not None
    url = seeded.console.url
    assert len(seeded.telemetry.traces) == SEEDED
    async with aiohttp.ClientSession() as s:
        for query in ("limit=100", "limit=100&outcome=running", "limit=100&step=No Such Step"):  # the last two scan everything
            started = time.perf_counter()
            async with s.get(f"{url}/_console/traces?{query}") as r:
                assert r.status == 200
                await r.json()
            assert time.perf_counter() - started < 1.5, query
        async with s.get(f"{url}/_console/traces?limit=100000") as r:
            assert len((await r.json())["traces"]) == 1000  # the API caps a page

    started = time.perf_counter()
    await page.goto(f"{url}/#/traces")
    await page.wait_for_function("() => document.querySelectorAll('#traces-body tr[data-key]').length === 100", timeout=TIMEOUT)
    assert time.perf_counter() - started < 8
    first = await page.locator("#traces-body tr[data-key]").first.get_attribute("data-key")
    assert first == f"{SEEDED - 1:032x}"  # newest first

    await page.select_option('[data-testid="filter-status"]', "error")
    await applied(page, "limit=100&outcome=error")
    await page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('#traces-body tr[data-key]')];"
        " return rows.length === 100 && rows.every(r => r.textContent.includes('error')); }", timeout=TIMEOUT)
    await page.select_option('[data-testid="filter-since"]', "300")  # last 5 min: ~300 traces, every 50th failed
    await applied(page, "limit=100&outcome=error&since=…")
    rows = await _rows(page)
    assert 4 <= rows <= 6, rows
    await page.select_option('[data-testid="filter-status"]', "")
    await page.select_option('[data-testid="filter-since"]', "60")  # last minute: ~60 traces
    await page.wait_for_function(
        "() => document.querySelector('#traces-body').dataset.query === 'limit=100&since=…'"
        " && document.querySelectorAll('#traces-body tr[data-key]').length < 100", timeout=TIMEOUT)
    rows = await _rows(page)
    assert 40 <= rows <= 62, rows
    await page.select_option('[data-testid="filter-since"]', "")
    await page.fill('[data-testid="filter-step"]', "Seed Step 7")
    await applied(page, "limit=100&step=Seed+Step+7")
    await page.wait_for_function(
        "() => { const rows = [...document.querySelectorAll('#traces-body tr[data-key]')];"
        " return rows.length === 100 && rows.every(r => r.textContent.includes('Seed Step 7 ')); }", timeout=TIMEOUT)
    await asyncio.sleep(3.5)  # two more polls: rows are replaced, never accumulated
    assert await _rows(page) == 100

    await page.locator("#traces-body tr[data-key]").first.click()
    line = page.locator('[data-testid="log-line"]')
    await line.wait_for(timeout=TIMEOUT)
    text = await line.inner_text()
    assert "seed " in text and "SEED-SECRET" not in text and MASK in text


async def test_token_login_form_bearer_and_engine_passthrough(page: Any, tmp_path: Path) -> None:
    le = LocalEngine(engine_config(tmp_path, rest=True, console_token=TOKEN), run_exec=False)
    await le.start()
    try:
        assert le.console is not None and le.config.rest is not None
        url = le.console.url
        rest = f"http://127.0.0.1:{le.config.rest.port}"
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/_console/status") as r:
                assert r.status == 401
            async with s.get(f"{url}/_console/status", headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with s.get(f"{url}/_console/status", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200 and (await r.json())["functions"] == 0
            async with s.get(f"{rest}/_console/status") as r:
                assert r.status == 401  # the engine API itself enforces the token the console passes on
            async with s.post(f"{url}/_console/cron/trigger", json={}, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 403  # no X-Console-Request header
            async with s.get(f"{url}/app.js", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/login"

        await page.goto(f"{url}/#/state")
        assert "/login" in page.url
        await page.fill("input[name=token]", "wrong")
        await page.click("button[type=submit]")
        await page.locator('[data-testid="login-error"]').wait_for(timeout=TIMEOUT)
        await page.fill("input[name=token]", TOKEN)
        await page.click("button[type=submit]")
        await page.locator('[data-testid="status"].ok').wait_for(timeout=TIMEOUT)
        assert "0 functions" in await page.locator('[data-testid="status"]').inner_text()
        cookies = await page.context.cookies()
        cookie = next(c for c in cookies if c["name"] == "iii_console")
        assert cookie["httpOnly"] and TOKEN not in cookie["value"]
        await page.click('[data-testid="sign-out"]')
        await page.wait_for_url("**/login", timeout=TIMEOUT)
        assert not [c for c in await page.context.cookies() if c["name"] == "iii_console"]
        await page.goto(f"{url}/#/flows")
        assert "/login" in page.url  # signed out for real
    finally:
        await le.stop()


async def test_exposed_console_without_token_refuses_to_start(tmp_path: Path) -> None:
    cfg = engine_config(tmp_path, console_host="0.0.0.0")
    le = LocalEngine(cfg, run_exec=False)
    with pytest.raises(ConsoleConfigError, match="console_token"):
        await le.start()
    with socket.socket() as sock:  # nothing was bound before the refusal
        sock.bind(("127.0.0.1", cfg.port))
    with pytest.raises(ConsoleConfigError):
        await ConsoleServer(host="192.0.2.10", port=0, engine_url="http://127.0.0.1:1").start()
    proc = subprocess.run([sys.executable, "-m", "iii_local", "console", "--host", "0.0.0.0", "--port", "0"],
                          cwd=str(PROJECT_ROOT), capture_output=True, text=True, timeout=30, env={**os.environ, "III_CONSOLE_TOKEN": ""})
    assert proc.returncode == 2 and "console_token" in proc.stderr


async def test_taken_port_does_not_stop_the_engine(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        cfg = engine_config(tmp_path)
        cfg.local.console_port = sock.getsockname()[1]
        le = LocalEngine(cfg, run_exec=False)
        await le.start()
        try:
            assert le.console is None
            assert any("console not started" in r.message for r in le.telemetry.logs)
        finally:
            await le.stop()


def test_mask_secrets_is_recursive_and_by_name() -> None:
    data = {"Api-Key": "x", "list": [{"refresh_token": "y", "ok": 1}], "deep": {"a": {"PASSWORD": "z", "keep": [1, 2]}},
            "signatureValue": {"nested": "w"}, "authorization": None, "name": "n"}
    assert mask_secrets(data) == {"Api-Key": MASK, "list": [{"refresh_token": MASK, "ok": 1}], "deep": {"a": {"PASSWORD": MASK, "keep": [1, 2]}},
                                  "signatureValue": MASK, "authorization": MASK, "name": "n"}


async def _spawn_console(engine_url: str, port: int, token: str | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "iii_local", "console", "--engine", engine_url, "--port", str(port)]
    if token is not None:
        cmd += ["--token", token]
    proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"console exited: {proc.stdout.read().decode() if proc.stdout else ''}") from None
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("standalone console did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, grace=10)


async def test_standalone_console_proxies_with_the_token(tmp_path: Path) -> None:
    le = LocalEngine(engine_config(tmp_path, rest=True, console_token=TOKEN), run_exec=False)
    await le.start()
    assert le.config.rest is not None
    rest = f"http://127.0.0.1:{le.config.rest.port}"
    port = free_port()
    proc = await _spawn_console(rest, port, TOKEN)
    try:
        async with aiohttp.ClientSession() as s:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with s.get(f"http://127.0.0.1:{port}/_console/status", headers=auth) as r:
                assert r.status == 200 and (await r.json())["workers"] == 0
            async with s.get(f"http://127.0.0.1:{port}/_console/status") as r:
                assert r.status == 401
    finally:
        _stop(proc)
        await le.stop()


async def test_standalone_console_page_over_a_running_engine(page: Any, engine: ConsoleTester) -> None:
    port = free_port()
    proc = await _spawn_console(engine.base_url, port)
    try:
        await page.goto(f"http://127.0.0.1:{port}/#/flows")
        graph = page.locator('.flow[data-flow="compat"] svg[data-testid="flow-graph"]')
        await graph.locator('g.node.topic[data-node="t:compat.flaky"]').wait_for(timeout=TIMEOUT)
        await page.goto(f"http://127.0.0.1:{port}/#/queues")
        await page.locator('#queues-body tr[data-topic="compat.slow"]').wait_for(timeout=TIMEOUT)
    finally:
        _stop(proc)
