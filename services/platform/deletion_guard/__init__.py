"""The mass-deletion guard: no sync deletes data because the other side *seemed* not to
have it.

A delete caused by "not found on the other side" (an Advoware party, bank account or
appointment answering 404, an EspoCRM record answering 404, a Google event gone) happens
only when all of these hold:
1. A second, independent read confirms it: the record by id AND a search for it (Advoware:
   the party list by `ExterneId`, the party's bank accounts by id and IBAN, the appointment
   list of its day; EspoCRM: its list searched by id; Google: the calendar searched by the
   appointment's `advowareFrNr`). Found again under another id → the sync links it instead.
2. The other side's list endpoint answered: a list that fails (404: a wrong path, a
   permission change; 5xx: an outage) or is empty while records are expected (we know more
   linked records than the hourly budget) deletes nothing.
3. The guard (`guard.py`, counted in Redis, shared by every worker) admits it: at most
   DELETE_GUARD_MAX_PER_HOUR (default 5) such deletes within any hour. The next one trips
   it; from then on every such delete is held: recorded in the held list, warned about, the
   entity marked failed with the reason (`syncStatus=failed` + `syncError` for parties and
   bank accounts, the calendar status record's `item_errors`), until an operator confirms
   (`python -m services.platform.deletion_guard confirm`, which approves the held deletes and
   re-queues their syncs through the sync ledger) or resets the guard.
4. The record's last state (and the records deleted along with it) is kept first as a
   tombstone (Redis list `{prefix}:tombstones`, newest first, DELETE_TOMBSTONES_KEEP), so
   `python -m services.platform.deletion_guard restore ID` can re-create it (restore.py).

Document deletes (services.documents) are not counted here: they take a file out of
collections (the file stays) and happen only after EspoCRM answers 404 for the document.
"""

from __future__ import annotations

from typing import Any

from services.platform.deletion_guard.checks import espocrm_doubt, gated_delete
from services.platform.deletion_guard.guard import (
    DEFAULT_MAX_PER_HOUR,
    DeletionGuard,
    LocalDeletionGuard,
    RedisDeletionGuard,
    find_tombstone,
)
from services.platform.deletion_guard.model import DeleteHeld, Deletion, Gate, System, Tombstoned, Verdict


def guard_from_settings(settings: Any, redis: Any) -> RedisDeletionGuard:
    """The shared guard on `redis`, configured from the settings' `deletes` section."""
    d = settings.deletes
    return RedisDeletionGuard(redis, max_per_hour=d.max_per_hour, prefix=d.key_prefix, keep=d.tombstones_keep)


def get_deletion_guard() -> RedisDeletionGuard:
    """The worker's guard, on the shared Redis client (services.platform.container)."""
    from services.platform.container import get_redis_client
    from services.platform.settings import get_settings

    return guard_from_settings(get_settings(), get_redis_client())


__all__ = [
    "DEFAULT_MAX_PER_HOUR",
    "DeleteHeld",
    "Deletion",
    "DeletionGuard",
    "Gate",
    "LocalDeletionGuard",
    "RedisDeletionGuard",
    "System",
    "Tombstoned",
    "Verdict",
    "espocrm_doubt",
    "find_tombstone",
    "gated_delete",
    "get_deletion_guard",
    "guard_from_settings",
]
