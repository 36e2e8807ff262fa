"""The nightly drift audit (cron OPS_AUDIT_CRON, default 02:30 UTC): one run per slot across
engines, bounded by OPS_AUDIT_MAX_CALLS and OPS_AUDIT_MAX_SECONDS, kept as the last report
(GET /ops/audit) and logged as a summary; it repairs nothing (operators do: POST
/ops/audit/repair, `bitbylaw-ops audit --repair`)."""

from motia import cron

from services.ops.audit.runs import run_and_keep
from services.platform.container import get_redis_client
from services.platform.ledger.cron import run_once_per_slot
from services.platform.settings import get_settings
from src.glue.ops import report_store, systems
from src.glue.steps import step_config

STEP = "ops_audit_cron"
SETTINGS = get_settings().ops

config = step_config("Ops Drift Audit Cron", "Nightly drift audit of EspoCRM, xAI, Advoware and Google (read-only)", "system",
                     [cron(SETTINGS.audit_cron)], [])


async def handler(_input, ctx):
    if not await run_once_per_slot(get_redis_client(), STEP, SETTINGS.audit_cron, ctx):
        return
    body = await run_and_keep(systems(ctx), report_store(), ctx, trigger="cron", max_calls=SETTINGS.audit_max_calls,
                              max_seconds=SETTINGS.audit_max_seconds)
    level = ctx.logger.warn if body["findings"] or not body["complete"] else ctx.logger.info
    level(f"ops audit (cron): {body['findings_total']} finding(s), {body['repairable']} repairable, complete={body['complete']}",
          {"report_id": body["id"], "by_type": body["by_type"], "calls": body["calls"], "incomplete": body["incomplete_checks"]})
