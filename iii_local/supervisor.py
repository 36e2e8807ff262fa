"""The ExecModule (`modules::shell::ExecModule`), as the real engine 0.8.3 runs it.

engine/src/modules/shell/exec.rs 67-325, glob_exec.rs, module.rs:
- The commands run one after another, each via `sh -c` in its own session (process group),
  in the engine's working directory, with the engine's environment and stdio, **nothing
  added** (no `III_URL`/`III_BRIDGE_URL`). All but the last must exit 0, or the pipeline stops
  ("Pipeline step failed, aborting pipeline") and the worker is not started.
- The last command (the worker) is started and then left alone: when it exits or is killed,
  **nothing restarts it** (the project runs its worker through `scripts/run_worker.py`, which
  does). A dead worker stays dead until a watched change or an engine restart.
- `watch:` globs are active whenever configured (there is no `--watch` flag). A pattern gives
  a root (the text before `**` or `*`, `.` if empty; recursive when it contains `**`) and an
  extension (`*.py` or `*.{py,txt}`); a file matches when its path relative to the working
  directory starts with the root (path components: a root of `.` or `./x` never matches) and
  has that extension. On Linux the watcher (notify 8.2, inotify) reports an in-place edit as
  `Modify(Data(Any))` and a rename as `Modify(Name(From|To|Both))`, which `should_restart`
  (exec.rs 217-239) does not accept: only a **created or removed** matching file reloads.
  A reload SIGKILLs the worker's process group (`kill_process`) and runs the whole pipeline
  again. The stand-in polls (every `poll_interval` s) instead of using inotify: a path that
  appears or gets a new inode counts as created, one that disappears as removed.
- Stopping the engine sends SIGTERM to the process group, waits 3 s, then SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

from iii_local.config import ExecConfig


def _components(path: str) -> list[str]:
    """Rust `Path::components` of a relative path: empty parts and interior `.` dropped."""
    parts = path.split("/")
    out = [p for i, p in enumerate(parts) if p and (p != "." or i == 0)]
    return out


def extract_root(pattern: str) -> tuple[str, bool]:
    """glob_exec.rs `extract_root`: (root, recursive)."""
    recursive = "**" in pattern
    root = pattern.split("**")[0].split("*")[0].rstrip("/").rstrip("\\")
    return (root or "."), recursive


def _extensions(pattern: str) -> list[str] | None:
    if "{" in pattern:
        start, end = pattern.find("{"), pattern.find("}")
        if end < 0:
            return None
        return [s.strip() for s in pattern[start + 1:end].split(",")]
    last = pattern.rsplit(".", 1)[-1]
    return None if ("*" in last or "{" in last) else [last]


def matches(pattern: str, rel_path: str) -> bool:
    """glob_exec.rs `matches_pattern` for a path relative to the working directory."""
    root, _ = extract_root(pattern)
    root_parts, path_parts = _components(root), _components(rel_path)
    if path_parts[: len(root_parts)] != root_parts:
        return False
    name = path_parts[-1] if path_parts else ""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:  # Rust `extension()`: none for "x" or ".x"
        return False
    wanted = _extensions(pattern)
    return wanted is not None and ext in wanted


FileId = tuple[int, int]  # (inode, mtime_ns): kept by a rename, new for a created file


def snapshot(cwd: Path, patterns: list[str]) -> dict[str, FileId]:
    """Matching files under the watch roots → their identity."""
    out: dict[str, FileId] = {}
    for pattern in patterns:
        root, recursive = extract_root(pattern)
        base = cwd / root
        if not base.is_dir():
            continue
        if recursive:
            walk = ((Path(d), files) for d, _, files in os.walk(base))
        else:
            walk = iter([(base, [p.name for p in base.iterdir() if p.is_file()])])
        for d, files in walk:
            for f in files:
                rel = os.path.relpath(d / f, cwd)
                if matches(pattern, rel):
                    try:
                        st = os.stat(d / f)
                    except OSError:
                        continue
                    out[rel] = (st.st_ino, st.st_mtime_ns)
    return out


def created_or_removed(before: dict[str, FileId], now: dict[str, FileId]) -> list[str]:
    """Paths that inotify would report as Create(File) or Remove(File), not as an edit or a rename."""
    before_ids, now_ids = set(before.values()), set(now.values())
    created = [p for p, fid in now.items() if (p not in before or before[p][0] != fid[0]) and fid not in before_ids]
    removed = [p for p, fid in before.items() if (p not in now or now[p][0] != fid[0]) and fid not in now_ids]
    return sorted(set(created) | set(removed))


class ExecSupervisor:
    """One `ExecModule` entry: start the pipeline, reload it on a watched change, stop it."""

    def __init__(
        self,
        config: ExecConfig,
        *,
        cwd: Path | None = None,
        log: Callable[[str, str], None],
        poll_interval: float = 0.5,
    ) -> None:
        self.config = config
        self.cwd = cwd or Path.cwd()
        self.log = log
        self.poll_interval = poll_interval
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0  # pipeline re-runs (watched changes, console restarts)
        self._lock = asyncio.Lock()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def watch(self) -> bool:
        return self.config.watch is not None

    async def start(self) -> None:
        await self._run_pipeline()
        if self.watch:
            self._tasks.append(asyncio.create_task(self._watch()))

    async def stop(self) -> None:
        """exec.rs `stop_process`: SIGTERM to the group, 3 s, then SIGKILL (also a running set-up step)."""
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        _killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 3)
        except TimeoutError:
            self.log("warn", "Process did not exit gracefully, killing")
            _killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    def restart(self) -> None:
        """Reload as a watched change would (the console's restart button)."""
        self._tasks.append(asyncio.create_task(self._reload("restart requested")))

    async def _spawn(self, cmd: str) -> asyncio.subprocess.Process:
        self.log("info", f"Starting process: {cmd}")
        return await asyncio.create_subprocess_exec("sh", "-c", cmd, cwd=str(self.cwd), start_new_session=True)

    async def _run_pipeline(self) -> None:
        """exec.rs 138-177: set-up commands must exit 0; the last one is left running."""
        async with self._lock:
            self._tasks = [t for t in self._tasks if not t.done()]
            if self._stopping:
                return
            last = len(self.config.exec) - 1
            for idx, cmd in enumerate(self.config.exec):
                proc = await self._spawn(cmd)
                self.proc = proc
                if idx < last:
                    code = await proc.wait()
                    self.proc = None
                    if self._stopping:
                        return
                    if code != 0:
                        self.log("error", f"Pipeline step failed (exit code {code}), aborting pipeline: {cmd}")
                        return
                else:
                    self._tasks.append(asyncio.create_task(self._report_exit(proc)))

    async def _report_exit(self, proc: asyncio.subprocess.Process) -> None:
        """Not in the real engine (it never looks): a log line, and nothing else happens."""
        code = await proc.wait()
        if not self._stopping and self.proc is proc:
            self.log("warn", f"worker exited with code {code}; the ExecModule does not restart it")

    async def _reload(self, why: str) -> None:
        """exec.rs 105-123 + `kill_process`: SIGKILL the group, reap, run the pipeline again."""
        async with self._lock:
            proc, self.proc = self.proc, None
            if proc is not None:
                _killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if self._stopping:
            return
        self.restarts += 1
        self.log("info", f"File change detected {why} → restarting pipeline")
        await self._run_pipeline()

    async def _watch(self) -> None:
        patterns = list(self.config.watch or [])
        before = snapshot(self.cwd, patterns)
        while not self._stopping:
            await asyncio.sleep(self.poll_interval)
            now = snapshot(self.cwd, patterns)
            changed = created_or_removed(before, now)
            before = now
            if changed:
                await self._reload(", ".join(changed))


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
