"""`calendar.sync.employee` `{"kuerzel", "full"}`: sync one employee's Advoware appointments
and Google calendar both ways, under the lock `calendar_sync:Mitarbeiter:{kuerzel}`.

Thin: the run lives in services.calendar_sync (read, plan, write, remember, record status).
A failure is recorded (state `calendar_sync_status`, log) and raised, so the queue retries.
"""

from motia import queue
from motia.types import QueueConfig

from services.calendar_sync import LOCK_ENTITY_TYPE, LOCK_STEP, run_employee_sync
from services.calendar_sync_jobs import TOPIC_SYNC_EMPLOYEE, EmployeeSyncJob, parse_job
from services.clients import get_advoware, get_google_calendar, get_redis_client
from services.config import get_settings
from services.exceptions import ValidationError
from services.locks import entity_lock
from services.logging_utils import get_service_logger

config = {
    "name": "Calendar Sync Employee",
    "description": "Bidirectional sync of one employee's Advoware appointments and Google calendar",
    "flows": ["advoware-calendar-sync"],
    "triggers": [
        queue(TOPIC_SYNC_EMPLOYEE, config=QueueConfig(max_retries=3, backoff_delay_ms=2000, visibility_timeout=900))
    ],
    "enqueues": [],
}


async def handler(data, ctx):
    try:
        job = parse_job(EmployeeSyncJob, data)
    except ValidationError as exc:
        ctx.logger.error(f"calendar sync: invalid payload dropped: {exc}", {"data": data})
        return
    settings = get_settings()
    calendar_id = settings.calendar.mapping.get(job.kuerzel)
    if calendar_id is None:
        ctx.logger.warn(f"calendar sync: no calendar mapped for {job.kuerzel}; skipped", {"kuerzel": job.kuerzel})
        return
    log = get_service_logger("calendar_sync", ctx).bind(kuerzel=job.kuerzel, calendar_id=calendar_id)
    async with entity_lock(
        get_redis_client(), LOCK_STEP, LOCK_ENTITY_TYPE, job.kuerzel, settings.lock_ttl_seconds, logger=log
    ):
        await run_employee_sync(
            job.kuerzel,
            calendar_id,
            advoware=get_advoware(),
            google=get_google_calendar(),
            state=ctx.state,
            settings=settings.calendar,
            logger=log,
            full=job.full,
        )
