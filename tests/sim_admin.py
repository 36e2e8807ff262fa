"""The simulators' shared admin API (`/_sim/...`, simulators/base.py) as seen from the
client tests: faults, the request log, token revocation."""

from __future__ import annotations

from typing import Any

import aiohttp

from simulators.runner import RunningApp


async def sim_admin(sim: RunningApp, method: str, path: str, json: Any = None, params: Any = None) -> Any:
    """`{method} /_sim/{path}` on a running simulator; its JSON answer."""
    async with aiohttp.ClientSession() as s:
        async with s.request(method, f"{sim.url}/_sim/{path}", json=json, params=params) as resp:
            return await resp.json()


async def request_statuses(sim: RunningApp, path_re: str, method: str) -> list[int]:
    """The statuses the simulator answered to the logged requests matching `path_re` and
    `method` (`*`: any), oldest first."""
    return [r["status"] for r in await sim_admin(sim, "GET", "requests", params={"path": path_re, "method": method})]
