"""services.platform.ledger.glue: run_marked, mark_and_enqueue, sweep, with mock_context() and real Redis."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis

from iii_local.testing import mock_context
from services.clients.errors import ApiError, LockBusyError, ValidationError
from services.platform.ledger import (
    Claim,
    Ledger,
    LedgerError,
    RunOutcome,
    SyncKind,
    glue,
    mark_and_enqueue,
    read_tag,
    run_marked,
    sweep,
    tag_event,
)
from services.platform.locks import entity_lock
from services.platform.redis import get_redis
from simulators.runner import free_port

DOC = SyncKind.DOCUMENT
TOPIC = "vmh.document.update"


def new_ledger(redis_url: str, **kw: Any) -> Ledger:
    opts: dict[str, Any] = {"grace": 5.0, "backoff_scale": 0.01, "claim_lease": 5.0, "requeue_lease": 5.0}
    opts.update(kw)
    return Ledger(get_redis(redis_url), prefix=f"g-{uuid.uuid4().hex[:10]}", **opts)


def event(entity_id: str, **extra: Any) -> dict[str, Any]:
    return {"topic": TOPIC, "data": {"entity_type": "CDokumente", "entity_id": entity_id, "action": "update", **extra}}


class Recorder:
    """A work function that records its calls and does what it is told."""

    def __init__(self, result: Any = None, error: BaseException | None = None, delay: float = 0.0) -> None:
        self.calls: list[Claim] = []
        self.result = result
        self.error = error
        self.delay = delay
        self.cancelled = False

    async def __call__(self, claim: Claim) -> Any:
        self.calls.append(claim)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return self.result


class DeadHook:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def __call__(self, claim: Claim, error: str, ctx: Any) -> None:
        self.calls.append((claim.entity_id, error))


async def test_untagged_event_is_adopted_and_run(redis_url: str) -> None:
    ledger, ctx, work = new_ledger(redis_url), mock_context(), Recorder()
    report = await run_marked(ledger, DOC, "d1", event("d1", reason="iii-cli"), ctx, work)
    assert report.outcome is RunOutcome.DONE
    assert [c.data["reason"] for c in work.calls] == ["iii-cli"]
    assert await ledger.get(DOC, "d1") is None
    assert any("adopted" in m for m in ctx.logger.messages("info"))


async def test_tagged_event_whose_mark_is_gone_is_a_cheap_no_op(redis_url: str) -> None:
    ledger, ctx, work = new_ledger(redis_url), mock_context(), Recorder()
    done = await ledger.mark(DOC, "d2", TOPIC, event("d2")["data"])
    claim = await ledger.begin(DOC, "d2")
    assert claim is not None and (await ledger.complete(claim)).outcome.value == "done"
    stale = done.event()  # a duplicate delivery of an event whose work is done
    report = await run_marked(ledger, DOC, "d2", stale, ctx, work)
    assert report.outcome is RunOutcome.NOTHING and report.detail == "none"
    assert work.calls == [] and await ledger.get(DOC, "d2") is None


async def test_runs_the_marks_latest_payload_not_the_events(redis_url: str) -> None:
    ledger, ctx, work = new_ledger(redis_url), mock_context(), Recorder()
    first = await ledger.mark(DOC, "d3", TOPIC, event("d3", reason="first")["data"])
    await ledger.mark(DOC, "d3", "vmh.document.delete", {**event("d3")["data"], "action": "delete"})
    report = await run_marked(ledger, DOC, "d3", first.event(), ctx, work)
    assert report.outcome is RunOutcome.DONE
    assert [(c.topic, c.data["action"]) for c in work.calls] == [("vmh.document.delete", "delete")]


async def test_follow_ups_are_marked_then_enqueued_tagged(redis_url: str) -> None:
    ledger, ctx = new_ledger(redis_url), mock_context()
    follow = {"topic": "vmh.collection.ensure", "data": {"entity_type": "Raeumungsklage", "entity_id": "rk1", "action": "update"}}
    report = await run_marked(ledger, DOC, "d4", event("d4"), ctx, Recorder(result=[follow]))
    assert report.outcome is RunOutcome.DONE and report.follow_ups == 1
    (sent,) = ctx.enqueued
    assert sent["topic"] == "vmh.collection.ensure" and read_tag(sent["data"])[0] is SyncKind.COLLECTION  # type: ignore[index]
    info = await ledger.get(SyncKind.COLLECTION, "Raeumungsklage:rk1")
    assert info is not None and info.seq == sent["data"]["ledger"]["seq"]


async def test_follow_up_enqueue_failure_is_logged_and_left_to_the_sweeper(redis_url: str) -> None:
    ledger = new_ledger(redis_url, grace=0.0)
    ctx = mock_context(fail_enqueue=RuntimeError("engine gone"))
    follow = {"topic": TOPIC, "data": event("d5b")["data"]}
    report = await run_marked(ledger, DOC, "d5", event("d5"), ctx, Recorder(result=[follow]))
    assert report.outcome is RunOutcome.DONE and report.follow_ups == 0
    assert any("sweeper will deliver" in m for m in ctx.logger.messages("warn"))
    later = mock_context()
    assert await sweep(ledger, later, batch=10) == 1
    assert [e["data"]["entity_id"] for e in later.enqueued] == ["d5b"]


async def test_webhook_during_the_run_is_re_enqueued_at_once(redis_url: str) -> None:
    ledger, ctx = new_ledger(redis_url), mock_context()

    async def work(claim: Claim) -> None:
        await ledger.mark(DOC, "d6", TOPIC, event("d6", reason="during")["data"])

    report = await run_marked(ledger, DOC, "d6", event("d6"), ctx, work)
    assert report.outcome is RunOutcome.MOVED
    (again,) = ctx.enqueued
    assert again["data"]["reason"] == "during" and read_tag(again["data"])[1] > report.seq  # type: ignore[index,operator]
    ctx2, work2 = mock_context(), Recorder()
    assert (await run_marked(ledger, DOC, "d6", again, ctx2, work2)).outcome is RunOutcome.DONE
    assert await ledger.get(DOC, "d6") is None


async def test_time_box_cancels_a_hung_run_and_reschedules(redis_url: str) -> None:
    ledger = new_ledger(redis_url, time_box_scale=0.2 / 900)  # documents: 0.2 s
    ctx, work = mock_context(), Recorder(delay=30)
    started = asyncio.get_running_loop().time()
    report = await run_marked(ledger, DOC, "d7", event("d7"), ctx, work)
    assert asyncio.get_running_loop().time() - started < 5
    assert report.outcome is RunOutcome.RETRY and work.cancelled and "time-box" in (report.error or "")
    info = await ledger.get(DOC, "d7")
    assert info is not None and info.state == "retrying" and info.attempts == 1 and not info.in_flight


@pytest.mark.parametrize(
    "error",
    [ApiError("xai", 503, "down"), ApiError("xai", 429), ConnectionResetError("reset"), ValueError("a bug")],
    ids=["503", "429", "network", "unknown-bug"],
)
async def test_retryable_and_unknown_errors_reschedule(redis_url: str, error: BaseException) -> None:
    ledger, ctx, hook = new_ledger(redis_url), mock_context(), DeadHook()
    report = await run_marked(ledger, DOC, "d8", event("d8"), ctx, Recorder(error=error), on_dead=hook)
    assert report.outcome is RunOutcome.RETRY and report.attempt == 1 and report.delay is not None
    info = await ledger.get(DOC, "d8")
    assert info is not None and info.state == "retrying" and type(error).__name__ in info.last_error
    assert hook.calls == []
    assert any("retry in" in m for m in ctx.logger.messages("warn"))


async def test_permanent_error_dead_letters_and_calls_on_dead(redis_url: str) -> None:
    ledger, ctx, hook = new_ledger(redis_url), mock_context(), DeadHook()
    report = await run_marked(ledger, DOC, "d9", event("d9"), ctx, Recorder(error=ApiError("xai", 400, "unsupported file")), on_dead=hook)
    assert report.outcome is RunOutcome.DEAD
    assert hook.calls and hook.calls[0][0] == "d9" and "400" in hook.calls[0][1]
    (dead,) = await ledger.dead(DOC)
    assert dead.entity_id == "d9" and "400" in dead.last_error
    assert any("gave up" in m for m in ctx.logger.messages("error"))


async def test_exhausted_budget_dead_letters_once(redis_url: str) -> None:
    ledger, hook = new_ledger(redis_url, backoff_scale=0.0001), DeadHook()
    budget = ledger.policy(DOC).max_attempts
    first = await ledger.mark(DOC, "d10", TOPIC, event("d10")["data"])
    outcomes = []
    for _ in range(budget + 2):  # the sweeper's tagged events, again and again
        report = await run_marked(ledger, DOC, "d10", first.event(), mock_context(), Recorder(error=ApiError("xai", 500)), on_dead=hook)
        outcomes.append(report.outcome)
    assert outcomes == [RunOutcome.RETRY] * (budget - 1) + [RunOutcome.DEAD] + [RunOutcome.NOTHING] * 2
    assert len(hook.calls) == 1 and f"after {budget} attempt" in hook.calls[0][1]


async def test_a_failing_on_dead_hook_never_raises(redis_url: str) -> None:
    async def broken(claim: Claim, error: str, ctx: Any) -> None:
        raise ApiError("espocrm", 500)

    ledger, ctx = new_ledger(redis_url), mock_context()
    report = await run_marked(ledger, DOC, "d11", event("d11"), ctx, Recorder(error=ValidationError("bad")), on_dead=broken)
    assert report.outcome is RunOutcome.DEAD
    assert any("could not record the failure" in m for m in ctx.logger.messages("error"))


async def test_lock_busy_counts_no_attempt(redis_url: str) -> None:
    ledger, redis = new_ledger(redis_url), get_redis(redis_url)
    lock_id = uuid.uuid4().hex[:8]

    async def work(claim: Claim) -> None:
        async with entity_lock(redis, "document_sync", "CDokumente", lock_id, 60):
            pass

    async with entity_lock(redis, "document_sync", "CDokumente", lock_id, 60):
        for _ in range(3):
            report = await run_marked(ledger, DOC, "d12", event("d12"), mock_context(), work)
            assert report.outcome is RunOutcome.BUSY
    info = await ledger.get(DOC, "d12")
    assert info is not None and info.attempts == 0 and info.busy == 3 and info.state == "pending"
    assert (await run_marked(ledger, DOC, "d12", event("d12"), mock_context(), work)).outcome is RunOutcome.DONE


async def test_lock_busy_error_raised_directly_is_busy_too(redis_url: str) -> None:
    ledger = new_ledger(redis_url)
    report = await run_marked(ledger, DOC, "d13", event("d13"), mock_context(), Recorder(error=LockBusyError("document_sync:CDokumente:d13")))
    assert report.outcome is RunOutcome.BUSY


async def test_the_claim_stays_alive_while_a_long_run_works(redis_url: str) -> None:
    ledger = new_ledger(redis_url, claim_lease=0.3)
    ctx = mock_context()
    task = asyncio.create_task(run_marked(ledger, DOC, "d14", event("d14"), ctx, Recorder(delay=1.2)))
    await asyncio.sleep(0.8)  # well past one lease: renewed, so nobody else may take it
    other = await run_marked(ledger, DOC, "d14", event("d14"), mock_context(), Recorder())
    assert other.outcome is RunOutcome.NOTHING and other.detail == "inflight"
    assert await ledger.due_batch(10) == []
    assert (await task).outcome in (RunOutcome.DONE, RunOutcome.MOVED)


async def test_concurrency_limit_per_kind(redis_url: str) -> None:
    ledger = new_ledger(redis_url)
    kind = SyncKind.CALENDAR_EMPLOYEE
    running, peak = 0, 0

    async def work(claim: Claim) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    reports = await asyncio.gather(*(
        run_marked(ledger, kind, f"K{i}", {"topic": "calendar.sync.employee", "data": {"kuerzel": f"K{i}"}}, mock_context(), work)
        for i in range(6)
    ))
    assert all(r.outcome is RunOutcome.DONE for r in reports)
    assert peak == ledger.policy(kind).concurrency == 2


async def test_ledger_failure_raises_for_the_engines_last_resort(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(glue, "REDIS_PATIENCE_SECONDS", 0.5)
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    ledger = Ledger(dead, prefix="down")
    started = asyncio.get_running_loop().time()
    with pytest.raises(LedgerError):
        await run_marked(ledger, DOC, "d15", event("d15"), mock_context(), Recorder())
    assert asyncio.get_running_loop().time() - started >= 0.3  # it was patient first
    await dead.aclose()


async def test_a_short_redis_outage_is_waited_out(redis_url: str) -> None:
    ledger = new_ledger(redis_url)
    real_begin = ledger.begin_result
    failures = [LedgerError("down"), LedgerError("still down")]

    async def flaky_begin(*args: Any, **kw: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return await real_begin(*args, **kw)

    ledger.begin_result = flaky_begin  # type: ignore[method-assign]
    work = Recorder()
    report = await run_marked(ledger, DOC, "d16", event("d16"), mock_context(), work)
    assert report.outcome is RunOutcome.DONE and len(work.calls) == 1 and failures == []


async def test_a_mark_lost_by_redis_is_adopted_not_skipped(redis_url: str) -> None:
    """Redis restarted without its data: the queued event's tag is newer than the ledger's
    counter, so "no mark" cannot mean "done"; the event is adopted and run."""
    ledger = new_ledger(redis_url)
    marked = await ledger.mark(DOC, "d17", TOPIC, event("d17")["data"])
    keys = [k async for k in ledger.redis.scan_iter(match=f"{ledger.prefix}:*")]
    await ledger.redis.delete(*keys)  # the data loss
    ctx, work = mock_context(), Recorder()
    report = await run_marked(ledger, DOC, "d17", marked.event(), ctx, work)
    assert report.outcome is RunOutcome.DONE and len(work.calls) == 1
    assert any("adopted a lost" in m for m in ctx.logger.messages("warn"))
    # while an event older than the counter with no mark stays a cheap no-op
    await ledger.mark(DOC, "other", TOPIC, event("other")["data"])
    old = tag_event(TOPIC, event("d18")["data"], DOC, 1)
    assert (await run_marked(ledger, DOC, "d18", old, mock_context(), Recorder())).outcome is RunOutcome.NOTHING


async def test_mark_and_enqueue_and_sweep(redis_url: str) -> None:
    ledger = new_ledger(redis_url, grace=0.0, requeue_lease=60)
    ctx = mock_context()
    marks = await mark_and_enqueue(ledger, ctx, [event(f"s{i}") for i in range(5)])
    assert [m.entity_id for m in marks] == [f"s{i}" for i in range(5)]
    assert [read_tag(e["data"]) for e in ctx.enqueued] == [(DOC, m.seq) for m in marks]
    swept = mock_context()
    assert await sweep(ledger, swept, batch=2, max_batches=2) == 4  # bounded: 2 × 2
    assert await sweep(ledger, swept, batch=2, max_batches=2) == 1
    assert await sweep(ledger, swept, batch=2, max_batches=2) == 0  # leased: not again
    assert sorted(e["data"]["entity_id"] for e in swept.enqueued) == [f"s{i}" for i in range(5)]


async def test_the_entity_lock_lease_keeps_renewing_while_a_long_run_works(redis_url: str) -> None:
    """services.platform.locks.entity_lock renews its short lease (here 0.3 s) while run_marked's work
    runs far longer: another run meanwhile finds the lock busy, and it is free afterwards."""
    ledger, redis = new_ledger(redis_url), get_redis(redis_url)
    lock_id = uuid.uuid4().hex[:8]
    seen: list[int] = []

    async def long_work(claim: Claim) -> None:
        async with entity_lock(redis, "document_sync", "CDokumente", lock_id, 30, lease=0.3):
            for _ in range(4):
                await asyncio.sleep(0.3)
                seen.append(int(await redis.pttl(f"document_sync:CDokumente:{lock_id}")))

    async def short_work(claim: Claim) -> None:
        async with entity_lock(redis, "document_sync", "CDokumente", lock_id, 30, lease=0.3):
            pass

    task = asyncio.create_task(run_marked(ledger, DOC, "d19", event("d19"), mock_context(), long_work))
    await asyncio.sleep(0.7)  # more than two leases into the run
    assert (await run_marked(ledger, DOC, "d20", event("d20"), mock_context(), short_work)).outcome is RunOutcome.BUSY
    assert (await task).outcome is RunOutcome.DONE
    assert len(seen) == 4 and all(ttl > 0 for ttl in seen), seen
    assert await redis.exists(f"document_sync:CDokumente:{lock_id}") == 0
