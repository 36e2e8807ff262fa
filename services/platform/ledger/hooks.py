"""What happens to an entity when its mark goes dead (the developer guide's failure fields).

- document: CDokumente `xaiSyncStatus=failed`, `xaiSyncError` = the last error;
- party / bank account: `syncStatus=failed`, `syncError` = the last error;
- calendar employee: the status record in state `calendar_sync_status/{Kürzel}` gets
  `result=failed`, `dead=true` and the error;
- collection, calendar fan-out: nothing beyond the dead list and the error log (the
  entity has no status field; the reconciler and the next cron run try again).

The writes are best effort: run_marked logs a failing hook; the dead list keeps the error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.platform.ledger.glue import OnDead
from services.platform.ledger.policies import SyncKind
from services.platform.ledger.store import Claim
from services.platform.models import EntityType, SyncStatus, XAISyncStatus

MAX_ERROR_LENGTH = 2000


async def document_dead(claim: Claim, error: str, ctx: Any) -> None:
    from services.platform.container import get_espocrm

    await get_espocrm().update_entity(
        EntityType.DOKUMENTE.value, claim.entity_id, {"xaiSyncStatus": XAISyncStatus.FAILED, "xaiSyncError": error[:MAX_ERROR_LENGTH]}
    )


def _sync_status_dead(entity_type: EntityType) -> OnDead:
    async def hook(claim: Claim, error: str, ctx: Any) -> None:
        from services.platform.container import get_espocrm

        await get_espocrm().update_entity(
            entity_type.value, claim.entity_id, {"syncStatus": SyncStatus.FAILED, "syncError": error[:MAX_ERROR_LENGTH]}
        )

    return hook


async def calendar_employee_dead(claim: Claim, error: str, ctx: Any) -> None:
    from services.calendar.sync import STATUS_SCOPE, RunResult

    state = getattr(ctx, "state", None)
    if state is None:
        return
    previous = await state.get(STATUS_SCOPE, claim.entity_id)
    record = dict(previous) if isinstance(previous, Mapping) else {"kuerzel": claim.entity_id}
    record.update({"result": RunResult.FAILED.value, "dead": True, "error": error[:MAX_ERROR_LENGTH],
                   "dead_at": datetime.now(UTC).isoformat()})
    await state.set(STATUS_SCOPE, claim.entity_id, record)


ON_DEAD: Mapping[SyncKind, OnDead] = {
    SyncKind.DOCUMENT: document_dead,
    SyncKind.PARTY: _sync_status_dead(EntityType.BETEILIGTE),
    SyncKind.BANK_ACCOUNT: _sync_status_dead(EntityType.BANKVERBINDUNGEN),
    SyncKind.CALENDAR_EMPLOYEE: calendar_employee_dead,
}
