"""Stopping the helper processes the tests start (redis-server, nginx, the standalone console)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], *, grace: float = 10.0, kill: bool = False) -> None:
    """Terminate `proc` (SIGKILL at once with `kill`) and reap it; one still running after
    `grace` seconds is killed and reaped."""
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
