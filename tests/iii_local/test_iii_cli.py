"""`iii-cli`, the installed console script (pyproject.toml [project.scripts]), run as a user runs
it: every verb of the developer guide against a running stand-in (engine + real motia worker
over tests/iii_local/steps), which `iii-cli start -c FILE` itself started. `iii-cli dev` is
tested with the launcher (tests/scripts/test_launcher.py)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import iii_local.testing as harness
from iii_local.iii_cli.state_keys import exact_matches, search
from iii_local.testing import MotiaTester
from simulators.runner import free_port

ROOT = Path(__file__).resolve().parents[2]
IIICLI = Path(sys.executable).parent / "iii-cli"


def cli(*args: str, port: int, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the installed `iii-cli` against the engine's REST port, from another directory."""
    proc = subprocess.run([str(IIICLI), *args, "--engine-port", str(port)], capture_output=True, text=True, timeout=timeout, cwd="/")
    assert not check or proc.returncode == 0, f"iii-cli {' '.join(args)} → {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[MotiaTester]:
    """The compat steps on a stand-in that `iii-cli start -c FILE` started (the harness's own
    `python -m iii_local run -c FILE` swapped for the installed script)."""
    assert IIICLI.exists(), f"{IIICLI} is missing: `make venv` installs it (pip install -e .)"
    tester = MotiaTester(ROOT / "tests" / "iii_local" / "steps")
    real_popen = subprocess.Popen

    def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        if argv[1:4] == ["-m", "iii_local", "run"]:
            argv = [str(IIICLI), "start", *argv[4:]]
        return real_popen(argv, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness.subprocess, "Popen", popen)
        await tester.start(wait_functions=3, timeout=60)
    assert tester.proc is not None and tester.proc.args[:2] == [str(IIICLI), "start"]
    yield tester
    await tester.stop()


async def _post(tester: MotiaTester, path: str, body: Any) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as s, s.post(tester.base_url + path, json=body) as r:
        await r.read()
        return r


def test_version_names_the_stand_in() -> None:
    out = subprocess.run([str(IIICLI), "--version"], capture_output=True, text=True, check=True).stdout
    assert "stand-in" in out and "0.8.3" in out


async def test_flow_list(engine: MotiaTester) -> None:
    out = cli("flow", "list", port=engine.rest_port).stdout
    assert out.startswith("compat:")
    assert "http POST /compat/echo/:id" in out and "queue compat.fanout" in out and "cron * * * * * *" in out
    assert re.search(r"\d+ function\(s\), \d+ trigger\(s\), 1 worker\(s\)", out)


async def test_logs_trace_and_worker_logs(engine: MotiaTester) -> None:
    marker = uuid.uuid4().hex
    r = await _post(engine, f"/compat/echo/{marker}", {"x": 1})
    trace = r.headers["x-iii-trace-id"]
    deadline = time.monotonic() + 15
    while marker not in cli("logs", "--trace", trace, port=engine.rest_port).stdout:
        assert time.monotonic() < deadline, "the handler's log line never arrived"
        await asyncio.sleep(0.3)
    by_trace = cli("logs", "--trace", trace, port=engine.rest_port).stdout
    assert all(trace[:8] in line or line.startswith(" ") for line in by_trace.splitlines() if line.strip()), by_trace
    assert marker not in cli("logs", "--level", "error", "-n", "10000", port=engine.rest_port).stdout
    assert marker in cli("logs", "--level", "info", "-n", "10000", port=engine.rest_port).stdout
    assert len(cli("logs", "-n", "3", port=engine.rest_port).stdout.strip().splitlines()) <= 3

    shown = cli("trace", trace, port=engine.rest_port).stdout
    assert shown.startswith(f"trace {trace}") and "Compat Api" in shown and "http" in shown and marker in shown

    everything = cli("logs", "-n", "10000", port=engine.rest_port).stdout
    worker = cli("worker", "logs", "-n", "10000", port=engine.rest_port).stdout
    assert "iii local engine up" in everything and "iii local engine up" not in worker  # the engine's own line
    assert marker in worker


async def test_logs_follow_shows_new_lines(engine: MotiaTester) -> None:
    proc = subprocess.Popen([str(IIICLI), "logs", "-f", "-n", "0", "--level", "info", "--engine-port", str(engine.rest_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.sleep(1.0)
        marker = uuid.uuid4().hex
        await _post(engine, f"/compat/echo/{marker}", {})
        loop = asyncio.get_running_loop()
        assert proc.stdout is not None
        deadline = time.monotonic() + 15
        while True:
            line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), timeout=max(0.1, deadline - time.monotonic()))
            if marker in line:
                break
    finally:
        proc.terminate()
        proc.wait(10)


async def test_state_verbs_take_the_guides_one_argument_keys(engine: MotiaTester) -> None:
    port = engine.rest_port
    scope = f"cli.{uuid.uuid4().hex[:8]}"
    cli("state", "set", f"{scope}:run:1", '{"n": 1}', port=port)  # SCOPE:KEY, split at the first colon
    cli("state", "set", scope, "other", '"text"', port=port)  # SCOPE KEY VALUE
    assert f"{scope}:run:1" in cli("state", "ls", port=port).stdout.splitlines()
    assert cli("state", "ls", scope, port=port).stdout.splitlines() == ['other\t"text"', 'run:1\t{"n": 1}']
    assert json.loads(cli("state", "get", f"{scope}:run:1", port=port).stdout) == {"n": 1}
    assert json.loads(cli("state", "get", scope, "run:1", port=port).stdout) == {"n": 1}
    found = cli("state", "get", f"{scope.split('.')[1]} run", port=port)  # a search: the words in scope:key
    assert json.loads(found.stdout) == {"n": 1} and f"# {scope}:run:1" in found.stderr
    several = cli("state", "get", scope, port=port).stdout  # a scope's whole name lists it
    assert "other" in several and "run:1" in several
    missing = cli("state", "get", "no-such-thing-anywhere-" + uuid.uuid4().hex, port=port, check=False)
    assert missing.returncode == 1 and "no state entry matches" in missing.stderr
    refused = cli("state", "delete", "cli", port=port, check=False)  # delete never searches
    assert refused.returncode != 0 and "give SCOPE and KEY" in refused.stderr
    cli("state", "delete", f"{scope}:run:1", port=port)
    assert f"{scope}:run:1" not in cli("state", "ls", port=port).stdout.splitlines()


def test_one_argument_key_resolution() -> None:
    entries = {"compat.fanout": {"A:1": 1, "B:1": 2}, "compat": {"fanout:A:1": 3}, "calendar_sync_status": {"MM": {}}}
    assert exact_matches("compat.fanout:A:1", entries) == [("compat.fanout", "A:1")]
    assert exact_matches("compat:fanout:A:1", entries) == [("compat", "fanout:A:1")]
    assert exact_matches("compat.fanout:A", entries) == []
    assert search("calendar:sync:status", entries) == [("calendar_sync_status", "MM")]  # the guide's spelling
    assert search("fanout:B", entries) == [("compat.fanout", "B:1")]  # every word, case-insensitive
    assert search("FANOUT", entries) == [("compat", "fanout:A:1"), ("compat.fanout", "A:1"), ("compat.fanout", "B:1")]
    assert search("", entries) == []


async def test_stream_ls_worker_status_and_the_stand_ins_own_verbs(engine: MotiaTester) -> None:
    pid = await engine.worker_pid()
    streams = cli("stream", "ls", port=engine.rest_port).stdout
    assert "streams: none" in streams and "compat.fanout" in streams and f"pid {pid}" in streams
    status = cli("worker", "status", port=engine.rest_port).stdout
    assert f"pid {pid}" in status and "functions" in status and "worker pipeline restarts 0" in status
    assert "compat.fanout" in cli("queue", "ls", port=engine.rest_port).stdout
    assert "steps::Compat Cron" in cli("cron", "ls", port=engine.rest_port).stdout
    cli("dlq", "ls", port=engine.rest_port)


async def test_worker_status_fails_without_a_worker(engine: MotiaTester) -> None:
    """An engine without an ExecModule: no worker, exit 1 and the reason."""
    tester = MotiaTester(ROOT / "tests" / "iii_local" / "steps")
    path = tester.write_config()
    config = path.read_text()
    path.write_text(config[: config.index("- class: modules::shell::ExecModule")])
    proc = subprocess.Popen([str(IIICLI), "start", "-c", str(path)], cwd=tester.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while (done := cli("worker", "status", port=tester.rest_port, check=False)).returncode != 1 or "no worker" not in done.stdout:
            assert time.monotonic() < deadline, done
            await asyncio.sleep(0.3)
    finally:
        proc.terminate()
        proc.wait(10)


async def test_start_names_the_process_holding_its_ports(engine: MotiaTester) -> None:
    config = engine.workdir / "iii-config.yaml"
    assert engine.proc is not None
    proc = subprocess.run([str(IIICLI), "start", "-c", str(config)], capture_output=True, text=True, timeout=30, cwd=engine.workdir)
    assert proc.returncode == 3, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{engine.rest_port} (engine REST)" in lines[0] and f"{engine.worker_port} (engine worker port)" in lines[0]
    assert f"pid {engine.proc.pid} (" in lines[0] and "iii-cli start" in lines[0] and f"kill {engine.proc.pid}" in lines[0]


async def test_console_serves_the_page_and_proxies_to_the_engine(engine: MotiaTester) -> None:
    port = free_port()
    proc = subprocess.Popen([str(IIICLI), "console", "--host", "127.0.0.1", "--port", str(port), "--engine-host", "127.0.0.1",
                             "--engine-port", str(engine.rest_port), "--ws-port", "3112", "--no-otel"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "III_CONSOLE_TOKEN": ""})
    try:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + 20
            while True:
                try:
                    async with s.get(f"http://127.0.0.1:{port}/") as r:
                        page = await r.text()
                        break
                except aiohttp.ClientConnectionError:
                    assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                    await asyncio.sleep(0.2)
            assert r.status == 200 and "<html" in page.lower()
            async with s.get(f"http://127.0.0.1:{port}/_console/status", headers={"X-Console-Request": "1"}) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["workers"] == 1
    finally:
        proc.terminate()
        proc.wait(10)
