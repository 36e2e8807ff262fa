"""Every 15 minutes: queue a calendar sync of all mapped employees (`calendar.sync.all`)."""

from motia import cron

from services.calendar_sync_jobs import CRON_EXPRESSION, TOPIC_SYNC_ALL, SyncAllJob
from services.models import SyncSource

config = {
    "name": "Calendar Sync Cron",
    "description": "Every 15 minutes: sync Advoware appointments and Google calendars of all mapped employees",
    "flows": ["advoware-calendar-sync"],
    "triggers": [cron(CRON_EXPRESSION)],
    "enqueues": [TOPIC_SYNC_ALL],
}


async def handler(_input, ctx):
    await ctx.enqueue({"topic": TOPIC_SYNC_ALL, "data": SyncAllJob(source=SyncSource.CRON).to_queue()})
    ctx.logger.info("calendar sync: scheduled run queued", {"topic": TOPIC_SYNC_ALL})
