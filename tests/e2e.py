"""End-to-end fixtures: the simulators, Redis, the stand-in engine and the real worker over src/steps (used via tests/conftest.py).

`stack` is one session-wide MotiaTester running the project's steps, configured in
sandbox mode against `sims` (the four simulators on free ports, empty data) and the
session's private Redis. EspoCRM's outgoing webhooks point at the engine and are signed
with WEBHOOK_ID/WEBHOOK_SECRET, so the signature path is exercised end to end.
Tests create their own records (unique ids) and may reset faults with `sims_reset`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from iii_local.testing import MotiaTester
from services.platform.settings import load_settings
from simulators.sandbox import WEBHOOK_ROUTES, Simulators, start_simulators
from tests.webhook_relay import WebhookRelay

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_ID = "e2e-hook"
WEBHOOK_SECRET = "e2e-webhook-secret"
PROXY_TOKEN = "e2e-proxy-token-0123456789abcdef0123"  # a caller token has at least 32 bytes
OPS_TOKEN = "e2e-ops-token"
LEDGER_FAST_ENV = {
    "LEDGER_SWEEP_CRON": "* * * * * *",
    "LEDGER_BACKOFF_SCALE": "0.02",
    "LEDGER_GRACE_SECONDS": "3",
    "LEDGER_CLAIM_LEASE_SECONDS": "10",
    "LEDGER_REQUEUE_LEASE_SECONDS": "5",
    "OPS_TOKEN": OPS_TOKEN,
    # A killed lock holder blocks its entity for one lease: 10 s here (renewed every 3.3 s).
    "LOCK_LEASE_SECONDS": "10",
}


def stack_env(redis_url: str) -> dict[str, str]:
    return {
        "APP_MODE": "sandbox",
        "APP_ENV_FILE": "/nonexistent/.env",
        "REDIS_URL": redis_url,
        # The simulator registers one webhook per event: ids WEBHOOK_ID, WEBHOOK_ID-1, ... (see
        # simulators.sandbox.webhook_specs), each signed with the same secret here.
        "ESPOCRM_WEBHOOK_SECRETS": ",".join(
            [f"{WEBHOOK_ID}:{WEBHOOK_SECRET}"] + [f"{WEBHOOK_ID}-{i}:{WEBHOOK_SECRET}" for i in range(1, len(WEBHOOK_ROUTES))]
        ),
        "ADVOWARE_PROXY_TOKEN": PROXY_TOKEN,
        # Every test of the session calls from 127.0.0.1 (one client address) and the fuzzer sends
        # wrong tokens by the thousand: no failed-authentication limit here (tests/security has its own).
        "ADVOWARE_PROXY_AUTH_FAILURE_LIMIT": "1000000",
        # Several tests expire the Advoware token on purpose, seconds apart: the 401 rule (a token
        # younger than this is kept) stays on, with an interval those tests can wait out.
        "ADVOWARE_TOKEN_MIN_REFRESH_SECONDS": "1",
        "OTEL_LOGS_FLUSH_INTERVAL_MS": "50",
        # The sync ledger, fast: sweep every second, retries in milliseconds, short leases.
        **LEDGER_FAST_ENV,
        # Many tests' deletes share this stack within minutes: the deletion guard's budget is
        # not what they test (tests/reliability/test_no_mass_delete.py runs its own stack at 2).
        "DELETE_GUARD_MAX_PER_HOUR": "1000",
    }


@pytest.fixture(scope="session")
async def stack_and_sims(redis_url: str) -> AsyncIterator[tuple[MotiaTester, Simulators]]:
    env = stack_env(redis_url)
    tester = MotiaTester(ROOT / "src" / "steps", queue_defaults={"backoff_ms": 200}, rest_timeout_ms=30000)
    settings = load_settings({**env})
    # EspoCRM's webhooks reach the engine as they would through deploy/nginx (raw bytes, H1/H2).
    relay = await WebhookRelay(tester.base_url).start()
    sims = await start_simulators(settings, demo=False, engine_url=relay.url, use_configured_ports=False, webhook_retry_interval=0.2)
    tester.env = {**env, **sims.env()}
    await tester.start(wait_functions=1, timeout=60)
    yield tester, sims
    await tester.stop()
    await sims.stop()
    await relay.stop()


@pytest.fixture(scope="session")
async def stack(stack_and_sims: tuple[MotiaTester, Simulators]) -> MotiaTester:
    return stack_and_sims[0]


@pytest.fixture(scope="session")
async def sims(stack_and_sims: tuple[MotiaTester, Simulators]) -> Simulators:
    return stack_and_sims[1]


@pytest.fixture
async def sims_reset(sims: Simulators) -> AsyncIterator[Simulators]:
    """Clear injected faults and request logs of every simulator after the test."""
    yield sims
    async with aiohttp.ClientSession() as s:
        for r in (sims.espocrm, sims.advoware, sims.xai, sims.google):
            async with s.delete(r.url + "/_sim/faults") as resp:
                await resp.read()
