"""`make run` and `make dev` (= `iii-cli dev`): the sandbox comes up and serves; Ctrl-C stops it;
killed outright, the launcher leaves no engine, worker, simulator or Redis behind (its children
die with it, scripts/run_service.py); ports that are still taken are named in one line, not a
traceback.

Every launcher here runs in sandbox mode on ports of its own (a private redis-server included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from iii_local.iii_cli.ports import Holder, Port, holder, is_free, taken_message
from simulators.runner import free_port
from tests.processes import alive

ROOT = Path(__file__).resolve().parents[2]
IIICLI = Path(sys.executable).parent / "iii-cli"
NAMES = ("rest", "worker", "console", "espo", "advo", "xai", "google", "redis")


@pytest.fixture
def ports() -> dict[str, int]:
    return {name: free_port() for name in NAMES}


def launcher_env(ports: dict[str, int], tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "ADVOWARE_", "XAI_", "GOOGLE_", "APP_", "MAKE", "MFLAGS"))}
    return {
        **env,
        "APP_MODE": "sandbox",
        "APP_ENV_FILE": "/nonexistent/.env",
        "REDIS_URL": f"redis://127.0.0.1:{ports['redis']}/0",  # nothing there: a private redis-server
        "III_REST_PORT": str(ports["rest"]),
        "III_WORKER_PORT": str(ports["worker"]),
        "III_CONSOLE_PORT": str(ports["console"]),
        "III_DATA_DIR": str(tmp_path / "data"),
        "III_LOG_FILE": str(tmp_path / "engine.log.jsonl"),
        "SIM_ESPOCRM_PORT": str(ports["espo"]),
        "SIM_ADVOWARE_PORT": str(ports["advo"]),
        "SIM_XAI_PORT": str(ports["xai"]),
        "SIM_GOOGLE_PORT": str(ports["google"]),
    }


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children of all its threads, recursively)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            for kid in kids:
                if kid not in found:
                    found.add(kid)
                    todo.append(kid)
    return found


def status(rest_port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/_console/status", timeout=5) as r:  # noqa: S310 - loopback
        return dict(json.loads(r.read()))


def wait_up(proc: subprocess.Popen[bytes], ports: dict[str, int], out: Path, timeout: float = 90) -> None:
    """Until the worker has registered its steps with the engine (the launcher still syncing the demo data is fine)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, out.read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, out.read_text(errors="replace")[-3000:]
        try:
            st = status(ports["rest"])
            if st.get("workers", 0) >= 1 and st.get("functions", 0) > 0:
                return
        except OSError:
            pass
        time.sleep(0.3)


def assert_all_gone(ports: dict[str, int], pids: set[int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        busy = [name for name in NAMES if not is_free(Port(ports[name], name, "-"))]
        living = sorted(p for p in pids if alive(p))
        if not busy and not living:
            return
        assert time.monotonic() < deadline, f"still taken: {busy}; still alive: {[(p, Path(f'/proc/{p}/cmdline').read_bytes()[:80]) for p in living]}"
        time.sleep(0.2)


class Started:
    """What a test started: its processes, and every pid seen below them."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pids: set[int] = set()

    def add(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.procs.append(proc)
        return proc

    def below(self, proc: subprocess.Popen[bytes]) -> set[int]:
        found = descendants(proc.pid)
        self.pids |= found
        return found


@pytest.fixture
def started() -> Iterator[Started]:
    """Whatever survives the test (in sessions of their own, had the tie failed) is SIGKILLed."""
    seen = Started()
    yield seen
    for proc in seen.procs:
        seen.below(proc)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # not a group leader
                proc.kill()
            proc.wait(10)
    for pid in seen.pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_make_run_sandbox_starts_serves_and_stops_on_ctrl_c(ports: dict[str, int], tmp_path: Path, started: Started) -> None:
    """The banner, the worker's steps on the engine, the EspoCRM simulator's demo data; Ctrl-C
    (SIGINT to the terminal's process group) stops everything and exits 0."""
    out = tmp_path / "run.out"
    proc = started.add(subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_service.py")], cwd=ROOT, env=launcher_env(ports, tmp_path),
                                        stdout=out.open("wb"), stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 90
    while "Ctrl-C stops everything" not in out.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    assert "mode: SANDBOX" in out.read_text()
    assert f"Console             http://127.0.0.1:{ports['console']} " in out.read_text(), "the banner names another console port"
    wait_up(proc, ports, out)
    request = urllib.request.Request(f"http://127.0.0.1:{ports['espo']}/api/v1/CDokumente?maxSize=5", headers={"X-Api-Key": "sandbox-espocrm-key"})
    with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - loopback
        assert json.loads(r.read())["total"] > 0
    pids = started.below(proc)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(30) == 0, out.read_text()[-3000:]
    assert_all_gone(ports, pids, timeout=5)


def test_iii_cli_dev_watches_and_leaves_nothing_behind_when_killed(ports: dict[str, int], tmp_path: Path, started: Started) -> None:
    out = tmp_path / "dev.out"
    env = launcher_env(ports, tmp_path)
    del env["III_REST_PORT"], env["III_CONSOLE_PORT"]  # given as the guide's flags instead
    proc = subprocess.Popen([str(IIICLI), "dev", "--port", str(ports["console"]), "--engine-port", str(ports["rest"])],
                            cwd="/", env=env, stdout=out.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    started.add(proc)
    wait_up(proc, ports, out)
    started.below(proc)
    assert not is_free(Port(ports["console"], "console", "-")), "--port did not place the console"
    # dev watches src/: a created .py file there reloads the worker (engine 0.8.3: create/remove only)
    probe = ROOT / "src" / f".iii_cli_dev_probe_{os.getpid()}" / "probe.py"
    probe.parent.mkdir()
    try:
        probe.write_text("# created by tests/scripts/test_launcher.py\n")
        deadline = time.monotonic() + 20
        while status(ports["rest"]).get("worker_restarts", 0) < 1:
            assert time.monotonic() < deadline, "iii-cli dev did not reload the worker on a new file under src/"
            time.sleep(0.3)
    finally:
        probe.unlink()
        probe.parent.rmdir()
    pids = started.below(proc)
    assert len(pids) >= 4, pids  # redis-server, simulators, engine, worker wrapper (+ worker)
    proc.kill()  # SIGKILL: the launcher cannot stop anything itself
    proc.wait(10)
    assert_all_gone(ports, pids)


def test_make_run_killed_leaves_nothing_behind(ports: dict[str, int], tmp_path: Path, started: Started) -> None:
    out = tmp_path / "run.out"
    make = subprocess.Popen(["make", "-s", "-o", "venv", "-o", "system-deps", "run"], cwd=ROOT, env=launcher_env(ports, tmp_path),
                            stdout=out.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    started.add(make)
    wait_up(make, ports, out)
    pids = started.below(make)
    assert len(pids) >= 5, pids  # the launcher, redis-server, simulators, engine, worker wrapper (+ worker)
    make.kill()
    make.wait(10)
    assert_all_gone(ports, pids)


def test_ports_taken_are_named_in_one_line(ports: dict[str, int], tmp_path: Path, started: Started) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
                               "s.listen(); print('ok', flush=True); time.sleep(120)", str(ports["rest"])], stdout=subprocess.PIPE, start_new_session=True)
    started.add(holder)
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"ok"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_service.py")], cwd="/", env=launcher_env(ports, tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc
    assert "Traceback" not in proc.stderr and "Starting" not in proc.stdout, proc
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1, proc.stderr
    line = errors[0]
    assert f"{ports['rest']} (engine REST) held by pid {holder.pid} ({sys.executable} -c import socket" in line, line
    assert f"kill {holder.pid}" in line and "III_REST_PORT" in line, line
    for name in ("redis", "espo", "worker"):  # nothing was started
        assert is_free(Port(ports[name], name, "-")), name


def test_holder_is_found_through_proc_and_the_message_is_one_line(started: Started) -> None:
    port = free_port()
    listener = started.add(subprocess.Popen([sys.executable, "-c", "import socket, sys, time\ns = socket.socket()\n"
                                             "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print('ok', flush=True); time.sleep(60)", str(port)],
                                            stdout=subprocess.PIPE))
    assert listener.stdout is not None and listener.stdout.readline().strip() == b"ok"
    found = holder(port)
    assert found.pid == listener.pid and found.command.startswith(f"{sys.executable} -c import socket, sys, time s = socket")
    unseen = Holder(None, holder(free_port()).command)
    assert "sudo ss -ltnp" in unseen.command
    text = taken_message([(Port(port, "engine REST", "III_REST_PORT"), found), (Port(port + 1, "console", "III_CONSOLE_PORT"), found),
                          (Port(6379, "private redis-server", "REDIS_URL"), unseen)])
    assert "\n" not in text and text.count("held by") == 2 and f"{port} (engine REST), {port + 1} (console) held by pid {listener.pid}" in text
    assert f"`kill {listener.pid}`" in text and "(III_REST_PORT/III_CONSOLE_PORT/REDIS_URL)" in text
