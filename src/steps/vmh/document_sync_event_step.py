"""Document sync to xAI Collections (queue: vmh.document.create/update/delete).

Thin: parse the SyncEvent, let services.document_sync_utils.DocumentSyncService do the
idempotent, locked (`document_sync:CDokumente:{id}`) work, enqueue its follow-ups.
Retryable failures raise (the queue retries, see QueueConfig); permanent ones are marked
`failed` in EspoCRM and end here. A busy lock raises LockBusyError → retried later.
"""

from motia import queue
from motia.types import QueueConfig

from services.clients import get_espocrm, get_redis_client, get_xai
from services.config import get_settings
from services.document_sync_utils import (
    TOPIC_COLLECTION_ENSURE,
    TOPIC_DOCUMENT_CREATE,
    TOPIC_DOCUMENT_DELETE,
    TOPIC_DOCUMENT_UPDATE,
    DocumentSyncService,
    StateJournal,
)
from services.models import SyncEvent

# 8 retries, 2 s doubling (2+4+...+256 s ≈ 8.5 min): a document whose lock is held by a
# long sync (50 MB upload, xAI 429 waits) is still processed once that sync ends; the
# visibility timeout (15 min) is the longest one sync may take before it counts as failed.
SYNC_QUEUE = QueueConfig(max_retries=8, backoff_delay_ms=2000, visibility_timeout=900)

config = {
    "name": "VMH Document Sync",
    "description": "Sync CDokumente to xAI collections (upload once, fix memberships, write back)",
    "flows": ["vmh-documents"],
    "triggers": [
        queue(TOPIC_DOCUMENT_CREATE, config=SYNC_QUEUE),
        queue(TOPIC_DOCUMENT_UPDATE, config=SYNC_QUEUE),
        queue(TOPIC_DOCUMENT_DELETE, config=SYNC_QUEUE),
    ],
    "enqueues": [TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE],
}


async def handler(data, ctx):
    event = SyncEvent.from_queue(data)
    settings = get_settings()
    service = DocumentSyncService(
        get_espocrm(), get_xai(), settings.xai,
        redis=get_redis_client(), journal=StateJournal(ctx.state), ctx=ctx, lock_ttl=settings.lock_ttl_seconds,
    )
    result = await service.handle(event)
    for follow_up in result.events:
        await ctx.enqueue(follow_up)
    ctx.logger.info(
        f"document {event.entity_id}: {result.outcome}",
        {"document_id": event.entity_id, "action": str(event.action), "source": str(event.source),
         "outcome": str(result.outcome), "uploaded": result.uploaded, "file_id": result.file_id,
         "collections": result.collections, "follow_ups": len(result.events), "detail": result.detail},
    )
