"""A lock holder that dies (SIGKILL) keeps the lock until its TTL, and nobody else enters
or releases it meanwhile; then the lock frees by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import redis.asyncio as aioredis

from services.platform.locks import RedisLock, lock_key

ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    import redis.asyncio as aioredis
    from services.platform.locks import RedisLock

    async def main():
        r = aioredis.from_url(sys.argv[1])
        lock = RedisLock(r, sys.argv[2], ttl_seconds=float(sys.argv[3]))
        assert await lock.acquire()
        print("held", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_killed_holder_lock_frees_at_ttl(redis_url: str) -> None:
    key = lock_key("document_sync", "CDokumente", f"killed{os.getpid()}")
    ttl = 2.0
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url, key, str(ttl)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"held"
    killed_at = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    r = aioredis.from_url(redis_url)
    try:
        other = RedisLock(r, key, ttl_seconds=60)
        assert not await other.acquire(), "entered while the dead holder's lock was live"
        assert not await other.release(), "a non-owner released the lock"
        assert await r.exists(key)
        while not await other.acquire():
            assert time.monotonic() - killed_at < ttl + 2, "lock did not free at its TTL"
            await asyncio.sleep(0.05)
        assert time.monotonic() - killed_at >= ttl - 0.5
        assert await other.release()
    finally:
        await r.aclose()


LEASE_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    import redis.asyncio as aioredis
    from services.platform.locks import entity_lock

    async def main():
        r = aioredis.from_url(sys.argv[1])
        async with entity_lock(r, "document_sync", "CDokumente", sys.argv[2], ttl=1800, lease=float(sys.argv[3])):
            print("held", flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_killed_entity_lock_holder_frees_within_its_lease(redis_url: str) -> None:
    """entity_lock's lease: a killed worker blocks the entity for one lease, not 30 minutes."""
    entity = f"lease{os.getpid()}"
    lease = 1.5
    proc = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, redis_url, entity, str(lease)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"held"
    await asyncio.sleep(lease * 1.5)  # renewed while alive: still held after one lease
    r = aioredis.from_url(redis_url)
    key = lock_key("document_sync", "CDokumente", entity)
    try:
        assert await r.exists(key), "a live holder lost its lock after one lease"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.monotonic()
        other = RedisLock(r, key, ttl_seconds=60)
        while not await other.acquire():
            assert time.monotonic() - killed_at < lease + 1, "the dead holder's lease was not honoured"
            await asyncio.sleep(0.05)
        await other.release()
    finally:
        await r.aclose()


async def test_live_holder_keeps_lock_at_most_the_ttl(redis_url: str) -> None:
    from services.platform.locks import entity_lock

    r = aioredis.from_url(redis_url)
    entity = f"maxhold{os.getpid()}"
    key = lock_key("document_sync", "CDokumente", entity)
    try:
        async with entity_lock(r, "document_sync", "CDokumente", entity, ttl=2.0, lease=0.6):
            await asyncio.sleep(1.5)
            assert await r.exists(key), "renewal stopped before the maximum hold"
            await asyncio.sleep(1.6)
            assert not await r.exists(key), "the lock outlived its maximum hold"
    finally:
        await r.aclose()
