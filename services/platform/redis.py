"""Shared asyncio Redis clients: one per URL per event loop.

A `redis.asyncio.Redis` (its connection pool) belongs to the event loop that first used
it, so clients are cached per loop; a new loop (tests, worker restarts) gets fresh ones.
Clients use `decode_responses=False`: values come back as bytes.
"""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as aioredis

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aioredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def get_redis(url: str) -> aioredis.Redis:
    """The cached client for `url` on the running event loop (created lazily; no I/O here).

    Must be called from inside a coroutine (it needs the running loop).
    """
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    client = per_loop.get(url)
    if client is None:
        client = aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30)
        per_loop[url] = client
    return client


async def close_redis(url: str | None = None) -> None:
    """Close the running loop's client for `url`, or all of them when `url` is None."""
    loop = asyncio.get_running_loop()
    per_loop = _clients.get(loop)
    if not per_loop:
        return
    urls = list(per_loop) if url is None else [url]
    for key in urls:
        client = per_loop.pop(key, None)
        if client is not None:
            await client.aclose()
    if not per_loop:
        _clients.pop(loop, None)
