"""The simulator tests' one-line status check: most of their requests only assert the answer's status."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import aiohttp


async def status(request: AbstractAsyncContextManager[aiohttp.ClientResponse]) -> int:
    """Send `request` (an unentered `session.get(...)` and the like) and return its HTTP status.

    The response is released on the way out, as the `async with` it replaces did.
    """
    async with request as resp:
        return resp.status
