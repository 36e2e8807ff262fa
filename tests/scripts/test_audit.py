"""scripts/audit.py (`make audit`): vulnerabilities and unchecked packages are said, never a false clean bill."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from scripts import audit

CLEAN = {"dependencies": [{"name": "aiohttp", "version": "3.14.5", "vulns": []}]}
SKIPPED = {
    "dependencies": [
        {"name": "aiohttp", "version": "3.14.5", "vulns": []},
        {"name": "redis", "skip_reason": "Dependency not found on PyPI and could not be audited: redis (8.1.0)"},
    ]
}
VULNERABLE = {
    "dependencies": [
        {"name": "aiohttp", "version": "3.9.0", "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["3.9.4"]}]},
        {"name": "redis", "skip_reason": "not found"},
    ]
}


def test_every_package_checked_and_none_vulnerable_is_clean() -> None:
    status, lines = audit.summarize(audit.parse("requirements.txt", json.dumps(CLEAN)))
    assert status == 0 and lines == ["requirements.txt: 1 of 1 packages checked, 0 vulnerable"]


def test_skipped_packages_make_the_audit_incomplete_not_clean() -> None:
    status, lines = audit.summarize(audit.parse("requirements.txt", json.dumps(SKIPPED)))
    assert status == 2
    assert lines[0] == "requirements.txt: 1 of 2 packages checked, 0 vulnerable"
    assert "could not check 1 packages" in lines[1] and "redis (8.1.0)" in lines[1]


def test_a_vulnerability_wins_over_skipped_packages() -> None:
    status, lines = audit.summarize(audit.parse("requirements.txt", json.dumps(VULNERABLE)))
    assert status == 1
    assert "VULNERABLE aiohttp 3.9.0: GHSA-xxxx (fixed in 3.9.4)" in lines[1]


def test_no_report_at_all_is_not_checked(tmp_path: Path, capsys: object) -> None:
    fake = tmp_path / "pip-audit"
    fake.write_text("#!/bin/sh\necho 'ConnectionError: pypi.org unreachable' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert audit.main([str(fake), "requirements.txt"]) == 2
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "NOT CHECKED: ConnectionError: pypi.org unreachable" in out and "not a clean bill" in out


def test_runs_pip_audit_on_the_lock_without_installing(tmp_path: Path) -> None:
    fake = tmp_path / "pip-audit"
    args_file = tmp_path / "args"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {args_file}\necho '{json.dumps(CLEAN)}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert audit.main([str(fake), "requirements.txt"]) == 0
    args = args_file.read_text().split()
    assert {"--disable-pip", "--require-hashes"} <= set(args) and args[args.index("-r") + 1] == "requirements.txt"
    assert os.path.exists(args_file)
