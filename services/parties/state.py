"""What the party sync remembers, in the engine's state store (`ctx.state` API:
`get/set/delete/list(scope, key)`): per linked record the *snapshot* (the merged canonical
record of the last sync, see services.parties.plan), the bank-account index, the parties
Advoware kept, and the cron's bookmarks and rotation (services.parties.reconcile).

Rules: a snapshot belongs to one pair (EspoCRM id ↔ Advoware id); a bank account's snapshot
also names its party's BetNr and is mirrored in the index (Advoware account Id → EspoCRM
id), so one Advoware account is linked to one EspoCRM record only; dropping the snapshot
drops the index entry. A bookmark (`Bookmark`) is Singer-style: the latest modification
time seen and the ids modified at exactly that time; the change filters of both APIs are
`>=`, so those ids come back in the next listing and are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from services.platform.state import StateStore as StateStore

PARTY_SNAPSHOT_SCOPE = "beteiligte_sync_snapshots"
"""key = EspoCRM id → {"espoId", "advowareId", "fields", "verifiedAt"}."""
BANK_SNAPSHOT_SCOPE = "bankverbindungen_sync_snapshots"
"""key = EspoCRM id → {"espoId", "advowareId", "betnr", "fields", "verifiedAt"}."""
BANK_INDEX_SCOPE = "bankverbindungen_sync_index"
"""key = Advoware bank account Id → EspoCRM id (so one Advoware account is linked once)."""
KEPT_SCOPE = "beteiligte_sync_kept"
"""key = BetNr → {"espoId", "reason", "at"}: deleted in EspoCRM, kept in Advoware (matters)."""
DELETED_BY_SYNC_SCOPE = "beteiligte_sync_deleted"
"""key = EspoCRM id → {"advowareId", "at"}: deleted in EspoCRM by the sync because Advoware
lost the record; the delete webhook of that record is our own echo and deletes nothing in
Advoware (should Advoware have it again by then, it stays)."""
META_SCOPE = "beteiligte_sync_meta"
BOOKMARK_KEY = "advoware_bookmark"
"""{"geaendertAm": <max GeaendertAm seen>, "betnrs": [BetNrs with exactly that time]}."""
ESPOCRM_BOOKMARK_PREFIX = "espocrm_bookmark:"
"""+ entity type → {"modifiedAt": <max modifiedAt seen>, "ids": [ids with exactly that time]}."""
LAST_FULL_KEY = "last_full_reconcile"
"""{"at": ISO time of the last full reconcile (both sides listed entirely)}."""
ROTATION_SCOPE = "beteiligte_sync_rotation"
"""key = "{topic}:{EspoCRM id}" → {"topic", "espoId", "at"}: when the cron's rotation last
queued the record for re-verification (so one that keeps failing does not block the others)."""

T = TypeVar("T")


def utc_iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def parse_iso(raw: Any) -> datetime | None:
    """An ISO time written by `utc_iso` (naive = UTC), None when missing or unreadable."""
    if not raw:
        return None
    try:
        at = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Bookmark:
    """The latest modification time seen (`at`) and the ids modified at exactly that time."""

    at: datetime | None = None
    ids: frozenset[Any] = frozenset()

    def advance(
        self, rows: Iterable[T], at_of: Callable[[T], datetime | None], id_of: Callable[[T], Any]
    ) -> tuple[Bookmark, list[T]]:
        """The bookmark after `rows` (a `>=` listing) and the rows new since this one: those
        before `at`, and those at `at` already seen, are left out."""
        fresh: list[T] = []
        best_at, best_ids = self.at, set(self.ids)
        for row in rows:
            at, rid = at_of(row), id_of(row)
            if at is None or rid is None:
                continue
            if self.at is not None and (at < self.at or (at == self.at and rid in self.ids)):
                continue
            fresh.append(row)
            if best_at is None or at > best_at:
                best_at, best_ids = at, {rid}
            elif at == best_at:
                best_ids.add(rid)
        return Bookmark(best_at, frozenset(best_ids)), fresh


class Snapshots:
    """The snapshots of one kind (`scope`); `indexed` kinds (bank accounts) keep the
    Advoware-id index in step."""

    def __init__(self, state: StateStore, scope: str, *, indexed: bool, now: Callable[[], datetime]) -> None:
        self.state = state
        self.scope = scope
        self.indexed = indexed
        self.now = now

    async def load(self, espo_id: str) -> dict[str, Any] | None:
        snap = await self.state.get(self.scope, espo_id)
        return snap if isinstance(snap, dict) else None

    async def save(
        self, espo_id: str, advoware_id: int, fields: Mapping[str, Any], *, parent: int | None = None
    ) -> None:
        snap: dict[str, Any] = {"espoId": espo_id, "advowareId": advoware_id}
        if self.indexed:
            snap["betnr"] = parent
        snap.update({"fields": dict(fields), "verifiedAt": utc_iso(self.now())})
        await self.state.set(self.scope, espo_id, snap)
        if self.indexed:
            await self.state.set(BANK_INDEX_SCOPE, str(advoware_id), espo_id)

    async def drop(self, espo_id: str, snap: Mapping[str, Any] | None = None) -> None:
        await self.state.delete(self.scope, espo_id)
        if self.indexed and snap and snap.get("advowareId") is not None:
            await self.state.delete(BANK_INDEX_SCOPE, str(snap["advowareId"]))

    async def owner(self, advoware_id: int) -> Any:
        """The EspoCRM id an Advoware bank account is linked to (index), or None."""
        return await self.state.get(BANK_INDEX_SCOPE, str(advoware_id))
