"""A whole private stack for tests that kill things: own simulators, own webhook relay (what
deploy/nginx does to EspoCRM webhooks), one or more stand-in engines with the real worker over
src/steps, and a Redis database of its own (so the session stack's sweeper never sees these
marks). Used by the crash-recovery and scale-out tests of issue #12.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from iii_local.testing import MotiaTester
from services.platform.settings import load_settings
from simulators.sandbox import Simulators, start_simulators
from tests.e2e import stack_env
from tests.webhook_relay import WebhookRelay

ROOT = Path(__file__).resolve().parents[2]
STEPS = ROOT / "src" / "steps"
REDIS_QUEUE = "modules::queue::RedisAdapter"


class RoundRobinRelay(WebhookRelay):
    """The relay with several upstreams taken in turn, as nginx balances an `upstream` block."""

    def __init__(self, upstreams: list[str]) -> None:
        super().__init__(upstreams[0])
        self._next = itertools.cycle([u.rstrip("/") for u in upstreams])
        self.upstreams = upstreams

    async def _forward(self, request: web.Request) -> web.Response:
        self.upstream = next(self._next)
        return await super()._forward(request)


def db_url(redis_url: str, db: int) -> str:
    """The same server, another database number."""
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    return f"{base}/{db}"


@dataclass
class PrivateStack:
    engines: list[MotiaTester]
    sims: Simulators
    relay: WebhookRelay
    redis_url: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def engine(self) -> MotiaTester:
        return self.engines[0]

    async def stop(self) -> None:
        for e in self.engines:
            await e.stop()
        await self.sims.stop()
        await self.relay.stop()


async def flush_redis(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def start_private_stack(
    redis_url: str,
    *,
    db: int,
    engines: int = 1,
    redis_queue: bool = False,
    queue_defaults: dict[str, Any] | None = None,
    extra_env: dict[str, str] | None = None,
) -> PrivateStack:
    """Start simulators, a relay and `engines` stand-in engines (each with its worker).

    With several engines, state and cron live in the shared Redis (as in production) and the
    relay balances webhooks over them. `redis_queue` swaps the builtin queue for the Redis
    adapter (publish/subscribe, rows R1-R2)."""
    url = db_url(redis_url, db)
    await flush_redis(url)
    env = {**stack_env(url), **(extra_env or {})}
    shared = engines > 1
    testers = [
        MotiaTester(
            STEPS,
            queue_defaults={"store_method": "file_based", "save_interval_ms": 5000, "backoff_ms": 200, **(queue_defaults or {})},
            queue_adapter={"class": REDIS_QUEUE, "config": {"redis_url": url}} if redis_queue else None,
            state_adapter={"class": "modules::state::adapters::RedisAdapter", "config": {"redis_url": url}} if shared else None,
            cron_adapter={"class": "modules::cron::RedisCronAdapter", "config": {"redis_url": url}} if shared else None,
        )
        for _ in range(engines)
    ]
    relay = await RoundRobinRelay([t.base_url for t in testers]).start()
    settings = load_settings(dict(env))
    sims = await start_simulators(settings, demo=False, engine_url=relay.url, use_configured_ports=False, webhook_retry_interval=0.2)
    env = {**env, **sims.env()}
    for t in testers:
        t.env = dict(env)
    try:
        for t in testers:
            await t.start(wait_functions=10, timeout=90)
    except BaseException:
        for t in testers:
            await t.stop()
        await sims.stop()
        await relay.stop()
        raise
    return PrivateStack(testers, sims, relay, url, env)


async def sim_fault(sims_url: str, spec: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{sims_url}/_sim/faults", json=spec) as r:
            assert r.status < 400, await r.text()


async def clear_faults(sims_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.delete(f"{sims_url}/_sim/faults") as r:
            await r.read()


@contextlib.asynccontextmanager
async def case_pipeline(stack: PrivateStack) -> AsyncIterator[tuple[Any, int]]:
    """A document pipeline on a new eviction case of `stack`, and the upload count before it."""
    from tests.reliability.test_document_pipeline_faults import Pipeline, uploads

    pipeline = Pipeline(stack.engine, stack.sims)
    try:
        await pipeline.start_case()
        yield pipeline, await uploads(stack.sims)
    finally:
        await pipeline.close()
