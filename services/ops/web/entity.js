// bitbylaw ops page: one entity's view (GET /ops/entities/{type}/{id}): its state and why, its
// fields in EspoCRM, its counterparts, the ledger's marks, held deletes and tombstones, recent
// activity with trace ids, and "resync now" (POST …/resync, through the ledger).

import { get, post } from "./api.js";
import { counterparts } from "./counterparts.js";
import { action, dump, fields, grid, h, panel, pill, replace, toast, when } from "./dom.js";

const STATE_WORDS = {
  in_sync: "in sync", syncing: "syncing", attention: "needs attention", dead: "sync gave up",
  not_found: "not found", unknown: "unknown",
};
const STATE_TONE = { in_sync: "good", syncing: "busy", attention: "bad", dead: "bad", not_found: "warn", unknown: "warn" };

function entityPath(type, id) {
  return `/ops/entities/${encodeURIComponent(type)}/${encodeURIComponent(id)}`;
}

export async function renderEntity(view, type, id, current) {
  replace(view, h("p", { class: "quiet", text: `reading ${type} ${id} from every system…` }));
  await load(view, type, id, current);
}

/** Read the view and draw it (unless the page has moved on meanwhile). */
async function load(view, type, id, current) {
  const v = await get(entityPath(type, id));
  if (current()) draw(view, v, current);
}

function draw(view, v, current) {
  const reload = () => load(view, v.entity.type, v.entity.id, current);
  const resync = action("Resync now", async () => {
    const r = await post(v.actions.resync.path, {});
    const queued = (r.queued || []).map((q) => `${q.kind} ${q.entity_id} (${q.outcome})`).join(", ");
    toast(`Queued through the ledger: ${queued || "nothing"}${(r.prepared || []).length ? ". " + r.prepared.join("; ") : ""}`);
    setTimeout(() => { if (current()) reload().catch(() => {}); }, 1500);
  }, { busy: "queueing…", testid: "resync", class: "act main" });
  const refresh = action("Read again", reload, { busy: "reading…", testid: "reload" });

  replace(view,
    h("div", { class: "headline" },
      h("h2", null, v.name || v.entity.id, " ", h("span", { class: "quiet", text: `${v.entity.type} ${v.entity.id}` })),
      h("span", { class: `state ${STATE_TONE[v.state] || ""}`, data: { testid: "state", state: v.state }, text: STATE_WORDS[v.state] || v.state }),
      h("span", { class: "spacer" }), refresh, resync),
    h("p", { class: "summary", data: { testid: "summary" }, text: v.summary }),
    problems(v),
    h("div", { class: "columns" },
      panel("EspoCRM", v.espocrm ? fields(v.espocrm, "espocrm-fields") : h("p", { class: "quiet", text: "no record" })),
      h("div", { class: "stack", data: { testid: "counterparts" } }, counterparts(v))),
    panel("Ledger", ledgerMarks(v.ledger || [])),
    guard(v.deletion_guard || {}),
    panel("Recent activity", activity(v.activity || [])),
    h("p", { class: "quiet", text: `read ${when(v.read_at)} with ${v.calls} API call(s)` }));
}

function problems(v) {
  const out = [];
  if ((v.problems || []).length) {
    out.push(h("div", { class: "why bad", data: { testid: "problems" } }, h("h3", { text: "Why" }),
      h("ul", null, v.problems.map((p) => h("li", { text: p })))));
  }
  if ((v.notes || []).length) {
    out.push(h("div", { class: "why", data: { testid: "notes" } }, h("ul", null, v.notes.map((n) => h("li", { text: n })))));
  }
  const errors = Object.entries(v.errors || {});
  if (errors.length) {
    out.push(h("div", { class: "why warn", data: { testid: "errors" } }, h("h3", { text: "Could not read" }),
      h("ul", null, errors.map(([sys, why]) => h("li", null, h("b", { text: sys }), `: ${why}`)))));
  }
  return out;
}

/** When a mark is due: a running one's claim lasts until `due_at`; if its worker died, the
 * sweeper hands it to a live worker then ("took over a run whose worker died" in its activity). */
function due(m) {
  if (m.state === "dead") return `gave up ${when(m.died_at)}`;
  return m.in_flight ? `running; claim until ${when(m.due_at)}` : when(m.due_at);
}

/** The ledger's marks: state, attempts, last error, when due. */
export function ledgerMarks(marks, extra) {
  const rows = marks.map((m) => [
    m.kind, pill(m.in_flight ? "running" : m.state, m.state === "dead" ? "bad" : m.in_flight ? "busy" : "warn"), h("code", { text: m.entity_id }),
    m.attempts, m.last_error || "", due(m), when(m.updated_at),
    ...(extra ? [extra(m)] : []),
  ]);
  const head = ["kind", "mark", "entity", "attempts", "last error", "due", "updated"];
  return grid(extra ? [...head, ""] : head, rows, { testid: "ledger-marks", empty: "no mark: nothing pending, retrying or dead" });
}

function guard(g) {
  const held = (g.held || []).map((e) => [h("code", { text: e.key }), e.reason || "", e.why || "", when(e.at)]);
  const tombs = (g.tombstones || []).map((t) => [h("code", { text: t.id }), h("code", { text: t.key }), t.reason || "", when(t.at),
    t.record ? h("details", null, h("summary", { text: "record" }), dump(t.record)) : ""]);
  if (!held.length && !tombs.length) return null;
  return panel("Deletes",
    held.length ? [h("h4", { text: "Held: waiting for an operator's confirm" }), grid(["key", "reason", "held because", "since"], held, { testid: "held" })] : null,
    tombs.length ? [h("h4", { text: "Tombstones (restore with python -m services.platform.deletion_guard restore ID)" }),
      grid(["tombstone", "was", "reason", "deleted", "last state"], tombs, { testid: "tombstones" })] : null);
}

function activity(lines) {
  const rows = lines.map((a) => [when(a.at), pill(a.level, a.level === "error" ? "bad" : a.level === "warn" ? "warn" : ""),
    h("span", null, a.message, a.fields && Object.keys(a.fields).length ? h("details", null, h("summary", { text: "fields" }), dump(a.fields)) : null),
    a.trace_id ? h("code", { class: "trace", text: a.trace_id }) : "", h("code", { text: a.entity })]);
  return grid(["at", "level", "message", "trace id", "of"], rows, { testid: "activity", empty: "no activity kept (runs keep their lines for 14 days)" });
}
