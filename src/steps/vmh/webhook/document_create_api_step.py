"""POST /vmh/webhook/document/create: EspoCRM CDokumente.create webhook → vmh.document.create.

Thin: src.glue.webhook.accept_webhook authenticates (signature/token), validates
(≤ 50 items with `id`, or the guide's manual-test shape bound to CDokumente and this action:
services.platform.models.EndpointWebhookItem), queues one SyncEvent per document and answers
200/400/401.
"""

from services.documents.events import TOPIC_DOCUMENT_CREATE
from services.platform.models import EntityAction
from src.glue.steps import document_webhook_step

config, handler = document_webhook_step(EntityAction.CREATE, TOPIC_DOCUMENT_CREATE)
