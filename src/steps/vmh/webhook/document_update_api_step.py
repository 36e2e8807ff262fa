"""POST /vmh/webhook/document/update: EspoCRM CDokumente.update webhook → vmh.document.update.

Thin: src.glue.webhook.accept_webhook authenticates (signature/token), validates
(≤ 50 items with `id`), queues one SyncEvent per document and answers 200/400/401.
"""

from motia import http

from services.documents.events import TOPIC_DOCUMENT_UPDATE, document_webhook_events
from services.platform.models import EntityAction, WebhookItem
from services.platform.settings import get_settings
from src.glue.webhook import accept_webhook

config = {
    "name": "VMH Document Update Webhook",
    "description": "Receives EspoCRM CDokumente.update webhooks and queues the document sync",
    "flows": ["vmh-documents"],
    "triggers": [http("POST", "/vmh/webhook/document/update")],
    "enqueues": [TOPIC_DOCUMENT_UPDATE],
}

_to_events = document_webhook_events(EntityAction.UPDATE)


async def handler(request, ctx):
    return await accept_webhook(request, ctx, settings=get_settings(), model=WebhookItem, to_events=_to_events)
