"""What one employee's calendar sync run (services.calendar.sync) remembers between runs
(`EmployeeState`, in state scope `calendar_sync`) and what it reports (`SyncReport`, in
`calendar_sync_status`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from services.calendar.plan import Pair

STATE_VERSION = 1


class RunResult(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    """The run finished, but some items failed permanently (see `item_errors`)."""
    FAILED = "failed"


class GoogleReadMode(StrEnum):
    INCREMENTAL = "incremental"
    FULL = "full"
    FULL_AFTER_410 = "full_after_410"


@dataclass
class EmployeeState:
    """What is remembered between runs for one employee."""

    sync_token: str | None = None
    pairs: dict[int, Pair] = field(default_factory=dict)
    pending_events: set[str] = field(default_factory=set)
    parked: dict[int, str] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "sync_token": self.sync_token,
            "pairs": {str(frnr): p.to_state() for frnr, p in self.pairs.items()},
            "pending_events": sorted(self.pending_events),
            "parked": {str(frnr): day for frnr, day in sorted(self.parked.items())},
        }

    @classmethod
    def from_state(cls, doc: Any) -> EmployeeState:
        if not isinstance(doc, Mapping):
            return cls()
        pairs: dict[int, Pair] = {}
        for frnr, value in (doc.get("pairs") or {}).items():
            try:
                pairs[int(frnr)] = Pair.from_state(frnr, value)
            except (TypeError, ValueError):
                continue
        return cls(
            sync_token=doc.get("sync_token") or None,
            pairs=pairs,
            pending_events={str(e) for e in doc.get("pending_events") or []},
            parked={int(f): str(d) for f, d in (doc.get("parked") or {}).items() if str(f).lstrip("-").isdigit()},
        )


@dataclass
class SyncReport:
    kuerzel: str
    calendar_id: str
    google_mode: GoogleReadMode
    window: tuple[date, date]
    advoware_listed: int = 0
    google_seen: int = 0
    verified_appointments: int = 0
    verified_events: int = 0
    planned: dict[str, int] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    item_errors: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pairs: int = 0
    seconds: float = 0.0

    @property
    def write_count(self) -> int:
        return sum(self.writes.values())

    @property
    def result(self) -> RunResult:
        return RunResult.PARTIAL if self.item_errors else RunResult.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "kuerzel": self.kuerzel,
            "calendar_id": self.calendar_id,
            "result": self.result.value,
            "google_mode": self.google_mode.value,
            "window": [self.window[0].isoformat(), self.window[1].isoformat()],
            "advoware_listed": self.advoware_listed,
            "google_seen": self.google_seen,
            "verified_appointments": self.verified_appointments,
            "verified_events": self.verified_events,
            "planned": self.planned,
            "writes": self.writes,
            "write_count": self.write_count,
            "conflicts": self.conflicts[:50],
            "conflict_count": len(self.conflicts),
            "item_errors": self.item_errors[:50],
            "notes": self.notes[:50],
            "pairs": self.pairs,
            "seconds": round(self.seconds, 3),
        }
