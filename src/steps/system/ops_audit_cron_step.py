"""The nightly drift audit (cron OPS_AUDIT_CRON, default 02:30 UTC): one run per slot across
engines, bounded by OPS_AUDIT_MAX_CALLS and OPS_AUDIT_MAX_SECONDS, kept as the last report
(GET /ops/audit) and logged as a summary; it repairs nothing (operators do: POST
/ops/audit/repair, `bitbylaw-ops audit --repair`)."""

from services.ops.audit.runs import run_and_keep
from services.platform.settings import get_settings
from src.glue.ops import report_store, systems
from src.glue.steps import cron_config, once_per_slot

STEP = "ops_audit_cron"
SETTINGS = get_settings().ops

config = cron_config(SETTINGS.audit_cron, name="Ops Drift Audit Cron",
                     description="Nightly drift audit of EspoCRM, xAI, Advoware and Google (read-only)", flow="system", enqueues=[])


@once_per_slot(STEP, SETTINGS.audit_cron)
async def handler(_input, ctx):
    body = await run_and_keep(systems(ctx), report_store(), ctx, trigger="cron", max_calls=SETTINGS.audit_max_calls,
                              max_seconds=SETTINGS.audit_max_seconds)
    level = ctx.logger.warn if body["findings"] or not body["complete"] else ctx.logger.info
    level(f"ops audit (cron): {body['findings_total']} finding(s), {body['repairable']} repairable, complete={body['complete']}",
          {"report_id": body["id"], "by_type": body["by_type"], "calls": body["calls"], "incomplete": body["incomplete_checks"]})
