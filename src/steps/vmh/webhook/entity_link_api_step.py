"""POST /vmh/webhook/entity/link: a document was linked to/from an entity.

Body: EspoCRM array of `{entityType, entityId, documentId}` (LinkWebhookItem). Each item
queues vmh.collection.ensure for the entity AND vmh.document.update for the document
(event storm: whichever runs first, the other catches up).
"""

from services.platform.models import EntityAction
from src.glue.steps import link_webhook_step

config, handler = link_webhook_step(EntityAction.LINK)
