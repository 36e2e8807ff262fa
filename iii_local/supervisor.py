"""The ExecModule: run the configured commands, keep the last one (the worker) alive,
and with `--watch` restart it when a watched file changes.

Each command runs via `sh -c` in its own process group, in order; all but the last must
exit 0. The engine sets `III_URL` and `III_BRIDGE_URL` to its worker port unless they
are set already. A worker that dies is restarted with backoff (1 s doubling to 30 s,
reset after a minute of uptime). Stopping kills the whole process group.
"""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import time
from pathlib import Path
from typing import Callable

from iii_local.config import ExecConfig


def snapshot(base: Path, patterns: list[str], ignore: tuple[str, ...] = ("__pycache__",)) -> dict[str, float]:
    """mtimes of every file matching the globs (relative to base)."""
    out: dict[str, float] = {}
    for pattern in patterns:
        for name in glob.glob(str(base / pattern), recursive=True):
            if any(part in name for part in ignore):
                continue
            try:
                out[name] = os.stat(name).st_mtime
            except OSError:
                continue
    return out


class ExecSupervisor:
    def __init__(
        self,
        config: ExecConfig,
        *,
        base_dir: Path,
        env: dict[str, str],
        watch: bool,
        log: Callable[[str, str], None],
        poll_interval: float = 0.5,
    ) -> None:
        self.config = config
        self.base_dir = base_dir
        self.env = env
        self.watch = watch and bool(config.watch)
        self.log = log
        self.poll_interval = poll_interval
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = False
        self._reload = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._supervise()))
        if self.watch:
            self._tasks.append(asyncio.create_task(self._watch()))

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        await self._kill()

    async def _spawn(self, cmd: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "sh", "-c", cmd, cwd=str(self.base_dir), env=self.env, start_new_session=True
        )

    async def _kill(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except asyncio.TimeoutError:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await proc.wait()

    async def _run_once(self) -> int | None:
        """Run the set-up commands, then the worker until it exits or a reload is asked."""
        for cmd in self.config.exec[:-1]:
            p = await self._spawn(cmd)
            code = await p.wait()
            if code != 0:
                self.log("error", f"exec command failed with exit code {code}: {cmd}")
                return code
        self.proc = await self._spawn(self.config.exec[-1])
        self.log("info", f"worker started (pid {self.proc.pid}): {self.config.exec[-1]}")
        wait = asyncio.create_task(self.proc.wait())
        reload = asyncio.create_task(self._reload.wait())
        done, _ = await asyncio.wait({wait, reload}, return_when=asyncio.FIRST_COMPLETED)
        if reload in done:
            self._reload.clear()
            wait.cancel()
            await self._kill()
            return None
        reload.cancel()
        return self.proc.returncode

    async def _supervise(self) -> None:
        backoff = 1.0
        while not self._stopping:
            started = time.monotonic()
            code = await self._run_once()
            if self._stopping:
                return
            if code is None:
                self.log("info", "watched file changed: worker reloaded")
                backoff = 1.0
                continue
            if time.monotonic() - started > 60:
                backoff = 1.0
            self.restarts += 1
            self.log("warn", f"worker exited with code {code}; restarting in {backoff:.0f}s")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    def restart(self) -> None:
        self._reload.set()

    async def _watch(self) -> None:
        before = snapshot(self.base_dir, self.config.watch)
        while not self._stopping:
            await asyncio.sleep(self.poll_interval)
            now = snapshot(self.base_dir, self.config.watch)
            if now != before:
                changed = sorted(set(now.items()) ^ set(before.items()))
                before = now
                self.log("info", f"change detected in {changed[0][0] if changed else 'watched files'}")
                self.restart()
