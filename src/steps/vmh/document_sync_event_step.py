"""Document sync to xAI Collections (queue: vmh.document.create/update/delete).

Thin: src.glue.queue_handlers.handle_document_event runs services.documents.executor.
DocumentSyncService (idempotent, locked `document_sync:CDokumente:{id}`) on the sync
ledger: the run works from the document's ledger mark, is time-boxed, and its follow-ups
are marked before they are enqueued. Retries, backoff and the dead list are the ledger's
(services/platform/ledger/policies.py, kind `document`); the engine ignores per-step retry settings
(semantics row Q2), so none are declared here.
"""

from services.documents.events import (
    TOPIC_COLLECTION_ENSURE,
    TOPIC_DOCUMENT_CREATE,
    TOPIC_DOCUMENT_DELETE,
    TOPIC_DOCUMENT_UPDATE,
)
from src.glue.queue_handlers import handle_document_event
from src.glue.steps import queue_step

config, handler = queue_step(
    [TOPIC_DOCUMENT_CREATE, TOPIC_DOCUMENT_UPDATE, TOPIC_DOCUMENT_DELETE], handle_document_event,
    flow="vmh-documents", enqueues=[TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE],
    name="VMH Document Sync", description="Sync CDokumente to xAI collections (upload once, fix memberships, write back)",
)
