"""POST /vmh/webhook/entity/unlink: a document was unlinked to/from an entity.

Body: EspoCRM array of `{entityType, entityId, documentId}` (LinkWebhookItem). Each item
queues vmh.collection.ensure for the entity AND vmh.document.update for the document
(event storm: whichever runs first, the other catches up).
"""

from motia import http

from services.documents.events import (
    TOPIC_COLLECTION_ENSURE,
    TOPIC_DOCUMENT_UPDATE,
    link_item_key,
    link_webhook_events,
)
from services.platform.models import EntityAction, LinkWebhookItem
from services.platform.settings import get_settings
from src.glue.webhook import accept_webhook

config = {
    "name": "VMH Entity Unlink Webhook",
    "description": "Receives CDokumente.unlink webhooks: collection check + document sync",
    "flows": ["vmh-documents"],
    "triggers": [http("POST", "/vmh/webhook/entity/unlink")],
    "enqueues": [TOPIC_COLLECTION_ENSURE, TOPIC_DOCUMENT_UPDATE],
}

_to_events = link_webhook_events(EntityAction.UNLINK)


async def handler(request, ctx):
    return await accept_webhook(
        request, ctx, settings=get_settings(), model=LinkWebhookItem, to_events=_to_events, key=link_item_key
    )
