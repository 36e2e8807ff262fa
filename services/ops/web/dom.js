// bitbylaw ops page: building the DOM from data. Every value from the API becomes a text node
// (textContent): nothing the systems hold is ever parsed as HTML.

/**
 * h("a", {href, class, data: {..}, attrs: {..}, on: {click}}, child, ...) → an element.
 * Children: nodes, strings/numbers (as text), arrays (flattened), null/undefined/false (skipped).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  const p = props || {};
  for (const [name, value] of Object.entries(p)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = String(value);
    else if (name === "data") Object.entries(value).forEach(([k, v]) => { el.dataset[k] = String(v); });
    else if (name === "on") Object.entries(value).forEach(([k, fn]) => el.addEventListener(k, fn));
    else if (name === "attrs") Object.entries(value).forEach(([k, v]) => el.setAttribute(k, String(v)));
    else el[name] = value;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const two = (n) => String(n).padStart(2, "0");

/** Seconds since the epoch → local "YYYY-MM-DD HH:MM:SS" ("" for nothing). */
export function when(seconds) {
  if (seconds === null || seconds === undefined || seconds === "") return "";
  const d = new Date(Number(seconds) * 1000);
  if (Number.isNaN(d.getTime())) return String(seconds);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** A value as one line of text: JSON for objects and lists, "–" for nothing. */
export function plain(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function pill(text, tone) {
  return h("span", { class: `pill ${tone || ""}`.trim(), text });
}

/** A table: head is a list of column titles, rows a list of lists of cells (nodes or values). */
export function grid(head, rows, opts = {}) {
  const body = rows.length
    ? rows.map((cells) => h("tr", null, cells.map((c) => h("td", null, c instanceof Node ? c : plain(c)))))
    : [h("tr", null, h("td", { class: "none", colSpan: head.length, text: opts.empty || "nothing" }))];
  return h("table", { class: "grid", data: opts.testid ? { testid: opts.testid } : {} },
    h("thead", null, h("tr", null, head.map((t) => h("th", { text: t })))),
    h("tbody", null, body));
}

/** An object's keys and values as a two-column table (values as text). */
export function fields(obj, testid) {
  const rows = Object.entries(obj || {}).map(([k, v]) => [h("code", { text: k }), v instanceof Node ? v : plain(v)]);
  return grid(["field", "value"], rows, { testid, empty: "no fields" });
}

/** JSON in a <pre>, as text. */
export function dump(value) {
  return h("pre", { class: "dump", text: JSON.stringify(value, null, 2) });
}

export function panel(title, ...children) {
  return h("section", { class: "panel" }, h("h3", { text: title }), children);
}

/** The page's address of an entity `{type, id}`. */
export function entityHref(entity) {
  return `#/entity/${encodeURIComponent(entity.type)}/${encodeURIComponent(entity.id)}`;
}

export function entityLink(entity, label) {
  if (!entity || !entity.type) return h("span", { text: label || (entity && entity.id) || "–" });
  return h("a", { href: entityHref(entity), text: label || `${entity.type} ${entity.id}` });
}

let toastTimer = null;
/** A short message at the bottom of the page. */
export function toast(message, tone) {
  const el = document.getElementById("toast");
  el.className = `toast shown ${tone || ""}`.trim();
  el.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = "toast"; }, 6000);
}

/** A button that runs `work` once at a time, showing `busy` while it runs. */
export function action(label, work, opts = {}) {
  const btn = h("button", { type: "button", class: opts.class || "act", text: label, disabled: !!opts.disabled,
    title: opts.title, data: opts.testid ? { testid: opts.testid } : {} });
  btn.addEventListener("click", async () => {
    if (btn.disabled) return;
    btn.disabled = true;
    btn.textContent = opts.busy || "working…";
    try {
      await work(btn);
    } catch (err) {
      toast(err.message || String(err), "bad");
    } finally {
      if (btn.isConnected) { btn.disabled = false; btn.textContent = label; }
    }
  });
  return btn;
}
