// bitbylaw ops page: an entity's counterparts in the other systems (the view's `counterparts`,
// services/ops/status.py and status_sync.py): side by side where the sync compares fields.

import { dump, entityLink, fields, grid, h, panel, pill } from "./dom.js";

const yes = (v, good = "good", bad = "bad") => (v === null || v === undefined ? pill("?", "warn") : pill(v ? "yes" : "no", v ? good : bad));

/** Synced fields: EspoCRM, Advoware, the last synced snapshot, equal or which side changed. */
function sideBySide(rows) {
  const cells = rows.map((r) => {
    const tr = [h("code", { text: r.field }), r.espocrm, r.advoware, r.snapshot,
      r.equal ? pill("equal", "good") : pill(r.changed_in ? `differs: changed in ${r.changed_in}` : "differs", "bad")];
    return tr;
  });
  const table = grid(["field", "EspoCRM", "Advoware", "last synced", ""], cells, { testid: "side-by-side", empty: "no synced fields" });
  rows.forEach((r, i) => { if (!r.equal) table.tBodies[0].rows[i].classList.add("differs"); });
  return table;
}

function xaiFile(file) {
  if (!file) return h("p", { class: "quiet", text: "no xAI file" });
  return fields(file, "xai-file");
}

function document_(c) {
  const out = [];
  const xai = c.xai || {};
  const rows = (xai.collections || []).map((m) => [h("code", { text: m.collection_id }), yes(m.required, "good", ""), yes(m.recorded, "good", ""),
    yes(m.present), m.status || "–"]);
  out.push(panel("xAI", xaiFile(xai.file), h("h4", { text: "Collections it belongs in or is recorded in" }),
    grid(["collection", "required", "recorded", "present in xAI", "indexing"], rows, { testid: "collections", empty: "no collection" })));
  if (c.plan) {
    out.push(panel("The sync's plan now", fields({ decision: c.plan.decision, reason: c.plan.reason, required: c.plan.required,
      remove_from: c.plan.remove_from, missing: c.plan.missing })));
  }
  if (c.links) {
    out.push(panel("Linked entities", grid(["entity", "should have a collection", "collection"],
      c.links.map((l) => [entityLink(l.entity), yes(l.should_have_collection, "good", ""), l.collection_id]), { empty: "linked to nothing" })));
  }
  if (c.journal) out.push(panel("Upload journal", dump(c.journal)));
  return out;
}

function owner(c) {
  const x = c.xai || {};
  const docs = (c.documents || []).map((d) => [entityLink(d.entity, d.name || d.entity.id), d.xaiSyncStatus, d.xaiId,
    d.in_collection === null || d.in_collection === undefined ? "–" : yes(d.in_collection)]);
  return [
    panel("xAI collection", fields({ should_have: x.should_have, rule: x.rule, collection_id: x.collection_id, exists: x.exists,
      files: x.files, documents_linked: x.documents_linked, metadata: x.metadata }, "collection")),
    panel("Documents", grid(["document", "sync status", "xAI file", "in the collection"], docs, { testid: "documents", empty: "no linked document" })),
  ];
}

function advoware(c) {
  const a = c.advoware || {};
  const out = [];
  if (c.party) out.push(panel("Party", fields({ party: entityLink(c.party.entity, c.party.name || c.party.entity.id), advowareId: c.party.advowareId })));
  out.push(panel("Advoware", fields({ betnr: a.betnr, advowareId: a.advowareId, "found by": a.found_by, snapshot: c.snapshot }),
    h("h4", { text: "Synced fields side by side" }), sideBySide(c.fields || []),
    a.record ? h("details", null, h("summary", { text: "the whole Advoware record" }), dump(a.record)) : null));
  if (c.bank_accounts) {
    out.push(panel("Bank accounts", grid(["bank account", "advowareId", "sync status"],
      c.bank_accounts.map((b) => [entityLink(b.entity, b.name || b.entity.id), b.advowareId, b.syncStatus]), { empty: "none" })));
  }
  if (c.xai) out.push(panel("xAI", fields(c.xai)));
  return out;
}

function employee(c) {
  const g = c.google || {};
  return [
    panel("Google calendar", fields({ calendar_id: g.calendar_id, pairs: g.pairs, sync_token: g.sync_token, pending_events: g.pending_events }),
      h("h4", { text: "Pairs (Advoware FrNr ↔ Google event)" }),
      grid(["FrNr", "event"], (g.sample || []).map((p) => [p.frnr, h("code", { text: p.event_id })]), { empty: "no pair" })),
    panel("Last calendar run", c.last_run ? dump(c.last_run) : h("p", { class: "quiet", text: "none yet" })),
  ];
}

const OWNER = { draw: owner, shown: ["xai", "documents"] };
/** Per entity type: what draws its counterparts, and which of them it draws. */
const BY_TYPE = {
  document: { draw: document_, shown: ["xai", "plan", "links", "journal"] },
  account: OWNER,
  eviction_case: OWNER,
  party: { draw: advoware, shown: ["advoware", "fields", "snapshot", "bank_accounts", "xai"] },
  bank_account: { draw: advoware, shown: ["party", "advoware", "fields", "snapshot"] },
  employee: { draw: employee, shown: ["google", "last_run"] },
};

/** The counterpart panels of view `v` (anything not drawn on purpose is shown as JSON). */
export function counterparts(v) {
  const c = v.counterparts || {};
  if (!Object.keys(c).length) return [];
  const kind = BY_TYPE[v.entity.type];
  const shown = new Set(kind ? kind.shown : []);
  const rest = Object.entries(c).filter(([k]) => !shown.has(k));
  return [kind ? kind.draw(c) : null, rest.map(([k, value]) => panel(k, dump(value)))];
}
