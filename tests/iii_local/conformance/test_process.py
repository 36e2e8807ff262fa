"""Rows P1-P2: the ExecModule and the worker port of engine 0.8.3, through the real motia worker.

Paths are under `engine/src/` of iii-hq/iii at tag iii/v0.8.3. The step is in
`process_steps/` (GET /p/who answers the pid of the worker process that ran it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from iii_local.testing import PROJECT_ROOT, MotiaTester
from tests.iii_local.attack_support import listening_addresses
from tests.processes import alive

STEPS = Path(__file__).parent / "process_steps"
FUNCTION = "steps::P Who::trigger::http(GET /p/who)"


async def who(t: MotiaTester) -> tuple[int, object]:
    r = await t.get("/p/who")
    return r.status, (r.json() or {}).get("pid") if r.status == 200 else r.text


async def status(t: MotiaTester) -> dict[str, int]:
    return await t.console("GET", "/_console/status")


async def wait_until(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)




async def test_p1_exec_module_never_restarts_a_worker_and_adds_no_iii_url(tmp_path: Path) -> None:
    """P1 — modules/shell/exec.rs 138-177 (`run_pipeline`: commands in order, the last one
    started and never looked at again), 179-215 (`spawn_single`: `sh -c`, setsid, inherited
    environment, nothing added), 67-136 + 217-239 (`run`/`should_restart`: the watcher runs
    whenever `watch` globs are configured, no flag; a created matching file SIGKILLs the
    process group and runs the pipeline again), shell/config.rs (`watch: Option<Vec>`).

    The worker runs bare (`keep_alive=False`): killed, it stays dead, until a watched file is
    created. Then, through `scripts/run_worker.py` (the project's configs), a killed worker is
    back within seconds."""
    env_dump = tmp_path / "exec_env.txt"
    bare = MotiaTester(
        STEPS,
        keep_alive=False,
        watch=["watched/**/*.py"],
        extra_modules=[{"class": "modules::shell::ExecModule", "config": {"exec": [f"env > {env_dump}"]}}],
    )
    (bare.workdir / "watched").mkdir()
    (bare.workdir / "watched" / "edit_me.py").write_text("x = 1\n")
    await bare.start()
    try:
        environment = dict(line.split("=", 1) for line in env_dump.read_text().splitlines() if "=" in line)
        assert "III_URL" not in environment and "III_BRIDGE_URL" not in environment, "the ExecModule set the engine's URL"
        status_code, first = await who(bare)
        assert status_code == 200
        await bare.kill_worker(wait=False)
        await asyncio.sleep(4)
        st = await status(bare)
        assert st["workers"] == 0 and st["functions"] == 0, f"a dead worker came back by itself: {st}"
        assert (await who(bare))[0] != 200
        (bare.workdir / "watched" / "edit_me.py").write_text("x = 2\n")  # an in-place edit: no reload
        await asyncio.sleep(1.5)
        assert (await status(bare))["workers"] == 0, "an edit restarted the pipeline"
        (bare.workdir / "watched" / "new_step.py").write_text("y = 1\n")  # a created file: reload
        await bare.wait_ready(1, timeout=30)
        status_code, second = await who(bare)
        assert status_code == 200 and second != first
    finally:
        await bare.stop()

    kept = MotiaTester(STEPS)
    await kept.start()
    try:
        _, first = await who(kept)
        assert isinstance(first, int)
        started = time.monotonic()
        await kept.kill_worker(functions=1)  # waits for a new worker pid and its functions
        _, second = await who(kept)
        assert isinstance(second, int) and second != first and not alive(first)
        assert time.monotonic() - started < 15, "the wrapper took too long to restart the worker"
    finally:
        await kept.stop()


async def test_p2_worker_port_and_a_second_registration_of_a_function_id(tmp_path: Path) -> None:
    """P2 — the real engine: main.rs 63-66 (`address("0.0.0.0:{port}")`), engine/mod.rs 645-700
    (`handle_worker`: any websocket client becomes a worker, no authentication), function.rs
    79-91 (a second `register_function` of an id overwrites: "already registered.
    Overwriting."), engine/mod.rs 462-501 (`UnregisterFunction` from any worker) and 746-798
    (`cleanup_worker`: every id the worker ever registered is removed, even one a newer worker
    holds now). So on the real engine a second client takes over a live worker's function;
    production drops connections to the port from other hosts (nftables).

    The stand-in deviates on purpose (issue 14, a security fix no step can depend on): it
    binds 127.0.0.1 unless `local_engine.worker_host` says otherwise (beyond loopback only with
    a `worker_secret`), and it refuses a registration of a function id or an HTTP route that
    another live worker holds. Shown with a second real motia worker on the same steps: it
    connects (no authentication on loopback, as in the engine) but is refused, the first
    keeps every invocation, and the second's disconnect takes nothing from the first. The same
    worker re-registering, or anyone after the holder disconnected, still overwrites
    (tests/security/test_engine_worker_port.py)."""
    t = MotiaTester(STEPS)
    await t.start()
    second: subprocess.Popen[bytes] | None = None
    try:
        assert listening_addresses(t.worker_port) == {"127.0.0.1"}, listening_addresses(t.worker_port)
        async with aiohttp.ClientSession() as s, s.ws_connect(f"ws://127.0.0.1:{t.worker_port}/") as ws:
            hello = json.loads((await ws.receive(timeout=5)).data)
            assert hello["type"] == "workerregistered" and hello["worker_id"], "no authentication asked on loopback"

        _, first_pid = await who(t)
        holder = next(f["worker_id"] for f in (await t.console("GET", "/_console/functions"))["functions"] if f["function_id"] == FUNCTION)
        url = t.worker_url
        env = {**os.environ, "III_URL": url, "III_BRIDGE_URL": url, "PYTHONPATH": str(PROJECT_ROOT)}
        second = subprocess.Popen(
            [sys.executable, "-m", "motia.cli", "run", "--dir", str(STEPS)],
            cwd=str(t.workdir), env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        async def refused() -> bool:
            logs = await t.logs(level="warn")
            return sum(f"function {FUNCTION!r} is held by another live worker" in r["message"] for r in logs) >= 1

        await wait_until(refused)
        st = await status(t)
        assert st["workers"] == 2 and st["functions"] == 1, st
        fns = (await t.console("GET", "/_console/functions"))["functions"]
        assert [f["worker_id"] for f in fns if f["function_id"] == FUNCTION] == [holder], "the second worker took the id over"
        for _ in range(5):
            assert await who(t) == (200, first_pid), "the second registration got invocations"

        second.send_signal(signal.SIGKILL)
        second.wait(10)

        async def one_worker() -> bool:
            return (await status(t))["workers"] == 1

        await wait_until(one_worker)
        st = await status(t)
        assert st["functions"] == 1, f"the second worker's disconnect removed the first worker's id: {st}"
        assert await who(t) == (200, first_pid)
    finally:
        if second is not None and second.poll() is None:
            second.kill()
            second.wait(10)
        await t.stop()
