"""The operators' endpoints (/ops/...) limit wrong tokens per client address like the Advoware
proxy: a guessing client is refused 429 before any token is compared, even with the right one."""

from __future__ import annotations

import runpy
import time
from pathlib import Path

import pytest

from iii_local.testing import MockRequest, mock_context
from services.platform import container
from services.platform.settings import reset_settings_cache

ROOT = Path(__file__).resolve().parents[2]
OPS_TOKEN = "ops-token-for-the-limit-test-0123456789"


@pytest.fixture
def ops_env(monkeypatch: pytest.MonkeyPatch, redis_url: str):  # type: ignore[no-untyped-def]
    for name, value in {
        "REDIS_URL": redis_url, "APP_MODE": "sandbox", "APP_ENV_FILE": "/nonexistent/.env",
        "OPS_TOKEN": OPS_TOKEN, "ADVOWARE_PROXY_AUTH_FAILURE_LIMIT": "2", "ADVOWARE_PROXY_AUTH_FAILURE_WINDOW_SECONDS": "60",
    }.items():
        monkeypatch.setenv(name, value)
    reset_settings_cache()
    yield
    reset_settings_cache()


@pytest.mark.parametrize("step", ["ledger_ops_api_step.py", "ops_search_api_step.py"])
async def test_wrong_ops_tokens_are_limited_per_address(step: str, ops_env: None) -> None:
    handler = runpy.run_path(str(ROOT / "src" / "steps" / "system" / step))["handler"]
    address = f"203.0.113.{int(time.time() * 1000) % 250}"

    async def call(token: str, addr: str) -> int:
        request = MockRequest(body=None, headers={"authorization": f"Bearer {token}", "x-forwarded-for": addr}, query_params={"q": "x"})
        return int((await handler(request, mock_context("http"))).status)

    try:
        assert [await call("wrong", address) for _ in range(3)] == [401, 401, 429]
        assert await call(OPS_TOKEN, address) == 429, "a limited address is refused before its token is compared"
        other = f"198.51.100.{int(time.time() * 1000) % 250}"
        assert await call(OPS_TOKEN, other) != 429 and await call(OPS_TOKEN, other) != 401
    finally:
        await container.close_all()
