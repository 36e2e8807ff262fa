"""services.platform.ledger.store (the sync ledger) against the session's real redis-server.

Each test uses its own key prefix and a hand-driven clock, so timing is exact."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from services.platform.ledger import (
    POLICIES,
    BeginOutcome,
    CompleteOutcome,
    FailOutcome,
    Ledger,
    LedgerError,
    MarkOutcome,
    Once,
    OnceHeld,
    SyncKind,
    kind_for_topic,
    read_tag,
    tag_event,
    untagged,
)
from services.platform.redis import get_redis
from simulators.runner import free_port

DOC = SyncKind.DOCUMENT
T_CREATE, T_UPDATE = "vmh.document.create", "vmh.document.update"


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make_ledger(redis: Any, clock: Clock, **kw: Any) -> Ledger:
    opts: dict[str, Any] = {"grace": 10.0, "claim_lease": 60.0, "requeue_lease": 30.0, "rnd": lambda: 1.0}
    opts.update(kw)
    return Ledger(redis, prefix=f"t-{uuid.uuid4().hex[:10]}", clock=clock, **opts)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ledger(redis_url: str, clock: Clock) -> AsyncIterator[Ledger]:
    yield make_ledger(get_redis(redis_url), clock)


def doc(entity_id: str, action: str = "update", **extra: Any) -> dict[str, Any]:
    return {"entity_type": "CDokumente", "entity_id": entity_id, "action": action, **extra}


async def due_ids(ledger: Ledger) -> list[str]:
    return [m.entity_id for m in await ledger.due_batch(1000)]


# --------------------------------------------------------------------------- tags, policies


def test_tag_round_trip_and_untagged() -> None:
    event = tag_event(T_UPDATE, {"entity_id": "a", "ledger": {"kind": "party", "seq": 1}}, DOC, 7)
    assert event == {"topic": T_UPDATE, "data": {"entity_id": "a", "ledger": {"kind": "document", "seq": 7}}}
    assert read_tag(event["data"]) == (DOC, 7)
    assert untagged(event["data"]) == {"entity_id": "a"}
    assert read_tag({"entity_id": "a"}) is None
    assert read_tag({"ledger": {"kind": "nope", "seq": 1}}) is None
    assert read_tag({"ledger": "x"}) is None


def test_every_topic_has_one_kind_and_backoff_grows_with_jitter_bounds() -> None:
    assert kind_for_topic("vmh.document.delete") is DOC
    assert kind_for_topic("vmh.bankverbindungen.create") is SyncKind.BANK_ACCOUNT
    with pytest.raises(KeyError):
        kind_for_topic("vmh.unknown")
    p = POLICIES[DOC]
    assert [p.backoff(n, lambda: 1.0) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert p.backoff(1, lambda: 0.0) == 1.0  # equal jitter: at least half
    assert p.backoff(40, lambda: 1.0) == p.max_delay
    fast = p.scaled(backoff=0.01, time_box=0.001)
    assert fast.base_delay == pytest.approx(0.02) and fast.time_box == pytest.approx(0.9)
    for policy in POLICIES.values():
        assert policy.time_box <= 1800, "a run must end before its entity lock's maximum hold (30 min)"
        assert policy.max_attempts >= 2 and policy.concurrency >= 1


# --------------------------------------------------------------------------- mark / begin / complete


async def test_mark_records_latest_payload_with_increasing_seq(ledger: Ledger, clock: Clock) -> None:
    first = await ledger.mark(DOC, "d1", T_CREATE, {**doc("d1", "create"), "ledger": {"kind": "document", "seq": 99}})
    assert first.outcome is MarkOutcome.NEW and first.data == doc("d1", "create")  # the tag is never stored
    second = await ledger.mark(DOC, "d1", T_UPDATE, doc("d1", reason="x"))
    assert second.outcome is MarkOutcome.UPDATED and second.seq > first.seq
    info = await ledger.get(DOC, "d1")
    assert info is not None and info.seq == second.seq and info.topic == T_UPDATE and info.data["reason"] == "x"
    assert info.state == "pending" and info.attempts == 0 and info.due_at == pytest.approx(clock.t + 10)
    assert second.event() == {"topic": T_UPDATE, "data": {**doc("d1", reason="x"), "ledger": {"kind": "document", "seq": second.seq}}}


async def test_mark_many_is_one_round_trip_for_a_batch(ledger: Ledger) -> None:
    events = [{"topic": T_UPDATE, "data": doc(f"b{i}")} for i in range(20)]
    marks = await ledger.mark_events(events)
    assert [m.entity_id for m in marks] == [f"b{i}" for i in range(20)]
    assert len({m.seq for m in marks}) == 20
    assert (await ledger.stats())["document"]["pending"] == 20


async def test_begin_claims_latest_and_complete_clears(ledger: Ledger) -> None:
    await ledger.mark(DOC, "d1", T_CREATE, doc("d1", "create"))
    claim = await ledger.begin(DOC, "d1")
    assert claim is not None and claim.topic == T_CREATE and claim.attempts == 0
    assert (await ledger.begin_result(DOC, "d1")).outcome is BeginOutcome.IN_FLIGHT  # one run at a time
    assert (await ledger.complete(claim)).outcome is CompleteOutcome.DONE
    assert await ledger.get(DOC, "d1") is None
    assert (await ledger.begin_result(DOC, "d1")).outcome is BeginOutcome.NONE  # a duplicate event: nothing to do


async def test_a_mark_during_the_run_survives_complete_and_is_due_now(ledger: Ledger, clock: Clock) -> None:
    await ledger.mark(DOC, "d1", T_CREATE, doc("d1", "create"))
    claim = await ledger.begin(DOC, "d1")
    assert claim is not None
    newer = await ledger.mark(DOC, "d1", T_UPDATE, doc("d1", reason="webhook during sync"))
    done = await ledger.complete(claim)
    assert done.outcome is CompleteOutcome.MOVED
    assert done.event == newer.event()
    info = await ledger.get(DOC, "d1")
    assert info is not None and info.seq == newer.seq and info.due_at == pytest.approx(clock.t) and not info.in_flight
    again = await ledger.begin(DOC, "d1")
    assert again is not None and again.seq == newer.seq and again.data["reason"] == "webhook during sync"
    assert (await ledger.complete(again)).outcome is CompleteOutcome.DONE


async def test_fail_schedules_backoff_then_dead_letters_with_last_error(redis_url: str, clock: Clock) -> None:
    ledger = make_ledger(get_redis(redis_url), clock, backoff_scale=0.5)
    budget = POLICIES[SyncKind.PARTY].max_attempts
    await ledger.mark(SyncKind.PARTY, "p1", "vmh.beteiligte.update", {"entity_id": "p1"})
    delays = []
    for attempt in range(1, budget + 1):
        claim = await ledger.begin(SyncKind.PARTY, "p1")
        assert claim is not None and claim.attempts == attempt - 1
        result = await ledger.fail(claim, f"503 number {attempt}", retryable=True)
        if attempt < budget:
            assert result.outcome is FailOutcome.RETRY and result.attempts == attempt
            info = await ledger.get(SyncKind.PARTY, "p1")
            assert info is not None and info.state == "retrying" and info.due_at == pytest.approx(clock.t + result.delay)
            assert (await ledger.stats())["party"]["retrying"] == 1
            delays.append(result.delay)
            assert await due_ids(ledger) == []  # not due before its backoff
            clock.advance(result.delay)
            assert await due_ids(ledger) == ["p1"]
        else:
            assert result.outcome is FailOutcome.DEAD and result.attempts == budget
    assert delays == [0.5 * POLICIES[SyncKind.PARTY].backoff(n, lambda: 1.0) for n in range(1, budget)]
    dead = await ledger.dead()
    assert [(d.entity_id, d.state, d.attempts, d.last_error) for d in dead] == [("p1", "dead", budget, f"503 number {budget}")]
    assert (await ledger.stats())["party"] == {"pending": 0, "retrying": 0, "dead": 1, "due_now": 0}
    assert (await ledger.begin_result(SyncKind.PARTY, "p1")).outcome is BeginOutcome.DEAD
    clock.advance(10_000)
    assert await due_ids(ledger) == []  # dead marks are never swept


async def test_permanent_failure_is_dead_at_once(ledger: Ledger) -> None:
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    claim = await ledger.begin(DOC, "d1")
    assert claim is not None
    result = await ledger.fail(claim, "400 unsupported file", retryable=False)
    assert result.outcome is FailOutcome.DEAD and result.attempts == 1


async def test_permanent_failure_on_data_that_changed_meanwhile_is_retried_now(ledger: Ledger, clock: Clock) -> None:
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    claim = await ledger.begin(DOC, "d1")
    assert claim is not None
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1", reason="fixed by the user"))
    result = await ledger.fail(claim, "400 invalid", retryable=False)
    assert result.outcome is FailOutcome.RETRY and result.delay == pytest.approx(0)
    assert await due_ids(ledger) == ["d1"]


async def test_busy_counts_no_attempt_and_releases_the_claim(ledger: Ledger, clock: Clock) -> None:
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    for _ in range(20):
        claim = await ledger.begin(DOC, "d1")
        assert claim is not None and claim.attempts == 0
        assert await ledger.busy(claim)
    info = await ledger.get(DOC, "d1")
    assert info is not None and info.attempts == 0 and info.busy == 20 and info.state == "pending"
    assert info.due_at == pytest.approx(clock.t + POLICIES[DOC].busy_delay)
    assert not await ledger.busy(claim)  # a released claim is not ours any more


async def test_expired_claim_is_taken_over_and_counts_until_dead(ledger: Ledger, clock: Clock) -> None:
    """A worker that dies mid-run leaves its claim; after the lease another run takes
    over (an attempt is counted), and a stale fail of the old claim changes nothing."""
    await ledger.mark(SyncKind.CALENDAR_EMPLOYEE, "MM", "calendar.sync.employee", {"kuerzel": "MM"})
    old = await ledger.begin(SyncKind.CALENDAR_EMPLOYEE, "MM")
    assert old is not None
    clock.advance(59)
    assert (await ledger.begin_result(SyncKind.CALENDAR_EMPLOYEE, "MM")).outcome is BeginOutcome.IN_FLIGHT
    assert await due_ids(ledger) == []
    clock.advance(2)
    assert await due_ids(ledger) == ["MM"]  # the sweeper finds the orphaned run
    new = await ledger.begin(SyncKind.CALENDAR_EMPLOYEE, "MM")
    assert new is not None and new.takeover and new.attempts == 1
    assert (await ledger.fail(old, "late", retryable=True)).outcome is FailOutcome.STALE
    budget = POLICIES[SyncKind.CALENDAR_EMPLOYEE].max_attempts
    for _ in range(budget - 2):
        clock.advance(61)
        assert (await ledger.begin(SyncKind.CALENDAR_EMPLOYEE, "MM")) is not None
    clock.advance(61)
    assert (await ledger.begin_result(SyncKind.CALENDAR_EMPLOYEE, "MM")).outcome is BeginOutcome.DEAD
    (dead,) = await ledger.dead(SyncKind.CALENDAR_EMPLOYEE)
    assert dead.attempts == budget and "lease expired" in dead.last_error


async def test_renew_keeps_a_long_run_claimed(ledger: Ledger, clock: Clock) -> None:
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    claim = await ledger.begin(DOC, "d1")
    assert claim is not None
    for _ in range(5):
        clock.advance(40)
        assert await ledger.renew(claim)
        assert (await ledger.begin_result(DOC, "d1")).outcome is BeginOutcome.IN_FLIGHT
        assert await due_ids(ledger) == []


async def test_mark_during_a_run_does_not_make_it_due_early(ledger: Ledger, clock: Clock) -> None:
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    claim = await ledger.begin(DOC, "d1")
    assert claim is not None
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    clock.advance(30)
    assert await due_ids(ledger) == []  # the running claim will see the newer seq itself


async def test_new_mark_on_a_retrying_mark_is_due_within_the_grace(ledger: Ledger, clock: Clock) -> None:
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    for _ in range(6):  # backoff now 64 s
        claim = await ledger.begin(DOC, "d1")
        assert claim is not None
        await ledger.fail(claim, "503", retryable=True)
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    clock.advance(10)
    assert await due_ids(ledger) == ["d1"]


# --------------------------------------------------------------------------- sweeper, replay, revive


async def test_due_batch_hands_each_mark_to_one_sweeper(ledger: Ledger, clock: Clock) -> None:
    events = [{"topic": T_UPDATE, "data": doc(f"s{i}")} for i in range(60)]
    events += [{"topic": "vmh.beteiligte.update", "data": {"entity_id": f"p{i}"}} for i in range(40)]
    await ledger.mark_events(events)
    assert await ledger.due_batch(100) == []  # within the grace nothing is due
    clock.advance(10)
    batches = await asyncio.gather(*(ledger.due_batch(15) for _ in range(10)))
    taken = [(m.kind, m.entity_id) for batch in batches for m in batch]
    assert len(taken) == 100 and len(set(taken)) == 100
    assert all(len(b) <= 15 for b in batches)
    assert await ledger.due_batch(100) == []
    clock.advance(30)  # requeue lease over: a lost re-enqueue is found again
    assert len(await ledger.due_batch(1000)) == 100


async def test_due_batch_takes_the_longest_due_first_across_kinds(ledger: Ledger, clock: Clock) -> None:
    await ledger.mark(SyncKind.PARTY, "old", "vmh.beteiligte.update", {"entity_id": "old"})
    clock.advance(5)
    await ledger.mark(DOC, "new", T_UPDATE, doc("new"))
    clock.advance(20)
    batch = await ledger.due_batch(1)
    assert [(m.kind, m.entity_id) for m in batch] == [(SyncKind.PARTY, "old")]
    assert batch[0].event()["data"]["ledger"] == {"kind": "party", "seq": batch[0].seq}


async def test_replay_puts_dead_marks_back(ledger: Ledger, clock: Clock) -> None:
    for i in range(3):
        await ledger.mark(DOC, f"d{i}", T_UPDATE, doc(f"d{i}"))
        claim = await ledger.begin(DOC, f"d{i}")
        assert claim is not None
        await ledger.fail(claim, "400", retryable=False)
    await ledger.mark(SyncKind.PARTY, "p1", "vmh.beteiligte.update", {"entity_id": "p1"})
    claim = await ledger.begin(SyncKind.PARTY, "p1")
    assert claim is not None
    await ledger.fail(claim, "400", retryable=False)
    replayed = await ledger.replay(DOC, ["d1"])
    assert [(m.kind, m.entity_id) for m in replayed] == [(DOC, "d1")]
    info = await ledger.get(DOC, "d1")
    assert info is not None and info.state == "pending" and info.attempts == 0 and info.due_at == pytest.approx(clock.t)
    assert sorted(m.entity_id for m in await ledger.replay(SyncKind.PARTY)) == ["p1"]
    assert sorted(m.entity_id for m in await ledger.replay()) == ["d0", "d2"]
    assert await ledger.dead() == []
    assert {m.entity_id for m in await ledger.live()} == {"d0", "d1", "d2", "p1"}
    assert await ledger.replay(ids=["unknown"]) == []


async def test_reconcilers_do_not_revive_dead_marks_but_webhooks_do(ledger: Ledger) -> None:
    await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    claim = await ledger.begin(DOC, "d1")
    assert claim is not None
    await ledger.fail(claim, "400", retryable=False)
    kept = await ledger.mark(DOC, "d1", T_UPDATE, doc("d1", source="cron"), revive=False)
    assert kept.outcome is MarkOutcome.DEAD and not kept.recorded
    assert (await ledger.get(DOC, "d1")).state == "dead"  # type: ignore[union-attr]
    revived = await ledger.mark(DOC, "d1", T_UPDATE, doc("d1", source="webhook"))
    assert revived.outcome is MarkOutcome.REVIVED
    info = await ledger.get(DOC, "d1")
    assert info is not None and info.state == "pending" and info.attempts == 0 and await ledger.dead() == []


async def test_sticky_full_flag_survives_a_newer_incremental_request(ledger: Ledger) -> None:
    kind, topic = SyncKind.CALENDAR_EMPLOYEE, "calendar.sync.employee"
    await ledger.mark(kind, "MM", topic, {"kuerzel": "MM", "full": True, "source": "manual"})
    await ledger.mark(kind, "MM", topic, {"kuerzel": "MM", "full": False, "source": "cron"})
    info = await ledger.get(kind, "MM")
    assert info is not None and info.data == {"kuerzel": "MM", "full": True, "source": "cron"}
    await ledger.mark(kind, "AB", topic, {"kuerzel": "AB", "full": False})
    await ledger.mark(kind, "AB", topic, {"kuerzel": "AB", "full": True})
    assert (await ledger.get(kind, "AB")).data["full"] is True  # type: ignore[union-attr]


async def test_a_sticky_merge_keeps_the_rest_of_the_payload_as_it_was(ledger: Ledger) -> None:
    """The merge adds the flag without re-encoding: an empty list stays a list (Lua's cjson would
    write {}), big numbers and nested values keep their form."""
    kind, topic = SyncKind.CALENDAR_EMPLOYEE, "calendar.sync.employee"
    await ledger.mark(kind, "CK", topic, {"kuerzel": "CK", "full": True})
    newer = {"kuerzel": "CK", "full": False, "changed_fields": [], "n": 12345678901234567, "nested": {"a": []}}
    await ledger.mark(kind, "CK", topic, newer)
    info = await ledger.get(kind, "CK")
    assert info is not None and info.data == {**newer, "full": True}
    await ledger.mark(kind, "EM", topic, {"full": True})
    await ledger.mark(kind, "EM", topic, {})
    assert (await ledger.get(kind, "EM")).data == {"full": True}  # type: ignore[union-attr]


async def test_entity_ids_that_would_break_keys_are_refused(ledger: Ledger) -> None:
    for bad in ("", "a b", "x\n"):
        with pytest.raises(ValueError):
            await ledger.mark(DOC, bad, T_UPDATE, doc("x"))


async def test_redis_down_is_a_ledger_error(clock: Clock) -> None:
    dead_redis = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    ledger = make_ledger(dead_redis, clock)
    with pytest.raises(LedgerError):
        await ledger.mark(DOC, "d1", T_UPDATE, doc("d1"))
    with pytest.raises(LedgerError):
        await ledger.begin(DOC, "d1")
    await dead_redis.aclose()


async def test_a_one_time_record_goes_with_its_marks(ledger: Ledger) -> None:
    """mark_many(once=...): the record is written with the marks (TTL as given); another token
    then marks nothing (OnceHeld); the same token (a retry after a lost reply) marks again."""
    first = Once("replay:abc", "token-1", 30)
    [mark] = await ledger.mark_many([(DOC, "o1", T_UPDATE, {"entity_id": "o1"})], once=first)
    assert mark.outcome is MarkOutcome.NEW
    key = f"{ledger.prefix}:once:replay:abc"
    assert await ledger.redis.get(key) == b"token-1" and 0 < await ledger.redis.pttl(key) <= 30_000
    with pytest.raises(OnceHeld):
        await ledger.mark_many([(DOC, "o2", T_UPDATE, {"entity_id": "o2"})], once=Once("replay:abc", "token-2", 30))
    assert await ledger.get(DOC, "o2") is None
    [again] = await ledger.mark_many([(DOC, "o1", T_UPDATE, {"entity_id": "o1"})], once=first)
    assert again.outcome is MarkOutcome.UPDATED and again.seq > mark.seq
    assert await ledger.mark_many([], once=Once("replay:empty", "t", 30)) == []  # a batch of echoes is recorded too
    assert await ledger.redis.exists(f"{ledger.prefix}:once:replay:empty") == 1
