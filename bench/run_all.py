"""`make bench`: run every benchmark in bench/ and write bench/RESULTS.md.

Each benchmark prints its figures and one `BENCH-JSON {...}` line; this collects them
with the machine they ran on. Benchmarks run one after another (each starts its own
engine, worker and simulators), so they don't disturb each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine  # noqa: E402

SKIP = {"common.py", "run_all.py"}


def main() -> int:
    results = []
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in SKIP)
    for script in scripts:
        print(f"--- {script.name}", flush=True)
        t0 = time.time()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=HERE.parent)
        sys.stdout.write(proc.stdout[-3000:])
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-3000:])
        for line in proc.stdout.splitlines():
            if line.startswith("BENCH-JSON "):
                results.append(json.loads(line[len("BENCH-JSON "):]))
        if proc.returncode != 0:
            results.append({"bench": script.stem, "error": f"exit code {proc.returncode}"})
        print(f"    ({time.time() - t0:.1f} s)")
    lines = [
        "# Benchmark results",
        "",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}.",
        "Produced by `make bench` (bench/run_all.py); each figure with its target and baseline measured in the same run.",
        "",
    ]
    for r in results:
        lines.append(f"## {r['bench']}")
        lines.append("")
        lines.append("| figure | value |")
        lines.append("| --- | --- |")
        for k, v in r.items():
            if k == "bench":
                continue
            lines.append(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |")
        lines.append("")
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    print(f"wrote {HERE / 'RESULTS.md'}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
