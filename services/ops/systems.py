"""Everything the operators' tools read from or queue into, handed over by the step glue
(src/glue/ops.py builds it from the container and `ctx.state`; tests from the simulators)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.platform.activity import ActivityLog
from services.platform.ledger import Ledger
from services.platform.settings import Settings


@dataclass
class Systems:
    espocrm: Any
    xai: Any
    advoware: Any
    google: Any
    state: Any
    """The engine's state (`ctx.state`: get/set/delete/list by scope and key): journals, snapshots, pairs."""
    ledger: Ledger
    settings: Settings
    guard: Any = None
    """The deletion guard (services.platform.deletion_guard), for held deletes and tombstones."""

    @property
    def activity(self) -> ActivityLog:
        return ActivityLog(self.ledger.redis, self.ledger.prefix)


__all__ = ["Systems"]
