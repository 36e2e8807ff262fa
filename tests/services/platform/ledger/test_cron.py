"""services.platform.ledger.cron: each cron slot runs once across engines (semantics row C2:
iii v0.8.3 engine/src/modules/cron/adapters/redis_adapter.rs 23-27, 79-107 locks per
random trigger id, so every engine fires every slot)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from iii_local.testing import mock_context
from services.platform.ledger.cron import claim_cron_slot, run_once_per_slot, slot_at, validate_expression
from services.platform.redis import get_redis


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    "expression, now, slot",
    [
        ("0 */5 * * * *", "2026-03-01T12:05:00.300", "2026-03-01T12:05:00"),  # at the fire time itself
        ("0 */5 * * * *", "2026-03-01T12:09:59.999", "2026-03-01T12:05:00"),
        ("*/30 * * * * *", "2026-03-01T12:00:29.999", "2026-03-01T12:00:00"),
        ("* * * * * *", "2026-03-01T12:00:07.500", "2026-03-01T12:00:07"),
        ("0 0 */10 * * *", "2026-03-01T00:00:00", "2026-03-01T00:00:00"),
    ],
)
def test_slot_is_the_fire_time_at_or_before_now(expression: str, now: str, slot: str) -> None:
    assert slot_at(expression, datetime.fromtimestamp(ts(now), tz=UTC)) == datetime.fromisoformat(slot).replace(tzinfo=UTC)


@pytest.mark.parametrize("bad", ["* * * * *", "61 * * * * *", "0 */5 * * * * 2026 x", "nonsense"])
def test_expressions_are_six_fields_seconds_first(bad: str) -> None:
    with pytest.raises(ValueError):
        validate_expression(bad)


async def test_two_engines_firing_the_same_slot_run_it_once(redis_url: str) -> None:
    redis, step = get_redis(redis_url), f"step-{uuid.uuid4().hex[:8]}"
    fire = ts("2026-03-01T12:05:00.050")
    claims = await asyncio.gather(*(claim_cron_slot(redis, step, "0 */5 * * * *", now=fire + i * 0.01) for i in range(5)))
    assert sum(c.won for c in claims) == 1
    assert all(c.on_schedule for c in claims) and len({c.key for c in claims}) == 1
    assert claims[0].key == f"cron:{step}:2026-03-01T12:05:00Z"
    ttl = await redis.ttl(claims[0].key)
    assert 60 <= ttl <= 600
    nxt = await claim_cron_slot(redis, step, "0 */5 * * * *", now=ts("2026-03-01T12:10:00.020"))
    assert nxt.won and nxt.key != claims[0].key  # the next slot is free again


async def test_an_off_schedule_run_is_a_manual_trigger_and_runs(redis_url: str) -> None:
    redis, step = get_redis(redis_url), f"step-{uuid.uuid4().hex[:8]}"
    assert (await claim_cron_slot(redis, step, "0 */5 * * * *", now=ts("2026-03-01T12:05:00.100"))).won
    manual = await claim_cron_slot(redis, step, "0 */5 * * * *", now=ts("2026-03-01T12:07:12"))
    assert manual.won and not manual.on_schedule and manual.key is None
    late_twin = await claim_cron_slot(redis, step, "0 */5 * * * *", now=ts("2026-03-01T12:05:20"))
    assert not late_twin.won  # within the tolerance: the same scheduled slot


async def test_run_once_per_slot_logs_the_skip(redis_url: str) -> None:
    redis, step = get_redis(redis_url), f"step-{uuid.uuid4().hex[:8]}"
    first, second = mock_context("cron"), mock_context("cron")
    fire = ts("2026-03-01T12:00:30.010")
    assert await run_once_per_slot(redis, step, "*/30 * * * * *", first, now=fire)
    assert not await run_once_per_slot(redis, step, "*/30 * * * * *", second, now=fire + 0.2)
    assert any("already ran on another engine" in m for m in second.logger.messages("info"))
    assert not any("already ran" in m for m in first.logger.messages())
