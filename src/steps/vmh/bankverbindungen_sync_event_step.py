"""Queue handler: sync one bank account (CBankverbindungen ↔ Advoware Bankverbindung) for
`vmh.bankverbindungen.{create,update,delete}` under the lock
`bankverbindungen_sync:CBankverbindungen:{id}`.

A bank account follows its party: while the party has no advowareId it waits
(syncStatus pending_sync) and the party's sync re-queues it once linked.
"""

from typing import Any

from motia import queue
from motia.types import QueueConfig

from services.beteiligte_sync import BANK_LOCK_STEP, TOPIC_BANK, BeteiligteSync
from services.clients import get_advoware, get_espocrm, get_redis_client
from services.exceptions import ValidationError
from services.locks import entity_lock
from services.logging_utils import get_service_logger
from services.models import EntityAction, EntityType, SyncEvent

QUEUE = QueueConfig(max_retries=6, backoff_delay_ms=500, visibility_timeout=120)
LOCK_WAIT_SECONDS = 10.0

config = {
    "name": "VMH Bankverbindungen Sync",
    "description": "Two-way sync of one CBankverbindungen with its Advoware bank account",
    "flows": ["vmh-beteiligte"],
    "triggers": [queue(f"{TOPIC_BANK}.{a.value}", config=QUEUE) for a in (EntityAction.CREATE, EntityAction.UPDATE, EntityAction.DELETE)],
    "enqueues": [],
}


async def handler(data: Any, ctx: Any) -> None:
    try:
        event = SyncEvent.from_queue(data)
    except ValidationError as exc:
        ctx.logger.error(f"Dropping malformed bankverbindungen event: {exc}", {"data": data})
        return
    logger = get_service_logger("bankverbindungen_sync", ctx)
    sync = BeteiligteSync(get_espocrm(), get_advoware(), ctx.state, context=ctx)
    async with entity_lock(
        get_redis_client(), BANK_LOCK_STEP, EntityType.BANKVERBINDUNGEN, event.entity_id, wait=LOCK_WAIT_SECONDS, logger=logger
    ):
        result = await sync.sync_bank(event.entity_id, source=event.source)
    for follow_up in result.follow_ups:
        await ctx.enqueue(follow_up)
    ctx.logger.info(f"bankverbindungen sync {event.action.value} {event.entity_id}: {result.outcome.value}", result.log_data())
