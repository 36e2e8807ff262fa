"""Collection manager (queue: vmh.collection.ensure).

Thin: services.collection_manager.CollectionManager creates / adopts / deletes the
entity's xAI collection under the lock `collection_create:{type}:{id}` and returns one
vmh.document.update per linked document when membership must change (event storm).
"""

from motia import queue
from motia.types import QueueConfig

from services.clients import get_espocrm, get_redis_client, get_xai
from services.collection_manager import CollectionManager
from services.config import get_settings
from services.document_sync_utils import TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE
from services.models import SyncEvent

# Collection calls are quick; retries cover lock contention and xAI/EspoCRM outages.
COLLECTION_QUEUE = QueueConfig(max_retries=8, backoff_delay_ms=1000, visibility_timeout=300)

config = {
    "name": "VMH Collection Manager",
    "description": "Ensure an entity's xAI collection matches its should-have-a-collection rule",
    "flows": ["vmh-documents"],
    "triggers": [queue(TOPIC_COLLECTION_ENSURE, config=COLLECTION_QUEUE)],
    "enqueues": [TOPIC_DOCUMENT_UPDATE],
}


async def handler(data, ctx):
    event = SyncEvent.from_queue(data)
    settings = get_settings()
    manager = CollectionManager(
        get_espocrm(), get_xai(), settings.xai, redis=get_redis_client(), ctx=ctx, lock_ttl=settings.lock_ttl_seconds
    )
    result = await manager.ensure(event.entity_type, event.entity_id)
    for follow_up in result.events:
        await ctx.enqueue(follow_up)
    ctx.logger.info(
        f"collection {event.entity_type}:{event.entity_id}: {result.action}",
        {"entity_type": str(event.entity_type), "entity_id": event.entity_id, "action": str(result.action),
         "collection_id": result.collection_id, "documents_queued": len(result.events)},
    )
