"""The entity view's frame: what every view has (the sync's bookkeeping: ledger marks, held
deletes and tombstones, recent activity), how a system that cannot be read is reported, and the
verdict in words. The per-type parts are in services.ops.status and services.ops.status_sync.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from redis.exceptions import RedisError

from services.clients.errors import ApiError, IntegrationError, NotFoundError
from services.clients.http import CallBudgetSpent
from services.ops.entities import EntityRef, OpsEntityType
from services.ops.systems import Systems
from services.platform.ledger import LedgerError

TOMBSTONES_SCANNED = 500
"""The newest tombstones searched for an entity (the guard keeps up to DELETE_TOMBSTONES_KEEP)."""


class ViewState(StrEnum):
    """The view's verdict, most urgent first."""

    NOT_FOUND = "not_found"  # EspoCRM does not have it (see the tombstones)
    DEAD = "dead"  # the ledger gave up on its sync: replay or resync it
    ATTENTION = "attention"  # something disagrees (see problems)
    SYNCING = "syncing"  # a sync is pending or running
    IN_SYNC = "in_sync"
    UNKNOWN = "unknown"  # a system could not be read


def describe(exc: BaseException) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.service} {exc.status}: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class View:
    ref: EntityRef
    name: str | None = None
    found: bool | None = None
    espocrm: dict[str, Any] | None = None
    counterparts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    deletion_guard: dict[str, Any] = field(default_factory=lambda: {"held": [], "tombstones": []})
    activity: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    read_at: float = field(default_factory=time.time)

    @contextlib.asynccontextmanager
    async def reading(self, system: str) -> AsyncIterator[None]:
        """Run a read of `system`; a failure is noted in `errors` instead of failing the view."""
        try:
            yield
        except CallBudgetSpent as exc:
            self.errors[system] = f"not read: {exc}"
        except (IntegrationError, LedgerError, RedisError) as exc:
            self.errors[system] = describe(exc)

    async def espocrm_record(self, systems: Systems, fields: tuple[str, ...]) -> dict[str, Any] | None:
        """The EspoCRM record (its sync fields in `espocrm`), or None (not found / unreadable)."""
        espo_type = self.ref.espocrm_type
        assert espo_type is not None
        raw: dict[str, Any] | None = None
        async with self.reading("espocrm"):
            try:
                raw = await systems.espocrm.get_entity(espo_type.value, self.ref.id)
            except NotFoundError:
                self.found = False
                self.problems.append(f"EspoCRM has no {espo_type.value} {self.ref.id} (deleted? see the tombstones)")
        if raw is not None:
            self.found = True
            self.name = str(raw.get("name") or "") or None
            self.espocrm = {k: raw.get(k) for k in fields}
        return raw

    @property
    def state(self) -> ViewState:
        if self.found is False:
            return ViewState.NOT_FOUND
        if any(m.get("state") == "dead" for m in self.ledger):
            return ViewState.DEAD
        if self.problems:
            return ViewState.ATTENTION
        if self.ledger:
            return ViewState.SYNCING
        if self.errors or self.found is None:
            return ViewState.UNKNOWN
        return ViewState.IN_SYNC

    def summary(self) -> str:
        label = f"{self.ref.type.value} {self.ref.id}" + (f" \"{self.name}\"" if self.name else "")
        state = self.state
        if state is ViewState.DEAD:
            dead = next(m for m in self.ledger if m.get("state") == "dead")
            head = f"{label}: the ledger gave up on its sync after {dead.get('attempts')} attempt(s): {dead.get('last_error')}"
        elif state is ViewState.SYNCING:
            head = f"{label}: a sync is {'running' if any(m.get('in_flight') for m in self.ledger) else 'pending'}"
        elif state is ViewState.IN_SYNC:
            head = f"{label}: in sync"
        elif state is ViewState.UNKNOWN:
            head = f"{label}: could not read " + ", ".join(sorted(self.errors)) if self.errors else f"{label}: unknown"
        else:
            head = f"{label}: {self.problems[0]}"
        more = [p for p in self.problems if p not in head]
        return head + (". Also: " + "; ".join(more) if more else "") + (". " + " ".join(self.notes) if self.notes else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "entity": self.ref.as_json(), "name": self.name, "found": self.found, "state": self.state.value,
            "summary": self.summary(), "problems": self.problems, "notes": self.notes, "espocrm": self.espocrm,
            "counterparts": self.counterparts, "ledger": self.ledger, "deletion_guard": self.deletion_guard,
            "activity": self.activity, "errors": self.errors, "calls": self.calls, "read_at": round(self.read_at, 3),
            "actions": {"resync": {"method": "POST", "path": f"{self.ref.path}/resync"}},
        }


def _names(entry: Mapping[str, Any], ref: EntityRef) -> bool:
    """Whether a held delete or tombstone is about this entity (directly, through the EspoCRM id
    or the Kürzel in its context, or through its retry event)."""
    context = entry.get("context") or {}
    retry = ((entry.get("retry") or {}).get("data") or {}) if isinstance(entry.get("retry"), Mapping) else {}
    if ref.type is OpsEntityType.EMPLOYEE:
        return ref.id in (context.get("kuerzel"), retry.get("kuerzel"))
    espo = ref.espocrm_type
    if entry.get("system") == "espocrm" and espo is not None and entry.get("entity_type") != espo.value:
        return False
    return ref.id in (entry.get("entity_id"), context.get("espoId"), retry.get("entity_id"))


async def add_bookkeeping(systems: Systems, view: View) -> None:
    """The ledger's marks of the entity, the guard's held deletes and tombstones naming it, and
    its recent activity (Redis only; no API call)."""
    ref = view.ref
    async with view.reading("ledger"):
        for kind, key in ref.ledger_keys():
            info = await systems.ledger.get(kind, key)
            if info is not None:
                view.ledger.append(info.as_json())
    for mark in view.ledger:
        if mark.get("state") == "dead":
            view.problems.append(f"the ledger gave up on its {mark['kind']} sync: {mark.get('last_error')}")
        elif mark.get("attempts"):
            view.notes.append(f"Its {mark['kind']} sync failed {mark['attempts']} time(s) and is retried: {mark.get('last_error')}.")
    if systems.guard is not None:
        async with view.reading("deletion_guard"):
            held = [e for e in await systems.guard.held() if _names(e, ref)]
            tombs = [t for t in await systems.guard.tombstones(limit=TOMBSTONES_SCANNED) if _names(t, ref)]
            view.deletion_guard = {"held": held, "tombstones": tombs[:20], "tombstones_scanned": TOMBSTONES_SCANNED}
            for e in held:
                view.problems.append(f"a delete waits for an operator's confirm: {e.get('key')} ({e.get('reason')})")
    async with view.reading("activity"):
        view.activity = await systems.activity.recent(ref.activity_entities())


__all__ = ["View", "ViewState", "add_bookkeeping", "describe"]
