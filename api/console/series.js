// Series: what is unusual now (continuous score) and recent anomaly events, and one series'
// samples with the detector's expected value and band, its events shaded, and its scores
// underneath (both charts share the cursor).

import { api, el, every, fmtAge, fmtNum, fmtTime } from "./app.js";
import { timeChart } from "./charts.js";

const labelsText = (labels) => {
  const l = Array.isArray(labels) ? labels : Object.entries(labels || {});
  return l.map(([k, v]) => `${k}="${v}"`).join(", ");
};

export async function seriesIndexPage(root) {
  const scores = el("tbody");
  const events = el("tbody");
  root.append(
    el("h1", {}, "Series"),
    el("h2", {}, "Most unusual now"),
    el("p", { class: "muted" }, "Ranked by the continuous score: 0.5 is a one-in-100,000 state of the series."),
    el("div", { class: "table-wrap" }, el("table", { id: "scores" },
      el("thead", {}, el("tr", {}, el("th", {}, "Series"), el("th", {}, "Service"), el("th", {}, "Score"), el("th", {}, "p-value"), el("th", {}, "Alarm"))),
      scores)),
    el("h2", {}, "Anomaly events (24 h)"),
    el("div", { class: "table-wrap" }, el("table", { id: "events" },
      el("thead", {}, el("tr", {}, el("th", {}, "Series"), el("th", {}, "Started"), el("th", {}, "Why"), el("th", {}, "Observed / expected"), el("th", {}, "Score"))),
      events)),
  );
  return every(5000, async () => {
    const [s, a] = await Promise.all([api("/api/v1/scores?limit=25"), api("/api/v1/anomalies")]);
    scores.replaceChildren(...s.scores.map((r) => el("tr", {},
      el("td", {}, el("a", { href: `#/series/${r.series_id}` }, r.metric || r.series_id), " ",
        el("span", { class: "muted" }, labelsText(r.labels))),
      el("td", {}, r.service || "—"), el("td", {}, fmtNum(r.rank_score)),
      el("td", {}, fmtNum(r.p_value)), el("td", {}, r.alarm ? "yes" : ""))));
    events.replaceChildren(...a.anomalies.slice(0, 100).map((e) => el("tr", {},
      el("td", {}, el("a", { href: `#/series/${e.series_id}?start=${Math.floor(e.start_ms / 1000) - 1800}&end=${Math.ceil((e.end_ms || Date.now()) / 1000) + 600}` }, e.metric),
        " ", el("span", { class: "muted" }, labelsText(e.labels))),
      el("td", { title: fmtTime(e.start_ms) }, `${fmtAge(e.start_ms)} ago`),
      el("td", { class: "reason" }, reasonText(e.reason)),
      el("td", {}, `${fmtNum(e.observed)} / ${fmtNum(e.expected)}`),
      el("td", {}, fmtNum(e.score)))));
  });
}

// Why an event alarmed (the event's `reason`), in a few words.
const REASONS = {
  surprise: "far from expected",
  range: "beyond its range",
  count: "rare count",
  drift: "level drifted",
  steps: "moves differently",
  burst: "burst of large steps",
  day_shape: "left the day's shape",
  service: "service metrics together",
};

export function reasonText(reason) {
  return reason ? (REASONS[reason] || reason) : "—";
}

const RANGES = [["1 h", 3600], ["6 h", 21600], ["24 h", 86400]];

export async function seriesPage(root, id, query) {
  const now = Math.floor(Date.now() / 1000);
  const end = Number(query.get("end")) || now;
  const start = Number(query.get("start")) || end - 3600;
  const title = el("h1", {}, id);
  const toolbar = el("div", { class: "toolbar", role: "group", "aria-label": "Time range" },
    ...RANGES.map(([label, secs]) => el("a", {
      href: `#/series/${id}?start=${now - secs}&end=${now}`,
      "aria-pressed": String(!query.get("start") ? secs === 3600 : end - start === secs),
    }, label)));
  const charts = el("div");
  const eventsList = el("ul", { class: "timeline", id: "series-events" });
  root.append(el("p", {}, el("a", { href: "#/series" }, "← Series")), title, toolbar, charts,
    el("h2", {}, "Anomaly events in range"), eventsList);
  const r = await api(`/api/v1/series/${id}/scored?start=${start}&end=${end}`);
  const s = r.series || {};
  title.textContent = `${s.metric || id}${r.counter ? " (rate per second)" : ""}`;
  toolbar.after(el("p", { class: "muted" }, labelsText(s.labels),
    ` · ${r.points.length} samples · expected values and scores replayed from ${fmtTime(r.warmup_from_ms)}`));
  const p = r.points;
  const col = (i) => p.map((row) => row[i]);
  const times = col(0);
  const ranges = r.events.map((e) => [e.start_ms, e.end_ms]);
  const sync = `series-${id}`;
  const xRange = [start * 1000, end * 1000];
  const top = timeChart(charts, {
    title: "value, expected and band", times, sync, xRange, ranges, height: 260,
    lines: [
      { label: "value", values: col(1), color: "--c-value" },
      { label: "expected", values: col(2), color: "--c-expected", dash: [6, 3] },
      { label: "upper", values: col(4), color: "--c-expected", width: 0.5 },
      { label: "lower", values: col(3), color: "--c-expected", width: 0.5 },
    ],
    bands: [[2, 3, "--c-band"]],
  });
  top.id = "series-chart";
  const bottom = timeChart(charts, {
    title: "scores", times, sync, xRange, ranges, height: 150,
    lines: [
      { label: "alarm score", values: col(5), color: "--c-score" },
      { label: "continuous score", values: col(6), color: "--c-rank" },
    ],
  });
  bottom.id = "score-chart";
  eventsList.replaceChildren(...(r.events.length ? r.events.map((e) => el("li", { class: "event", "data-reason": e.reason || "" },
    `${fmtTime(e.start_ms)} – ${e.end_ms ? fmtTime(e.end_ms) : "open"} · ${reasonText(e.reason)} · score ${fmtNum(e.score)} · observed ${fmtNum(e.observed)} vs expected ${fmtNum(e.expected)}`))
    : [el("li", { class: "muted" }, "None.")]));
  return () => { top.destroy(); bottom.destroy(); };
}
