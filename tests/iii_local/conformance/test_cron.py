"""Rows C1-C2: the cron module of engine 0.8.3, through the real motia worker.

Paths are under `engine/src/` of iii-hq/iii at tag iii/v0.8.3; the expression rules are the
`cron` crate 0.15's (zslayton/cron v0.15.0). The steps are in `cron_steps/c1` and
`cron_steps/c2`; a step's condition records the event the engine sends (motia hands the
handler `None`) in a JSON-lines file outside the engine (`queue_steps/deliveries.py`).
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from iii_local.testing import MotiaTester
from tests.iii_local.conformance.queue_steps.deliveries import read

STEPS = Path(__file__).parent / "cron_steps"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
WHOLE_SECOND_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def _away_from_midnight() -> None:
    """The weekday steps compute 'today' when the worker loads them: not across UTC midnight."""
    now = datetime.now(UTC)
    to_midnight = (datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC) - now).total_seconds()
    if to_midnight < 30:
        time.sleep(to_midnight + 1)


async def test_c1_expressions_utc_sunday_is_1_and_runs_are_neither_retried_nor_overlapped(tmp_path: Path) -> None:
    """C1 — modules/cron/structs.rs 69-73 (`parse_cron_expression`: the `cron` crate, 6 or 7
    fields, seconds first), 89-219 (the job loop: next time after now in UTC, the condition and
    the function awaited inline, an error only logged, no retry; event `{trigger: "cron",
    job_id, scheduled_time, actual_time}` in RFC 3339), cron.rs 88-124 (registration); cron
    0.15 src/time_unit/days_of_week.rs (1-7, Sunday = 1) and src/schedule.rs `next_after`
    (day of month AND weekday)."""
    _away_from_midnight()
    log = tmp_path / "deliveries.jsonl"
    t = MotiaTester(STEPS / "c1", env={"CONFORMANCE_LOG": str(log)})
    await t.start(wait_functions=9)  # 7 steps + 2 conditions
    try:
        await asyncio.sleep(7.5)
        fids = {tr["function_id"]: tr for tr in (await t.console("GET", "/_console/functions"))["triggers"] if tr["trigger_type"] == "cron"}
        logs = await t.logs(level="error", wait_for="Invalid cron expression")
    finally:
        await t.stop()

    every = [r["payload"] for r in read(log, "c1.every")]
    assert len(every) >= 5, every
    assert {e["trigger"] for e in every} == {"cron"}
    job_ids = {e["job_id"] for e in every}
    every_trigger = next(tr for fid, tr in fids.items() if "C1 Every Second" in fid)
    assert job_ids == {every_trigger["id"]}, "job_id is the trigger id"
    assert UUID.match(every_trigger["id"]), "the SDK's trigger ids are uuid4s"
    slots = [e["scheduled_time"] for e in every]
    assert all(WHOLE_SECOND_UTC.match(s) for s in slots), slots[:3]
    assert len(set(slots)) == len(slots), "a slot fired twice"
    assert all((_parse(b) - _parse(a)).total_seconds() == 1 for a, b in zip(slots, slots[1:])), slots
    assert all(e["actual_time"].endswith("+00:00") and _parse(e["actual_time"]) >= _parse(e["scheduled_time"]) for e in every)

    assert not read(log, "c1.five"), "a 5-field expression ran"
    assert any("Invalid cron expression '* * * * *'" in r["message"] for r in logs)
    assert not read(log, "c1.past_year"), "the 7th field is not the year"
    assert len(read(log, "c1.weekday")) >= 5, "today's weekday with Sunday = 1 did not fire"
    assert not read(log, "c1.and"), "day of month OR weekday instead of AND"

    failing = [r["scheduled"] for r in read(log, "c1.fail")]
    assert 2 <= len(failing) <= 5, failing
    assert all(_parse(s).second % 2 == 0 for s in failing), "seconds are not the first field"
    assert len(set(failing)) == len(failing), "a failed run was retried"

    starts = [r["t"] for r in read(log, "c1.slow.start")]
    ends = [r["t"] for r in read(log, "c1.slow.end")]
    assert 2 <= len(starts) <= 3, f"{len(starts)} runs of a 2.5 s job in 7.5 s"
    assert all(s >= e for s, e in zip(starts[1:], ends)), "two runs of one job overlapped"


async def test_c2_redis_cron_lock_is_per_trigger_id_so_two_engines_both_fire(tmp_path: Path, redis_url: str) -> None:
    """C2 — modules/cron/adapters/redis_adapter.rs 23-27 (`cron_lock:` prefix, 30 s TTL), 79-107
    (`SET cron_lock:{job id} <instance uuid> NX PX 30000`), 109-139 (released after the run) with
    the job id being the trigger id (structs.rs 131, cron.rs 115-121), which iii-sdk 0.8.3
    makes `str(uuid.uuid4())` per registration (iii/iii.py `register_trigger`). Two engines
    with workers on one Redis each fire every slot; a restarted worker gets a new job id."""
    import redis.asyncio as aioredis

    log = tmp_path / "deliveries.jsonl"
    adapter = {"class": "modules::cron::RedisCronAdapter", "config": {"redis_url": redis_url}}
    a = MotiaTester(STEPS / "c2", env={"CONFORMANCE_LOG": str(log), "CONFORMANCE_ENGINE": "A"}, cron_adapter=adapter)
    b = MotiaTester(STEPS / "c2", env={"CONFORMANCE_LOG": str(log), "CONFORMANCE_ENGINE": "B"}, cron_adapter=adapter)
    r = aioredis.from_url(redis_url, decode_responses=True)
    try:
        await asyncio.gather(a.start(wait_functions=2), b.start(wait_functions=2))
        locks: dict[str, tuple[str, int]] = {}
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            for key in await r.keys("cron_lock:*"):
                value, ttl = await r.get(key), await r.pttl(key)
                if value is not None and ttl > 0:
                    locks[key] = (value, ttl)
            await asyncio.sleep(0.05)
        ticks = read(log, "c2.tick")
        old_job_a = {x["job_id"] for x in ticks if x["engine"] == "A"}
        await a.kill_worker(functions=2)  # the keep-alive wrapper starts a new worker process
        await asyncio.sleep(2.5)
    finally:
        await asyncio.gather(a.stop(), b.stop())
        await r.aclose()

    by_engine: dict[str, set[str]] = {"A": set(), "B": set()}
    job_ids: dict[str, set[str]] = {"A": set(), "B": set()}
    for x in ticks:
        by_engine[x["engine"]].add(x["scheduled"])
        job_ids[x["engine"]].add(x["job_id"])
    both = by_engine["A"] & by_engine["B"]
    assert len(both) >= 2, f"the engines did not both fire the same slots: {by_engine}"
    assert len(job_ids["A"]) == 1 and len(job_ids["B"]) == 1 and job_ids["A"] != job_ids["B"]
    for engine, ids in job_ids.items():
        key = f"cron_lock:{next(iter(ids))}"
        assert key in locks, f"engine {engine} never held {key}: {sorted(locks)}"
        value, ttl = locks[key]
        assert UUID.match(value) and 0 < ttl <= 30_000
    new_job_a = {x["job_id"] for x in read(log, "c2.tick") if x["engine"] == "A"} - old_job_a
    assert len(new_job_a) == 1, "a restarted worker did not register a new trigger id"
