"""Each cron slot runs once, however many engines fire it.

The real engine's cron lock is per trigger id, and trigger ids are random per worker
process, so every engine sharing Redis fires every schedule (semantics row C2; iii
v0.8.3 engine/src/modules/cron/adapters/redis_adapter.rs 23-27, 79-107). A cron step
therefore claims its slot itself: `SET cron:{step}:{slot} NX EX ttl`, where the slot is
the expression's scheduled fire time at or before now (motia hands the cron handler
`None`, so the slot is computed from the step's own expression: 6 fields, seconds first,
UTC, row C1). The first engine to claim a slot runs it; the others return at once.

A run that starts long after its slot (more than `tolerance`: half the interval, at most
30 s) was not fired by the schedule but by an operator (the console's "trigger" button,
the iii CLI): it runs without a claim, so a manual trigger is never swallowed by a slot
that already ran. Weekday fields differ between the engine's `cron` crate (Sunday = 1)
and croniter (Sunday = 0); the project's expressions do not use them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter
from redis.exceptions import RedisError

CRON_KEY_PREFIX = "cron"
MAX_TOLERANCE_SECONDS = 30.0


def validate_expression(expression: str) -> str:
    """A 6-field, seconds-first cron expression (ValueError otherwise)."""
    fields = expression.split()
    if len(fields) != 6:
        raise ValueError(f"expected 6 fields (seconds first), got {len(fields)}: {expression!r}")
    if not croniter.is_valid(expression, second_at_beginning=True):
        raise ValueError(f"not a valid cron expression: {expression!r}")
    return expression


def slot_at(expression: str, now: datetime) -> datetime:
    """The scheduled fire time at or before `now` (UTC, whole seconds)."""
    floor = now.astimezone(UTC).replace(microsecond=0)
    return croniter(expression, floor + timedelta(seconds=1), second_at_beginning=True).get_prev(datetime)


def interval_after(expression: str, slot: datetime) -> float:
    """Seconds from `slot` to the next fire time."""
    nxt = croniter(expression, slot, second_at_beginning=True).get_next(datetime)
    return (nxt - slot).total_seconds()


@dataclass(frozen=True)
class SlotClaim:
    step: str
    slot: datetime
    key: str | None
    """None for an off-schedule (manual) run."""
    won: bool
    on_schedule: bool

    def log_data(self) -> dict[str, Any]:
        return {"step": self.step, "slot": self.slot.isoformat(), "on_schedule": self.on_schedule, "won": self.won}


async def claim_cron_slot(
    redis: Any, step: str, expression: str, *, now: float | None = None, prefix: str = CRON_KEY_PREFIX
) -> SlotClaim:
    """Claim this run's slot; `won=False` means another engine already ran it (return at once).

    Raises RedisError when Redis is down (the step fails; the next slot tries again)."""
    at = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    slot = slot_at(expression, at)
    interval = interval_after(expression, slot)
    tolerance = min(MAX_TOLERANCE_SECONDS, interval / 2)
    if (at - slot).total_seconds() > tolerance:
        return SlotClaim(step, slot, None, True, False)
    key = f"{prefix}:{step}:{slot.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    ttl = int(min(86400, max(60, 2 * interval)))
    won = bool(await redis.set(key, f"{time.time():.3f}", nx=True, ex=ttl))
    return SlotClaim(step, slot, key, won, True)


async def run_once_per_slot(redis: Any, step: str, expression: str, ctx: Any, *, now: float | None = None) -> bool:
    """The cron steps' guard: True when this engine should run the slot (logs either way)."""
    try:
        claim = await claim_cron_slot(redis, step, expression, now=now)
    except RedisError as exc:
        ctx.logger.warn(f"cron {step}: could not claim the slot, running anyway: {exc}", {"step": step})
        return True
    if not claim.won:
        ctx.logger.info(f"cron {step}: slot {claim.slot.isoformat()} already ran on another engine", claim.log_data())
        return False
    if not claim.on_schedule:
        ctx.logger.info(f"cron {step}: off-schedule run (manual trigger)", claim.log_data())
    return True
