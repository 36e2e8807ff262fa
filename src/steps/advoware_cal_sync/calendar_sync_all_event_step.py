"""`calendar.sync.all` → one `calendar.sync.employee` per employee with a calendar mapping,
so each employee syncs (and fails, and is retried) on its own."""

from motia import queue
from motia.types import QueueConfig

from services.calendar_sync_jobs import TOPIC_SYNC_ALL, TOPIC_SYNC_EMPLOYEE, SyncAllJob, employee_jobs, parse_job
from services.config import get_settings
from services.exceptions import ValidationError

config = {
    "name": "Calendar Sync Fan-out",
    "description": "Queue one calendar sync per mapped employee",
    "flows": ["advoware-calendar-sync"],
    "triggers": [queue(TOPIC_SYNC_ALL, config=QueueConfig(max_retries=3, backoff_delay_ms=1000, visibility_timeout=60))],
    "enqueues": [TOPIC_SYNC_EMPLOYEE],
}


async def handler(data, ctx):
    try:
        job = parse_job(SyncAllJob, data)
    except ValidationError as exc:
        ctx.logger.error(f"calendar sync fan-out: invalid payload dropped: {exc}", {"data": data})
        return
    mapping = get_settings().calendar.mapping
    if not mapping:
        ctx.logger.warn("calendar sync fan-out: CALENDAR_MAPPING is empty, nothing to sync", {})
        return
    for event in employee_jobs(mapping, full=job.full, source=job.source):
        await ctx.enqueue(event)
    ctx.logger.info("calendar sync fan-out", {"employees": sorted(mapping), "full": job.full, "source": job.source.value})
