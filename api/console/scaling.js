// Scaling: per target, the value served to the HPA and the replicas it asks for, and a chart of
// the recent load running into the forecast's median with its p90 and p99 band.

import { api, el, every, fmtNum, fmtTime } from "./app.js";
import { timeChart } from "./charts.js";

function card(v) {
  const kv = (k, val) => [el("dt", {}, k), el("dd", {}, val)];
  return el("dl", { class: "kv" },
    kv("served value", fmtNum(v.value)),
    kv("desired replicas", String(v.desired_replicas ?? "—")),
    kv("current load", fmtNum(v.current)),
    kv(`forecast (quantile ${v.quantile == null ? "—" : v.quantile.toFixed(2)})`, fmtNum(v.forecast)),
    kv("forecast p50", fmtNum(v.forecast_p50)),
    ...(v.mode === "shadow" ? kv("would serve (shadow)", fmtNum(v.would_serve)) : []),
    kv("steps under-provisioned", v.under_share == null ? "—" : `${(100 * v.under_share).toFixed(1)} %`),
    kv("mode", el("span", { class: `badge ${v.mode}` }, v.mode || "—")),
    kv("for", fmtTime(v.for_ms)));
}

export async function scalingPage(root) {
  const list = el("div", { id: "targets" });
  root.append(el("h1", {}, "Scaling"),
    el("p", { class: "muted" }, "The HPA is served the forecast at the pods' start-up lead (never below the current load)."),
    list);
  const charts = [];
  const stop = every(15000, async () => {
    const r = await api("/api/v1/scaling");
    charts.splice(0).forEach((c) => c.destroy());
    const sections = [];
    for (const v of r.targets) {
      const sec = el("section", { class: "card target", "data-name": v.name }, el("h2", {}, v.name));
      sections.push(sec);
      if (v.error) {
        sec.append(el("p", { class: "muted" }, v.error));
        continue;
      }
      sec.append(card(v));
      const o = await api(`/api/v1/scaling/${encodeURIComponent(v.name)}/outlook`);
      // The recent past at a scale where the path ahead is visible: six times its length.
      const path = o.path, hist = o.history.slice(-Math.max(60, 6 * path.length));
      const times = hist.map((h) => h[0]).concat(path.map((f) => f.target_ms));
      const pad = (n) => Array(n).fill(null);
      const load = hist.map((h) => h[1]).concat(pad(path.length));
      // The median starts at the last load so that the two lines join.
      const lastLoad = hist.length ? [hist[hist.length - 1][1]] : [];
      const p50 = pad(Math.max(0, hist.length - 1)).concat(lastLoad, path.map((f) => f.p50));
      const p90 = pad(Math.max(0, hist.length - 1)).concat(lastLoad, path.map((f) => f.p90));
      const p99 = pad(Math.max(0, hist.length - 1)).concat(lastLoad, path.map((f) => f.p99));
      if (!hist.length) { p50.shift(); p90.shift(); p99.shift(); }
      sec.dataset.forecastSteps = String(path.length);
      charts.push(timeChart(sec, {
        title: `load and forecast (step ${o.step_secs} s, lead ${o.lead_secs} s, served quantile q${o.quantile.toFixed(2)})`,
        times, height: 220, markers: [v.for_ms],
        lines: [
          { label: "load", values: load, color: "--c-value", width: 2 },
          { label: "forecast p50", values: p50, color: "--c-score", dash: [6, 3] },
          { label: "p90", values: p90, color: "--c-score", width: 0.5 },
          { label: "p99", values: p99, color: "--c-score", width: 0.5 },
        ],
        bands: [[2, 1, "--c-p90"], [3, 2, "--c-p99"]],
      }));
    }
    list.replaceChildren(...(sections.length ? sections : [el("p", { class: "muted" }, "No scaling targets configured.")]));
  });
  return () => { stop(); charts.forEach((c) => c.destroy()); };
}
