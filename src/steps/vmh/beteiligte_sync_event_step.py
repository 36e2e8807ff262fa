"""Queue handler: sync one party (CBeteiligte ↔ Advoware Beteiligte) for
`vmh.beteiligte.{create,update,delete}` under the lock `beteiligte_sync:CBeteiligte:{id}`.

The decisions live in services.beteiligte_sync.BeteiligteSync (create / three-way merge /
conflict / delete rules, see src/steps/vmh/README.md). Retryable failures and a busy lock
raise, so the queue retries; follow-ups (the party's bank accounts) are enqueued.
"""

from typing import Any

from motia import queue
from motia.types import QueueConfig

from services.beteiligte_sync import PARTY_LOCK_STEP, TOPIC_BANK, TOPIC_PARTY, BeteiligteSync
from services.clients import get_advoware, get_espocrm, get_redis_client
from services.exceptions import ValidationError
from services.locks import entity_lock
from services.logging_utils import get_service_logger
from services.models import EntityAction, EntityType, SyncEvent

QUEUE = QueueConfig(max_retries=6, backoff_delay_ms=500, visibility_timeout=120)
LOCK_WAIT_SECONDS = 10.0

config = {
    "name": "VMH Beteiligte Sync",
    "description": "Two-way sync of one CBeteiligte with its Advoware party",
    "flows": ["vmh-beteiligte"],
    "triggers": [queue(f"{TOPIC_PARTY}.{a.value}", config=QUEUE) for a in (EntityAction.CREATE, EntityAction.UPDATE, EntityAction.DELETE)],
    "enqueues": [f"{TOPIC_BANK}.{EntityAction.UPDATE.value}"],
}


async def handler(data: Any, ctx: Any) -> None:
    try:
        event = SyncEvent.from_queue(data)
    except ValidationError as exc:
        ctx.logger.error(f"Dropping malformed beteiligte event: {exc}", {"data": data})
        return
    logger = get_service_logger("beteiligte_sync", ctx)
    sync = BeteiligteSync(get_espocrm(), get_advoware(), ctx.state, context=ctx)
    async with entity_lock(
        get_redis_client(), PARTY_LOCK_STEP, EntityType.BETEILIGTE, event.entity_id, wait=LOCK_WAIT_SECONDS, logger=logger
    ):
        result = await sync.sync_party(event.entity_id, source=event.source)
    for follow_up in result.follow_ups:
        await ctx.enqueue(follow_up)
    ctx.logger.info(f"beteiligte sync {event.action.value} {event.entity_id}: {result.outcome.value}", result.log_data())
