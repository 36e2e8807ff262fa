"""The audit's operations as the steps and the cron use them: run and keep a report, repair
findings of the last report, show the last report and the history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.ops.audit.executor import run_audit
from services.ops.audit.model import Check, Finding
from services.ops.audit.repair import RepairStatus, repair_findings
from services.ops.audit.store import ReportStore
from services.ops.systems import Systems


class NoReport(LookupError):
    """No audit has run yet (the repair endpoint answers 404)."""


async def run_and_keep(systems: Systems, store: ReportStore, ctx: Any, *, trigger: str, max_calls: int, max_seconds: float,
                       checks: Iterable[Check] | None = None, repair: bool = False) -> dict[str, Any]:
    """Run an audit, keep it as the last report, optionally repair every repairable finding."""
    report = await run_audit(systems, max_calls=max_calls, max_seconds=max_seconds, trigger=trigger, checks=checks)
    body = await store.save(report)
    if repair:
        body["repairs"] = await _repair(systems, store, ctx, report.id, report.findings, None)
    return body


async def _repair(systems: Systems, store: ReportStore, ctx: Any, report_id: str, findings: list[Finding],
                  ids: list[str] | None) -> dict[str, Any]:
    by_id = {f.id: f for f in findings}
    chosen = [f for f in findings if f.repair is not None] if ids is None else [by_id[i] for i in ids if i in by_id]
    outcomes = await repair_findings(chosen, espocrm=systems.espocrm, ledger=systems.ledger, ctx=ctx,
                                     activity=systems.activity, why=f"ops repair (audit {report_id})")
    rows = [o.as_json() for o in outcomes]
    rows += [{"finding_id": i, "status": RepairStatus.UNKNOWN.value, "detail": "no such finding in the last report", "marks": []}
             for i in ids or [] if i not in by_id]
    await store.note_repairs(report_id, {r["finding_id"]: r for r in rows if r["status"] == RepairStatus.QUEUED.value})
    counts = {s.value: sum(1 for r in rows if r["status"] == s.value) for s in RepairStatus}
    return {"report_id": report_id, "outcomes": rows, **counts}


async def repair_last(systems: Systems, store: ReportStore, ctx: Any, ids: list[str] | None) -> dict[str, Any]:
    """Repair the named findings of the last report (None: every repairable one)."""
    last = await store.last()
    if last is None:
        raise NoReport("no audit has run yet: POST /ops/audit/run (or wait for the nightly one)")
    findings = [Finding.from_json(f) for f in last.get("findings") or []]
    return await _repair(systems, store, ctx, str(last["id"]), findings, ids)


async def audit_overview(store: ReportStore, history: int) -> dict[str, Any]:
    return {"report": await store.last(), "history": await store.history(history) if history else []}


__all__ = ["NoReport", "audit_overview", "repair_last", "run_and_keep"]
