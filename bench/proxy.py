"""Advoware proxy: GET /advoware/proxy through engine + real worker (caller auth, endpoint
validation, cached Advoware token) against the same GET sent straight to the Advoware
simulator with a valid token, in one run.

Reports requests/s and p50/p99 of both and the ratio proxied rps / direct rps.
Uses a private redis-server (token cache) when one is installed, else runs without it.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import closed_loop, emit, session  # noqa: E402

from iii_local.testing import MotiaTester, free_port  # noqa: E402
from services.clients.advoware.api import AdvowareAPI  # noqa: E402
from simulators.advoware import create_app, load_demo_seed  # noqa: E402
from simulators.runner import start_app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROXY_TOKEN = "bench-proxy-token-0123456789abcdef0123"
API_KEY = base64.b64encode(b"sandbox-advoware-secret").decode()
CREDS = {"app_id": "sandbox-app", "kanzlei": "sandbox", "database": "advo", "user": "sandbox", "password": "sandbox"}
ENDPOINT = "api/v1/advonet/Beteiligte"
QUERY = {"take": "10"}


def start_redis() -> tuple[subprocess.Popen[bytes] | None, str]:
    binary = shutil.which("redis-server")
    port = free_port()
    if binary is None:
        return None, f"redis://127.0.0.1:{port}/0"  # nothing listens: the client runs without a cache
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return proc, f"redis://127.0.0.1:{port}/0"


async def main(total: int = 3000, concurrency: int = 32) -> None:
    sim = await start_app(create_app(API_KEY, CREDS["app_id"], CREDS["kanzlei"], CREDS["database"], CREDS["user"],
                                     CREDS["password"], seed=load_demo_seed()))
    redis_proc, redis_url = start_redis()
    tester = MotiaTester(ROOT / "src" / "steps" / "advoware_proxy", rest_timeout_ms=30000)
    tester.env = {
        "APP_MODE": "sandbox",
        "APP_ENV_FILE": "/nonexistent/.env",
        "REDIS_URL": redis_url,
        "ADVOWARE_API_BASE_URL": f"{sim.url}/",
        "ADVOWARE_TOKEN_URL": f"{sim.url}/api/v1/Token",
        "ADVOWARE_PROXY_TOKEN": PROXY_TOKEN,
    }
    direct_client = AdvowareAPI(f"{sim.url}/", f"{sim.url}/api/v1/Token", api_key_b64=API_KEY, **CREDS)
    try:
        await tester.start(wait_functions=4, timeout=60)
        token = await direct_client.get_token()
        async with session() as s:
            proxied_url = tester.base_url + "/advoware/proxy"
            proxied_params = {"endpoint": ENDPOINT, **QUERY}
            proxied_headers = {"Authorization": f"Bearer {PROXY_TOKEN}"}
            direct_url = f"{sim.url}/{ENDPOINT}"
            direct_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

            async def via_proxy() -> int:
                async with s.get(proxied_url, params=proxied_params, headers=proxied_headers) as r:
                    await r.read()
                    return r.status

            async def direct() -> int:
                async with s.get(direct_url, params=QUERY, headers=direct_headers) as r:
                    await r.read()
                    return r.status

            await closed_loop(via_proxy, 300, 8)  # warm-up (token fetch, connections)
            await closed_loop(direct, 300, 8)
            proxied = await closed_loop(via_proxy, total, concurrency)
            straight = await closed_loop(direct, total, concurrency)
        emit("advoware_proxy", {
            "proxied_rps": proxied["rps"],
            "proxied_p50_ms": proxied["p50_ms"],
            "proxied_p99_ms": proxied["p99_ms"],
            "direct_rps": straight["rps"],
            "direct_p50_ms": straight["p50_ms"],
            "direct_p99_ms": straight["p99_ms"],
            "ratio_proxied_to_direct": proxied["rps"] / straight["rps"],
            "errors": proxied["errors"] + straight["errors"],
            "redis_token_cache": redis_proc is not None,
            "target": "baseline: direct GET to the simulator with a valid token",
        })
    finally:
        await direct_client.close()
        await tester.stop()
        await sim.stop()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(5)


if __name__ == "__main__":
    asyncio.run(main())
