"""EspoCRM webhooks for parties: `POST /vmh/webhook/beteiligte/{create,update,delete}`.

Authenticates (signature/token), validates and de-duplicates the batch via
src.glue.webhook.accept_webhook, then queues one `vmh.beteiligte.{action}` event
(services.platform.models.SyncEvent) per record; the sync handler reads both systems itself, so
the attributes in the webhook body are not trusted for data. Items: EspoCRM's `{id, ...}` or the
guide's `{"entity_type": "CBeteiligte", "entity_id": "abc123", "action": "create"}`, bound to
CBeteiligte and the path's action (services.platform.models.EndpointWebhookItem; else 400).
"""

from services.parties.events import TOPIC_PARTY
from src.glue.steps import party_webhook_step

config, handler = party_webhook_step("beteiligte", TOPIC_PARTY)
