"""Cron (every 10 minutes): reconcile parties and bank accounts between EspoCRM and Advoware.

Pulls the parties changed in Advoware since the bookmark (state
`beteiligte_sync_meta/advoware_bookmark`, max GeaendertAm seen), imports parties created
directly in Advoware, re-queues failed/pending and stale records and those missing on one
side (services.parties.reconcile.reconcile); each event is marked in the sync ledger before
it is enqueued (dead marks stay dead). One run per slot across engines
(services.platform.ledger.cron), and one sweep at a time (src.glue.locking.sync_lock
`beteiligte_sync_cron:CBeteiligte:sweep`;
a lock still busy after src.glue.locking.LOCK_WAIT_SECONDS skips the tick).
"""

from typing import Any

from services.clients.errors import LockBusyError
from services.parties.events import TOPIC_BANK, TOPIC_PARTY
from services.parties.reconcile import reconcile
from services.platform.container import get_advoware, get_espocrm, get_ledger
from services.platform.ledger import mark_and_enqueue
from services.platform.logging import get_service_logger
from services.platform.models import EntityAction, EntityType
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
    try:
        async with sync_lock(STEP, EntityType.BETEILIGTE, "sweep", logger=logger):
            report = await reconcile(get_espocrm(), get_advoware(), ctx.state, logger=logger)
    except LockBusyError:
        ctx.logger.warn("Beteiligte reconcile skipped: another sweep is running")
        return
    marks = await mark_and_enqueue(get_ledger(), ctx, report.events, revive=False)
    ctx.logger.info("Beteiligte reconcile: events queued", {**report.summary(), "dead_skipped": sum(not m.recorded for m in marks)})
