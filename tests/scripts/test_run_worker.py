"""scripts/run_worker.py: the keep-alive wrapper the project runs its motia worker through.

The real engine's ExecModule never restarts a dead worker (engine/src/modules/shell/exec.rs
138-215); this wrapper does, and must never outlive the engine that started it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "scripts" / "run_worker.py"
sys.path.insert(0, str(ROOT / "scripts"))

import run_worker  # noqa: E402, I001

from tests.processes import alive  # noqa: E402

# A worker stand-in: records its pid, then exits with EXIT (or sleeps when EXIT is empty).
CHILD = (
    "import os,sys,time;"
    "open(sys.argv[1],'a').write(f'{os.getpid()} {os.environ.get(\"III_URL\")} {os.environ.get(\"III_BRIDGE_URL\")}\\n');"
    "code=sys.argv[2];"
    "time.sleep(600) if not code else sys.exit(int(code))"
)


def runs(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []




def wait_until(cond, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def spawn(tmp_path: Path, exit_code: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WRAPPER), "--", sys.executable, "-c", CHILD, str(tmp_path / "runs"), exit_code],
        env={**os.environ, **(env or {})},
        stderr=subprocess.PIPE,
    )


def test_defaults_and_backoff() -> None:
    env = run_worker.worker_env({"III_WORKER_PORT": "50001"})
    assert env["III_URL"] == "ws://127.0.0.1:50001" and env["III_BRIDGE_URL"] == env["III_URL"]
    env = run_worker.worker_env({"III_URL": "ws://10.0.0.5:1", "OTEL_LOGS_BATCH_SIZE": "8"})
    assert env["III_URL"] == "ws://10.0.0.5:1" and env["III_BRIDGE_URL"] == "ws://10.0.0.5:1"
    assert env["OTEL_LOGS_BATCH_SIZE"] == "8"
    assert run_worker.worker_env({})["III_URL"] == "ws://127.0.0.1:49134"
    assert run_worker.parse_command([])[1:] == ["-m", "motia.cli", "run", "--dir", "src"]
    assert run_worker.parse_command(["--", "a", "b"]) == ["a", "b"]
    with pytest.raises(SystemExit):
        run_worker.parse_command(["oops"])
    delays, backoff = [], 1.0
    for _ in range(7):
        delay, backoff = run_worker.next_backoff(backoff, uptime=0.5)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert run_worker.next_backoff(30.0, uptime=61.0) == (1.0, 2.0)


def test_a_worker_that_exits_is_restarted_with_backoff(tmp_path: Path) -> None:
    proc = spawn(tmp_path, "3", {"III_WORKER_PORT": "50002", "III_URL": "", "III_BRIDGE_URL": ""})
    try:
        wait_until(lambda: len(runs(tmp_path / "runs")) >= 3, timeout=20)  # after 1 s and 2 s
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    first = runs(tmp_path / "runs")[0]
    assert first[1:] == ["ws://127.0.0.1:50002", "ws://127.0.0.1:50002"]
    lines = [line for line in err.decode().splitlines() if line.startswith("run_worker:")]
    assert len(lines) >= 2 and all("exited with code 3" in line for line in lines)
    assert "in 1s" in lines[0] and "in 2s" in lines[1]
    assert proc.returncode == 0


def test_sigterm_stops_the_worker_and_the_wrapper(tmp_path: Path) -> None:
    proc = spawn(tmp_path, "")
    wait_until(lambda: len(runs(tmp_path / "runs")) == 1)
    child = int(runs(tmp_path / "runs")[0][0])
    assert alive(child)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    wait_until(lambda: not alive(child), timeout=5)
    assert len(runs(tmp_path / "runs")) == 1, "the worker was restarted after a stop"


def test_a_killed_worker_comes_back(tmp_path: Path) -> None:
    proc = spawn(tmp_path, "")
    try:
        wait_until(lambda: len(runs(tmp_path / "runs")) == 1)
        first = int(runs(tmp_path / "runs")[0][0])
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: len(runs(tmp_path / "runs")) == 2, timeout=10)
        second = int(runs(tmp_path / "runs")[1][0])
        assert second != first and alive(second)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert "exited with code -9" in err.decode()


def test_the_wrapper_dies_with_its_parent(tmp_path: Path) -> None:
    """SIGKILL the process that started the wrapper (the engine): wrapper and worker go too."""
    parent_code = (
        "import subprocess,sys,time;"
        f"p=subprocess.Popen([sys.executable,{str(WRAPPER)!r},'--',sys.executable,'-c',{CHILD!r},{str(tmp_path / 'runs')!r},'']);"
        "open(sys.argv[1],'w').write(str(p.pid));time.sleep(600)"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code, str(tmp_path / "wrapper.pid")])
    try:
        wait_until(lambda: len(runs(tmp_path / "runs")) == 1 and (tmp_path / "wrapper.pid").exists())
        wrapper = int((tmp_path / "wrapper.pid").read_text())
        child = int(runs(tmp_path / "runs")[0][0])
        parent.kill()
        parent.wait()
        wait_until(lambda: not alive(wrapper) and not alive(child), timeout=15)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert len(runs(tmp_path / "runs")) == 1, "the wrapper restarted the worker after its parent died"


SECRET = "s3cret-worker-token-of-thirty-two-bytes"
LOGS_URL = "import os,sys;print('Connected to', os.environ['III_URL']);print('err', os.environ['III_URL'], file=sys.stderr)"


def test_a_worker_secret_in_iii_url_never_reaches_the_output() -> None:
    """iii-sdk 0.8.3 logs the III_URL it connects to; the wrapper masks the URL's password."""
    url = f"ws://worker:{SECRET}@127.0.0.1:49134"
    proc = subprocess.run(
        [sys.executable, str(WRAPPER), "--", sys.executable, "-c", LOGS_URL + ";import os,signal;os.kill(os.getppid(),signal.SIGTERM)"],
        env={**os.environ, "III_URL": url}, capture_output=True, timeout=30,
    )
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert "Connected to ws://worker:***@127.0.0.1:49134" in out and "err ws://worker:***@" in err
    assert SECRET not in out + err


def test_without_a_secret_the_output_is_not_piped() -> None:
    assert run_worker.url_secrets("ws://127.0.0.1:49134") == []
    assert run_worker.url_secrets("ws://worker:a%2Fb@h:1") == [b"a%2Fb", b"a/b"]
    keeper = run_worker.Keeper([sys.executable, "-c", "pass"], {**os.environ, "III_URL": "ws://127.0.0.1:49134"})
    proc = keeper.spawn()
    proc.wait(10)
    assert proc.stdout is None and proc.stderr is None and keeper.copiers == [], "the worker's output went through the wrapper"
