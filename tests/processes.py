"""Process helpers shared by the tests that start, kill and watch processes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie is dead for our purpose)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def stop_process(proc: subprocess.Popen[Any], *, grace: float = 10.0, kill: bool = False) -> None:
    """Terminate `proc` (SIGKILL at once with `kill`) and reap it; one still running after
    `grace` seconds is killed and reaped (redis-server, nginx, the standalone console)."""
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
