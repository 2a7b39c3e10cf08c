// The console's shell: the API client (token kept for the tab), the router, the theme, and
// small DOM helpers. Pages live in their own modules; every value on screen comes from the
// API and is inserted as text, never as HTML.

import { incidentsPage, incidentPage } from "./incidents.js";
import { seriesIndexPage, seriesPage } from "./series.js";
import { scalingPage } from "./scaling.js";
import { healthPage } from "./health.js";

const TOKEN_KEY = "aiops-token";

/** Builds an element: `el("a", {href: "#"}, "text", child)`. Strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** A time as local date and time. */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

/** How long ago, coarsely: "3 min", "2 h". */
export function fmtAge(ms, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** A number with at most `d` significant digits. */
export function fmtNum(v, d = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(d - 1);
  return String(Number(v.toPrecision(d)));
}

let loginWaiters = [];

function askToken(message) {
  const dlg = document.getElementById("login");
  const err = document.getElementById("login-error");
  err.hidden = !message;
  err.textContent = message || "";
  if (!dlg.open) dlg.showModal();
  document.getElementById("token").focus();
  return new Promise((resolve) => loginWaiters.push(resolve));
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API: JSON in and out, the tab's token attached, a 401 asks for one and retries. */
export async function api(path, { method = "GET", body, text = false } = {}) {
  for (let attempt = 0; attempt < 4; attempt++) {
    const headers = { Accept: text ? "text/plain" : "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store",
    });
    if (resp.status === 401) {
      await askToken(token ? "That token was refused." : "");
      continue;
    }
    if (!resp.ok) {
      let code = "http_" + resp.status, message = resp.statusText;
      try {
        const j = await resp.json();
        if (j && j.error) ({ code, message } = j.error);
      } catch (_) { /* not JSON */ }
      throw new ApiError(resp.status, code, message);
    }
    return text ? resp.text() : resp.json();
  }
  throw new ApiError(401, "unauthorized", "no accepted token");
}

export function showError(e) {
  const b = document.getElementById("banner");
  b.textContent = e ? `${e.code ? e.code + ": " : ""}${e.message || e}` : "";
  b.hidden = !e;
}

/** Polls `fn` every `ms` while the page is shown; returns the stop function. */
export function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); showError(null); } catch (e) { showError(e); }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

const routes = [
  [/^#\/incidents$/, "incidents", () => incidentsPage],
  [/^#\/incident\/([^/?]+)$/, "incidents", (m) => (root) => incidentPage(root, decodeURIComponent(m[1]))],
  [/^#\/series$/, "series", () => seriesIndexPage],
  [/^#\/series\/([0-9a-fA-F]{16})(?:\?(.*))?$/, "series",
    (m) => (root) => seriesPage(root, m[1], new URLSearchParams(m[2] || ""))],
  [/^#\/scaling$/, "scaling", () => scalingPage],
  [/^#\/health$/, "health", () => healthPage],
];

let cleanup = null;

async function render() {
  const hash = location.hash || "#/incidents";
  const main = document.getElementById("main");
  if (cleanup) { try { cleanup(); } catch (_) { /* page gone */ } cleanup = null; }
  main.replaceChildren();
  showError(null);
  for (const [re, page, make] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.page === page) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    try {
      cleanup = (await make(m)(main)) || null;
    } catch (e) {
      showError(e);
    }
    return;
  }
  main.append(el("h1", {}, "Not found"), el("p", {}, el("a", { href: "#/incidents" }, "Incidents")));
}

function setTheme(t) {
  document.documentElement.dataset.theme = t;
  localStorage.setItem("aiops-theme", t);
  window.dispatchEvent(new Event("aiops-theme"));
}

function init() {
  const saved = localStorage.getItem("aiops-theme");
  const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = saved || (dark ? "dark" : "light");
  document.getElementById("theme").addEventListener("click", () =>
    setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"));
  document.getElementById("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    render();
  });
  document.getElementById("login-form").addEventListener("submit", () => {
    const v = document.getElementById("token").value.trim();
    if (v) sessionStorage.setItem(TOKEN_KEY, v);
    document.getElementById("token").value = "";
    const w = loginWaiters;
    loginWaiters = [];
    w.forEach((r) => r());
  });
  window.addEventListener("hashchange", render);
  render();
}

init();
