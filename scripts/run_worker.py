#!/usr/bin/env python3
"""Keep the motia worker alive: the restart the iii engine's ExecModule never does.

The real engine 0.8.3 starts its `exec` commands once and never restarts a worker that dies,
and sets no `III_URL` (engine/src/modules/shell/exec.rs 138-215). The project's configs
therefore run the worker through this wrapper, in development, tests and production:

    exec env PYTHONPATH=. III_URL=ws://127.0.0.1:${III_WORKER_PORT:49134} .venv/bin/python scripts/run_worker.py

    python scripts/run_worker.py [-- COMMAND ...]

- COMMAND (everything after `--`) defaults to `<this python> -m motia.cli run --dir src`.
- `III_URL` defaults to `ws://127.0.0.1:$III_WORKER_PORT` (49134), `III_BRIDGE_URL` to
  `III_URL`. Unless set, the OTel bridge batches up to 64 log records or spans per frame and
  exports spans every second (`OTEL_LOGS_BATCH_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
  `OTEL_BSP_SCHEDULE_DELAY`), instead of one frame per log record.
- The worker is restarted whenever it exits, after 1 s, doubling to 30 s, back to 1 s once a
  run lasted 60 s; each restart logs one line with the exit code to stderr.
- SIGTERM/SIGINT to the wrapper reach the worker as SIGINT (motia winds down on
  KeyboardInterrupt); the wrapper waits for it (10 s, then SIGKILL) and exits. The worker
  stays in the wrapper's process group, so the ExecModule's `killpg` reaches both: its SIGTERM
  also reaches the worker directly, which then ends at once (motia 1.0.2rc1 and iii-sdk 0.8.3
  install no SIGTERM handler).
- When `III_URL` carries a worker secret (`ws://worker:SECRET@host:port`, the stand-in's
  worker port beyond loopback), the worker's stdout and stderr pass through the wrapper with
  the secret replaced by `***`: iii-sdk 0.8.3 logs the URL it connects to at INFO.
- It dies with its parent (the engine): PR_SET_PDEATHSIG on Linux plus a parent-pid check,
  and the worker dies with the wrapper (PR_SET_PDEATHSIG, SIGKILL). A killed engine leaves
  no orphan behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import BinaryIO

INITIAL_BACKOFF = 1.0
MAX_BACKOFF = 30.0
RESET_AFTER = 60.0
STOP_GRACE = 10.0
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int) -> None:
    """Ask Linux to send `sig` to this process when its parent exits (no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    except (OSError, AttributeError):
        pass


def url_secrets(url: str) -> list[bytes]:
    """The password in `url`'s user information, as written and percent-decoded ([] if none)."""
    raw = urllib.parse.urlsplit(url).netloc.rpartition("@")[0].partition(":")[2]
    if not raw:
        return []
    return sorted({raw.encode(), urllib.parse.unquote(raw).encode()}, key=len, reverse=True)


def copy_redacted(source: BinaryIO, sink: BinaryIO, secrets: list[bytes]) -> None:
    """Copy `source` to `sink` line by line with every secret replaced by `***`."""
    for line in iter(source.readline, b""):
        for secret in secrets:
            line = line.replace(secret, b"***")
        sink.write(line)
        sink.flush()


def worker_env(environ: dict[str, str]) -> dict[str, str]:
    """The worker's environment: the engine address and OTel batching defaults added."""
    env = dict(environ)
    if not env.get("III_URL"):
        env["III_URL"] = f"ws://127.0.0.1:{env.get('III_WORKER_PORT') or '49134'}"
    if not env.get("III_BRIDGE_URL"):
        env["III_BRIDGE_URL"] = env["III_URL"]
    env.setdefault("OTEL_LOGS_BATCH_SIZE", "64")
    env.setdefault("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64")
    env.setdefault("OTEL_BSP_SCHEDULE_DELAY", "1000")
    return env


def parse_command(argv: list[str]) -> list[str]:
    """Everything after `--`, or the default motia worker command."""
    if "--" in argv:
        cmd = argv[argv.index("--") + 1:]
        if cmd:
            return cmd
    elif argv:
        raise SystemExit("usage: run_worker.py [-- COMMAND ...]")
    return [sys.executable, "-m", "motia.cli", "run", "--dir", "src"]


def next_backoff(current: float, uptime: float) -> tuple[float, float]:
    """(delay before this restart, backoff for the one after)."""
    delay = INITIAL_BACKOFF if uptime >= RESET_AFTER else current
    return delay, min(delay * 2, MAX_BACKOFF)


@dataclass
class Keeper:
    cmd: list[str]
    env: dict[str, str]
    parent: int = field(default_factory=os.getppid)
    stop_signal: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    copiers: list[threading.Thread] = field(default_factory=list)

    def on_signal(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum
        if self.proc is not None and self.proc.poll() is None:
            try:
                # SIGINT whatever we got: motia's worker stops on KeyboardInterrupt, so its event
                # loop winds down and closes the API clients (services.platform.container); a
                # SIGTERM would end it on the spot.
                self.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass

    def orphaned(self) -> bool:
        return os.getppid() != self.parent

    def spawn(self) -> subprocess.Popen[bytes]:
        secrets = url_secrets(self.env.get("III_URL", ""))
        pipe = subprocess.PIPE if secrets else None
        proc = subprocess.Popen(self.cmd, env=self.env, stdout=pipe, stderr=pipe, preexec_fn=lambda: die_with_parent(signal.SIGKILL))  # noqa: PLW1509
        if secrets:
            self.copiers = [
                threading.Thread(target=copy_redacted, args=(source, sink, secrets), daemon=True)
                for source, sink in ((proc.stdout, sys.stdout.buffer), (proc.stderr, sys.stderr.buffer))
            ]
            for copier in self.copiers:
                copier.start()
        return proc

    def wait(self, proc: subprocess.Popen[bytes]) -> int:
        """Wait for the worker; stop it when asked to or when the parent is gone."""
        while self.stop_signal is None:
            try:
                return proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self.orphaned():
                    self.stop_signal = signal.SIGTERM
        self.on_signal(self.stop_signal, None)  # (again) in case it came before the spawn
        try:
            return proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.stop_signal is None and time.monotonic() < deadline:
            if self.orphaned():
                self.stop_signal = signal.SIGTERM
                return
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def run(self) -> int:
        backoff = INITIAL_BACKOFF
        while True:
            started = time.monotonic()
            self.proc = self.spawn()
            code = self.wait(self.proc)
            for copier in self.copiers:  # the worker's last lines, before the wrapper goes on
                copier.join(timeout=2)
            if self.stop_signal is not None:
                return 0
            delay, backoff = next_backoff(backoff, time.monotonic() - started)
            self.restarts += 1
            sys.stderr.write(f"run_worker: worker (pid {self.proc.pid}) exited with code {code}; restart {self.restarts} in {delay:g}s\n")
            sys.stderr.flush()
            self.sleep(delay)
            if self.stop_signal is not None:
                return 0


def main(argv: list[str] | None = None) -> int:
    parent = os.getppid()
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the prctl took effect
        return 0
    keeper = Keeper(parse_command(sys.argv[1:] if argv is None else argv), worker_env(dict(os.environ)), parent=parent)
    signal.signal(signal.SIGTERM, keeper.on_signal)
    signal.signal(signal.SIGINT, keeper.on_signal)
    return keeper.run()


if __name__ == "__main__":
    sys.exit(main())
