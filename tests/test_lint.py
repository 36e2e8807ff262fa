"""The code is lint- and type-clean: ruff over the whole tree and mypy (strict) over services/,
both configured in pyproject.toml. Run here so that `make test` (and so CI) enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    proc = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert proc.returncode == 0, f"ruff check . failed:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}"


def test_mypy_strict_on_services_finds_nothing() -> None:
    proc = _run(str(BIN / "mypy"), "--no-incremental")
    assert proc.returncode == 0, f"mypy (pyproject.toml: strict on services/) failed:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}"
    assert "Success" in proc.stdout, proc.stdout
