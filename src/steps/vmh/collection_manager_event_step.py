"""Collection manager (queue: vmh.collection.ensure).

Thin: src.glue.queue_handlers.handle_collection_event runs services.documents.collections.
CollectionManager (creates / adopts / deletes the entity's xAI collection under the lock
`collection_create:{type}:{id}`) on the sync ledger; the vmh.document.update per linked
document it returns (event storm) is marked, then enqueued. Retries: ledger kind `collection`.
"""

from motia import queue

from services.documents.events import TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE
from src.glue.queue_handlers import handle_collection_event

config = {
    "name": "VMH Collection Manager",
    "description": "Ensure an entity's xAI collection matches its should-have-a-collection rule",
    "flows": ["vmh-documents"],
    "triggers": [queue(TOPIC_COLLECTION_ENSURE)],
    "enqueues": [TOPIC_DOCUMENT_UPDATE],
}


async def handler(data, ctx):
    await handle_collection_event(data, ctx)
