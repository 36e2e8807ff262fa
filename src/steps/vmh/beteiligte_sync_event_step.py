"""Queue handler: sync one party (CBeteiligte ↔ Advoware Beteiligte) for
`vmh.beteiligte.{create,update,delete}` under the lock `beteiligte_sync:CBeteiligte:{id}`.

The decisions live in services.beteiligte_sync.BeteiligteSync (create / three-way merge /
conflict / delete rules, see src/steps/vmh/README.md). Retryable failures and a busy lock
raise, so the queue retries; follow-ups (the party's bank accounts) are enqueued.
"""

from typing import Any

from motia import queue
from motia.types import QueueConfig

from services.beteiligte_sync import TOPIC_BANK, TOPIC_PARTY, handle_sync_event
from services.models import EntityAction, EntityType

QUEUE = QueueConfig(max_retries=6, backoff_delay_ms=500, visibility_timeout=120)

config = {
    "name": "VMH Beteiligte Sync",
    "description": "Two-way sync of one CBeteiligte with its Advoware party",
    "flows": ["vmh-beteiligte"],
    "triggers": [queue(f"{TOPIC_PARTY}.{a.value}", config=QUEUE) for a in (EntityAction.CREATE, EntityAction.UPDATE, EntityAction.DELETE)],
    "enqueues": [f"{TOPIC_BANK}.{EntityAction.UPDATE.value}"],
}


async def handler(data: Any, ctx: Any) -> None:
    await handle_sync_event(data, ctx, EntityType.BETEILIGTE)
