"""What the deletion guard works with: a `Deletion` (the record about to be deleted, why, its
last state and the event that retries it), the guard's verdict (`Gate`) and `DeleteHeld`,
the permanent error a sync raises or records when a delete may not happen now."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.clients.errors import PermanentError

HOUR_SECONDS = 3600.0
"""The guard's window: at most `max_per_hour` deletes within any hour."""


class System(StrEnum):
    """Where a record is deleted (and restored)."""

    ESPOCRM = "espocrm"
    ADVOWARE = "advoware"
    GOOGLE = "google"


class Tombstoned(StrEnum):
    """Entity types of the records outside EspoCRM that tombstones name (EspoCRM records carry
    their entity type, e.g. `CBeteiligte`)."""

    ADVOWARE_PARTY = "Beteiligte"
    ADVOWARE_BANK = "Bankverbindung"
    ADVOWARE_APPOINTMENT = "Termin"
    GOOGLE_EVENT = "event"


class Verdict(StrEnum):
    ALLOWED = "allowed"
    """Within the hourly budget: counted, the tombstone kept."""
    APPROVED = "approved"
    """An operator confirmed this held delete (`confirm`): not counted, the tombstone kept."""
    HELD = "held"
    """The budget is spent (or the guard tripped earlier): nothing may be deleted."""


@dataclass
class Deletion:
    """One delete caused by "not found on the other side", before it happens.

    `record` is the record's last state (what `restore` re-creates), `related` the records
    deleted along with it (`{"entity_type", "record"}`, e.g. a party's bank accounts),
    `context` what a restore needs besides (a BetNr, a calendar id), `retry` the queue event
    (`{"topic", "data"}`) that runs the sync again once an operator confirmed the delete."""

    system: System
    entity_type: str
    entity_id: str
    reason: str
    record: dict[str, Any] | None = None
    related: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    retry: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """`{system}:{entity_type}:{entity_id}`: how held deletes are named and confirmed."""
        return f"{self.system.value}:{self.entity_type}:{self.entity_id}"

    def held_entry(self, at: float, why: str) -> dict[str, Any]:
        return {
            "key": self.key,
            "at": at,
            "system": self.system.value,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "reason": self.reason,
            "why": why,
            "retry": self.retry,
        }

    def tombstone(self, at: float) -> dict[str, Any]:
        """The kept last state: everything `restore` needs, under a new id."""
        return {
            "id": f"{int(at)}-{secrets.token_hex(4)}",
            "at": at,
            "key": self.key,
            "system": self.system.value,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "reason": self.reason,
            "record": self.record,
            "related": self.related,
            "context": self.context,
        }


@dataclass(frozen=True)
class Gate:
    verdict: Verdict
    tombstone_id: str | None = None
    why: str | None = None

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.HELD


class DeleteHeld(PermanentError):
    """A delete that did not happen: the other side's answer was not certain, or the guard
    holds deletes until an operator confirms. The record stays; the sync records the reason."""


def now_seconds() -> float:
    return time.time()


def dumps(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, default=str)
