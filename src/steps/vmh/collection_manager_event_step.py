"""Collection manager (queue: vmh.collection.ensure).

Thin: src.glue.queue_handlers.handle_collection_event runs services.documents.collections.
CollectionManager (creates / adopts / deletes the entity's xAI collection under the lock
`collection_create:{type}:{id}`) on the sync ledger; the vmh.document.update per linked
document it returns (event storm) is marked, then enqueued. Retries: ledger kind `collection`.
"""

from services.documents.events import TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE
from src.glue.queue_handlers import handle_collection_event
from src.glue.steps import queue_step

config, handler = queue_step(
    [TOPIC_COLLECTION_ENSURE], handle_collection_event, flow="vmh-documents", enqueues=[TOPIC_DOCUMENT_UPDATE],
    name="VMH Collection Manager", description="Ensure an entity's xAI collection matches its should-have-a-collection rule",
)
