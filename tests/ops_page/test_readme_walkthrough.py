"""README's "Break something on purpose" walkthrough, run as written against `make run`'s launcher
(scripts/run_service.py in sandbox mode on ports of its own, tests/scripts/test_launcher.py):
the shell blocks are read from README.md and run with bash, with only the ports replaced (3111,
3203 → the launcher's) and `pkill -f` replaced by a kill of this launcher's worker by its pid (so
no other worker on the machine is touched). Each break is found and explained, and repaired."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.scripts.test_launcher import Started, descendants, launcher_env, ports, started, wait_up  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FAST = {"LEDGER_CLAIM_LEASE_SECONDS": "10", "LEDGER_SWEEP_CRON": "* * * * * *", "LOCK_LEASE_SECONDS": "10"}
"""A dead worker's claim and lock run out after 10 s instead of 60 (the walkthrough says 60)."""
PKILL = "pkill -9 -f 'motia.cli run --dir src'"


def walkthrough_blocks() -> list[str]:
    text = README.read_text()
    start = text.index("### Break something on purpose")
    end = text.index("**With the command alone**", start)
    blocks = re.findall(r"```bash\n(.*?)```", text[start:end], re.S)
    assert len(blocks) == 6, blocks
    assert PKILL in blocks[4]
    return blocks


def worker_pid(launcher: subprocess.Popen[bytes]) -> int:
    for pid in descendants(launcher.pid):
        try:
            if b"motia.cli\x00run" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise AssertionError("the launcher's worker is not running")


def bash(script: str, env: dict[str, str], timeout: float = 90) -> str:
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return done.stdout + done.stderr


def until(script: str, env: dict[str, str], *wanted: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = bash(script, env)
        if all(w in out for w in wanted):
            return out
        assert time.monotonic() < deadline, out[-3000:]
        time.sleep(2)


def test_readme_walkthrough_breaks_finds_and_repairs(ports: dict[str, int], tmp_path: Path, started: Started) -> None:  # noqa: F811
    blocks = walkthrough_blocks()
    env = {**launcher_env(ports, tmp_path), **FAST}
    out_file = tmp_path / "run.out"
    launcher = started.add(subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_service.py")], cwd=ROOT, env=env,
                                            stdout=out_file.open("wb"), stderr=subprocess.STDOUT, start_new_session=True))
    wait_up(launcher, ports, out_file)
    deadline = time.monotonic() + 90
    while "Ctrl-C stops everything" not in (banner := out_file.read_text(errors="replace")):  # after the demo data's sync
        assert launcher.poll() is None and time.monotonic() < deadline, banner[-3000:]
        time.sleep(0.3)
    assert f"http://127.0.0.1:{ports['rest']}/ops/" in banner and "sandbox-ops-token-public-not-a-secret" in banner

    def ported(block: str) -> str:
        return block.replace("127.0.0.1:3111", f"127.0.0.1:{ports['rest']}").replace("127.0.0.1:3203", f"127.0.0.1:{ports['xai']}")

    setup = ported(blocks[0])
    until(setup + "bitbylaw-ops status document $DOC", env, "in sync")  # the demo data synced at start

    # 1 and 2, then find them and see why.
    out = bash(setup + ported(blocks[1]) + ported(blocks[2]) + ported(blocks[3]), env)
    assert "lacks its file" in out and "≠ emailAddress" in out and "'max.neu@example.org'" in out, out
    assert "2 finding(s)" in out and "changed in advoware" in out, out
    [party_finding] = re.findall(r"\[([0-9a-f]{16})\] party ", out)
    out = bash(setup + f"bitbylaw-ops repair {party_finding}", env)
    assert "1 queued" in out, out
    until(setup + "bitbylaw-ops status party $PARTY", env, "in sync", timeout=30)

    # 3: the worker killed during the document's repair; the run is taken over.
    kill = f"kill -9 {worker_pid(launcher)}"
    out = bash(setup + ported(blocks[4]).replace(PKILL, kill), env)
    assert "queued document" in out and "65f0c0de00d000001" in out.split("queued document")[-1], out
    out = until(setup + ported(blocks[5]), env, "in sync", "Nothing disagrees.", timeout=120)
    assert "took over a run whose worker died" in bash(setup + "bitbylaw-ops status document $DOC", env)

    # With the command alone: both broken again, one audit --repair, then nothing disagrees.
    again = ported(blocks[1]) + ported(blocks[2]).replace("max.neu@example.org", "max.neuer@example.org")
    out = bash(setup + again + "bitbylaw-ops audit --repair; echo exit=$?", env)
    assert "2 queued" in out and "exit=0" in out, out
    until(setup + "bitbylaw-ops audit", env, "Nothing disagrees.", timeout=60)

    launcher.send_signal(signal.SIGINT)
    assert launcher.wait(30) == 0
