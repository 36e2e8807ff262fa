"""Queue handler: sync one party (CBeteiligte ↔ Advoware Beteiligte) for
`vmh.beteiligte.{create,update,delete}` under the lock `beteiligte_sync:CBeteiligte:{id}`.

The decisions live in services.parties.plan (create / three-way merge / conflict rules) and
services.parties.deletes, applied by services.parties.executor.BeteiligteSync (see
src/steps/vmh/README.md); src.glue.queue_handlers.handle_sync_event runs it on the
sync ledger (retries, backoff, dead list: ledger kind `party`). Follow-ups (the party's
bank accounts) are marked, then enqueued.
"""

from functools import partial

from services.parties.events import TOPIC_BANK, TOPIC_PARTY
from services.platform.models import EntityAction, EntityType
from src.glue.queue_handlers import handle_sync_event
from src.glue.steps import PARTY_ACTIONS, queue_step

config, handler = queue_step(
    [f"{TOPIC_PARTY}.{a.value}" for a in PARTY_ACTIONS], partial(handle_sync_event, entity_type=EntityType.BETEILIGTE),
    flow="vmh-beteiligte", enqueues=[f"{TOPIC_BANK}.{EntityAction.UPDATE.value}"],
    name="VMH Beteiligte Sync", description="Two-way sync of one CBeteiligte with its Advoware party",
)
