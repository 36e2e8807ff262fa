"""The checks every sync runs before a delete caused by "not found on the other side".

- `espocrm_doubt`: EspoCRM answered 404 for a record (the first read). The second,
  independent read is a search of the entity's list for its id: the record must be absent
  from a list that answered. A list that fails (404: wrong path, entity disabled) or that is
  empty while records are expected (`expected()`: the caller knows linked records) leaves
  doubt, and nothing is deleted.
- `gated_delete`: asks the guard (services.platform.deletion_guard.guard), then deletes;
  when the guard holds the delete it raises `DeleteHeld` with the reason, nothing deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.clients.errors import NotFoundError
from services.platform.deletion_guard.guard import DeletionGuard
from services.platform.deletion_guard.model import DeleteHeld, Deletion, Gate

Expected = Callable[[], Awaitable[bool]]
"""Whether the other side is expected to hold records (asked only when its list is empty)."""


async def espocrm_doubt(espocrm: Any, entity_type: str, entity_id: str, *, expected: Expected | None = None) -> str | None:
    """None when EspoCRM's list confirms the 404 of `entity_id`, else why it does not.
    Retryable errors (5xx, network) are raised: the ledger retries the sync."""
    where = [{"type": "equals", "attribute": "id", "value": entity_id}]
    try:
        found = await espocrm.list_entities(entity_type, where=where, select="id", max_size=1)
        rows = found.get("list") if isinstance(found, dict) else None
        if rows:
            return f"EspoCRM answered 404 for {entity_type} {entity_id} but still lists it"
        if expected is not None:
            some = await espocrm.list_entities(entity_type, select="id", max_size=1)
            if not (some.get("list") if isinstance(some, dict) else None) and await expected():
                return f"EspoCRM lists no {entity_type} at all although linked records are known"
    except NotFoundError as exc:
        return f"EspoCRM's {entity_type} list answers 404 ({exc}): a wrong path or a missing permission, nothing deleted"
    return None


async def gated_delete(guard: DeletionGuard, deletion: Deletion, delete: Callable[[], Awaitable[Any]]) -> Gate:
    """Ask the guard, then run `delete`; raises DeleteHeld (nothing deleted) when it holds."""
    gate = await guard.admit(deletion)
    if not gate.allowed:
        raise DeleteHeld(f"delete held: {deletion.reason}; {gate.why}")
    await delete()
    return gate
