"""The ExecModule (iii_local/supervisor.py) against engine/src/modules/shell/exec.rs and glob_exec.rs:
set-up commands in order, a worker started once and never restarted, nothing added to its
environment, watched creations/removals reload the whole pipeline, a stop kills the group."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from iii_local.config import ExecConfig
from iii_local.supervisor import (
    ExecSupervisor,
    created_or_removed,
    extract_root,
    matches,
    snapshot,
)
from tests.processes import alive

WORKER = (
    f"exec {sys.executable} -c \"import os,time; "
    "open('pids','a').write(str(os.getpid())+' '+str(os.environ.get('III_URL'))+chr(10)); time.sleep(600)\""
)


def pids(d: Path) -> list[int]:
    try:
        return [int(line.split()[0]) for line in (d / "pids").read_text().splitlines()]
    except FileNotFoundError:
        return []




async def wait_for(cond, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_setup_runs_first_and_a_dead_worker_stays_dead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """exec.rs 138-177: set-up steps must exit 0, the last command is started and left alone;
    179-215: `sh -c`, own session, the engine's environment unchanged (no III_URL)."""
    monkeypatch.delenv("III_URL", raising=False)
    logs: list[str] = []
    sup = ExecSupervisor(ExecConfig(exec=["echo ready > setup.txt", WORKER]), cwd=tmp_path, log=lambda lvl, m: logs.append(m))
    await sup.start()
    try:
        await wait_for(lambda: len(pids(tmp_path)) == 1)
        assert (tmp_path / "setup.txt").read_text().strip() == "ready"
        assert (tmp_path / "pids").read_text().split()[1] == "None", "the ExecModule set III_URL"
        worker = pids(tmp_path)[0]
        assert os.getpgid(worker) == worker, "the worker is not in its own process group"
        os.kill(worker, signal.SIGKILL)
        await asyncio.sleep(2.5)
        assert len(pids(tmp_path)) == 1, "the ExecModule restarted a dead worker"
        assert sup.restarts == 0
        assert any("does not restart" in m for m in logs)
    finally:
        await sup.stop()


async def test_failing_setup_command_does_not_start_the_worker(tmp_path: Path) -> None:
    logs: list[str] = []
    sup = ExecSupervisor(ExecConfig(exec=["exit 3", WORKER]), cwd=tmp_path, log=lambda lvl, m: logs.append(m))
    await sup.start()
    try:
        assert any("exit code 3" in m for m in logs)
        await asyncio.sleep(0.3)
        assert pids(tmp_path) == []
    finally:
        await sup.stop()


async def test_stop_terminates_the_process_group(tmp_path: Path) -> None:
    """exec.rs 241-295: SIGTERM to the group (here a shell and its child), then SIGKILL after 3 s."""
    cmd = f"{sys.executable} -c \"import os,time; open('pids','a').write(str(os.getpid())+chr(10)); time.sleep(600)\" & wait"
    sup = ExecSupervisor(ExecConfig(exec=[cmd]), cwd=tmp_path, log=lambda lvl, m: None)
    await sup.start()
    await wait_for(lambda: len(pids(tmp_path)) == 1)
    grandchild = pids(tmp_path)[0]
    await sup.stop()
    await wait_for(lambda: not alive(grandchild), timeout=5)


async def test_watch_reloads_on_a_created_file_not_on_an_edit(tmp_path: Path) -> None:
    """exec.rs 217-239 with notify 8.2 on Linux: Create(File)/Remove(File) restart the pipeline
    (SIGKILL to the group, set-up steps again); an in-place edit (Modify(Data(Any))) does not."""
    (tmp_path / "src").mkdir()
    existing = tmp_path / "src" / "a_step.py"
    existing.write_text("x = 1\n")
    cfg = ExecConfig(watch=["src/**/*.py"], exec=["echo x >> setups", WORKER])
    sup = ExecSupervisor(cfg, cwd=tmp_path, log=lambda lvl, m: None, poll_interval=0.1)
    await sup.start()
    try:
        await wait_for(lambda: len(pids(tmp_path)) == 1)
        first = pids(tmp_path)[0]
        time.sleep(0.02)
        existing.write_text("x = 2\n")
        (tmp_path / "src" / "notes.txt").write_text("not watched")
        await asyncio.sleep(0.6)
        assert len(pids(tmp_path)) == 1, "an edit or an unwatched file reloaded the worker"
        (tmp_path / "src" / "sub").mkdir()
        (tmp_path / "src" / "sub" / "b_step.py").write_text("y = 1\n")
        await wait_for(lambda: len(pids(tmp_path)) == 2)
        await wait_for(lambda: not alive(first), timeout=5)
        assert (tmp_path / "setups").read_text().count("x") == 2, "the set-up step did not run again"
        assert sup.restarts == 1
        existing.unlink()
        await wait_for(lambda: len(pids(tmp_path)) == 3)
    finally:
        await sup.stop()


def test_glob_rules_of_glob_exec() -> None:
    """glob_exec.rs: root before the first `*`, recursive with `**`, extension match only."""
    assert extract_root("src/**/*.py") == ("src", True)
    assert extract_root("config/*.json") == ("config", False)
    assert extract_root("*.py") == (".", False)
    assert matches("src/**/*.py", "src/steps/deep/x_step.py")
    assert matches("src/*_step.py", "src/other.py"), "only root and extension count"
    assert not matches("src/**/*.py", "services/x.py")
    assert not matches("src/**/*.py", "src/x.pyc")
    assert matches("src/**/*.{py,yaml}", "src/a/b.yaml")
    assert not matches("**/*.py", "src/x.py"), "a root of '.' never matches a relative path"
    assert not matches("./src/**/*.py", "src/x.py")
    assert not matches("src/**/*.py", "src/.py")


def test_rename_is_not_a_creation(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("1")
    before = snapshot(tmp_path, ["src/**/*.py"])
    (tmp_path / "src" / "a.py").rename(tmp_path / "src" / "b.py")
    assert created_or_removed(before, snapshot(tmp_path, ["src/**/*.py"])) == []
    before = snapshot(tmp_path, ["src/**/*.py"])
    (tmp_path / "src" / "c.py").write_text("2")
    assert created_or_removed(before, snapshot(tmp_path, ["src/**/*.py"])) == ["src/c.py"]
