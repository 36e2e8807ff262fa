// bitbylaw ops page: sign-in, navigation and search. Plain JavaScript modules, no build step.
// Views: #/search?q=…, #/entity/{type}/{id}, #/ledger, #/audit. The page holds no data of its
// own: everything comes from the ops API with the operator's token (api.js).

import { ApiError, get, token, url } from "./api.js";
import { renderAudit } from "./audit.js";
import { h, entityLink, pill, replace, toast } from "./dom.js";
import { renderEntity } from "./entity.js";
import { renderLedger } from "./ledger.js";

const $ = (id) => document.getElementById(id);
let generation = 0; // a view drawn for an older address is dropped

function signedIn() {
  return token.get() !== "";
}

function showSignIn(message) {
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  replace($("view"));
  $("view").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("token").value = "";
  $("token").focus();
  document.body.dataset.shown = "signin";
}

function signOut(message) {
  token.clear();
  generation += 1;
  showSignIn(message);
}

async function signIn(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  token.set(value);
  $("signin-error").textContent = "";
  try {
    await get(url("/ops/ledger", { limit: 1 })); // any answer but 401/503 proves the token
  } catch (err) {
    token.clear();
    showSignIn(err instanceof ApiError && err.status === 401 ? "Wrong token: the API refused it (401)." : err.message);
    return;
  }
  $("token").value = "";
  if (!location.hash || location.hash === "#/") location.hash = "#/search"; // its hashchange draws the view
  else route();
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || "") };
}

function markNav(name) {
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("here", a.dataset.view === name));
}

async function route() {
  if (!signedIn()) { showSignIn(); return; }
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  const view = $("view");
  view.hidden = false;
  const mine = ++generation;
  const current = () => mine === generation;
  const { parts, params } = parseHash();
  const name = parts[0] || "search";
  markNav(name === "entity" ? "search" : name);
  document.body.dataset.shown = ""; // set once the view is drawn (the browser tests wait for it)
  try {
    if (name === "entity" && parts.length === 3) await renderEntity(view, parts[1], parts[2], current);
    else if (name === "ledger") await renderLedger(view, params.get("dead") === "1", current);
    else if (name === "audit") await renderAudit(view, current);
    else await renderSearch(view, params.get("q") || "", current);
  } catch (err) {
    if (!current() || !signedIn()) return;
    replace(view, h("p", { class: "problem", data: { testid: "view-error" }, text: err.message || String(err) }));
  }
  if (current()) document.body.dataset.shown = name;
}

async function renderSearch(view, q, current) {
  const input = h("input", { type: "search", id: "q", value: q, placeholder: "EspoCRM id, name, xAI file or collection id, BetNr, Kürzel",
    autocomplete: "off", data: { testid: "search-input" } });
  const form = h("form", { class: "finder", data: { testid: "search-form" } }, input, h("button", { type: "submit", text: "Find" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (text) location.hash = `#/search?q=${encodeURIComponent(text)}`;
  });
  const out = h("div", { data: { testid: "search-results" } });
  replace(view, h("h2", { text: "Where is this record?" }), form, out);
  input.focus();
  if (!q) {
    out.append(h("p", { class: "quiet", text: "Any id or name: a document, party, bank account, account, eviction case or employee." }));
    return;
  }
  replace(out, h("p", { class: "quiet", text: "searching…" }));
  const found = await get(url("/ops/search", { q }));
  if (!current()) return;
  const rows = (found.results || []).map((r) => h("li", { class: "hit" },
    pill(r.entity.type, "kind"), " ", entityLink(r.entity, r.name || r.entity.id), " ",
    h("code", { text: r.entity.id }), h("span", { class: "quiet", text: ` matched ${r.matched}` })));
  const errors = Object.entries(found.errors || {}).map(([sys, why]) => h("p", { class: "problem", text: `${sys}: ${why}` }));
  replace(out, errors, rows.length ? h("ul", { class: "hits" }, rows) : h("p", { class: "quiet", text: `Nothing found for “${q}”.` }));
}

document.addEventListener("ops:refused", (e) => signOut(e.detail));
window.addEventListener("hashchange", route);
$("signin-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => { signOut("Signed out: the token is gone from this tab."); toast("Signed out"); });
route();
