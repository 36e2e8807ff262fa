"""POST /vmh/webhook/document/create: EspoCRM CDokumente.create webhook → vmh.document.create.

Thin: src.glue.webhook.accept_webhook authenticates (signature/token), validates
(≤ 50 items with `id`), queues one SyncEvent per document and answers 200/400/401.
"""

from motia import http

from services.documents.events import TOPIC_DOCUMENT_CREATE, document_webhook_events
from services.platform.models import EntityAction, WebhookItem
from services.platform.settings import get_settings
from src.glue.webhook import accept_webhook

config = {
    "name": "VMH Document Create Webhook",
    "description": "Receives EspoCRM CDokumente.create webhooks and queues the document sync",
    "flows": ["vmh-documents"],
    "triggers": [http("POST", "/vmh/webhook/document/create")],
    "enqueues": [TOPIC_DOCUMENT_CREATE],
}

_to_events = document_webhook_events(EntityAction.CREATE)


async def handler(request, ctx):
    return await accept_webhook(request, ctx, settings=get_settings(), model=WebhookItem, to_events=_to_events)
