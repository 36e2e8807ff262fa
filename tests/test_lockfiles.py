"""The lock files: every package pinned with hashes, the .in pins honoured, and make installs only from them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)")


def _requirements(path: Path) -> dict[str, tuple[str, int]]:
    """name → (version, number of hashes) of a pip-compile lock file."""
    found: dict[str, tuple[str, int]] = {}
    name = ""
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m:
            name = re.sub(r"\[.*\]", "", m.group(1)).lower().replace("_", "-")
            found[name] = (m.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = found[name]
            found[name] = (version, hashes + 1)
    return found


def _direct_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            pins[re.sub(r"\[.*\]", "", m.group(1)).lower().replace("_", "-")] = m.group(2)
    return pins


def test_every_locked_package_has_hashes_and_the_direct_pins_hold() -> None:
    for source, lock in (("requirements.in", "requirements.txt"), ("requirements-dev.in", "requirements-dev.txt")):
        locked = _requirements(ROOT / lock)
        assert locked, lock
        assert all(hashes > 0 for _, hashes in locked.values()), [n for n, (_, h) in locked.items() if h == 0]
        for name, version in _direct_pins(ROOT / source).items():
            assert locked[name][0] == version, (lock, name)


def test_motia_and_iii_sdk_are_locked_together() -> None:
    locked = _requirements(ROOT / "requirements.txt")
    assert locked["motia"][0] == "1.0.2rc1" and locked["iii-sdk"][0] == "0.8.3"


def test_the_dev_lock_is_the_runtime_lock_plus_the_test_tools() -> None:
    runtime, dev = _requirements(ROOT / "requirements.txt"), _requirements(ROOT / "requirements-dev.txt")
    assert {n: v for n, (v, _) in runtime.items()} == {n: dev[n][0] for n in runtime}


def test_make_installs_only_from_the_hashed_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line and " -r " in line]
    assert any("$(PYTHON)" in line and "-r requirements-dev.txt" in line for line in installs)
    assert all("--require-hashes" in line for line in installs if "$(PYTHON)" in line)
