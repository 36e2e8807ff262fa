// bitbylaw ops page: the token and the JSON API (services/ops/api.py).
// The ops token lives in this tab's sessionStorage only: never in a cookie, a URL or the page,
// gone when the tab closes or the operator signs out. Every request carries it as a bearer token.

const KEY = "bitbylaw.ops.token";

export const token = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const REASONS = {
  401: "the ops token was refused (401): sign in again with the right OPS_TOKEN",
  503: "the operators' API is off or Redis is down (503)",
};

/** One request to the API; ApiError with the answer's `error` (or why) for anything but 2xx. */
export async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${token.get()}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `the engine did not answer (${err.message})`);
  }
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const why = (data && data.error) || REASONS[resp.status] || `HTTP ${resp.status}`;
    const err = new ApiError(resp.status, resp.status === 401 ? REASONS[401] : why);
    if (resp.status === 401) document.dispatchEvent(new CustomEvent("ops:refused", { detail: err.message }));
    throw err;
  }
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body === undefined ? {} : body);

/** `/ops/...?k=v` with the values encoded. */
export function url(path, params) {
  const q = new URLSearchParams();
  Object.entries(params || {}).forEach(([k, v]) => { if (v !== undefined && v !== null && v !== "") q.set(k, String(v)); });
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}
