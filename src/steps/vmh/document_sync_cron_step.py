"""Reconciler (cron, every 5 minutes): queue what the webhooks missed.

Entities missing (or keeping against their rule) a collection → vmh.collection.ensure;
documents not clean (file new/changed, unclean/failed, pending_sync older than the lock
TTL) → vmh.document.update. Page by page, at most RECONCILE_LIMIT events per run, each
marked in the sync ledger before it is enqueued (dead marks stay dead: an operator
replays them). One run per slot across engines (services.platform.ledger.cron).
"""

from services.documents.events import TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE
from services.documents.reconcile import RECONCILE_LIMIT, iter_reconcile_events
from services.platform.container import get_espocrm, get_ledger
from services.platform.ledger import mark_and_enqueue
from services.platform.settings import get_settings
from src.glue.steps import cron_config, once_per_slot

STEP = "document_sync_cron"
SCHEDULE = "0 */5 * * * *"

config = cron_config(
    SCHEDULE,
    name="VMH Document Sync Reconciler",
    description="Every 5 minutes: queue documents not clean and entities whose collection is missing",
    flow="vmh-documents",
    enqueues=[TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE],
)


@once_per_slot(STEP, SCHEDULE)
async def handler(_input, ctx):
    settings = get_settings()
    events = [
        event
        async for event in iter_reconcile_events(get_espocrm(), settings.xai, lock_ttl=settings.lock_ttl_seconds, limit=RECONCILE_LIMIT)
    ]
    marks = await mark_and_enqueue(get_ledger(), ctx, events, revive=False)
    counts: dict[str, int] = {}
    for mark in marks:
        if mark.recorded:
            counts[mark.topic] = counts.get(mark.topic, 0) + 1
    ctx.logger.info(
        "document sync reconciler queued events",
        {"counts": counts, "limit": RECONCILE_LIMIT, "dead_skipped": sum(not m.recorded for m in marks)},
    )
