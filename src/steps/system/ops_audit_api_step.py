"""The drift audit for operators (services.ops.audit; the API: services/ops/api.py):
- GET /ops/audit?history=N: the last report (each finding with the repair queued from it) and
  the summaries of the last N;
- POST /ops/audit/run `{"checks"?, "repair"?}`: run one now (bounded in calls and to
  HTTP_AUDIT_SECONDS), keep it as the last report, optionally repair what it found;
- POST /ops/audit/repair `{"ids": [...]}` | `{"all": true}`: queue the repairs of findings of
  the last report through the ledger.
`Authorization: Bearer <OPS_TOKEN>`; 503 when unset."""

from motia import http

from services.ops.api import HTTP_AUDIT_SECONDS, parse_history, parse_repair, parse_run
from services.ops.audit.runs import audit_overview, repair_last, run_and_keep
from services.platform.ledger.policies import all_topics
from services.platform.settings import get_settings
from src.glue.ops import answer, report_store, systems
from src.glue.steps import step_config

RUN = "/ops/audit/run"
REPAIR = "/ops/audit/repair"

config = step_config("Ops Drift Audit", "Operators: the drift audit's last report, a run now, repairs through the ledger", "system",
                     [http("GET", "/ops/audit"), http("POST", RUN), http("POST", REPAIR)], sorted(all_topics()))


async def handler(request, ctx):
    path = ctx.trigger.path

    async def work():
        if path == RUN:
            checks, repair = parse_run(request.body)
            ops = get_settings().ops
            body = await run_and_keep(systems(ctx), report_store(), ctx, trigger="http", max_calls=ops.audit_max_calls,
                                      max_seconds=min(ops.audit_max_seconds, HTTP_AUDIT_SECONDS), checks=checks, repair=repair)
            ctx.logger.info(f"ops audit (http): {body['findings_total']} finding(s), complete={body['complete']}",
                            {"report_id": body["id"], "by_type": body["by_type"], "calls": body["calls"]})
            return 200, body
        if path == REPAIR:
            ids = parse_repair(request.body)
            body = await repair_last(systems(ctx), report_store(), ctx, ids)
            ctx.logger.info(f"ops audit repair: {body['queued']} queued, {body['skipped']} skipped, {body['failed']} failed",
                            {"report_id": body["report_id"]})
            return 200, body
        return 200, await audit_overview(report_store(), parse_history(request.query_params))

    return await answer(request, ctx, "audit", work)
