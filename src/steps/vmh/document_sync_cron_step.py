"""Reconciler (cron, every 5 minutes): queue what the webhooks missed.

Entities missing (or keeping against their rule) a collection → vmh.collection.ensure;
documents not clean (file new/changed, unclean/failed, pending_sync older than the lock
TTL) → vmh.document.update. Page by page, at most RECONCILE_LIMIT events per run.
"""

from motia import cron

from services.clients import get_espocrm
from services.config import get_settings
from services.document_sync_utils import (
    RECONCILE_LIMIT,
    TOPIC_COLLECTION_ENSURE,
    TOPIC_DOCUMENT_UPDATE,
    iter_reconcile_events,
)

config = {
    "name": "VMH Document Sync Reconciler",
    "description": "Every 5 minutes: queue documents not clean and entities whose collection is missing",
    "flows": ["vmh-documents"],
    "triggers": [cron("0 */5 * * * *")],
    "enqueues": [TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE],
}


async def handler(_input, ctx):
    settings = get_settings()
    counts: dict[str, int] = {}
    async for event in iter_reconcile_events(
        get_espocrm(), settings.xai, lock_ttl=settings.lock_ttl_seconds, limit=RECONCILE_LIMIT
    ):
        await ctx.enqueue(event)
        counts[event["topic"]] = counts.get(event["topic"], 0) + 1
    ctx.logger.info("document sync reconciler queued events", {"counts": counts, "limit": RECONCILE_LIMIT})
