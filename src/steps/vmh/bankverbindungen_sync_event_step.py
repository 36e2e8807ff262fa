"""Queue handler: sync one bank account (CBankverbindungen ↔ Advoware Bankverbindung) for
`vmh.bankverbindungen.{create,update,delete}` under the lock
`bankverbindungen_sync:CBankverbindungen:{id}`, on the sync ledger (kind `bank_account`).

A bank account follows its party: while the party has no advowareId it waits
(syncStatus pending_sync) and the party's sync re-queues it once linked.
"""

from typing import Any

from motia import queue

from services.parties.events import TOPIC_BANK
from services.platform.models import EntityAction, EntityType
from src.glue.queue_handlers import handle_sync_event

config = {
    "name": "VMH Bankverbindungen Sync",
    "description": "Two-way sync of one CBankverbindungen with its Advoware bank account",
    "flows": ["vmh-beteiligte"],
    "triggers": [queue(f"{TOPIC_BANK}.{a.value}") for a in (EntityAction.CREATE, EntityAction.UPDATE, EntityAction.DELETE)],
    "enqueues": [],
}


async def handler(data: Any, ctx: Any) -> None:
    await handle_sync_event(data, ctx, EntityType.BANKVERBINDUNGEN)
