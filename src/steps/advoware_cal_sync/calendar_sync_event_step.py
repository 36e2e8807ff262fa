"""`calendar.sync.employee` `{"kuerzel", "full"}`: sync one employee's Advoware appointments
and Google calendar both ways, under the lock `calendar_sync:Mitarbeiter:{kuerzel}`.

Thin: src.glue.queue_handlers.handle_calendar_employee_event runs services.calendar.sync
(read, plan, write, remember, record status) on the sync ledger (kind
`calendar_employee`): a failure is recorded in state `calendar_sync_status` and retried
with the ledger's backoff; when the budget is spent the status record says `dead`.
"""

from services.calendar.jobs import TOPIC_SYNC_EMPLOYEE
from src.glue.queue_handlers import handle_calendar_employee_event
from src.glue.steps import queue_step

config, handler = queue_step(
    [TOPIC_SYNC_EMPLOYEE], handle_calendar_employee_event, flow="advoware-calendar-sync", enqueues=[],
    name="Calendar Sync Employee", description="Bidirectional sync of one employee's Advoware appointments and Google calendar",
)
