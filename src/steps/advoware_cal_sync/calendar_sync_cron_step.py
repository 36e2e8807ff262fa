"""Every 15 minutes: queue a calendar sync of all mapped employees (`calendar.sync.all`),
marked in the sync ledger first; one run per slot across engines (services.platform.ledger.cron)."""

from services.calendar.jobs import CRON_EXPRESSION, TOPIC_SYNC_ALL, SyncAllJob
from services.platform.container import get_ledger
from services.platform.ledger import mark_and_enqueue
from services.platform.models import SyncSource
from src.glue.steps import cron_config, once_per_slot

STEP = "calendar_sync_cron"

config = cron_config(
    CRON_EXPRESSION,
    name="Calendar Sync Cron",
    description="Every 15 minutes: sync Advoware appointments and Google calendars of all mapped employees",
    flow="advoware-calendar-sync",
    enqueues=[TOPIC_SYNC_ALL],
)


@once_per_slot(STEP, CRON_EXPRESSION)
async def handler(_input, ctx):
    await mark_and_enqueue(get_ledger(), ctx, [{"topic": TOPIC_SYNC_ALL, "data": SyncAllJob(source=SyncSource.CRON).to_queue()}])
    ctx.logger.info("calendar sync: scheduled run queued", {"topic": TOPIC_SYNC_ALL})
