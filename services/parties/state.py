"""What the party sync remembers, in the engine's state store (`ctx.state` API:
`get/set/delete/list(scope, key)`): per linked record the *snapshot* (the merged canonical
record of the last sync, see services.parties.plan), the bank-account index, the parties
Advoware kept and the cron's bookmark.

Rules: a snapshot belongs to one pair (EspoCRM id ↔ Advoware id); a bank account's snapshot
also names its party's BetNr and is mirrored in the index (Advoware account Id → EspoCRM
id), so one Advoware account is linked to one EspoCRM record only; dropping the snapshot
drops the index entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

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


def utc_iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


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
