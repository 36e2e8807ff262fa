// bitbylaw ops page: the sync ledger (GET /ops/ledger, POST /ops/ledger/replay): pending,
// retrying and dead marks per kind, the marks themselves, and replay (dead marks back to
// pending with a fresh budget, enqueued now).

import { get, post, url } from "./api.js";
import { action, entityLink, grid, h, panel, replace, toast } from "./dom.js";
import { ledgerMarks } from "./entity.js";

const COLLECTION_OWNERS = { CBeteiligte: "party", Account: "account", Raeumungsklage: "eviction_case" };
const KIND_TYPES = { document: "document", party: "party", bank_account: "bank_account", calendar_employee: "employee" };

/** The entity a mark syncs, as the page names it (null for the calendar fan-out). */
function markEntity(m) {
  if (KIND_TYPES[m.kind]) return { type: KIND_TYPES[m.kind], id: m.entity_id };
  if (m.kind === "collection") {
    const [espo, id] = String(m.entity_id).split(":");
    if (COLLECTION_OWNERS[espo] && id) return { type: COLLECTION_OWNERS[espo], id };
  }
  return null;
}

/** A button's work: replay the dead marks `body` names, say how many, then `again` (draw the ledger anew). */
function replaying(body, again) {
  return async () => {
    const r = await post("/ops/ledger/replay", body);
    toast(`Replayed ${r.replayed} mark(s), ${r.enqueued} enqueued`);
    await again();
  };
}

/** The ledger's live marks, or its dead ones (`#/ledger?dead=1`). */
export async function renderLedger(view, dead, current) {
  replace(view, h("p", { class: "quiet", text: "reading the ledger…" }));
  const data = await get(url("/ops/ledger", { dead: dead ? 1 : "", limit: 200 }));
  if (!current()) return;
  const again = () => renderLedger(view, dead, current);
  const stats = Object.entries(data.stats || {}).map(([kind, s]) => [h("code", { text: kind }), s.pending, s.retrying,
    h("span", { class: s.dead ? "bad-text" : "", text: String(s.dead) }), s.due_now,
    action("Replay dead", replaying({ kind }, again), { disabled: !s.dead, testid: `replay-${kind}` })]);
  const marks = ledgerMarks(data.marks || [], (m) => {
    const ent = markEntity(m);
    return h("span", { class: "row-actions" }, ent ? entityLink(ent, "view") : null, " ",
      m.state === "dead" ? action("Replay", replaying({ kind: m.kind, ids: [m.entity_id] }, again),
        { testid: "replay-one" }) : null);
  });
  replace(view,
    h("div", { class: "headline" }, h("h2", { text: "The sync ledger" }), h("span", { class: "spacer" }),
      action("Read again", again, { busy: "reading…" }),
      action("Replay every dead mark", replaying({}, again), { class: "act main", testid: "replay-all" })),
    h("p", { class: "quiet", text: "Every accepted webhook, follow-up and repair is a mark here until its sync is done. "
      + "Retrying marks wait for their backoff; dead ones gave up and wait for a replay (or a resync of the entity)." }),
    panel("Per kind", grid(["kind", "pending", "retrying", "dead", "due now", ""], stats, { testid: "ledger-stats" })),
    h("nav", { class: "tabs" },
      h("a", { href: "#/ledger", class: dead ? "" : "here", text: "Pending and retrying" }),
      h("a", { href: "#/ledger?dead=1", class: dead ? "here" : "", text: "Dead" })),
    marks);
}
