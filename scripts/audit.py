"""`make audit`: known vulnerabilities in the locked packages, said honestly.

Runs pip-audit (PyPI's advisory data) over each lock file without installing anything
(`--disable-pip --require-hashes`: the lock pins every package with its hashes) and prints one
summary per file. pip-audit itself says "No known vulnerabilities found" even when it could
not look a single package up (no route to pypi.org, a private index): this script counts the
packages it skipped and says so instead.

Exit status: 0 every package checked and none vulnerable; 1 a vulnerability found;
2 some packages could not be checked (the figures say how many and why).

    python scripts/audit.py PIP_AUDIT_BINARY requirements.txt [requirements-dev.txt ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field


@dataclass
class Report:
    lock_file: str
    checked: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    vulnerable: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""


def parse(lock_file: str, raw: str) -> Report:
    """pip-audit's JSON (`-f json`) → the figures this script reports."""
    report = Report(lock_file)
    for dep in json.loads(raw).get("dependencies", []):
        name = f"{dep.get('name')} {dep.get('version', '')}".strip()
        if "skip_reason" in dep:
            report.skipped[name] = str(dep["skip_reason"])
            continue
        report.checked += 1
        vulns = [f"{v.get('id')} (fixed in {', '.join(v.get('fix_versions') or []) or 'no release'})" for v in dep.get("vulns", [])]
        if vulns:
            report.vulnerable[name] = vulns
    return report


def audit(pip_audit: str, lock_file: str) -> Report:
    proc = subprocess.run(
        [pip_audit, "--disable-pip", "--require-hashes", "-r", lock_file, "-f", "json", "--progress-spinner", "off"],
        capture_output=True,
        text=True,
        check=False,
    )
    if not proc.stdout.strip().startswith("{"):
        return Report(lock_file, error=(proc.stderr.strip().splitlines() or ["pip-audit gave no report"])[-1])
    return parse(lock_file, proc.stdout)


def summarize(report: Report) -> tuple[int, list[str]]:
    """(exit status, lines) for one lock file."""
    if report.error:
        return 2, [f"{report.lock_file}: NOT CHECKED: {report.error}"]
    total = report.checked + len(report.skipped)
    lines = [f"{report.lock_file}: {report.checked} of {total} packages checked, {len(report.vulnerable)} vulnerable"]
    for name, vulns in sorted(report.vulnerable.items()):
        lines.append(f"  VULNERABLE {name}: {'; '.join(vulns)}")
    if report.skipped:
        reasons = sorted(set(report.skipped.values()))
        lines.append(f"  could not check {len(report.skipped)} packages, e.g. {reasons[0]}")
    status = 1 if report.vulnerable else 2 if report.skipped else 0
    return status, lines


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    worst = 0
    for lock_file in argv[1:]:
        status, lines = summarize(audit(argv[0], lock_file))
        print("\n".join(lines))
        worst = 1 if 1 in (worst, status) else max(worst, status)
    if worst == 2:
        print("audit incomplete: the advisory data could not be read for every package (see above); this is not a clean bill")
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
