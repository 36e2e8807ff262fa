"""A bad configuration stops the worker at start-up with one message naming every problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_worker_refuses_to_start_with_bad_config(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "ADVOWARE_", "XAI_", "GOOGLE_", "APP_", "REDIS_"))}
    env.update({
        "APP_MODE": "production",
        "APP_ENV_FILE": "/nonexistent/.env",
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": "not-a-url",
        "III_URL": "ws://127.0.0.1:9",  # never reached: the worker stops before connecting
        "OTEL_ENABLED": "false",
    })
    proc = subprocess.run(
        [sys.executable, "-m", "motia.cli", "run", "--dir", "src"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Invalid configuration" in out
    for name in ("ESPOCRM_API_KEY", "XAI_API_KEY", "REDIS_URL"):
        assert name in out, f"{name} not named in:\n{out[-2000:]}"
