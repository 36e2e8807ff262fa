"""services.platform.locks and services.platform.redis, against a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.clients.errors import LockBusyError, RetryableError, ValidationError
from services.platform.locks import LockBackendError, RedisLock, entity_lock, lock_key
from services.platform.models import EntityType
from services.platform.redis import close_redis, get_redis
from simulators.runner import free_port


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = get_redis(redis_url)
    yield client


def uid() -> str:
    return uuid.uuid4().hex[:12]


# --------------------------------------------------------------------------- keys


def test_lock_key_format() -> None:
    assert lock_key("document_sync", "CDokumente", "abc123") == "document_sync:CDokumente:abc123"
    assert lock_key("beteiligte_sync", EntityType.BETEILIGTE, "b1") == "beteiligte_sync:CBeteiligte:b1"


@pytest.mark.parametrize(
    "parts",
    [("", "CDokumente", "a"), ("s", "", "a"), ("s", "T", ""), ("s:x", "T", "a"), ("s", "T", "a:b"), ("s", "T", "a b"), ("s", "T", None)],
)
def test_lock_key_rejects_ambiguous_parts(parts: tuple) -> None:
    with pytest.raises(ValidationError):
        lock_key(*parts)


# --------------------------------------------------------------------------- redis client


async def test_get_redis_is_cached_per_url(redis_url: str) -> None:
    a = get_redis(redis_url)
    assert get_redis(redis_url) is a
    other = redis_url.rsplit("/", 1)[0] + "/1"
    b = get_redis(other)
    assert b is not a
    assert await b.ping()
    await close_redis(other)
    assert get_redis(other) is not b
    await close_redis(other)


def test_get_redis_is_per_event_loop(redis_url: str) -> None:
    async def grab() -> Any:
        client = get_redis(redis_url)
        assert await client.set(f"loop:{uid()}", b"1", px=1000)
        await close_redis(redis_url)
        return client

    first = asyncio.run(grab())
    second = asyncio.run(grab())
    assert first is not second


async def test_values_are_bytes(r: aioredis.Redis) -> None:
    key = f"bytes:{uid()}"
    await r.set(key, "x", px=1000)
    assert await r.get(key) == b"x"


# --------------------------------------------------------------------------- RedisLock


async def test_acquire_sets_owner_token_with_ttl(r: aioredis.Redis) -> None:
    key = f"t:{uid()}:1"
    lock = RedisLock(r, key, ttl_seconds=30)
    assert await lock.acquire()
    assert lock.acquired and await lock.held()
    assert (await r.get(key)).decode() == lock.owner
    assert 29_000 < await r.pttl(key) <= 30_000
    assert await lock.release()
    assert await r.exists(key) == 0
    assert not await lock.held()


async def test_only_the_owner_releases(r: aioredis.Redis) -> None:
    key = f"t:{uid()}:2"
    holder = RedisLock(r, key, 30, owner="worker-A")
    intruder = RedisLock(r, key, 30, owner="worker-B")
    assert await holder.acquire()
    assert not await intruder.acquire()
    assert not await intruder.release()  # not the owner: nothing deleted
    assert not await intruder.extend(60)
    assert await r.get(key) == b"worker-A"
    assert await holder.release()
    assert not await holder.release()  # second release: already gone
    assert await intruder.acquire()
    assert await r.get(key) == b"worker-B"
    await intruder.release()


async def test_reacquire_by_same_owner_refreshes(r: aioredis.Redis) -> None:
    key = f"t:{uid()}:3"
    lock = RedisLock(r, key, 0.5, owner="me")
    assert await lock.acquire()
    await r.pexpire(key, 50)
    assert await RedisLock(r, key, 5, owner="me").acquire()
    assert await r.pttl(key) > 1000
    await lock.release()


async def test_ttl_expiry_frees_a_dead_holders_lock(r: aioredis.Redis) -> None:
    key = f"t:{uid()}:4"
    dead = RedisLock(r, key, ttl_seconds=0.1)  # a worker that crashes and never releases
    assert await dead.acquire()
    survivor = RedisLock(r, key, ttl_seconds=30)
    assert not await survivor.acquire()
    await asyncio.sleep(0.2)
    assert await survivor.acquire()
    # the dead holder coming back cannot release or extend the new owner's lock
    assert not await dead.release()
    assert not await dead.extend(10)
    assert dead.lost
    assert await survivor.held()
    await survivor.release()


async def test_acquire_with_timeout_waits_for_release(r: aioredis.Redis) -> None:
    key = f"t:{uid()}:5"
    first = RedisLock(r, key, 30)
    second = RedisLock(r, key, 30)
    assert await first.acquire()
    assert not await second.acquire(timeout=0.05, retry_interval=0.01)

    async def release_soon() -> None:
        await asyncio.sleep(0.05)
        await first.release()

    releaser = asyncio.create_task(release_soon())
    assert await second.acquire(timeout=2, retry_interval=0.01)
    await releaser
    await second.release()


async def test_extend_adds_or_replaces_ttl(r: aioredis.Redis) -> None:
    key = f"t:{uid()}:6"
    lock = RedisLock(r, key, ttl_seconds=0.3)
    assert await lock.acquire()
    assert await lock.extend(2)  # adds to what is left
    assert 2000 < await r.pttl(key) <= 2300
    assert await lock.extend(0.5, replace_ttl=True)
    assert 0 < await r.pttl(key) <= 500
    assert await lock.extend(replace_ttl=True)  # default: the lock's own TTL
    assert await r.pttl(key) <= 300
    await asyncio.sleep(0.15)
    assert await lock.extend(1, replace_ttl=True)
    await asyncio.sleep(0.3)  # past the original TTL: still ours thanks to the extension
    assert await lock.held()
    await lock.release()


async def test_fifty_concurrent_contenders_one_holder_at_a_time(r: aioredis.Redis) -> None:
    key = lock_key("document_sync", "CDokumente", uid())
    inside = 0
    max_inside = 0
    done: list[int] = []

    async def contender(n: int) -> None:
        nonlocal inside, max_inside
        lock = RedisLock(r, key, ttl_seconds=10)
        while not await lock.acquire():
            await asyncio.sleep(0.001)
        inside += 1
        max_inside = max(max_inside, inside)
        await asyncio.sleep(0.002)  # hold it across an await so overlaps would show
        inside -= 1
        assert await lock.release()
        done.append(n)

    await asyncio.wait_for(asyncio.gather(*(contender(n) for n in range(50))), timeout=30)
    assert sorted(done) == list(range(50))
    assert max_inside == 1
    assert await r.exists(key) == 0


async def test_redis_down_raises_retryable_backend_error() -> None:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    client = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    lock = RedisLock(client, "x:y:z", 10)
    with pytest.raises(LockBackendError) as info:
        await lock.acquire()
    assert isinstance(info.value, RetryableError)
    await client.aclose()


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RedisLock(None, "a:b:c", 0)


# --------------------------------------------------------------------------- entity_lock


async def test_entity_lock_holds_and_releases(r: aioredis.Redis) -> None:
    entity_id = uid()
    async with entity_lock(r, "document_sync", EntityType.DOKUMENTE, entity_id, ttl=30) as lock:
        assert lock.key == f"document_sync:CDokumente:{entity_id}"
        assert await r.get(lock.key) == lock.owner.encode()
    assert await r.exists(lock.key) == 0


async def test_entity_lock_busy_raises_lock_busy_error(r: aioredis.Redis) -> None:
    entity_id = uid()
    async with entity_lock(r, "document_sync", "CDokumente", entity_id) as held:
        with pytest.raises(LockBusyError) as info:
            async with entity_lock(r, "document_sync", "CDokumente", entity_id):
                pytest.fail("body must not run while the lock is busy")
        assert info.value.key == held.key
        assert info.value.retryable
        # another step or another entity is not blocked
        async with entity_lock(r, "collection_manager", "CDokumente", entity_id):
            pass
        async with entity_lock(r, "document_sync", "CDokumente", uid()):
            pass
        assert await held.held()  # the failed attempt did not release the holder's lock


async def test_entity_lock_released_after_exception(r: aioredis.Redis) -> None:
    entity_id = uid()
    with pytest.raises(RuntimeError, match="boom"):
        async with entity_lock(r, "document_sync", "CDokumente", entity_id) as lock:
            raise RuntimeError("boom")
    assert await r.exists(lock.key) == 0
    async with entity_lock(r, "document_sync", "CDokumente", entity_id):
        pass


async def test_entity_lock_released_after_cancellation(r: aioredis.Redis) -> None:
    entity_id = uid()
    started = asyncio.Event()
    key = lock_key("document_sync", "CDokumente", entity_id)

    async def work() -> None:
        async with entity_lock(r, "document_sync", "CDokumente", entity_id):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(work())
    await started.wait()
    assert await r.exists(key) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await r.exists(key) == 0


async def test_entity_lock_wait(r: aioredis.Redis) -> None:
    entity_id = uid()
    holder = RedisLock(r, lock_key("s", "T", entity_id), 30)
    assert await holder.acquire()

    async def release_soon() -> None:
        await asyncio.sleep(0.05)
        await holder.release()

    releaser = asyncio.create_task(release_soon())
    async with entity_lock(r, "s", "T", entity_id, wait=2):
        pass
    await releaser


async def test_auto_extend_keeps_lock_during_long_work(r: aioredis.Redis) -> None:
    entity_id = uid()
    async with entity_lock(r, "document_sync", "CDokumente", entity_id, ttl=0.3, auto_extend=True) as lock:
        await asyncio.sleep(0.8)  # well past the TTL
        assert await lock.held()
        assert not await RedisLock(r, lock.key, 5).acquire()
    assert await r.exists(lock.key) == 0


async def test_without_auto_extend_the_ttl_runs_out(r: aioredis.Redis) -> None:
    entity_id = uid()
    async with entity_lock(r, "document_sync", "CDokumente", entity_id, ttl=0.1) as lock:
        await asyncio.sleep(0.2)
        assert not await lock.held()
        thief = RedisLock(r, lock.key, 30, owner="thief")
        assert await thief.acquire()
    # the late release did not remove the new owner's lock
    assert await r.get(lock.key) == b"thief"
    await thief.release()


async def test_entity_lock_uses_the_configured_lease(r: aioredis.Redis) -> None:
    """LOCK_LEASE_SECONDS (services.platform.locks.configure_lease) is how long a dead holder blocks."""
    from services.platform import locks

    entity_id = uid()
    try:
        locks.configure_lease(7)
        async with entity_lock(r, "document_sync", EntityType.DOKUMENTE, entity_id, ttl=1800):
            ttl_ms = await r.pttl(lock_key("document_sync", EntityType.DOKUMENTE, entity_id))
            assert 5000 < ttl_ms <= 7000
    finally:
        locks.configure_lease(locks.DEFAULT_LOCK_LEASE_SECONDS)
