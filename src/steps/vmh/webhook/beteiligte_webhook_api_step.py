"""EspoCRM webhooks for parties: `POST /vmh/webhook/beteiligte/{create,update,delete}`.

Authenticates (signature/token), validates and de-duplicates the batch via
src.glue.webhook.accept_webhook, then queues one `vmh.beteiligte.{action}` event
(services.platform.models.SyncEvent) per record; the sync handler reads both systems itself, so
the attributes in the webhook body are not trusted for data.
"""

from services.parties.events import TOPIC_PARTY
from src.glue.steps import party_webhook_step

config, handler = party_webhook_step("beteiligte", TOPIC_PARTY)
