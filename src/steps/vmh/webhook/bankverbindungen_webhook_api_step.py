"""EspoCRM webhooks for bank accounts: `POST /vmh/webhook/bankverbindungen/{create,update,delete}`.

The same intake as the parties' webhook (src.glue.steps.party_webhook_step): one
`vmh.bankverbindungen.{action}` sync event per record; the body's attributes are not trusted.
Items in EspoCRM's or the guide's manual-test shape, bound to CBankverbindungen and the action.
"""

from services.parties.events import TOPIC_BANK
from src.glue.steps import party_webhook_step

config, handler = party_webhook_step("bankverbindungen", TOPIC_BANK)
