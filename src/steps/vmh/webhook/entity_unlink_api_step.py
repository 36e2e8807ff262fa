"""POST /vmh/webhook/entity/unlink: a document was unlinked to/from an entity.

Body: EspoCRM array of `{entityType, entityId, documentId}` (LinkWebhookItem). Each item
queues vmh.document.update for the document; its sync asks for the entity's collection
(vmh.collection.ensure) when that is missing or gone (services.documents.events).
"""

from services.platform.models import EntityAction
from src.glue.steps import link_webhook_step

config, handler = link_webhook_step(EntityAction.UNLINK)
