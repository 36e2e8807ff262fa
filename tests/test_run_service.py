"""`make run` end to end: the launcher brings up simulators, engine and worker in sandbox
mode, prints the banner, serves, and stops everything on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from simulators.runner import free_port

ROOT = Path(__file__).resolve().parent.parent


def _open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_make_run_sandbox_starts_serves_and_stops(redis_url: str, tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("rest", "worker", "espo", "advo", "xai", "google")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "ADVOWARE_", "XAI_", "GOOGLE_", "APP_"))},
        "APP_ENV_FILE": "/nonexistent/.env",
        "REDIS_URL": redis_url,
        "III_REST_PORT": str(ports["rest"]),
        "III_WORKER_PORT": str(ports["worker"]),
        "III_DATA_DIR": str(tmp_path / "data"),
        "III_LOG_FILE": str(tmp_path / "engine.log.jsonl"),
        "SIM_ESPOCRM_PORT": str(ports["espo"]),
        "SIM_ADVOWARE_PORT": str(ports["advo"]),
        "SIM_XAI_PORT": str(ports["xai"]),
        "SIM_GOOGLE_PORT": str(ports["google"]),
    }
    out = open(tmp_path / "run.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_service.py")], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 90
        while "Ctrl-C stops everything" not in (tmp_path / "run.out").read_text(errors="replace"):
            assert proc.poll() is None, (tmp_path / "run.out").read_text()
            assert time.time() < deadline, (tmp_path / "run.out").read_text()
            time.sleep(0.2)
        text = (tmp_path / "run.out").read_text()
        assert "mode: SANDBOX" in text
        async with aiohttp.ClientSession() as s:
            # The worker registers our steps on the engine.
            deadline = time.time() + 60
            while True:
                async with s.get(f"http://127.0.0.1:{ports['rest']}/_console/status") as r:
                    st = await r.json()
                if st.get("workers", 0) >= 1 and st.get("functions", 0) >= 1:
                    break
                assert time.time() < deadline, (st, (tmp_path / "run.out").read_text()[-3000:])
                time.sleep(0.3)
            # The EspoCRM simulator serves demo data with the sandbox key.
            async with s.get(f"http://127.0.0.1:{ports['espo']}/api/v1/CDokumente", headers={"X-Api-Key": "sandbox-espocrm-key"}, params={"maxSize": "5"}) as r:
                assert r.status == 200
                assert (await r.json())["total"] > 0
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, (tmp_path / "run.out").read_text()
    time.sleep(0.5)
    for name in ("rest", "worker", "espo", "google"):
        assert not _open(ports[name]), f"{name} port still open after Ctrl-C"
