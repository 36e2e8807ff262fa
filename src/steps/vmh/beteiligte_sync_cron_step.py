"""Cron (every 10 minutes): reconcile parties and bank accounts between EspoCRM and Advoware.

Reads what changed since the bookmarks on both sides (state `beteiligte_sync_meta`: Advoware
`geaendertSeit`, EspoCRM `modifiedAt` per entity), imports parties created directly in
Advoware, re-queues failed/pending records and a slice of the stalest (RECONCILE_STALE_SLICE,
RECONCILE_STALE_AFTER_HOURS); both sides are listed entirely only on a full reconcile
(RECONCILE_FULL_EVERY_HOURS, or asked with `python -m services.parties full-reconcile`)
(services.parties.reconcile.reconcile). Each event is marked in the sync ledger before
it is enqueued (dead marks stay dead). One run per slot across engines
(services.platform.ledger.cron), and one sweep at a time (src.glue.locking.sync_lock
`beteiligte_sync_cron:CBeteiligte:sweep`;
a lock still busy after src.glue.locking.LOCK_WAIT_SECONDS skips the tick).
"""

from datetime import timedelta
from typing import Any

from services.clients.errors import LockBusyError
from services.parties.events import TOPIC_BANK, TOPIC_PARTY
from services.parties.reconcile import full_request_done, full_requested, reconcile
from services.platform.container import get_advoware, get_espocrm, get_ledger, get_redis_client
from services.platform.ledger import mark_and_enqueue
from services.platform.logging import get_service_logger
from services.platform.models import EntityAction, EntityType
from services.platform.settings import get_settings
from src.glue.locking import sync_lock
from src.glue.steps import cron_config, once_per_slot

STEP = "beteiligte_sync_cron"
SCHEDULE = "0 */10 * * * *"

config = cron_config(
    SCHEDULE,
    name="VMH Beteiligte Sync Cron",
    description="Reconciles CBeteiligte/CBankverbindungen with Advoware (changes, failures, deletions)",
    flow="vmh-beteiligte",
    enqueues=[f"{TOPIC_PARTY}.{EntityAction.UPDATE.value}", f"{TOPIC_BANK}.{EntityAction.UPDATE.value}"],
)


@once_per_slot(STEP, SCHEDULE)
async def handler(_input: Any, ctx: Any) -> None:
    logger = get_service_logger(STEP, ctx)
    settings = get_settings()
    options = settings.parties
    redis = get_redis_client()
    try:
        async with sync_lock(STEP, EntityType.BETEILIGTE, "sweep", logger=logger):
            asked = await full_requested(redis)
            report = await reconcile(
                get_espocrm(),
                get_advoware(),
                ctx.state,
                logger=logger,
                stale_after=timedelta(hours=options.stale_after_hours),
                stale_slice=options.stale_slice,
                full=asked,
                full_every=timedelta(hours=options.full_every_hours) if options.full_every_hours > 0 else None,
                guard_budget=settings.deletes.max_per_hour,
            )
            if asked and report.full:
                await full_request_done(redis)
    except LockBusyError:
        ctx.logger.warn("Beteiligte reconcile skipped: another sweep is running")
        return
    marks = await mark_and_enqueue(get_ledger(), ctx, report.events, revive=False)
    ctx.logger.info("Beteiligte reconcile: events queued", {**report.summary(), "dead_skipped": sum(not m.recorded for m in marks)})
