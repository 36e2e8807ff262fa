// bitbylaw ops page: the drift audit (GET /ops/audit, POST /ops/audit/run, POST /ops/audit/repair):
// the last report's findings grouped by type, each with why and its repair; repair one or all;
// run an audit now. A repair only queues work through the ledger (services/ops/audit/repair.py).

import { get, post, url } from "./api.js";
import { action, entityLink, grid, h, panel, pill, replace, toast, when } from "./dom.js";

const HEADINGS = {
  document_not_in_collection: "Documents marked clean but missing from a collection",
  file_without_document: "Files in a collection whose document is gone, unlinked or newer",
  collection_without_owner: "Collections without an owner",
  entity_without_collection: "Entities that should have a collection and have none",
  party_differs: "Parties whose synced fields differ",
  party_counterpart_missing: "Parties whose counterpart is missing",
  bank_account_differs: "Bank accounts whose synced fields differ",
  bank_account_counterpart_missing: "Bank accounts whose counterpart is missing",
  calendar_pair_broken: "Broken calendar pairs",
};

const OUTCOMES = ["queued", "skipped", "failed", "unknown"];

function outcomeText(r) {
  return OUTCOMES.filter((k) => r[k]).map((k) => `${r[k]} ${k}`).join(", ") || "nothing to do";
}

/** `{kind: n}` → "n kind, m other". */
function counts(byKind) {
  return Object.entries(byKind || {}).map(([k, n]) => `${n} ${k}`).join(", ");
}

/** A button's work: queue the repairs `body` names, say what became of them, then `again` (draw the audit anew). */
function repairing(body, again) {
  return async () => {
    const r = await post("/ops/audit/repair", body);
    const detail = (r.outcomes || []).filter((o) => o.status !== "queued").map((o) => o.detail).filter(Boolean);
    toast(`Repairs: ${outcomeText(r)}${detail.length ? ". " + detail.join("; ") : ""}`, r.failed ? "bad" : "");
    await again();
  };
}

function finding(f, again) {
  const done = f.repaired;
  const button = f.repair
    ? action(done ? "Repair again" : "Repair", repairing({ ids: [f.id] }, again),
      { busy: "queueing…", testid: "repair", class: done ? "act" : "act main" })
    : null;
  return h("article", { class: "finding", data: { testid: "finding", type: f.type, id: f.id, entity: f.entity ? f.entity.id : "" } },
    h("div", { class: "finding-head" }, f.entity ? entityLink(f.entity, f.subject) : h("b", { text: f.subject }),
      h("code", { class: "quiet", text: f.id }), h("span", { class: "spacer" }),
      done ? h("span", { class: "pill busy", title: done.detail || "", data: { testid: "repaired" }, text: "repair queued" }) : null, button),
    h("p", { class: "finding-summary", text: f.summary }),
    h("p", { class: "finding-why" }, h("b", { text: "Why: " }), f.why),
    f.repair ? h("p", { class: "quiet" }, h("b", { text: "Repair: " }), f.repair.description)
      : h("p", { class: "hint" }, h("b", { text: "By hand: " }), f.hint || "see why"));
}

function findings(report, again) {
  const list = report.findings || [];
  if (!list.length) return h("p", { class: "all-good", data: { testid: "no-findings" }, text: report.complete ? "Nothing disagrees." : "Nothing disagrees in what was checked." });
  const groups = new Map();
  list.forEach((f) => { if (!groups.has(f.type)) groups.set(f.type, []); groups.get(f.type).push(f); });
  return [...groups].map(([type, items]) => h("section", { class: "group", data: { testid: "finding-group", type } },
    h("h3", null, HEADINGS[type] || type, " ", pill(String(items.length))),
    items.map((f) => finding(f, again))));
}

function checks(report) {
  const rows = (report.checks || []).map((c) => [c.check, c.complete ? pill("complete", "good") : pill("incomplete", "bad"),
    counts(c.examined), c.skipped_busy || 0, c.calls, `${c.seconds} s`, c.note || ""]);
  return grid(["check", "", "examined", "left out (sync pending)", "calls", "took", "note"], rows, { testid: "checks" });
}

function history(items) {
  const rows = items.map((s) => [when(s.started_at), s.trigger, s.complete ? "complete" : "incomplete", s.findings, s.repairable, s.calls,
    counts(s.by_type)]);
  return grid(["started", "by", "", "findings", "repairable", "calls", "by type"], rows, { testid: "history", empty: "no audit yet" });
}

export async function renderAudit(view, current) {
  replace(view, h("p", { class: "quiet", text: "reading the last report…" }));
  const data = await get(url("/ops/audit", { history: 10 }));
  if (!current()) return;
  const again = () => renderAudit(view, current);
  const report = data.report;
  const open = report ? (report.findings || []).filter((f) => f.repair && !f.repaired).length : 0;
  const run = action("Run audit now", async () => {
    const r = await post("/ops/audit/run", {});
    toast(`Audit done: ${r.findings_total ?? (r.findings || []).length} finding(s)${r.complete ? "" : " (incomplete)"}`);
    await again();
  }, { busy: "auditing… (up to 20 s)", testid: "run-audit", class: "act main" });
  const all = action(`Repair all (${open})`, repairing({ all: true }, again),
    { busy: "queueing…", testid: "repair-all", disabled: !open });
  const head = h("div", { class: "headline" }, h("h2", { text: "Drift audit" }), h("span", { class: "spacer" }), run, all);
  if (!report) {
    replace(view, head, h("p", { class: "quiet", data: { testid: "no-report" }, text: "No audit has run yet: run one now, or wait for the nightly one." }));
    return;
  }
  const incomplete = (report.checks || []).filter((c) => !c.complete).map((c) => `${c.check}: ${c.note}`);
  if ((report.not_run || []).length) incomplete.push(`not run: ${report.not_run.join(", ")}`);
  replace(view, head,
    h("p", { class: "summary", data: { testid: "report-summary" } },
      `Report ${report.id} of ${when(report.started_at)} (${report.trigger}): ${report.findings_total ?? report.findings.length} finding(s), `
      + `${report.calls} API call(s) of ${report.max_calls}. `,
      report.complete ? pill("complete", "good") : pill("incomplete", "bad")),
    incomplete.length ? h("div", { class: "why warn" }, h("h3", { text: "What it could not check" }), h("ul", null, incomplete.map((t) => h("li", { text: t })))) : null,
    h("div", { data: { testid: "findings" } }, findings(report, again)),
    panel("Checks", checks(report)),
    h("details", { class: "words" }, h("summary", { text: "The report in words" }), h("pre", { class: "dump", data: { testid: "report-text" }, text: report.text })),
    panel("Earlier audits", history(data.history || [])));
}
