"""POST /vmh/webhook/document/delete: EspoCRM CDokumente.delete webhook → vmh.document.delete.

Thin: src.glue.webhook.accept_webhook authenticates (signature/token), validates
(≤ 50 items with `id`), queues one SyncEvent per document and answers 200/400/401.
"""

from motia import http

from services.documents.events import TOPIC_DOCUMENT_DELETE, document_webhook_events
from services.platform.models import EntityAction, WebhookItem
from services.platform.settings import get_settings
from src.glue.webhook import accept_webhook

config = {
    "name": "VMH Document Delete Webhook",
    "description": "Receives EspoCRM CDokumente.delete webhooks and queues the document sync",
    "flows": ["vmh-documents"],
    "triggers": [http("POST", "/vmh/webhook/document/delete")],
    "enqueues": [TOPIC_DOCUMENT_DELETE],
}

_to_events = document_webhook_events(EntityAction.DELETE)


async def handler(request, ctx):
    return await accept_webhook(request, ctx, settings=get_settings(), model=WebhookItem, to_events=_to_events)
