"""`calendar.sync.all` → one `calendar.sync.employee` per employee with a calendar mapping,
so each employee syncs (and fails, and is retried) on its own. Runs on the sync ledger
(kind `calendar_all`): the employee events are marked, then enqueued."""

from motia import queue

from services.calendar.jobs import TOPIC_SYNC_ALL, TOPIC_SYNC_EMPLOYEE
from src.glue.queue_handlers import handle_calendar_all_event

config = {
    "name": "Calendar Sync Fan-out",
    "description": "Queue one calendar sync per mapped employee",
    "flows": ["advoware-calendar-sync"],
    "triggers": [queue(TOPIC_SYNC_ALL)],
    "enqueues": [TOPIC_SYNC_EMPLOYEE],
}


async def handler(data, ctx):
    await handle_calendar_all_event(data, ctx)
