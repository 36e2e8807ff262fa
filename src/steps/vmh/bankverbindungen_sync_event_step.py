"""Queue handler: sync one bank account (CBankverbindungen ↔ Advoware Bankverbindung) for
`vmh.bankverbindungen.{create,update,delete}` under the lock
`bankverbindungen_sync:CBankverbindungen:{id}`, on the sync ledger (kind `bank_account`).

A bank account follows its party: while the party has no advowareId it waits
(syncStatus pending_sync) and the party's sync re-queues it once linked.
"""

from functools import partial

from services.parties.events import TOPIC_BANK
from services.platform.models import EntityType
from src.glue.queue_handlers import handle_sync_event
from src.glue.steps import PARTY_ACTIONS, queue_step

config, handler = queue_step(
    [f"{TOPIC_BANK}.{a.value}" for a in PARTY_ACTIONS], partial(handle_sync_event, entity_type=EntityType.BANKVERBINDUNGEN),
    flow="vmh-beteiligte", enqueues=[],
    name="VMH Bankverbindungen Sync", description="Two-way sync of one CBankverbindungen with its Advoware bank account",
)
