"""Queue handler: sync one party (CBeteiligte ↔ Advoware Beteiligte) for
`vmh.beteiligte.{create,update,delete}` under the lock `beteiligte_sync:CBeteiligte:{id}`.

The decisions live in services.parties.plan (create / three-way merge / conflict rules) and
services.parties.deletes, applied by services.parties.executor.BeteiligteSync (see
src/steps/vmh/README.md); src.glue.queue_handlers.handle_sync_event runs it on the
sync ledger (retries, backoff, dead list: ledger kind `party`). Follow-ups (the party's
bank accounts) are marked, then enqueued.
"""

from typing import Any

from motia import queue

from services.parties.events import TOPIC_BANK, TOPIC_PARTY
from services.platform.models import EntityAction, EntityType
from src.glue.queue_handlers import handle_sync_event

config = {
    "name": "VMH Beteiligte Sync",
    "description": "Two-way sync of one CBeteiligte with its Advoware party",
    "flows": ["vmh-beteiligte"],
    "triggers": [queue(f"{TOPIC_PARTY}.{a.value}") for a in (EntityAction.CREATE, EntityAction.UPDATE, EntityAction.DELETE)],
    "enqueues": [f"{TOPIC_BANK}.{EntityAction.UPDATE.value}"],
}


async def handler(data: Any, ctx: Any) -> None:
    await handle_sync_event(data, ctx, EntityType.BETEILIGTE)
