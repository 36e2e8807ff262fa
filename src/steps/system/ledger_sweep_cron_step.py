"""The sync ledger's sweeper (cron, LEDGER_SWEEP_CRON, every 30 s by default): re-enqueue
the marks that are due (not handled within the grace, retries whose backoff is over, runs
whose worker died), in bounded batches (LEDGER_SWEEP_BATCH × LEDGER_SWEEP_MAX_BATCHES).

One run per slot across engines (services.platform.ledger.cron); even two concurrent sweeps never
hand out the same mark (services.platform.ledger.Ledger.due_batch leases atomically).
"""

from services.platform.container import get_ledger
from services.platform.ledger import sweep
from services.platform.ledger.policies import all_topics
from services.platform.settings import get_settings
from src.glue.steps import cron_config, once_per_slot

STEP = "ledger_sweep_cron"
SETTINGS = get_settings().ledger

config = cron_config(SETTINGS.sweep_cron, name="Ledger Sweeper",
                     description="Re-enqueue due sync ledger marks (lost events, retries, runs of dead workers)",
                     flow="system", enqueues=sorted(all_topics()))


@once_per_slot(STEP, SETTINGS.sweep_cron)
async def handler(_input, ctx):
    await sweep(get_ledger(), ctx, batch=SETTINGS.sweep_batch, max_batches=SETTINGS.sweep_max_batches)
