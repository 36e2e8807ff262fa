"""Every 15 minutes: queue a calendar sync of all mapped employees (`calendar.sync.all`),
marked in the sync ledger first; one run per slot across engines (services.platform.ledger.cron)."""

from motia import cron

from services.calendar.jobs import CRON_EXPRESSION, TOPIC_SYNC_ALL, SyncAllJob
from services.platform.container import get_ledger, get_redis_client
from services.platform.ledger import mark_and_enqueue
from services.platform.ledger.cron import run_once_per_slot
from services.platform.models import SyncSource

STEP = "calendar_sync_cron"

config = {
    "name": "Calendar Sync Cron",
    "description": "Every 15 minutes: sync Advoware appointments and Google calendars of all mapped employees",
    "flows": ["advoware-calendar-sync"],
    "triggers": [cron(CRON_EXPRESSION)],
    "enqueues": [TOPIC_SYNC_ALL],
}


async def handler(_input, ctx):
    if not await run_once_per_slot(get_redis_client(), STEP, CRON_EXPRESSION, ctx):
        return
    await mark_and_enqueue(get_ledger(), ctx, [{"topic": TOPIC_SYNC_ALL, "data": SyncAllJob(source=SyncSource.CRON).to_queue()}])
    ctx.logger.info("calendar sync: scheduled run queued", {"topic": TOPIC_SYNC_ALL})
