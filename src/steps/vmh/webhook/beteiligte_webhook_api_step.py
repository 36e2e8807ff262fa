"""EspoCRM webhooks for parties: `POST /vmh/webhook/beteiligte/{create,update,delete}`.

Authenticates (signature/token), validates and de-duplicates the batch via
src.glue.webhook.accept_webhook, then queues one `vmh.beteiligte.{action}` event
(services.platform.models.SyncEvent) per record; the sync handler reads both systems itself, so
the attributes in the webhook body are not trusted for data.
"""

from typing import Any

from motia import http

from services.parties.events import TOPIC_PARTY, webhook_events
from services.platform.models import EntityAction, WebhookItem
from services.platform.settings import get_settings
from src.glue.webhook import accept_webhook

ACTIONS = (EntityAction.CREATE, EntityAction.UPDATE, EntityAction.DELETE)
PATHS = {f"/vmh/webhook/beteiligte/{a.value}": a for a in ACTIONS}

config = {
    "name": "VMH Beteiligte Webhook",
    "description": "Receives EspoCRM CBeteiligte create/update/delete webhooks and queues sync events",
    "flows": ["vmh-beteiligte"],
    "triggers": [http("POST", path) for path in PATHS],
    "enqueues": [f"{TOPIC_PARTY}.{a.value}" for a in ACTIONS],
}


async def handler(request: Any, ctx: Any) -> Any:
    to_events = webhook_events(TOPIC_PARTY, PATHS[ctx.trigger.path])
    return await accept_webhook(request, ctx, settings=get_settings(), model=WebhookItem, to_events=to_events)
