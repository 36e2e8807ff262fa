"""Attacks on the stand-in engine's worker port (issue 14), through the engine and a real motia worker.

The real engine 0.8.3 listens on 0.0.0.0 and lets any client overwrite a function id (row
P2, production firewalls the port); the stand-in binds loopback, refuses a takeover of an id
or route another live worker holds, and asks a shared secret when the port is not loopback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from iii_local.config import EngineConfig, LocalEngineConfig, RestConfig, parse_config
from iii_local.console_server import ConsoleConfigError
from iii_local.server import LocalEngine
from iii_local.testing import PROJECT_ROOT, MotiaTester, free_port
from tests.iii_local.attack_support import FakeWorker, lan_address, listening_addresses

CONFORMANCE = PROJECT_ROOT / "tests" / "iii_local" / "conformance"
WHO = "steps::P Who::trigger::http(GET /p/who)"
SECRET = "s3cret-" + "x" * 40
CALLER_TOKEN = "caller-proxy-token-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def tester() -> AsyncIterator[MotiaTester]:
    t = MotiaTester(CONFORMANCE / "process_steps")
    await t.start()
    try:
        yield t
    finally:
        await t.stop()


async def test_every_listener_binds_loopback_unless_configured(tmp_path: Path) -> None:
    """A config that names no host (the real engine: 0.0.0.0 for the worker port and the REST module)."""
    cfg = parse_config({"port": free_port(), "modules": [{"class": "modules::api::RestApiModule", "config": {"port": free_port()}}],
                        "local_engine": {"console_port": free_port()}}, base_dir=tmp_path)
    le = LocalEngine(cfg, run_exec=False)
    await le.start()
    try:
        assert cfg.rest is not None
        for port in (cfg.port, cfg.rest.port, cfg.local.console_port):
            assert listening_addresses(port) == {"127.0.0.1"}, (port, listening_addresses(port))
    finally:
        await le.stop()


async def test_a_fake_worker_cannot_take_over_a_live_workers_function(tester: MotiaTester) -> None:
    """The issue's attack: a second client registers the function id and the route of a live
    worker, and tries to unregister them, to receive the callers' bearer tokens."""
    listing = await tester.console("GET", "/_console/functions")
    holder = next(f["worker_id"] for f in listing["functions"] if f["function_id"] == WHO)
    real_trigger = next(t["id"] for t in listing["triggers"] if t["function_id"] == WHO)
    pid = (await tester.get("/p/who")).json()["pid"]

    async with FakeWorker(tester.worker_port) as fake:
        await fake.register_function(WHO)
        await fake.register_http(WHO, "GET", "/p/who")
        await fake.register_function("fake::steal")
        await fake.register_http("fake::steal", "GET", "p/who")
        await fake.send({"type": "unregisterfunction", "id": WHO})
        await fake.send({"type": "unregistertrigger", "id": real_trigger, "trigger_type": "http"})
        await fake.call("engine::functions::list")  # everything above has been handled

        for _ in range(5):
            r = await tester.get("/p/who", headers={"Authorization": f"Bearer {CALLER_TOKEN}"})
            assert r.status == 200 and r.json()["pid"] == pid, (r.status, r.text)
        stolen = [m for m in await fake.drain(0.5) if m.get("type") == "invokefunction"]
        assert not stolen, f"the fake worker got invocations: {stolen}"

        listing = await tester.console("GET", "/_console/functions")
        assert [f["worker_id"] for f in listing["functions"] if f["function_id"] == WHO] == [holder]
        assert {t["function_id"] for t in listing["triggers"] if t["config"].get("api_path") in ("/p/who", "p/who")} == {WHO}
    warnings = [r["message"] for r in await tester.logs(level="warn") if "held by another live worker" in r["message"]]
    assert len(warnings) >= 4, warnings
    assert (await tester.get("/p/who")).json()["pid"] == pid


async def test_the_holder_may_re_register_and_a_freed_id_may_be_taken(tester: MotiaTester) -> None:
    """What still works as on the real engine: the same connection overwrites its own
    registration, and once the holder disconnected another worker gets the id (a refused
    registration waits for that, so a worker that reconnected early keeps its functions)."""
    fid = f"fake::{uuid.uuid4().hex[:8]}"

    async def described() -> list[tuple[str, str | None]]:
        fns = (await tester.console("GET", "/_console/functions"))["functions"]
        return [(f["worker_id"], f["description"]) for f in fns if f["function_id"] == fid]

    async with FakeWorker(tester.worker_port) as first, FakeWorker(tester.worker_port) as second:
        await first.register_function(fid, "v1")
        await first.register_function(fid, "v2")
        await first.call("engine::functions::list")
        assert await described() == [(first.worker_id, "v2")]
        await second.register_function(fid, "taken")
        await second.call("engine::functions::list")
        assert await described() == [(first.worker_id, "v2")]
        await first.close()
        deadline = time.monotonic() + 5  # the refused registration waited for the holder to go
        while await described() != [(second.worker_id, "taken")]:
            assert time.monotonic() < deadline, await described()
            await asyncio.sleep(0.05)
        await second.register_function(fid, "again")
        await second.call("engine::functions::list")
        assert await described() == [(second.worker_id, "again")]
    assert await described() == []


def _exposed(tmp_path: Path, secret: str) -> EngineConfig:
    return EngineConfig(port=free_port(), host="0.0.0.0", base_dir=tmp_path, rest=RestConfig(port=free_port()),
                        local=LocalEngineConfig(console_port=0, worker_host="0.0.0.0", worker_secret=secret))


async def test_a_worker_port_beyond_loopback_without_a_strong_secret_does_not_start(tmp_path: Path) -> None:
    for secret in ("", "too-short-31-bytes-xxxxxxxxxxxx"):
        cfg = _exposed(tmp_path, secret)
        with pytest.raises(ConsoleConfigError, match="worker_secret"):
            await LocalEngine(cfg, run_exec=False).start()
        assert not listening_addresses(cfg.port) and cfg.rest and not listening_addresses(cfg.rest.port), "bound before refusing"
    config = tmp_path / "iii-config.yaml"
    config.write_text(yaml.safe_dump({"port": free_port(), "modules": [], "local_engine": {"worker_host": "0.0.0.0", "console_port": 0}}))
    proc = subprocess.run([sys.executable, "-m", "iii_local", "run", "-c", str(config)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    assert proc.returncode == 2 and "worker_secret" in proc.stderr, proc.stderr


async def test_beyond_loopback_only_workers_with_the_secret_are_accepted(tmp_path: Path) -> None:
    """The worker gets the secret as the user information of its `III_URL` (iii-sdk 0.8.3 sends
    it as Basic authentication on the worker socket, each channel and the OTel bridge)."""
    t = MotiaTester(CONFORMANCE / "http_steps", worker_host="0.0.0.0", worker_secret=SECRET)
    await t.start(wait_functions=13)
    try:
        assert listening_addresses(t.worker_port) == {"0.0.0.0"}
        lan = lan_address()
        host = lan or "127.0.0.1"
        basic = "Basic " + base64.b64encode(f"worker:{SECRET}".encode()).decode()
        for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"worker:wrong").decode()}, {"Authorization": "Bearer nope"}):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                async with FakeWorker(t.worker_port, host=host, local_addr=lan, headers=headers):
                    pass
            assert refused.value.status == 401
        async with aiohttp.ClientSession() as s, s.get(f"http://{host}:{t.worker_port}/ws/channels/x?key=y&dir=read") as r:
            assert r.status == 401  # channels too
        async with FakeWorker(t.worker_port, host=host, local_addr=lan, headers={"Authorization": basic}) as ok:
            assert ok.worker_id

        body = os.urandom(300 * 1024)  # streamed to the worker through an authenticated channel
        r = await t.post("/conformance/body/read", data=body, headers={"Content-Type": "application/octet-stream", "x-test-id": "auth"})
        assert r.status == 200 and r.json()["sha256"] == hashlib.sha256(body).hexdigest(), r.text
        deadline = time.monotonic() + 10
        while not (await t.trace(r.headers["x-iii-trace-id"]))["spans"]:
            assert time.monotonic() < deadline, "no span came over the OTel bridge"
            await asyncio.sleep(0.2)
        refused_clients = [x for x in await t.logs(level="warn") if "without the worker secret" in x["message"]]
        assert len(refused_clients) == 4, refused_clients  # the three fakes and the channel: none of the worker's sockets
    finally:
        await t.stop()
