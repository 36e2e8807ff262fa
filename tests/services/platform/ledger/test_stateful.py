"""Property-based (hypothesis, stateful) test of the sync ledger's invariants on real Redis.

Random interleavings of marks (webhooks, reconcilers), claims, completions, failures,
busy locks, sweeps, replays and clock jumps must keep the invariants of services.platform.ledger:
- every mark is in exactly one of due/dead, matching its state; `retrying` holds exactly
  the live marks in state retrying;
- no lost need: a mark recorded after a run began is never cleared by that run (a mark
  only disappears by a DONE completion of a claim that saw its latest seq);
- at most one live claim per mark; attempts never exceed the budget (+1, see FAIL);
- a mark's seq is the seq of the last recorded mark() for it; seqs only grow;
- one due_batch call never hands out the same mark twice, and concurrent sweeps are disjoint.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from services.platform.ledger import POLICIES, BeginOutcome, Claim, CompleteOutcome, FailOutcome, Ledger, MarkOutcome, SyncKind

IDS = ["a", "b"]
KIND = SyncKind.DOCUMENT
TOPIC = "vmh.document.update"
MAX_ATTEMPTS = 3


class LedgerMachine(RuleBasedStateMachine):
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.redis = aioredis.Redis.from_url(self.redis_url)
        self.now = 1_900_000_000.0
        policies = dict(POLICIES)
        policies[KIND] = dataclasses.replace(POLICIES[KIND], max_attempts=MAX_ATTEMPTS)
        self.ledger = Ledger(
            self.redis, prefix=f"h-{uuid.uuid4().hex[:10]}", grace=10, claim_lease=60, requeue_lease=30,
            clock=lambda: self.now, rnd=lambda: 0.5, policies=policies,
        )
        self.last_seq: dict[str, int] = {}  # last recorded mark() seq per id
        self.covered: dict[str, int] = {}  # highest seq a DONE completion covered
        self.claims: list[Claim] = []
        self.max_seq = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.redis.aclose())
        self.loop.close()

    # ------------------------------------------------------------------ rules

    @rule(entity=st.sampled_from(IDS), revive=st.booleans(), n=st.integers(0, 99))
    def mark(self, entity: str, revive: bool, n: int) -> None:
        result = self.run(self.ledger.mark(KIND, entity, TOPIC, {"entity_id": entity, "n": n}, revive=revive))
        if result.outcome is MarkOutcome.DEAD:
            assert not revive
            return
        assert result.seq > self.max_seq, "seq must grow"
        self.max_seq = result.seq
        self.last_seq[entity] = result.seq

    @rule(entity=st.sampled_from(IDS))
    def begin(self, entity: str) -> None:
        live_claims = [c for c in self.claims if c.entity_id == entity]
        result = self.run(self.ledger.begin_result(KIND, entity))
        if result.claim is not None:
            assert result.claim.seq == self.last_seq[entity], "a claim sees the latest payload"
            self.claims.append(result.claim)
        elif result.outcome is BeginOutcome.NONE:
            assert self.covered.get(entity, 0) >= self.last_seq.get(entity, 0)
        del live_claims

    @precondition(lambda self: self.claims)
    @rule(index=st.integers(0, 20))
    def complete(self, index: int) -> None:
        claim = self.claims.pop(index % len(self.claims))
        result = self.run(self.ledger.complete(claim))
        if result.outcome is CompleteOutcome.DONE:
            assert claim.seq == self.last_seq[claim.entity_id], "cleared a mark recorded after the run began"
            self.covered[claim.entity_id] = claim.seq
        elif result.outcome is CompleteOutcome.MOVED:
            assert result.event is not None and result.event["data"]["ledger"]["seq"] == self.last_seq[claim.entity_id]
            assert result.event["data"]["ledger"]["seq"] > claim.seq

    @precondition(lambda self: self.claims)
    @rule(index=st.integers(0, 20), retryable=st.booleans())
    def fail(self, index: int, retryable: bool) -> None:
        claim = self.claims.pop(index % len(self.claims))
        result = self.run(self.ledger.fail(claim, "boom", retryable=retryable))
        if result.outcome in (FailOutcome.RETRY, FailOutcome.DEAD):
            assert 1 <= result.attempts <= MAX_ATTEMPTS + 1

    @precondition(lambda self: self.claims)
    @rule(index=st.integers(0, 20))
    def busy(self, index: int) -> None:
        claim = self.claims.pop(index % len(self.claims))
        before = self.run(self.ledger.get(KIND, claim.entity_id))
        ours = self.run(self.ledger.busy(claim))
        after = self.run(self.ledger.get(KIND, claim.entity_id))
        if ours:
            assert before is not None and after is not None and after.attempts == before.attempts

    @rule(seconds=st.sampled_from([1, 5, 11, 31, 61, 400]))
    def advance(self, seconds: int) -> None:
        self.now += seconds

    @rule(limit=st.integers(1, 4), sweepers=st.integers(1, 3))
    def sweep(self, limit: int, sweepers: int) -> None:
        async def go() -> list[list[Any]]:
            return list(await asyncio.gather(*(self.ledger.due_batch(limit) for _ in range(sweepers))))

        batches = self.run(go())
        taken = [m.entity_id for batch in batches for m in batch]
        assert len(taken) == len(set(taken)), "a due mark was handed to two sweepers"
        for batch in batches:
            assert len(batch) <= limit
            for m in batch:
                assert m.seq == self.last_seq[m.entity_id]

    @rule(entity=st.sampled_from(IDS))
    def replay(self, entity: str) -> None:
        self.run(self.ledger.replay(KIND, [entity]))

    # ------------------------------------------------------------------ invariants

    @invariant()
    def structure(self) -> None:
        p = self.ledger.prefix

        async def read() -> tuple[Any, ...]:
            due = {m.decode(): s for m, s in await self.redis.zrange(f"{p}:due:{KIND.value}", 0, -1, withscores=True)}
            dead = {m.decode() for m in await self.redis.zrange(f"{p}:dead:{KIND.value}", 0, -1)}
            retrying = {m.decode() for m in await self.redis.smembers(f"{p}:retrying:{KIND.value}")}
            marks = {i: await self.ledger.get(KIND, i) for i in IDS}
            return due, dead, retrying, marks

        due, dead, retrying, marks = self.run(read())
        for entity in IDS:
            info = marks[entity]
            need = self.last_seq.get(entity, 0) > self.covered.get(entity, 0)
            if info is None:
                assert entity not in due and entity not in dead and entity not in retrying
                assert not need, f"lost need for {entity}: marked {self.last_seq.get(entity)} but cleared"
                continue
            assert info.seq == self.last_seq[entity]
            assert (entity in due) != (entity in dead), f"{entity} must be in exactly one of due/dead"
            assert (info.state == "dead") == (entity in dead)
            assert (entity in retrying) == (info.state == "retrying")
            assert info.attempts <= MAX_ATTEMPTS + 1
            if entity in due:
                assert due[entity] < float("inf")


def test_ledger_invariants_hold_under_random_interleavings(redis_url: str) -> None:
    LedgerMachine.redis_url = redis_url
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(max_examples=100, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
