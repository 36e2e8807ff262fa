// iii console: flows, traces, queues, cron and state of the local engine.
// Plain JS, no build step. Polls the /_console API of the server that serves this page.
"use strict";

const POLL_MS = 1500;
const $ = (sel, root = document) => root.querySelector(sel);

// ------------------------------------------------------------------ helpers

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function pad(n, w = 2) { return String(n).padStart(w, "0"); }
function fmtTime(ts) {
  if (!ts) return "–";
  const d = new Date(ts * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
function fmtDateTime(ts) {
  if (!ts) return "–";
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function fmtDur(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms < 1000 ? `${ms.toFixed(ms < 10 ? 2 : 1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}
function fmtRel(ts) {
  if (!ts) return "";
  const s = Math.round(ts - Date.now() / 1000);
  const a = Math.abs(s);
  const txt = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 86400 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86400)} d`;
  return s >= 0 ? `in ${txt}` : `${txt} ago`;
}
function badge(text, cls) { return `<span class="badge ${esc(cls || text)}">${esc(text)}</span>`; }
function json(v, indent) {
  try { return JSON.stringify(v, null, indent); } catch (e) { return String(v); }
}

/** `steps::Name::trigger::http(POST /x)` → {name: "Name", trigger: "POST /x"} */
function parseFid(fid) {
  let name = String(fid || ""), trigger = "";
  if (name.startsWith("steps::")) {
    const rest = name.slice(7);
    const i = rest.indexOf("::trigger::");
    name = i >= 0 ? rest.slice(0, i) : rest;
    trigger = i >= 0 ? rest.slice(i + 11) : "";
    const m = trigger.match(/^\w+\((.*)\)$/);
    if (m) trigger = m[1];
  }
  return { name, trigger };
}
function fidLabel(fid) {
  const p = parseFid(fid);
  return p.trigger ? `${p.name} · ${p.trigger}` : p.name;
}

// ------------------------------------------------------------------ API

class HttpError extends Error {}

async function request(method, path, body) {
  const opts = { method, credentials: "same-origin", cache: "no-store", headers: {} };
  if (method !== "GET") {
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-Console-Request"] = "1";
    opts.body = JSON.stringify(body ?? {});
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new HttpError("console server unreachable");
  }
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401 && data.login) {
    window.location.href = "/login";
    throw new HttpError("sign-in required");
  }
  if (!resp.ok) throw new HttpError(data.error || `HTTP ${resp.status}`);
  return data;
}
const api = { get: (p) => request("GET", p), post: (p, b) => request("POST", p, b) };

// ------------------------------------------------------------------ DOM sync

/**
 * Keep `container`'s children in step with `items` without recreating unchanged ones:
 * each child is keyed; its content is replaced only when its HTML changed, and children
 * with class `keep` (action buttons) survive updates, so clicks are never lost to a poll.
 */
function syncKeyed(container, items, keyFn, htmlFn, tag, keepFn, emptyHtml) {
  [...container.children].forEach((c) => { if (c.dataset.key === undefined) c.remove(); });
  const existing = new Map([...container.children].map((c) => [c.dataset.key, c]));
  const wanted = new Set();
  let prev = null;
  for (const it of items) {
    const k = String(keyFn(it));
    wanted.add(k);
    const html = htmlFn(it);
    let node = existing.get(k);
    if (!node) {
      node = document.createElement(tag);
      node.dataset.key = k;
      node.innerHTML = html + (keepFn ? keepFn(it) : "");
      node._html = html;
    } else if (node._html !== html) {
      [...node.children].forEach((c) => { if (!c.classList.contains("keep")) c.remove(); });
      node.insertAdjacentHTML("afterbegin", html);
      node._html = html;
    }
    const ref = prev ? prev.nextSibling : container.firstChild;
    if (ref !== node) container.insertBefore(node, ref);
    prev = node;
  }
  for (const [k, node] of existing) if (!wanted.has(k)) node.remove();
  if (!items.length && emptyHtml) container.insertAdjacentHTML("beforeend", emptyHtml);
}

function setHtml(node, html) {
  if (node._html !== html) { node.innerHTML = html; node._html = html; }
}

let toastTimer = null;
function toast(msg) {
  const t = $("#toast");
  t.textContent = msg;
  t.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("show"), 3500);
}

// ------------------------------------------------------------------ flows

function buildSteps(data) {
  const steps = new Map();
  const fnMeta = new Map((data.functions || []).map((f) => [f.function_id, f.metadata || {}]));
  const get = (name) => {
    if (!steps.has(name)) steps.set(name, { name, flows: new Set(), triggers: [], enqueues: new Set(), functions: new Set() });
    return steps.get(name);
  };
  const addFlows = (s, meta) => (meta.flows && meta.flows.length ? meta.flows : ["(no flow)"]).forEach((f) => s.flows.add(f));
  const seen = new Set();
  for (const t of data.triggers || []) {
    const c = t.config || {};
    const meta = c.metadata || fnMeta.get(t.function_id) || {};
    const s = get(meta.name || parseFid(t.function_id).name);
    s.functions.add(t.function_id);
    seen.add(t.function_id);
    addFlows(s, meta);
    for (const e of meta.enqueues || []) s.enqueues.add(typeof e === "string" ? e : e.topic);
    let trig;
    if (t.trigger_type === "http") trig = { type: "http", label: `${c.http_method || "?"} /${String(c.api_path || "").replace(/^\//, "")}` };
    else if (t.trigger_type === "queue") trig = { type: "queue", label: String(c.topic || "") };
    else if (t.trigger_type === "cron") trig = { type: "cron", label: String(c.expression || "") };
    else trig = { type: t.trigger_type, label: t.trigger_type };
    if (!s.triggers.some((x) => x.type === trig.type && x.label === trig.label)) s.triggers.push(trig);
  }
  for (const f of data.functions || []) {
    if (seen.has(f.function_id)) continue;
    const meta = f.metadata || {};
    const s = get(meta.name || parseFid(f.function_id).name);
    s.functions.add(f.function_id);
    addFlows(s, meta);
  }
  return steps;
}

const NODE_W = 220, NODE_H = 40, COL_GAP = 70, ROW_GAP = 12, PADDING = 16;

/** Nodes and edges for one flow: webhook/cron → step → topic → step, laid out in columns by depth. */
function layoutFlow(steps) {
  const nodes = new Map();
  const edges = [];
  const node = (id, type, label) => { if (!nodes.has(id)) nodes.set(id, { id, type, label, order: nodes.size }); return id; };
  const edge = (a, b) => { if (!edges.some((e) => e.from === a && e.to === b)) edges.push({ from: a, to: b }); };
  for (const s of steps) {
    const sid = node(`s:${s.name}`, "step", s.name);
    for (const t of s.triggers) {
      if (t.type === "http") edge(node(`h:${t.label}`, "http", t.label), sid);
      else if (t.type === "cron") edge(node(`c:${s.name}:${t.label}`, "cron", t.label), sid);
      else if (t.type === "queue") edge(node(`t:${t.label}`, "topic", t.label), sid);
    }
    for (const topic of s.enqueues) edge(sid, node(`t:${topic}`, "topic", topic));
  }
  // Longest-path depth (Kahn); nodes on a cycle go one column right of their placed predecessors.
  const indeg = new Map([...nodes.keys()].map((k) => [k, 0]));
  edges.forEach((e) => indeg.set(e.to, indeg.get(e.to) + 1));
  const depth = new Map();
  const queue = [...nodes.keys()].filter((k) => indeg.get(k) === 0);
  queue.forEach((k) => depth.set(k, 0));
  while (queue.length) {
    const k = queue.shift();
    for (const e of edges.filter((x) => x.from === k)) {
      depth.set(e.to, Math.max(depth.get(e.to) ?? 0, depth.get(k) + 1));
      indeg.set(e.to, indeg.get(e.to) - 1);
      if (indeg.get(e.to) === 0) queue.push(e.to);
    }
  }
  for (const k of nodes.keys()) {
    if (depth.has(k)) continue;
    const preds = edges.filter((e) => e.to === k && depth.has(e.from)).map((e) => depth.get(e.from) + 1);
    depth.set(k, preds.length ? Math.max(...preds) : 0);
  }
  const cols = [];
  for (const n of nodes.values()) {
    n.col = depth.get(n.id);
    (cols[n.col] = cols[n.col] || []).push(n);
  }
  cols.forEach((col, ci) => {
    if (ci > 0) {
      // Barycentre ordering: sit next to the nodes feeding in.
      col.forEach((n) => {
        const ys = edges.filter((e) => e.to === n.id && nodes.get(e.from).row !== undefined && nodes.get(e.from).col < ci).map((e) => nodes.get(e.from).row);
        n.bary = ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 1e9 + n.order;
      });
      col.sort((a, b) => a.bary - b.bary || a.order - b.order);
    }
    col.forEach((n, ri) => { n.row = ri; });
  });
  const maxRows = Math.max(1, ...cols.map((c) => (c ? c.length : 0)));
  const height = PADDING * 2 + maxRows * NODE_H + (maxRows - 1) * ROW_GAP;
  cols.forEach((col) => {
    if (!col) return;
    const colH = col.length * NODE_H + (col.length - 1) * ROW_GAP;
    const top = (height - colH) / 2;
    col.forEach((n) => {
      n.x = PADDING + n.col * (NODE_W + COL_GAP);
      n.y = top + n.row * (NODE_H + ROW_GAP);
    });
  });
  const width = PADDING * 2 + cols.length * NODE_W + Math.max(0, cols.length - 1) * COL_GAP;
  return { nodes: [...nodes.values()], edges, width, height };
}

const KIND_LABEL = { http: "webhook", cron: "cron", topic: "topic", step: "step" };

function svgFlow(layout, idx) {
  const byId = new Map(layout.nodes.map((n) => [n.id, n]));
  const marker = `arrow-${idx}`;
  const edges = layout.edges.map((e) => {
    const a = byId.get(e.from), b = byId.get(e.to);
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x - 2, y2 = b.y + NODE_H / 2;
    const dx = Math.max(30, Math.abs(x2 - x1) / 2);
    return `<path class="edge" d="M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}" marker-end="url(#${marker})"/>`;
  }).join("");
  const nodes = layout.nodes.map((n) => {
    const text = n.label.length > 30 ? n.label.slice(0, 29) + "…" : n.label;
    const rx = n.type === "topic" ? 20 : 5;
    return `<g class="node ${n.type}" data-node="${esc(n.id)}" transform="translate(${n.x},${n.y})"><title>${esc(KIND_LABEL[n.type])}: ${esc(n.label)}</title>`
      + `<rect width="${NODE_W}" height="${NODE_H}" rx="${rx}"/>`
      + `<text class="kind" x="12" y="14">${esc(KIND_LABEL[n.type])}</text>`
      + `<text x="12" y="30">${esc(text)}</text></g>`;
  }).join("");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${layout.width}" height="${layout.height}" data-testid="flow-graph" role="img">`
    + `<defs><marker id="${marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#9aa3af"/></marker></defs>`
    + edges + nodes + `</svg>`;
}

function stepCard(s) {
  const trig = s.triggers.map((t) => badge(`${t.type === "queue" ? "topic" : t.type} ${t.label}`, t.type)).join(" ") || '<span class="muted">no trigger</span>';
  const enq = [...s.enqueues].map((t) => badge(t, "topic")).join(" ") || '<span class="muted">–</span>';
  return `<div class="step-card" data-step="${esc(s.name)}"><div class="name">${esc(s.name)}</div>`
    + `<div class="row">triggers: ${trig}</div><div class="row">enqueues: ${enq}</div></div>`;
}

let stepNames = [];

async function refreshFlows() {
  const data = await api.get("/_console/functions");
  const steps = buildSteps(data);
  updateStepNames(steps);
  const flows = new Map();
  for (const s of steps.values()) for (const f of s.flows) (flows.get(f) || flows.set(f, []).get(f)).push(s);
  const names = [...flows.keys()].sort((a, b) => (a === "(no flow)") - (b === "(no flow)") || a.localeCompare(b));
  const html = names.map((f, i) => {
    const list = flows.get(f).sort((a, b) => a.name.localeCompare(b.name));
    return `<div class="flow" data-flow="${esc(f)}"><h2>${esc(f)} <span class="muted">${list.length} step(s)</span></h2>`
      + `<div class="graph">${svgFlow(layoutFlow(list), i)}</div>`
      + `<div class="steps-list">${list.map(stepCard).join("")}</div></div>`;
  }).join("") || '<div class="empty-box">No steps registered yet: is a worker connected?</div>';
  setHtml($("#flows"), html);
}

function updateStepNames(steps) {
  const names = [...steps.keys()].sort();
  if (json(names) === json(stepNames)) return;
  stepNames = names;
  $("#step-names").innerHTML = names.map((n) => `<option value="${esc(n)}">`).join("");
}

// ------------------------------------------------------------------ traces

function traceQuery() {
  const p = new URLSearchParams();
  p.set("limit", $("#f-limit").value);
  const step = $("#f-step").value.trim();
  if (step) p.set("step", step);
  const st = $("#f-status").value;
  if (st) p.set("outcome", st);
  const since = $("#f-since").value;
  if (since) p.set("since", String(Date.now() / 1000 - Number(since)));
  return p.toString();
}

function traceRow(t) {
  const steps = (t.steps || []).map((f) => parseFid(f).name);
  const uniq = [...new Set(steps)];
  return `<td class="mono">${esc(fmtDateTime(t.started))}</td>`
    + `<td><a href="#/trace/${esc(t.trace_id)}">${esc(t.root ? fidLabel(t.root) : t.trace_id)}</a></td>`
    + `<td>${t.kind ? badge(t.kind) : ""}</td>`
    + `<td>${esc(uniq.slice(0, 4).join(", "))}${uniq.length > 4 ? ` +${uniq.length - 4}` : ""}</td>`
    + `<td class="num">${t.invocations}</td><td class="num">${t.logs}</td>`
    + `<td>${badge(t.outcome)}</td><td class="num">${esc(fmtDur(t.duration_ms))}</td>`;
}

async function refreshTraces() {
  if (!stepNames.length) refreshFlowsQuietly();
  const limit = Number($("#f-limit").value);
  const query = traceQuery();
  const data = await api.get(`/_console/traces?${query}`);
  const body = $("#traces-body");
  body.dataset.query = query.replace(/&since=[^&]*/, "&since=…");  // what the rows show (tests wait on it)
  syncKeyed(body, data.traces, (t) => t.trace_id, traceRow, "tr", null, '<tr><td colspan="8" class="empty">No traces match.</td></tr>');
  [...body.children].forEach((tr) => { if (tr.dataset.key) { tr.className = "click"; tr.dataset.testid = "trace-row"; } });
  $("#traces-count").textContent = `${data.traces.length} shown, newest first${data.traces.length >= limit ? ` (limit ${limit}; narrow the filters to see older ones)` : ""}`;
}

let flowsQuiet = false;
function refreshFlowsQuietly() {
  if (flowsQuiet) return;
  flowsQuiet = true;
  api.get("/_console/functions").then((d) => updateStepNames(buildSteps(d))).catch(() => {}).finally(() => { flowsQuiet = false; });
}

// ------------------------------------------------------------------ one trace

function fieldsHtml(fields) {
  if (fields === null || fields === undefined || fields === "") return "";
  const compact = json(fields);
  return `<pre>${esc(compact.length <= 90 ? compact : json(fields, 2))}</pre>`;
}

async function refreshTrace(traceId) {
  const box = $("#trace");
  let tr;
  try {
    tr = await api.get(`/_console/traces/${encodeURIComponent(traceId)}`);
  } catch (e) {
    setHtml(box, `<div class="empty-box">Trace ${esc(traceId)}: ${esc(e.message)}</div>`);
    return;
  }
  const invs = [...tr.invocations].sort((a, b) => a.start - b.start);
  const now = Date.now() / 1000;
  const t0 = Math.min(tr.started, ...invs.map((i) => i.start));
  const t1 = Math.max(t0 + 0.001, ...invs.map((i) => i.end || now), ...tr.logs.map((l) => l.time));
  const span = t1 - t0;
  const rows = invs.map((i) => {
    const left = ((i.start - t0) / span) * 100;
    const width = Math.max(0.4, (((i.end || now) - i.start) / span) * 100);
    const max = i.detail && i.detail.max_attempts;
    const attempt = i.kind === "queue" ? `attempt ${i.attempt}${max ? `/${max}` : ""}` : "";
    const where = i.kind === "http" && i.detail ? `${i.detail.method || ""} ${i.detail.path || ""} → ${i.detail.status ?? "…"}` : i.kind === "queue" && i.detail ? `topic ${i.detail.topic}` : i.kind === "cron" && i.detail ? `${i.detail.expression}${i.detail.manual ? " (manual)" : ""}` : "";
    return `<div class="tl-row" data-testid="invocation" data-outcome="${esc(i.outcome)}" data-attempt="${i.attempt}">`
      + `<div><b>${esc(fidLabel(i.function_id))}</b><br>${badge(i.kind)} <span class="muted">${esc(where)}</span> ${attempt ? badge(attempt, i.attempt > 1 ? "skipped" : "") : ""}</div>`
      + `<div class="tl-track"><div class="tl-bar ${esc(i.outcome)}" style="left:${left.toFixed(3)}%;width:${width.toFixed(3)}%"></div></div>`
      + `<div>${badge(i.outcome)} <span class="mono">${esc(fmtDur(i.duration_ms))}</span> <span class="muted">+${esc(fmtDur((i.start - t0) * 1000))}</span></div>`
      + (i.error ? `<div class="err">${esc(i.error)}</div>` : "")
      + `</div>`;
  }).join("") || '<div class="muted">No handler runs recorded.</div>';
  const logs = tr.logs.map((l) => `<tr data-testid="log-line"><td class="mono">${esc(fmtTime(l.time))}</td><td>${badge(l.level, `lvl-${l.level}`)}</td>`
    + `<td>${esc(l.step ? fidLabel(l.step) : l.source)}</td><td class="msg">${esc(l.message)}</td>`
    + `<td>${fieldsHtml(l.fields)}</td></tr>`).join("")
    || '<tr><td colspan="5" class="empty">No log lines in this trace.</td></tr>';
  const retries = invs.filter((i) => i.attempt > 1).length;
  const html = `<div class="summary"><div><div class="muted">trace</div><span class="mono" data-testid="trace-id">${esc(tr.trace_id)}</span></div>`
    + `<div><div class="muted">outcome</div>${badge(tr.outcome)}</div>`
    + `<div><div class="muted">started</div>${esc(fmtDateTime(tr.started))}</div>`
    + `<div><div class="muted">duration</div>${esc(fmtDur(tr.duration_ms))}</div>`
    + `<div><div class="muted">handler runs</div>${invs.length}${retries ? ` (${retries} retr${retries === 1 ? "y" : "ies"})` : ""}</div>`
    + `<div><div class="muted">entry</div>${esc(tr.root ? fidLabel(tr.root) : "–")}</div></div>`
    + `<h3>Timeline</h3><div class="timeline" data-testid="timeline">${rows}</div>`
    + `<h3>Logs <span class="muted">${tr.logs.length}</span></h3>`
    + `<table class="grid logs" data-testid="trace-logs"><thead><tr><th>Time</th><th>Level</th><th>Step</th><th>Message</th><th>Fields</th></tr></thead><tbody>${logs}</tbody></table>`;
  setHtml(box, html);
}

// ------------------------------------------------------------------ queues

// One row per topic: the subscribers compete for its one job list (engine 0.8.3).
function queueRow(q) {
  const subs = q.subscribers.map((s) => `${esc(fidLabel(s.function_id))} <span class="muted">${esc(s.mode)}${s.concurrency == null ? "" : ` ×${s.concurrency}`}</span>`).join("<br>");
  return `<td class="mono">${esc(q.topic)}</td><td data-col="subscribers">${subs || '<span class="muted">(no subscriber)</span>'}</td>`
    + `<td class="num" data-col="depth">${q.depth}</td><td class="num" data-col="in_flight">${q.in_flight}</td>`
    + `<td class="num" data-col="retrying">${q.retrying}</td><td class="num" data-col="stranded">${q.stranded ? badge(String(q.stranded), "error") : 0}</td>`
    + `<td class="num" data-col="dead">${q.dead ? badge(String(q.dead), "error") : 0}</td>`
    + `<td class="num">${q.max_attempts ?? "–"}</td><td>${esc(q.adapter)}</td>`;
}

// A stored dead letter (queue:{topic}:dlq): listed only, the engine has no redrive.
function dlqEntry(e) {
  const j = e.job;
  return `<div class="meta"><span class="mono" title="${esc(j.id)}">${esc(j.id.slice(0, 12))}</span>${badge(e.topic, "topic")}`
    + `<span class="muted">attempts ${j.attempts_made}/${j.max_attempts}</span>`
    + `<span class="muted">failed ${esc(fmtDateTime(e.failed_at / 1000))}</span>`
    + (j.traceparent ? `<a href="#/trace/${esc(String(j.traceparent).split("-")[1] || "")}">trace</a>` : "") + `</div>`
    + `<div class="err" data-testid="dlq-error">${esc(e.error)}</div><pre data-testid="dlq-payload">${esc(json(j.data, 2))}</pre>`;
}

async function refreshQueues() {
  const [q, d] = await Promise.all([api.get("/_console/queues"), api.get("/_console/dlq")]);
  syncKeyed($("#queues-body"), q.queues, (r) => r.topic, queueRow, "tr", null, '<tr><td colspan="9" class="empty">No queues.</td></tr>');
  [...$("#queues-body").children].forEach((tr) => { if (tr.dataset.key) tr.dataset.topic = tr.querySelector("td").textContent; });
  const letters = d.dead_letters;  // newest first, as stored
  syncKeyed($("#dlq"), letters, (e) => e.job.id, dlqEntry, "div", null, '<div class="empty-box">No dead letters.</div>');
  [...$("#dlq").children].forEach((n) => { if (n.dataset.key) { n.className = "dlq-entry"; n.dataset.testid = "dlq-entry"; } });
  $("#dlq-count").textContent = letters.length ? String(letters.length) : "";
}

// ------------------------------------------------------------------ cron

function cronRow(j) {
  const res = j.last_result ? badge(j.last_result) : '<span class="muted">never ran</span>';
  return `<td><b>${esc(parseFid(j.function_id).name)}</b><br><span class="muted mono">${esc(j.function_id)}</span></td>`
    + `<td class="mono">${esc(j.expression)}</td>`
    + `<td>${esc(fmtDateTime(j.next_fire))}<br><span class="muted">${esc(fmtRel(j.next_fire))}</span></td>`
    + `<td>${esc(fmtDateTime(j.last_fire))}<br><span class="muted">${esc(fmtRel(j.last_fire))}</span></td>`
    + `<td data-col="last_result">${res}${j.last_error ? `<div class="err mono">${esc(j.last_error)}</div>` : ""}</td>`
    + `<td class="num" data-col="runs">${j.runs}</td><td class="num">${esc(fmtDur(j.last_duration_ms))}</td>`;
}

async function refreshCron() {
  const data = await api.get("/_console/cron");
  const jobs = [...data.jobs].sort((a, b) => a.function_id.localeCompare(b.function_id));
  syncKeyed($("#cron-body"), jobs, (j) => j.function_id, cronRow, "tr",
    (j) => `<td class="keep"><button class="btn" data-action="fire" data-fid="${esc(j.function_id)}" data-testid="fire">Fire now</button></td>`,
    '<tr><td colspan="8" class="empty">No cron triggers registered.</td></tr>');
}

async function fire(fid, button) {
  button.disabled = true;
  try {
    const r = await api.post("/_console/cron/trigger", { function_id: fid });
    toast(`${parseFid(fid).name}: ${r.result}${r.error ? ` — ${r.error}` : ""} (trace ${String(r.trace_id).slice(0, 8)})`);
  } catch (e) {
    toast(`Fire failed: ${e.message}`);
  } finally {
    button.disabled = false;
  }
  await refreshCron().catch(() => {});
}

// ------------------------------------------------------------------ state

async function refreshState(scope) {
  const groups = (await api.get("/_console/state")).groups || [];
  syncKeyed($("#scopes"), groups, (g) => g, (g) => `<a href="#/state/${encodeURIComponent(g)}" class="${g === scope ? "active" : ""}">${esc(g)}</a>`, "li", null,
    '<li class="muted">No scopes.</li>');
  if (!scope) {
    $("#scope-title").textContent = "Select a scope";
    setHtml($("#items"), "");
    return;
  }
  const data = await api.get(`/_console/state/${encodeURIComponent(scope)}?limit=500`);
  $("#scope-title").textContent = `${scope} — ${data.total ?? data.items.length} key(s)${data.total > data.items.length ? `, first ${data.items.length} shown` : ""}`;
  const html = data.items.length
    ? `<div class="kv">${data.items.map((i) => `<div class="k" data-testid="state-key">${esc(i.key)}</div><div><pre data-testid="state-value" data-key="${esc(i.key)}">${esc(json(i.value, 2))}</pre></div>`).join("")}</div>`
    : '<div class="empty-box">This scope is empty.</div>';
  setHtml($("#items"), html);
}

// ------------------------------------------------------------------ status, router, polling

async function refreshStatus() {
  const el = $("#status");
  try {
    const s = await api.get("/_console/status");
    el.className = "status ok";
    $(".text", el).textContent = `${s.functions} functions · ${s.workers} worker${s.workers === 1 ? "" : "s"} · ${s.idle ? "idle" : "busy"}`;
  } catch (e) {
    el.className = "status bad";
    $(".text", el).textContent = e.message;
  }
}

const VIEWS = {
  flows: refreshFlows,
  traces: refreshTraces,
  trace: refreshTrace,
  queues: refreshQueues,
  cron: refreshCron,
  state: refreshState,
};

function route() {
  const parts = (location.hash || "#/flows").slice(2).split("/");
  const view = VIEWS[parts[0]] ? parts[0] : "flows";
  const arg = parts.length > 1 ? decodeURIComponent(parts.slice(1).join("/")) : "";
  return { view, arg };
}

let current = route();
let busy = false, again = false;

function show() {
  current = route();
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${current.view}`; });
  const navView = current.view === "trace" ? "traces" : current.view;
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === navView));
  document.body.dataset.view = current.view;
  tick();
}

async function tick() {
  if (busy) { again = true; return; }
  busy = true;
  const { view, arg } = current;
  try {
    await Promise.all([refreshStatus(), VIEWS[view](arg)]);
    document.body.dataset.loaded = view;
    $("main").querySelectorAll(".banner").forEach((b) => b.remove());
  } catch (e) {
    const section = $(`#view-${view}`);
    let b = $(".banner", section);
    if (!b) { b = document.createElement("div"); b.className = "banner"; section.prepend(b); }
    b.textContent = `Could not load: ${e.message}`;
  } finally {
    busy = false;
    if (again) { again = false; tick(); }
  }
}

function init() {
  window.addEventListener("hashchange", show);
  let debounce = null;
  $("#f-step").addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(tick, 250); });
  ["#f-status", "#f-since", "#f-limit"].forEach((s) => $(s).addEventListener("change", tick));
  $("#traces-body").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-key]");
    if (tr && !ev.target.closest("a")) location.hash = `#/trace/${tr.dataset.key}`;
  });
  $("#cron-body").addEventListener("click", (ev) => {
    const b = ev.target.closest("[data-action=fire]");
    if (b) fire(b.dataset.fid, b);
  });
  setInterval(() => { if (!document.hidden) tick(); }, POLL_MS);
  show();
}

document.addEventListener("DOMContentLoaded", init);
