"""Event storm: 1,000 redundant vmh.document.update events for ONE document, through the
engine, the real worker, the document sync (locks in Redis) and the EspoCRM/xAI simulators.

Reports uploads to xAI (target: exactly 1), wall time from the first event until the
queue is idle, and events handled per second. Also holds the harness `document_bulk.py` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import emit, session  # noqa: E402

from iii_local.testing import MotiaTester, free_port  # noqa: E402
from services.clients.espocrm import EspoCRMAPI  # noqa: E402
from services.platform.settings import load_settings  # noqa: E402
from simulators.sandbox import Simulators, start_simulators  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEPS = ROOT / "src" / "steps" / "vmh"


class Harness:
    """Redis + simulators + engine/worker over src/steps/vmh, webhooks open (unsigned).

    `queue_defaults` go to the stand-in's builtin queue adapter (e.g. its `concurrency`),
    `env` to the worker (e.g. LEDGER_CONCURRENCY), `steps` is the folder of steps it runs."""

    def __init__(self, *, queue_defaults: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 steps: Path = STEPS) -> None:
        self.steps = steps
        self.queue_defaults = {"backoff_ms": 200, **(queue_defaults or {})}
        self.extra_env = dict(env or {})
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.tester: MotiaTester | None = None
        self.sims: Simulators | None = None
        self.espo: EspoCRMAPI | None = None
        self.settings: Any = None
        self._cleanup = contextlib.AsyncExitStack()
        """What start brought up, taken down by stop in reverse order."""

    async def start(self) -> Harness:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is needed (apt-get install redis-server)")
        port = free_port()
        self.redis_proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", tempfile.mkdtemp(prefix="bench-redis-")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self._cleanup.callback(self._stop_redis, self.redis_proc)
        env = {"APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env", "REDIS_URL": f"redis://127.0.0.1:{port}/0",
               "OTEL_LOGS_FLUSH_INTERVAL_MS": "200", **self.extra_env}
        self.tester = MotiaTester(self.steps, queue_defaults=self.queue_defaults, rest_timeout_ms=30000)
        self.settings = load_settings(dict(env))
        self.sims = await start_simulators(self.settings, demo=False, engine_url=self.tester.base_url,
                                           use_configured_ports=False, webhook_retry_interval=0.5)
        self._cleanup.push_async_callback(self.sims.stop)
        self.tester.env = {**env, **self.sims.env()}
        self._cleanup.push_async_callback(self.tester.stop)
        await self.tester.start(wait_functions=1, timeout=60)
        self.settings = load_settings(dict(self.tester.env))
        self.espo = EspoCRMAPI(f"{self.sims.espocrm.url}/api/v1", self.settings.espocrm.api_key.get_secret_value())
        self._cleanup.push_async_callback(self.espo.close)
        return self

    async def stop(self) -> None:
        await self._cleanup.aclose()

    @staticmethod
    def _stop_redis(proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        proc.wait(5)

    async def rk_with_collection(self) -> str:
        assert self.espo and self.tester
        rk = await self.espo.create_entity("Raeumungsklage", {"name": f"RK bench {uuid.uuid4().hex[:8]}", "status": "Offen"})
        await self.tester.enqueue("vmh.collection.ensure", {"entity_type": "Raeumungsklage", "entity_id": rk["id"], "action": "update"})
        while not (await self.espo.get_entity("Raeumungsklage", rk["id"])).get("xaiCollectionId"):
            await asyncio.sleep(0.05)
        return str(rk["id"])

    async def uploads(self) -> int:
        assert self.sims
        async with session() as s:
            async with s.get(f"{self.sims.xai.url}/_sim/requests", params={"path": "^/v1/files$", "method": "POST"}) as r:
                return sum(1 for x in await r.json() if x["status"] == 200)

    async def wait_clean(self, doc_ids: list[str], timeout: float = 300) -> None:
        assert self.espo
        pending = set(doc_ids)
        deadline = time.monotonic() + timeout
        while pending:
            page = await self.espo.list_entities(
                "CDokumente", where=[{"type": "equals", "attribute": "xaiSyncStatus", "value": "clean"}],
                select="id", max_size=200, offset=0,
            )
            done = set()
            offset = 0
            while True:
                done |= {r["id"] for r in page["list"]}
                offset += len(page["list"])
                if len(page["list"]) < 200:
                    break
                page = await self.espo.list_entities(
                    "CDokumente", where=[{"type": "equals", "attribute": "xaiSyncStatus", "value": "clean"}],
                    select="id", max_size=200, offset=offset,
                )
            pending -= done
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} documents not clean after {timeout}s")
            if pending:
                await asyncio.sleep(0.05)


async def main(events: int = 1000, clients: int = 8) -> None:
    h = await Harness().start()
    try:
        assert h.espo and h.tester
        rk = await h.rk_with_collection()
        before = await h.uploads()
        att = await h.espo.upload_attachment("storm.txt", b"storm " * 10000, "text/plain", "CDokumente", "file")
        doc = await h.espo.create_entity("CDokumente", {"name": "storm.txt", "fileId": att["id"], "raeumungsklagenIds": [rk]})
        event = {"entity_type": "CDokumente", "entity_id": doc["id"], "action": "update", "source": "manual"}
        t0 = time.perf_counter()
        per = events // clients

        async def client() -> None:
            for _ in range(per):
                await h.tester.enqueue("vmh.document.update", event)  # type: ignore[union-attr]

        await asyncio.gather(*(client() for _ in range(clients)))
        enqueued = time.perf_counter()
        await h.wait_clean([doc["id"]])
        clean = time.perf_counter()
        await h.tester.wait_idle(timeout=600, settle=0.05)
        idle = time.perf_counter()
        n = per * clients
        emit("event_storm", {
            "events": n,
            "uploads": await h.uploads() - before,
            "enqueue_s": enqueued - t0,
            "until_clean_s": clean - t0,
            "until_idle_s": idle - t0,
            "events_per_s": n / (idle - t0),
            "dead_letters": len(await h.tester.dead_letters("vmh.document.update")),
            "target": "exactly 1 upload; every redundant event a cheap early return",
        })
    finally:
        await h.stop()


if __name__ == "__main__":
    asyncio.run(main())
