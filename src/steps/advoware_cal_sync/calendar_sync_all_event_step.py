"""`calendar.sync.all` → one `calendar.sync.employee` per employee with a calendar mapping,
so each employee syncs (and fails, and is retried) on its own. Runs on the sync ledger
(kind `calendar_all`): the employee events are marked, then enqueued."""

from services.calendar.jobs import TOPIC_SYNC_ALL, TOPIC_SYNC_EMPLOYEE
from src.glue.queue_handlers import handle_calendar_all_event
from src.glue.steps import queue_step

config, handler = queue_step(
    [TOPIC_SYNC_ALL], handle_calendar_all_event, flow="advoware-calendar-sync", enqueues=[TOPIC_SYNC_EMPLOYEE],
    name="Calendar Sync Fan-out", description="Queue one calendar sync per mapped employee",
)
