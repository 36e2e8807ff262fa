"""`Ledger`: the Redis sync ledger (see the package docstring for the model and invariants).

Every state change is one Lua script (services.platform.ledger.scripts), so concurrent webhooks,
handlers and sweepers on any number of hosts see each mark change atomically. Redis
errors surface as `LedgerError` (the caller's last resort is the engine's own retry).
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from redis.exceptions import RedisError

from services.clients.errors import RetryableError
from services.platform.ledger import scripts
from services.platform.ledger.policies import POLICIES, SyncKind, SyncPolicy, kind_for_topic

TAG = "ledger"
"""The key of the ledger tag in an event's data: `{"kind": ..., "seq": ...}`."""


MARK_CHUNK = 200
"""mark_many records at most this many marks per script call (one round trip each), so no
single script blocks Redis for long; a webhook batch (≤ 50 items) is always one call."""


class LedgerError(RetryableError):
    """Redis could not record or read a mark."""


@dataclass(frozen=True)
class Once:
    """A record `{prefix}:once:{name}` = token for `ttl` s, written with a batch of marks (mark_many):
    held by another token → nothing marked, OnceHeld; the same token (a retry) marks again."""

    name: str
    token: str
    ttl: float


class OnceHeld(Exception):
    """The one-time record exists with another token: nothing was marked."""


class MarkOutcome(StrEnum):
    NEW = "new"
    UPDATED = "updated"
    REVIVED = "revived"  # a dead mark came back to life (a new webhook, an adopted event)
    DEAD = "dead"  # a dead mark, left dead (reconcilers do not revive): nothing recorded


class CompleteOutcome(StrEnum):
    DONE = "done"
    MOVED = "moved"  # a newer mark waits; re-enqueue `event` now
    MOVED_IN_FLIGHT = "moved_inflight"
    MOVED_DEAD = "moved_dead"
    GONE = "gone"


class FailOutcome(StrEnum):
    RETRY = "retry"
    DEAD = "dead"
    STALE = "stale"  # the claim's lease ran out and another run owns the mark: nothing changed
    GONE = "gone"


class BeginOutcome(StrEnum):
    CLAIMED = "claimed"
    NONE = "none"  # no mark: the work was done already (a duplicate event)
    LOST = "lost"  # no mark, but the event is newer than the ledger's counter: Redis lost data
    IN_FLIGHT = "inflight"  # another run holds the mark
    DEAD = "dead"  # dead marks wait for replay or a new webhook


def tag_event(topic: str, data: Mapping[str, Any], kind: SyncKind, seq: int) -> dict[str, Any]:
    """The queue event `{"topic", "data"}` with the ledger tag added to its data."""
    return {"topic": topic, "data": {**untagged(data), TAG: {"kind": kind.value, "seq": int(seq)}}}


def untagged(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != TAG}


def read_tag(data: Any) -> tuple[SyncKind, int] | None:
    """The (kind, seq) tag of an event's data, or None (a hand-enqueued or pre-ledger event)."""
    tag = data.get(TAG) if isinstance(data, Mapping) else None
    if not isinstance(tag, Mapping):
        return None
    try:
        return SyncKind(str(tag["kind"])), int(tag["seq"])
    except (KeyError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class MarkResult:
    kind: SyncKind
    entity_id: str
    seq: int
    outcome: MarkOutcome
    topic: str
    data: dict[str, Any]

    @property
    def recorded(self) -> bool:
        return self.outcome is not MarkOutcome.DEAD

    def event(self) -> dict[str, Any]:
        """The tagged event to enqueue."""
        return tag_event(self.topic, self.data, self.kind, self.seq)


@dataclass(frozen=True)
class Claim:
    """A run's hold on a mark: the mark's latest payload as it was when the run began."""

    kind: SyncKind
    entity_id: str
    seq: int
    token: str
    topic: str
    data: dict[str, Any]
    attempts: int
    """Failed runs before this one."""
    takeover: bool = False
    """The previous run's lease had run out (its worker died or hung)."""


@dataclass(frozen=True)
class BeginResult:
    outcome: BeginOutcome
    claim: Claim | None = None


@dataclass(frozen=True)
class CompleteResult:
    outcome: CompleteOutcome
    event: dict[str, Any] | None = None
    """MOVED: the tagged event of the newer mark, to enqueue now."""


@dataclass(frozen=True)
class FailResult:
    outcome: FailOutcome
    attempts: int = 0
    delay: float | None = None
    """RETRY: seconds until the mark is due."""


@dataclass(frozen=True)
class MarkInfo:
    """A mark as operators see it (times in seconds since the epoch)."""

    kind: SyncKind
    entity_id: str
    seq: int
    state: str
    topic: str
    data: dict[str, Any]
    attempts: int
    last_error: str
    created_at: float
    updated_at: float
    due_at: float | None
    in_flight: bool
    busy: int = 0
    requeues: int = 0
    died_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "entity_id": self.entity_id, "seq": self.seq, "state": self.state,
            "topic": self.topic, "data": self.data, "attempts": self.attempts, "last_error": self.last_error or None,
            "created_at": self.created_at, "updated_at": self.updated_at, "due_at": self.due_at,
            "in_flight": self.in_flight, "busy": self.busy, "requeues": self.requeues, "died_at": self.died_at,
        }


@dataclass
class Ledger:
    """The sync ledger on one Redis database (see the package docstring).

    `backoff_scale`/`time_box_scale` multiply every kind's delays/time-box (tests run
    fast); `grace` is how long a fresh mark waits before the sweeper may re-enqueue it;
    `claim_lease` how long a run's claim lives without renewal (run_marked renews it
    every third of that while the work runs); `requeue_lease` how long a mark handed to
    a sweeper stays out of the next sweeps. All in seconds.
    """

    redis: Any
    prefix: str = "ledger"
    backoff_scale: float = 1.0
    time_box_scale: float = 1.0
    grace: float = 30.0
    claim_lease: float = 60.0
    requeue_lease: float = 60.0
    clock: Callable[[], float] = time.time
    rnd: Callable[[], float] = random.random
    policies: Mapping[SyncKind, SyncPolicy] = field(default_factory=lambda: dict(POLICIES))

    def __post_init__(self) -> None:
        self._scripts = {
            name: self.redis.register_script(getattr(scripts, name))
            for name in ("MARK", "BEGIN", "RENEW", "COMPLETE", "FAIL", "BUSY", "DUE_BATCH", "REPLAY")
        }
        self._policies = {k: p.scaled(backoff=self.backoff_scale, time_box=self.time_box_scale) for k, p in self.policies.items()}

    # ------------------------------------------------------------------ keys, helpers

    def policy(self, kind: SyncKind) -> SyncPolicy:
        """The kind's policy with this ledger's scales applied."""
        return self._policies[SyncKind(kind)]

    def _keys(self, kind: SyncKind, entity_id: str) -> list[str]:
        p, k = self.prefix, SyncKind(kind).value
        return [f"{p}:mark:{k}:{entity_id}", f"{p}:due:{k}", f"{p}:dead:{k}", f"{p}:retrying:{k}"]

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await self._scripts[name](keys=list(keys), args=list(args))
        except RedisError as exc:
            raise LedgerError(f"sync ledger unavailable ({name.lower()}): {exc}") from exc

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    @staticmethod
    def _check_id(entity_id: str) -> str:
        text = str(entity_id)
        if not text or len(text) > 300 or any(c.isspace() or ord(c) < 32 for c in text):
            raise ValueError(f"not a usable ledger entity id: {text!r}")
        return text

    # ------------------------------------------------------------------ marking

    def describe(self, event: Mapping[str, Any]) -> tuple[SyncKind, str]:
        """(kind, entity id) of a `{"topic", "data"}` event (KeyError/ValueError when it has none)."""
        kind = kind_for_topic(str(event["topic"]))
        return kind, self._check_id(self.policy(kind).key(event["data"]))

    async def mark(self, kind: SyncKind, entity_id: str, topic: str, data: Mapping[str, Any], *, revive: bool = True) -> MarkResult:
        """Record that (kind, entity) needs a sync, with this payload (see mark_many)."""
        return (await self.mark_many([(kind, entity_id, topic, data)], revive=revive))[0]

    async def mark_events(
        self, events: Iterable[Mapping[str, Any]], *, revive: bool = True, once: Once | None = None
    ) -> list[MarkResult]:
        """mark_many for `{"topic", "data"}` events (kind and entity from the topic and data)."""
        items = []
        for event in events:
            kind, entity_id = self.describe(event)
            items.append((kind, entity_id, str(event["topic"]), event["data"]))
        return await self.mark_many(items, revive=revive, once=once)

    async def mark_many(
        self, items: Sequence[tuple[SyncKind, str, str, Mapping[str, Any]]], *, revive: bool = True,
        once: Once | None = None,
    ) -> list[MarkResult]:
        """Record many marks in one round trip. Each gets a new, higher `seq` and the
        latest payload; a new mark is due after the grace period (its event is enqueued
        right away; the sweeper only steps in when it was not handled by then). A mark
        being run keeps its due time (the run's completion notices the newer seq). With
        `revive=False` (reconcilers) a dead mark stays dead and is reported DEAD. With
        `once` the one-time record is checked first and written after the marks, in the
        same script (OnceHeld when another token holds it); the batch must then fit one
        round trip (MARK_CHUNK items)."""
        if len(items) > MARK_CHUNK:
            if once is not None:
                raise ValueError(f"a batch with a one-time record must have at most {MARK_CHUNK} items")
            out: list[MarkResult] = []
            for start in range(0, len(items), MARK_CHUNK):
                out += await self.mark_many(items[start:start + MARK_CHUNK], revive=revive)
            return out
        if not items and once is None:
            return []
        keys: list[str] = [f"{self.prefix}:seq"]
        args: list[Any] = [self._now_ms(), int(self.grace * 1000), max(1, int(once.ttl * 1000)) if once else 0,
                           once.token if once else ""]
        prepared = []
        for kind, entity_id, topic, data in items:
            kind = SyncKind(kind)
            entity_id = self._check_id(entity_id)
            clean = untagged(data)
            keys += self._keys(kind, entity_id)
            args += [entity_id, kind.value, topic, json.dumps(clean, separators=(",", ":")), "1" if revive else "0",
                     ",".join(self.policy(kind).sticky)]
            prepared.append((kind, entity_id, topic, clean))
        if once is not None:
            keys.append(f"{self.prefix}:once:{once.name}")
        status, *rest = await self._run("MARK", keys, args)
        if self._text(status) == "held":
            raise OnceHeld(once.name if once else "")
        rows = rest[0]
        return [
            MarkResult(kind, entity_id, int(row[0]), MarkOutcome(self._text(row[1])), topic, clean)
            for (kind, entity_id, topic, clean), row in zip(prepared, rows)
        ]

    # ------------------------------------------------------------------ running

    async def begin(self, kind: SyncKind, entity_id: str) -> Claim | None:
        """Claim the mark for one run (None when there is nothing to run; see begin_result)."""
        return (await self.begin_result(kind, entity_id)).claim

    async def begin_result(self, kind: SyncKind, entity_id: str, *, tag_seq: int | None = None) -> BeginResult:
        """Claim the mark: its latest payload, with an in-flight lease (`claim_lease`) that
        makes the sweeper find it again if this run's worker dies. No mark → NONE (or LOST
        when `tag_seq`, the seq the event was tagged with, is newer than the ledger's
        counter: Redis lost data); dead → DEAD; another live claim → IN_FLIGHT."""
        kind = SyncKind(kind)
        token = secrets.token_hex(8)
        row = await self._run(
            "BEGIN", [*self._keys(kind, entity_id), f"{self.prefix}:seq"],
            [self._now_ms(), int(self.claim_lease * 1000), token, entity_id, self.policy(kind).max_attempts, int(tag_seq or 0)],
        )
        outcome = BeginOutcome(self._text(row[0]))
        if outcome is not BeginOutcome.CLAIMED:
            return BeginResult(outcome)
        data = json.loads(self._text(row[3]))
        claim = Claim(kind, entity_id, int(row[1]), token, self._text(row[2]), data, int(row[4]), bool(int(row[5])))
        return BeginResult(outcome, claim)

    async def renew(self, claim: Claim) -> bool:
        """Push the claim's lease `claim_lease` into the future; False when it is no longer ours."""
        row = await self._run("RENEW", self._keys(claim.kind, claim.entity_id)[:2],
                              [self._now_ms(), int(self.claim_lease * 1000), claim.token, claim.entity_id])
        return bool(row)

    async def complete(self, claim: Claim) -> CompleteResult:
        """The run succeeded: delete the mark if nothing newer was marked since the claim;
        otherwise keep it, due now, and return MOVED with the event to enqueue at once."""
        row = await self._run("COMPLETE", self._keys(claim.kind, claim.entity_id),
                              [self._now_ms(), claim.token, claim.seq, claim.entity_id])
        outcome = CompleteOutcome(self._text(row[0]))
        if outcome is CompleteOutcome.MOVED:
            event = tag_event(self._text(row[2]), json.loads(self._text(row[3])), claim.kind, int(row[1]))
            return CompleteResult(outcome, event)
        return CompleteResult(outcome)

    async def fail(self, claim: Claim, error: str, *, retryable: bool) -> FailResult:
        """The run failed: one more attempt counted; retryable with budget left → due after
        the kind's backoff (state retrying); otherwise → the dead list with `error`."""
        policy = self.policy(claim.kind)
        delay = policy.backoff(claim.attempts + 1, self.rnd)
        row = await self._run(
            "FAIL", self._keys(claim.kind, claim.entity_id),
            [self._now_ms(), claim.token, claim.seq, claim.entity_id, "1" if retryable else "0",
             policy.max_attempts, int(delay * 1000), error[:2000]],
        )
        outcome = FailOutcome(self._text(row[0]))
        if outcome is FailOutcome.RETRY:
            return FailResult(outcome, int(row[1]), max(0.0, (int(row[2]) - self._now_ms()) / 1000))
        if outcome is FailOutcome.DEAD:
            return FailResult(outcome, int(row[1]))
        return FailResult(outcome)

    async def busy(self, claim: Claim, delay: float | None = None) -> bool:
        """The entity lock is held by another run: no attempt counted, due again after
        `delay` (default: the kind's busy_delay). False when the claim was not ours any more."""
        wait = self.policy(claim.kind).busy_delay if delay is None else delay
        row = await self._run("BUSY", self._keys(claim.kind, claim.entity_id)[:2],
                              [self._now_ms(), claim.token, int(wait * 1000), claim.entity_id])
        return self._text(row[0]) == "rescheduled"

    # ------------------------------------------------------------------ sweeping, operating

    async def due_batch(self, limit: int) -> list[MarkResult]:
        """Up to `limit` due marks (due longest ago first, across kinds), each pushed
        `requeue_lease` into the future atomically: no second sweeper gets them."""
        kinds = list(self._policies)
        rows = await self._run(
            "DUE_BATCH", [f"{self.prefix}:due:{k.value}" for k in kinds],
            [self._now_ms(), int(limit), int(self.requeue_lease * 1000), self.prefix, *[k.value for k in kinds]],
        )
        return [
            MarkResult(SyncKind(self._text(r[0])), self._text(r[1]), int(r[2]), MarkOutcome.UPDATED,
                       self._text(r[3]), json.loads(self._text(r[4])))
            for r in rows
        ]

    async def get(self, kind: SyncKind, entity_id: str) -> MarkInfo | None:
        kind = SyncKind(kind)
        try:
            raw = await self.redis.hgetall(self._keys(kind, entity_id)[0])
        except RedisError as exc:
            raise LedgerError(f"sync ledger unavailable (get): {exc}") from exc
        return self._info(kind, raw) if raw else None

    def _info(self, kind: SyncKind, raw: Mapping[Any, Any]) -> MarkInfo:
        h = {self._text(k): self._text(v) for k, v in raw.items()}

        def num(name: str) -> float:
            try:
                return float(h.get(name) or 0)
            except ValueError:
                return 0.0

        state = h.get("state", "")
        return MarkInfo(
            kind=kind, entity_id=h.get("id", ""), seq=int(num("seq")), state=state, topic=h.get("topic", ""),
            data=json.loads(h.get("data") or "{}"), attempts=int(num("attempts")), last_error=h.get("last_error", ""),
            created_at=num("created_at") / 1000, updated_at=num("updated_at") / 1000,
            due_at=num("due_at") / 1000 if state != "dead" else None,
            in_flight=bool(h.get("claim")) and num("lease_until") > self._now_ms(),
            busy=int(num("busy")), requeues=int(num("requeues")),
            died_at=num("died_at") / 1000 if h.get("died_at") else None,
        )

    def _kinds(self, kind: SyncKind | None) -> list[SyncKind]:
        return [SyncKind(kind)] if kind is not None else list(self._policies)

    async def _list(self, zset: str, kind: SyncKind | None, limit: int) -> list[MarkInfo]:
        out: list[MarkInfo] = []
        try:
            for k in self._kinds(kind):
                ids = await self.redis.zrange(f"{self.prefix}:{zset}:{k.value}", 0, max(0, limit - len(out)) - 1)
                if not ids:
                    continue
                pipe = self.redis.pipeline(transaction=False)
                for entity_id in ids:
                    pipe.hgetall(self._keys(k, self._text(entity_id))[0])
                for raw in await pipe.execute():
                    if raw:
                        out.append(self._info(k, raw))
                if len(out) >= limit:
                    break
        except RedisError as exc:
            raise LedgerError(f"sync ledger unavailable (list): {exc}") from exc
        return out

    async def dead(self, kind: SyncKind | None = None, *, limit: int = 1000) -> list[MarkInfo]:
        """Dead marks (oldest death first), of one kind or all."""
        return await self._list("dead", kind, limit)

    async def live(self, kind: SyncKind | None = None, *, limit: int = 1000) -> list[MarkInfo]:
        """Pending and retrying marks (soonest due first), of one kind or all."""
        return await self._list("due", kind, limit)

    async def replay(self, kind: SyncKind | None = None, ids: Iterable[str] | None = None) -> list[MarkResult]:
        """Put marks back to pending (attempts reset, due now) and return their tagged
        events (the caller may enqueue them; else the sweeper does). Without ids: every
        dead mark (of `kind`, or of all kinds). With ids: those marks, dead or live, of
        `kind` (or of whichever kind has them)."""
        targets: list[tuple[SyncKind, str]] = []
        try:
            if ids is None:
                for k in self._kinds(kind):
                    targets += [(k, self._text(i)) for i in await self.redis.zrange(f"{self.prefix}:dead:{k.value}", 0, -1)]
            else:
                for entity_id in ids:
                    for k in self._kinds(kind):
                        if await self.redis.exists(self._keys(k, entity_id)[0]):
                            targets.append((k, entity_id))
        except RedisError as exc:
            raise LedgerError(f"sync ledger unavailable (replay): {exc}") from exc
        out: list[MarkResult] = []
        for k, entity_id in targets:
            row = await self._run("REPLAY", self._keys(k, entity_id), [self._now_ms(), entity_id])
            if row:
                out.append(MarkResult(k, entity_id, int(row[0]), MarkOutcome.REVIVED, self._text(row[1]),
                                      json.loads(self._text(row[2]))))
        return out

    async def stats(self) -> dict[str, dict[str, int]]:
        """Per kind: pending, retrying, dead, due_now (live marks due for the sweeper)."""
        now = self._now_ms()
        pipe = self.redis.pipeline(transaction=False)
        kinds = list(self._policies)
        for k in kinds:
            pipe.zcard(f"{self.prefix}:due:{k.value}")
            pipe.scard(f"{self.prefix}:retrying:{k.value}")
            pipe.zcard(f"{self.prefix}:dead:{k.value}")
            pipe.zcount(f"{self.prefix}:due:{k.value}", "-inf", now)
        try:
            values = await pipe.execute()
        except RedisError as exc:
            raise LedgerError(f"sync ledger unavailable (stats): {exc}") from exc
        out: dict[str, dict[str, int]] = {}
        for i, k in enumerate(kinds):
            live, retrying, dead, due_now = (int(v) for v in values[4 * i: 4 * i + 4])
            out[k.value] = {"pending": live - retrying, "retrying": retrying, "dead": dead, "due_now": due_now}
        return out
