"""The ExecModule supervisor: set-up commands, restart of a dead worker, reload on a watched change."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from iii_local.config import ExecConfig
from iii_local.supervisor import ExecSupervisor

WORKER = f"exec {sys.executable} -c \"import os,time; open('pids','a').write(str(os.getpid())+'\\n'); time.sleep(600)\""


def pids(d: Path) -> list[int]:
    try:
        return [int(x) for x in (d / "pids").read_text().split()]
    except FileNotFoundError:
        return []


async def wait_for(cond, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_setup_commands_run_first_and_a_dead_worker_is_restarted(tmp_path: Path) -> None:
    logs: list[str] = []
    cfg = ExecConfig(exec=["echo ready > setup.txt", WORKER])
    sup = ExecSupervisor(cfg, base_dir=tmp_path, env=dict(os.environ), watch=False, log=lambda lvl, m: logs.append(m))
    await sup.start()
    try:
        await wait_for(lambda: len(pids(tmp_path)) == 1)
        assert (tmp_path / "setup.txt").read_text().strip() == "ready"
        os.kill(pids(tmp_path)[0], signal.SIGKILL)
        await wait_for(lambda: len(pids(tmp_path)) == 2)
        assert sup.restarts == 1
    finally:
        await sup.stop()
    first, second = pids(tmp_path)
    for pid in (first, second):
        try:
            os.kill(pid, 0)
            raise AssertionError(f"process {pid} survived stop()")
        except ProcessLookupError:
            pass


async def test_watch_reloads_the_worker_on_a_change(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    watched = tmp_path / "src" / "a_step.py"
    watched.write_text("x = 1\n")
    cfg = ExecConfig(watch=["src/**/*.py"], exec=[WORKER])
    sup = ExecSupervisor(cfg, base_dir=tmp_path, env=dict(os.environ), watch=True, log=lambda lvl, m: None, poll_interval=0.1)
    await sup.start()
    try:
        await wait_for(lambda: len(pids(tmp_path)) == 1)
        (tmp_path / "src" / "ignored.txt").write_text("not watched")
        await asyncio.sleep(0.5)
        assert len(pids(tmp_path)) == 1, "an unwatched file reloaded the worker"
        time.sleep(0.01)
        watched.write_text("x = 2\n")
        os.utime(watched, None)
        await wait_for(lambda: len(pids(tmp_path)) == 2)
        assert sup.restarts == 0  # a reload, not a crash
    finally:
        await sup.stop()


async def test_failing_setup_command_does_not_start_the_worker(tmp_path: Path) -> None:
    logs: list[str] = []
    cfg = ExecConfig(exec=["exit 3", WORKER])
    sup = ExecSupervisor(cfg, base_dir=tmp_path, env=dict(os.environ), watch=False, log=lambda lvl, m: logs.append(m))
    await sup.start()
    try:
        await wait_for(lambda: any("exit code 3" in m for m in logs))
        assert pids(tmp_path) == []
    finally:
        await sup.stop()
