"""What queues work, and how each kind of work is retried: declared once, here.

A *kind* is one sort of queued work on one sort of entity. Every queue topic the steps
subscribe to belongs to exactly one kind (tests/services/webhooks/test_intake.py checks
this against the step files), and `SyncPolicy.key(data)` names the entity of an event,
so (kind, key) identifies one mark in the ledger.

The topics are spelled out here instead of imported from the service modules, because
those modules import the ledger (a cycle); a test checks they stay equal.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class SyncKind(StrEnum):
    """Every kind of queued work (one mark per kind and entity)."""

    DOCUMENT = "document"  # vmh.document.{create,update,delete}: a CDokumente to xAI
    COLLECTION = "collection"  # vmh.collection.ensure: an entity's xAI collection
    PARTY = "party"  # vmh.beteiligte.*: CBeteiligte ↔ Advoware
    BANK_ACCOUNT = "bank_account"  # vmh.bankverbindungen.*: CBankverbindungen ↔ Advoware
    CALENDAR_ALL = "calendar_all"  # calendar.sync.all: fan out to every mapped employee
    CALENDAR_EMPLOYEE = "calendar_employee"  # calendar.sync.employee: one employee's calendars


def _entity_id(data: Mapping[str, Any]) -> str:
    return str(data["entity_id"])


def _typed_entity_id(data: Mapping[str, Any]) -> str:
    """Collections: `{entity_type}:{entity_id}` (an id alone could exist in two entity types)."""
    return f"{data['entity_type']}:{data['entity_id']}"


def _kuerzel(data: Mapping[str, Any]) -> str:
    return str(data["kuerzel"])


def _all(_data: Mapping[str, Any]) -> str:
    return "all"


@dataclass(frozen=True)
class SyncPolicy:
    """How one kind is delivered and retried (all durations in seconds).

    - `max_attempts`: failed runs before the mark goes dead (the first run counts).
    - `base_delay`, `max_delay`: backoff after the n-th failure is
      `min(max_delay, base_delay * 2**(n-1))`, with equal jitter (between half and all
      of it), so retries of many entities do not come back in lock-step.
    - `time_box`: one handler run is cancelled after this long (the engine never stops
      a handler, semantics row Q3) and counts as a retryable failure.
    - `concurrency`: handler runs of this kind at once in one worker process (the Redis
      queue adapter starts one handler per message without limit, row R2).
    - `busy_delay`: when the entity lock is held by another run, try again this much later
      (no attempt counted).
    - `topics`: the queue topics of the kind; `key(data)` names the event's entity.
    - `sticky`: boolean payload fields that, once true in a pending mark, stay true when a
      newer event without them arrives (a requested full calendar resync is not lost).
    """

    kind: SyncKind
    topics: tuple[str, ...]
    key: Callable[[Mapping[str, Any]], str]
    max_attempts: int
    base_delay: float
    max_delay: float
    time_box: float
    concurrency: int
    busy_delay: float = 5.0
    sticky: tuple[str, ...] = field(default=())

    def backoff(self, failures: int, rnd: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the `failures`-th failed run (1 = the first)."""
        raw = min(self.max_delay, self.base_delay * (2 ** max(0, failures - 1)))
        return float(raw / 2 + rnd() * raw / 2)

    def scaled(self, *, backoff: float = 1.0, time_box: float = 1.0) -> SyncPolicy:
        """The same policy with delays (base, max, busy) and the time-box multiplied (tests)."""
        return replace(
            self,
            base_delay=self.base_delay * backoff,
            max_delay=self.max_delay * backoff,
            busy_delay=self.busy_delay * backoff,
            time_box=self.time_box * time_box,
        )


TOPIC_DOCUMENT_CREATE = "vmh.document.create"
TOPIC_DOCUMENT_UPDATE = "vmh.document.update"
TOPIC_DOCUMENT_DELETE = "vmh.document.delete"
TOPIC_COLLECTION_ENSURE = "vmh.collection.ensure"
TOPIC_CALENDAR_ALL = "calendar.sync.all"
TOPIC_CALENDAR_EMPLOYEE = "calendar.sync.employee"


def _actions(base: str) -> tuple[str, ...]:
    return tuple(f"{base}.{a}" for a in ("create", "update", "delete"))


# The one table. Time-boxes stay below the entity lock's 30-minute maximum hold
# (services.platform.locks: the lease is renewed for at most LOCK_TTL), so a run that is still
# inside its time-box always still holds its lock.
POLICIES: Mapping[SyncKind, SyncPolicy] = {
    p.kind: p
    for p in (
        # Uploads of up to 50 MB and xAI 429 waits: a long time-box, patient retries.
        SyncPolicy(SyncKind.DOCUMENT, (TOPIC_DOCUMENT_CREATE, TOPIC_DOCUMENT_UPDATE, TOPIC_DOCUMENT_DELETE),
                   _entity_id, max_attempts=9, base_delay=2.0, max_delay=600.0, time_box=900.0, concurrency=8),
        # Collection calls are quick; retries cover lock contention and xAI/EspoCRM outages.
        SyncPolicy(SyncKind.COLLECTION, (TOPIC_COLLECTION_ENSURE,), _typed_entity_id,
                   max_attempts=9, base_delay=1.0, max_delay=600.0, time_box=300.0, concurrency=4),
        SyncPolicy(SyncKind.PARTY, _actions("vmh.beteiligte"), _entity_id,
                   max_attempts=7, base_delay=1.0, max_delay=900.0, time_box=120.0, concurrency=8),
        SyncPolicy(SyncKind.BANK_ACCOUNT, _actions("vmh.bankverbindungen"), _entity_id,
                   max_attempts=7, base_delay=1.0, max_delay=900.0, time_box=120.0, concurrency=8),
        SyncPolicy(SyncKind.CALENDAR_ALL, (TOPIC_CALENDAR_ALL,), _all,
                   max_attempts=4, base_delay=2.0, max_delay=300.0, time_box=60.0, concurrency=1, sticky=("full",)),
        # The next cron run (15 min) syncs again anyway: few retries.
        SyncPolicy(SyncKind.CALENDAR_EMPLOYEE, (TOPIC_CALENDAR_EMPLOYEE,), _kuerzel,
                   max_attempts=4, base_delay=4.0, max_delay=300.0, time_box=900.0, concurrency=2, sticky=("full",)),
    )
}

_BY_TOPIC: dict[str, SyncKind] = {t: p.kind for p in POLICIES.values() for t in p.topics}

MAX_CONCURRENCY = 256
"""The most runs of one kind a worker may be configured to hold at once."""


def with_concurrency(overrides: Mapping[str, int], policies: Mapping[SyncKind, SyncPolicy] = POLICIES) -> dict[SyncKind, SyncPolicy]:
    """The policies with the configured concurrency (`LEDGER_CONCURRENCY`, kind value → runs at
    once) in place of the defaults above; kinds not named keep theirs. ValueError for a kind
    that does not exist or a limit outside 1..MAX_CONCURRENCY (the settings check both first)."""
    out = dict(policies)
    for name, limit in overrides.items():
        kind = SyncKind(name)
        if not 1 <= int(limit) <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency of {name} must be between 1 and {MAX_CONCURRENCY}, got {limit}")
        out[kind] = replace(out[kind], concurrency=int(limit))
    return out


def kind_for_topic(topic: str) -> SyncKind:
    """The kind whose handler consumes `topic` (KeyError for a topic no kind owns)."""
    try:
        return _BY_TOPIC[topic]
    except KeyError:
        raise KeyError(f"no ledger kind consumes topic {topic!r}") from None


def all_topics() -> frozenset[str]:
    return frozenset(_BY_TOPIC)
