"""Production-like pacing of the simulators (simulators.pacing): a latency profile with a
size-proportional term, and xAI's rate limit as a token bucket per key answering 429."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from simulators.base import SimulatorState, make_app
from simulators.pacing import LatencyProfile, RateLimit
from simulators.runner import RunningApp, start_app
from simulators.xai import create_app
from tests.simulators.http_status import status

API_KEY = "xai-test-key"
MGMT_KEY = "xai-token-mgmt"
API = {"Authorization": f"Bearer {API_KEY}"}
MGMT = {"Authorization": f"Bearer {MGMT_KEY}"}
MIB = 1024 * 1024


@pytest.fixture
async def xai() -> AsyncIterator[RunningApp]:
    running = await start_app(create_app(API_KEY, MGMT_KEY))
    yield running
    await running.stop()


async def timed(request: Any) -> tuple[int, float, aiohttp.ClientResponse]:
    t0 = time.perf_counter()
    async with request as resp:
        await resp.read()
        return resp.status, time.perf_counter() - t0, resp


async def log(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/_sim/requests") as resp:
        return list(await resp.json())


async def upload(http: aiohttp.ClientSession, url: str, content: bytes) -> tuple[int, float]:
    form = aiohttp.FormData()
    form.add_field("file", content, filename="a.bin", content_type="application/octet-stream")
    code, took, _ = await timed(http.post(f"{url}/v1/files", data=form, headers=API))
    return code, took


# -- latency ---------------------------------------------------------------------------------


async def test_no_latency_by_default(xai: RunningApp, http: aiohttp.ClientSession) -> None:
    code, took, _ = await timed(http.get(f"{xai.url}/v1/files", headers=API))
    assert code == 200 and took < 0.05
    assert (await log(http, xai.url))[0]["latency_ms"] == 0


async def test_base_latency_and_route_override(xai: RunningApp, http: aiohttp.ClientSession) -> None:
    profile = {"base_ms": 120, "routes": [{"method": "GET", "path": "^/v1/collections$", "base_ms": 40}]}
    async with http.put(f"{xai.url}/_sim/latency", json=profile) as resp:
        assert resp.status == 200
        assert (await resp.json())["routes"][0]["base_ms"] == 40
    code, took_files, _ = await timed(http.get(f"{xai.url}/v1/files", headers=API))
    assert code == 200 and 0.12 <= took_files < 0.3
    code, took_cols, _ = await timed(http.get(f"{xai.url}/v1/collections", headers=MGMT))
    assert code == 200 and 0.04 <= took_cols < 0.1
    # The admin API is never slowed.
    _, took_admin, _ = await timed(http.get(f"{xai.url}/_sim/latency"))
    assert took_admin < 0.04
    assert [r["latency_ms"] for r in await log(http, xai.url)] == [120, 40]
    assert await status(http.delete(f"{xai.url}/_sim/latency")) == 200
    _, took, _ = await timed(http.get(f"{xai.url}/v1/files", headers=API))
    assert took < 0.05


async def test_upload_latency_grows_with_size(xai: RunningApp, http: aiohttp.ClientSession) -> None:
    profile = {"base_ms": 10, "routes": [{"method": "POST", "path": "^/v1/files$", "base_ms": 50, "per_mib_ms": 200}]}
    assert await status(http.put(f"{xai.url}/_sim/latency", json=profile)) == 200
    code, small = await upload(http, xai.url, b"x" * 1024)
    assert code == 200
    code, big = await upload(http, xai.url, b"y" * (2 * MIB))
    assert code == 200
    assert 0.05 <= small < 0.15
    assert big >= 0.05 + 0.4, f"2 MiB at 200 ms/MiB must add 400 ms, took {big:.3f}s"
    rows = await log(http, xai.url)
    assert rows[1]["bytes"] > 2 * MIB and rows[1]["latency_ms"] == pytest.approx(50 + 200 * rows[1]["bytes"] / MIB)
    assert rows[0]["latency_ms"] < 51


async def test_response_body_counts_toward_size_latency(http: aiohttp.ClientSession) -> None:
    """A download answered whole (EspoCRM's attachment file) is slowed by its size too."""
    from aiohttp import web

    state = SimulatorState()
    app = make_app(state)

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * MIB)

    app.router.add_get("/blob", blob)
    running = await start_app(app)
    try:
        state.pacing.latency = LatencyProfile(per_mib_ms=300)
        code, took, _ = await timed(http.get(f"{running.url}/blob"))
        assert code == 200 and took >= 0.3
        assert (await log(http, running.url))[0]["bytes"] == MIB
    finally:
        await running.stop()


async def test_fault_latency_adds_to_the_profile(xai: RunningApp, http: aiohttp.ClientSession) -> None:
    assert await status(http.put(f"{xai.url}/_sim/latency", json={"base_ms": 30})) == 200
    assert await status(http.post(f"{xai.url}/_sim/faults", json={"path": "^/v1/files$", "status": 0, "latency_ms": 50})) == 200
    code, took, _ = await timed(http.get(f"{xai.url}/v1/files", headers=API))
    assert code == 200 and took >= 0.08
    assert (await log(http, xai.url))[0]["latency_ms"] == 80


@pytest.mark.parametrize("spec", [{"base_ms": -1}, {"routes": [{"path": "("}]}, {"routes": [{"speed": 1}]}, [1]])
async def test_bad_latency_profile_is_400(xai: RunningApp, http: aiohttp.ClientSession, spec: Any) -> None:
    assert await status(http.put(f"{xai.url}/_sim/latency", json=spec)) == 400


async def test_reset_drops_pacing(xai: RunningApp, http: aiohttp.ClientSession) -> None:
    assert await status(http.put(f"{xai.url}/_sim/latency", json={"base_ms": 500})) == 200
    assert await status(http.put(f"{xai.url}/_sim/rate-limit", json={"rate": 1, "burst": 1})) == 200
    assert await status(http.post(f"{xai.url}/_sim/reset", json={})) == 200
    async with http.get(f"{xai.url}/_sim/latency") as resp:
        assert (await resp.json())["base_ms"] == 0
    async with http.get(f"{xai.url}/_sim/rate-limit") as resp:
        assert await resp.json() is None


# -- rate limit ------------------------------------------------------------------------------


async def test_rate_limit_is_off_by_default(xai: RunningApp, http: aiohttp.ClientSession) -> None:
    codes = [await status(http.get(f"{xai.url}/v1/files", headers=API)) for _ in range(50)]
    assert set(codes) == {200}


async def test_token_bucket_per_key_answers_429_in_xai_shape(xai: RunningApp, http: aiohttp.ClientSession) -> None:
    spec = {"rate": 5, "burst": 3, "retry_after_share": 1.0}
    assert await status(http.put(f"{xai.url}/_sim/rate-limit", json=spec)) == 200
    codes = [await status(http.get(f"{xai.url}/v1/files", headers=API)) for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    # The management key has its own bucket.
    assert await status(http.get(f"{xai.url}/v1/collections", headers=MGMT)) == 200
    async with http.get(f"{xai.url}/v1/files", headers=API) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "1"
        assert (await resp.json())["code"] == "ResourceExhausted"
    async with http.get(f"{xai.url}/_sim/rate-limit") as resp:
        assert (await resp.json())["limited"] == 3
    # Refilled at `rate` tokens a second: after 0.25 s one more request passes.
    await asyncio.sleep(0.25)
    assert await status(http.get(f"{xai.url}/v1/files", headers=API)) == 200
    statuses = [r["status"] for r in await log(http, xai.url) if r["path"] == "/v1/files"]
    assert statuses == [200, 200, 200, 429, 429, 429, 200]


async def test_retry_after_on_a_share_of_429s(xai: RunningApp, http: aiohttp.ClientSession) -> None:
    spec = {"rate": 0.01, "burst": 1, "retry_after_share": 0.5, "path": "^/v1/files$"}
    assert await status(http.put(f"{xai.url}/_sim/rate-limit", json=spec)) == 200
    headers = []
    for _ in range(7):
        async with http.get(f"{xai.url}/v1/files", headers=API) as resp:
            headers.append((resp.status, resp.headers.get("Retry-After")))
    assert headers[0] == (200, None)
    assert [h[0] for h in headers[1:]] == [429] * 6
    with_header = [h[1] for h in headers[1:] if h[1] is not None]
    assert len(with_header) == 3 and all(int(v) >= 90 for v in with_header), headers
    # Paths outside the limit's regex are never limited.
    assert await status(http.get(f"{xai.url}/v1/collections", headers=MGMT)) == 200


def test_bucket_refills_at_rate_and_caps_at_burst() -> None:
    now = [0.0]
    limit = RateLimit(rate=2, burst=2, clock=lambda: now[0])
    assert [limit.take("k", "GET", "/x") for _ in range(2)] == [None, None]
    assert limit.take("k", "GET", "/x") == pytest.approx(0.5)
    now[0] = 0.5
    assert limit.take("k", "GET", "/x") is None
    now[0] = 100.0  # a long pause saves at most `burst` tokens
    assert [limit.take("k", "GET", "/x") for _ in range(3)][-1] == pytest.approx(0.5)
    assert limit.take("other", "GET", "/x") is None


@pytest.mark.parametrize("spec", [{"rate": 0, "burst": 1}, {"rate": 1, "burst": 0}, {"rate": 1, "burst": 1, "retry_after_share": 2},
                                  {"rate": 1}, {"rate": 1, "burst": 1, "colour": "red"}])
async def test_bad_rate_limit_is_400(xai: RunningApp, http: aiohttp.ClientSession, spec: dict[str, Any]) -> None:
    assert await status(http.put(f"{xai.url}/_sim/rate-limit", json=spec)) == 400
