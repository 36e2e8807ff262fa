"""One way for every queue handler, webhook and cron step to use the ledger (framework-free).

- `run_marked(ledger, kind, entity_id, event, ctx, work)`: the whole life of one queued
  run (adopt an untagged event, claim, time-box, complete / busy / fail / dead).
- `mark_and_enqueue(ledger, ctx, events)`: record marks for events in one round trip,
  then enqueue them tagged (webhooks' follow-ups, reconcilers, the calendar API).
- `enqueue_marked(ctx, marks)`: enqueue already-recorded marks; an enqueue that fails is
  logged, not raised: the mark is recorded and the sweeper delivers it after the grace.

`ctx` is anything with `enqueue(event)` and a `logger` (info/warn/error(message, data)),
the Motia FlowContext in production and iii_local.testing.mock_context() in tests.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

from services.clients.errors import IntegrationError, LockBusyError, is_retryable
from services.platform import activity
from services.platform.ledger.policies import SyncKind
from services.platform.ledger.store import (
    BeginOutcome,
    Claim,
    CompleteOutcome,
    FailOutcome,
    Ledger,
    LedgerError,
    MarkResult,
    read_tag,
)

T = TypeVar("T")

REDIS_PATIENCE_SECONDS = 15.0
"""How long a handler keeps retrying a ledger call while Redis is unreachable (a Redis
restart) before it gives up and raises, leaving the event to the engine's own retry."""


class ContextLike(Protocol):
    logger: Any

    async def enqueue(self, event: dict[str, Any]) -> Any: ...


Work = Callable[[Claim], Awaitable[Sequence[Mapping[str, Any]] | None]]
"""Runs one sync from the claimed payload; returns follow-up events (or None)."""
OnDead = Callable[[Claim, str, Any], Awaitable[None]]
"""Called once when a mark goes dead: (claim, last error, ctx) → record the failure."""


class RunOutcome(StrEnum):
    DONE = "done"  # synced; the mark is cleared
    MOVED = "moved"  # synced, but a newer mark arrived meanwhile: re-enqueued at once
    NOTHING = "nothing"  # no mark (done already), another run holds it, or it is dead
    BUSY = "busy"  # the entity lock is held by another run: rescheduled, no attempt counted
    RETRY = "retry"  # failed, rescheduled with backoff
    DEAD = "dead"  # failed for good: dead list, on_dead called
    STALE = "stale"  # our claim was taken over meanwhile: nothing recorded by us


@dataclass(frozen=True)
class RunReport:
    outcome: RunOutcome
    kind: SyncKind
    entity_id: str
    seq: int | None = None
    attempt: int | None = None
    delay: float | None = None
    error: str | None = None
    detail: str | None = None
    """NOTHING: why (none, inflight, dead)."""
    follow_ups: int = 0

    def log_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value, "entity_id": self.entity_id, "outcome": self.outcome.value}
        for name in ("seq", "attempt", "delay", "error", "detail"):
            value = getattr(self, name)
            if value is not None:
                data[name] = round(value, 3) if isinstance(value, float) else value
        if self.follow_ups:
            data["follow_ups"] = self.follow_ups
        return data


_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[SyncKind, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


def semaphore(kind: SyncKind, limit: int) -> asyncio.Semaphore:
    """The in-process limit of concurrent runs of one kind (per event loop)."""
    per_loop = _semaphores.setdefault(asyncio.get_running_loop(), {})
    sem = per_loop.get(kind)
    if sem is None:
        sem = per_loop[kind] = asyncio.Semaphore(limit)
    return sem


def describe_error(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _log(ctx: Any, level: str, message: str, data: dict[str, Any]) -> None:
    activity.note(level, message, data)
    logger = getattr(ctx, "logger", None)
    if logger is None:
        return
    method = getattr(logger, level, None) or logger.info
    method(message, data)


async def enqueue_marked(ctx: Any, marks: Iterable[MarkResult]) -> int:
    """Enqueue the tagged event of every recorded mark; returns how many were enqueued.

    A failing enqueue is logged and skipped: the mark is recorded, so the sweeper
    re-enqueues it after the grace period (nothing acknowledged is lost)."""
    sent = 0
    for mark in marks:
        if not mark.recorded:
            continue
        try:
            await ctx.enqueue(mark.event())
            sent += 1
        except Exception as exc:  # noqa: BLE001 - the mark is the record; the sweeper delivers
            _log(ctx, "warn", f"ledger: enqueue of {mark.kind.value} {mark.entity_id} failed; the sweeper will deliver it",
                 {"kind": mark.kind.value, "entity_id": mark.entity_id, "seq": mark.seq, "error": describe_error(exc)})
    return sent


async def mark_and_enqueue(
    ledger: Ledger, ctx: Any, events: Sequence[Mapping[str, Any]], *, revive: bool = True
) -> list[MarkResult]:
    """Mark every event (one round trip; raises LedgerError when Redis fails, before
    anything is enqueued), then enqueue the recorded ones tagged. With revive=False
    (reconcilers) dead marks stay dead and their events are not enqueued."""
    if not events:
        return []
    marks = await ledger.mark_events(events, revive=revive)
    await enqueue_marked(ctx, marks)
    return marks


async def patiently(call: Callable[[], Awaitable[T]], *, patience: float | None = None) -> T:
    """`await call()`, retried with growing pauses (0.1 s .. 2 s) while it raises LedgerError,
    for at most `patience` seconds (default REDIS_PATIENCE_SECONDS); then the LedgerError is raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (REDIS_PATIENCE_SECONDS if patience is None else patience)
    pause = 0.1
    while True:
        try:
            return await call()
        except LedgerError:
            if loop.time() + pause > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)


async def _keep_claim(ledger: Ledger, claim: Claim, ctx: Any) -> None:
    interval = max(ledger.claim_lease / 3, 0.01)
    while True:
        await asyncio.sleep(interval)
        try:
            if not await ledger.renew(claim):
                _log(ctx, "warn", f"ledger: claim on {claim.kind.value} {claim.entity_id} was taken over while running",
                     {"kind": claim.kind.value, "entity_id": claim.entity_id, "seq": claim.seq})
                return
        except Exception as exc:  # noqa: BLE001 - keep trying; the lease is generous
            _log(ctx, "warn", f"ledger: could not renew the claim on {claim.kind.value} {claim.entity_id}",
                 {"kind": claim.kind.value, "entity_id": claim.entity_id, "error": describe_error(exc)})


async def _default_on_dead(kind: SyncKind) -> OnDead | None:
    from services.platform.ledger.hooks import ON_DEAD

    return ON_DEAD.get(kind)


_DEFAULT: Any = object()


RunFunction = TypeVar("RunFunction", bound=Callable[..., Awaitable[RunReport]])


def _keeps_activity(run: RunFunction) -> RunFunction:
    """The lines a run logs are kept as its entity's recent activity (services.platform.activity,
    `{prefix}:log:{kind}:{entity_id}`, with `ctx.trace_id`), written when the run ends however it ends."""

    @functools.wraps(run)
    async def keeping(ledger: Ledger, kind: SyncKind, entity_id: str, event: Mapping[str, Any], ctx: Any, work: Work,
                      **options: Any) -> RunReport:
        trace_id = getattr(ctx, "trace_id", None)
        with activity.collecting(f"{SyncKind(kind).value}:{entity_id}", trace_id if isinstance(trace_id, str) else None) as lines:
            try:
                return await run(ledger, kind, entity_id, event, ctx, work, **options)
            finally:
                await activity.ActivityLog(ledger.redis, ledger.prefix).flush(lines)

    return cast(RunFunction, keeping)


@_keeps_activity
async def run_marked(
    ledger: Ledger,
    kind: SyncKind,
    entity_id: str,
    event: Mapping[str, Any],
    ctx: Any,
    work: Work,
    *,
    on_dead: OnDead | None = _DEFAULT,
) -> RunReport:
    """Run one queued sync under the ledger.

    `event` is what the handler received, `{"topic", "data"}`: an event without a ledger
    tag (tester.enqueue, iii-cli, messages from before the ledger) is adopted (marked,
    then run). Then: claim the mark (none → cheap return: done already, in flight
    elsewhere, or dead) → the kind's in-process concurrency limit → `work(claim)` under
    the kind's time-box, the claim's lease renewed meanwhile → success: follow-ups marked,
    the mark completed (re-enqueued at once if a newer one arrived), follow-ups enqueued;
    LockBusyError: rescheduled without counting an attempt; other errors: retryable ones
    (services.clients.errors.is_retryable, the time-box, unknown exceptions = bugs) rescheduled
    with backoff, permanent ones and exhausted budgets dead-lettered and `on_dead` called
    (default: services.platform.ledger.hooks.ON_DEAD[kind]).

    A tagged event whose mark is gone is a cheap no-op, unless its seq is newer than the
    ledger's counter (Redis lost data): then it is adopted like an untagged one.

    Never raises for a sync failure (the engine's retries would multiply the attempts);
    raises only when the ledger itself (Redis) stays unreachable for REDIS_PATIENCE_SECONDS
    (`patiently`), so the engine's retry is the last resort.
    """
    kind = SyncKind(kind)
    policy = ledger.policy(kind)
    topic, data = str(event.get("topic") or ""), event.get("data") or {}
    tag = read_tag(data)
    if tag is not None and tag[0] is not kind:
        tag = None

    async def adopt(lost: bool) -> None:
        adopted = await patiently(lambda: ledger.mark(kind, entity_id, topic or policy.topics[0], data))
        what = "a lost" if lost else "an untagged"
        _log(ctx, "warn" if lost else "info", f"ledger: adopted {what} {kind.value} event for {entity_id}",
             {"kind": kind.value, "entity_id": entity_id, "seq": adopted.seq, "outcome": "adopted"})

    if tag is None:
        await adopt(lost=False)
    begun = await patiently(lambda: ledger.begin_result(kind, entity_id, tag_seq=tag[1] if tag else None))
    if begun.outcome is BeginOutcome.LOST:
        # The event is newer than the ledger's counter: Redis lost the mark (data loss), so
        # "no mark" does not mean "done". Record it again and run it.
        await adopt(lost=True)
        begun = await patiently(lambda: ledger.begin_result(kind, entity_id))
    claim = begun.claim
    if claim is None:
        report = RunReport(RunOutcome.NOTHING, kind, entity_id, seq=tag[1] if tag else None, detail=begun.outcome.value)
        _log(ctx, "info", f"ledger: {kind.value} {entity_id}: nothing to run ({begun.outcome.value})", report.log_data())
        return report
    attempt = claim.attempts + 1
    if claim.takeover:
        _log(ctx, "warn", f"ledger: {kind.value} {entity_id}: took over a run whose worker died or hung",
             {"kind": kind.value, "entity_id": entity_id, "seq": claim.seq, "attempt": attempt})

    keeper = asyncio.create_task(_keep_claim(ledger, claim, ctx))
    error: BaseException | None = None
    follow_ups: Sequence[Mapping[str, Any]] = ()
    timed_out = False
    try:
        async with semaphore(kind, policy.concurrency):
            try:
                async with asyncio.timeout(policy.time_box) as box:
                    follow_ups = list(await work(claim) or ())
            except TimeoutError as exc:
                timed_out = box.expired()
                error = exc
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is recorded in the ledger
                error = exc
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)

    if error is None:
        marks = await patiently(lambda: ledger.mark_events(follow_ups)) if follow_ups else []
        done = await patiently(lambda: ledger.complete(claim))
        sent = await enqueue_marked(ctx, marks)
        outcome = RunOutcome.DONE
        if done.outcome is CompleteOutcome.MOVED and done.event is not None:
            outcome = RunOutcome.MOVED
            try:
                await ctx.enqueue(done.event)
            except Exception as exc:  # noqa: BLE001 - due now: the sweeper delivers it
                _log(ctx, "warn", f"ledger: re-enqueue of {kind.value} {entity_id} failed; the sweeper will deliver it",
                     {"kind": kind.value, "entity_id": entity_id, "error": describe_error(exc)})
        report = RunReport(outcome, kind, entity_id, seq=claim.seq, attempt=attempt, follow_ups=sent)
        _log(ctx, "info", f"ledger: {kind.value} {entity_id}: {outcome.value}", {**report.log_data(), "complete": done.outcome.value})
        return report

    if isinstance(error, LockBusyError):
        ours = await patiently(lambda: ledger.busy(claim))
        report = RunReport(RunOutcome.BUSY if ours else RunOutcome.STALE, kind, entity_id, seq=claim.seq,
                           attempt=attempt, delay=policy.busy_delay, error=describe_error(error))
        _log(ctx, "info", f"ledger: {kind.value} {entity_id}: lock busy, rescheduled (no attempt counted)", report.log_data())
        return report

    if timed_out:
        message = f"time-box of {policy.time_box:g}s exceeded: the run was cancelled"
        retryable = True
    else:
        message = describe_error(error)
        retryable = is_retryable(error) or not isinstance(error, IntegrationError)
    failed = await patiently(lambda: ledger.fail(claim, message, retryable=retryable))
    if failed.outcome is FailOutcome.RETRY:
        report = RunReport(RunOutcome.RETRY, kind, entity_id, seq=claim.seq, attempt=failed.attempts,
                           delay=failed.delay, error=message)
        _log(ctx, "warn", f"ledger: {kind.value} {entity_id}: attempt {failed.attempts} failed, retry in {failed.delay:.1f}s: {message}",
             report.log_data())
        return report
    if failed.outcome is FailOutcome.DEAD:
        report = RunReport(RunOutcome.DEAD, kind, entity_id, seq=claim.seq, attempt=failed.attempts, error=message)
        _log(ctx, "error", f"ledger: {kind.value} {entity_id}: gave up after {failed.attempts} attempt(s): {message}",
             report.log_data())
        hook = await _default_on_dead(kind) if on_dead is _DEFAULT else on_dead
        if hook is not None:
            try:
                await hook(claim, f"gave up after {failed.attempts} attempt(s): {message}", ctx)
            except Exception as exc:  # noqa: BLE001 - the dead list has it; the status write is best effort
                _log(ctx, "error", f"ledger: {kind.value} {entity_id}: could not record the failure: {describe_error(exc)}",
                     {"kind": kind.value, "entity_id": entity_id})
        return report
    report = RunReport(RunOutcome.STALE, kind, entity_id, seq=claim.seq, attempt=attempt, error=message)
    _log(ctx, "warn", f"ledger: {kind.value} {entity_id}: failed, but the claim was no longer ours ({failed.outcome.value})",
         report.log_data())
    return report


async def sweep(ledger: Ledger, ctx: Any, *, batch: int, max_batches: int = 1) -> int:
    """The sweeper: re-enqueue due marks, `batch` at a time, at most `max_batches` batches.

    Each mark handed out is leased (`requeue_lease`) by due_batch, so concurrent sweepers
    on several engines never enqueue the same mark twice in one lease."""
    total = 0
    per_kind: dict[str, int] = {}
    for _ in range(max(1, max_batches)):
        due = await ledger.due_batch(batch)
        total += await enqueue_marked(ctx, due)
        for mark in due:
            per_kind[mark.kind.value] = per_kind.get(mark.kind.value, 0) + 1
        if len(due) < batch:
            break
    if total:
        _log(ctx, "info", f"ledger sweep: re-enqueued {total} due mark(s)", {"requeued": per_kind, "outcome": "swept"})
    return total
