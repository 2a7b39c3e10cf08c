// Incidents: the list (live, polled) and one incident — symptom, ranked candidates with their
// evidence charted over the analysis window next to the symptom's series, the timeline, and
// the "this was the root cause" control.

import { api, el, every, fmtAge, fmtNum, fmtTime, showError } from "./app.js";
import { timeChart } from "./charts.js";

const pct = (v) => (v === null || v === undefined ? "—" : `${(100 * v).toFixed(v < 0.01 ? 1 : 0)} %`);

function tally(fb) {
  if (!fb || !fb.total) return "no feedback yet";
  return `feedback: top-1 ${fb.top1} of ${fb.total}, top-3 ${fb.top3} of ${fb.total}`;
}

export async function incidentsPage(root) {
  const summary = el("p", { class: "muted", id: "feedback-tally" });
  const body = el("tbody");
  root.append(
    el("h1", {}, "Incidents"),
    summary,
    el("div", { class: "table-wrap" }, el("table", { id: "incidents" },
      el("thead", {}, el("tr", {},
        el("th", {}, "Status"), el("th", {}, "Incident"), el("th", {}, "Age"),
        el("th", { class: "hide-narrow" }, "Services"), el("th", {}, "Top candidate"), el("th", {}, "Confidence"))),
      body)),
  );
  return every(5000, async () => {
    const r = await api("/api/v1/incidents");
    summary.textContent = `${r.incidents.length} incidents · ${tally(r.feedback)}`;
    const rows = r.incidents
      .slice()
      .sort((a, b) => (a.status === b.status ? b.opened_ms - a.opened_ms : a.status === "open" ? -1 : 1))
      .map((i) => el("tr", { "data-id": i.id },
        el("td", {}, el("span", { class: `badge ${i.status}` }, i.status)),
        el("td", {}, el("a", { href: `#/incident/${encodeURIComponent(i.id)}` }, i.title || i.id)),
        el("td", { title: fmtTime(i.opened_ms) }, fmtAge(i.opened_ms)),
        el("td", { class: "hide-narrow" }, (i.services || []).join(", ")),
        el("td", {},
          el("span", { class: "top-candidate" }, i.top_candidate ? i.top_candidate.service : "—"),
          i.top_candidate && i.top_candidate.fault_kind && i.top_candidate.fault_kind !== "unknown"
            ? el("span", { class: "kind muted" }, ` (${i.top_candidate.fault_kind})`)
            : null),
        el("td", {}, i.top_candidate ? pct(i.top_candidate.confidence) : "—")));
    body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 6, class: "muted" }, "No incidents."))]));
  });
}

/** Resolves a series string (`metric{labels}`) to its id, or null. */
async function seriesId(selector) {
  if (!selector) return null;
  const r = await api(`/api/v1/series?limit=1&match[]=${encodeURIComponent(selector)}`);
  return r.series.length ? r.series[0].id : null;
}

/** Charts one series over the window, with a band and markers, into `parent`. */
async function evidenceChart(parent, { title, selector, start, end, band, markers, sync }) {
  const id = await seriesId(selector);
  if (!id) {
    parent.append(el("p", { class: "muted" }, `${title}: series not found`));
    return null;
  }
  const r = await api(`/api/v1/series/${id}/samples?start=${start / 1000}&end=${end / 1000}`);
  const times = r.samples.map((s) => s[0]);
  const values = r.samples.map((s) => (typeof s[1] === "number" ? s[1] : null));
  const lines = [{ label: "value", values, color: "--c-value" }];
  const bands = [];
  if (band) {
    lines.push({ label: "baseline band (high)", values: times.map(() => band[1]), color: "--c-expected", width: 1, dash: [4, 4] });
    lines.push({ label: "baseline band (low)", values: times.map(() => band[0]), color: "--c-expected", width: 1, dash: [4, 4] });
    bands.push([1, 2, "--c-band"]);
  }
  const chart = timeChart(parent, { title, times, lines, bands, markers, sync, xRange: [start, end], height: 180 });
  chart.dataset.start = String(start);
  chart.dataset.end = String(end);
  const link = el("a", { href: `#/series/${id}?start=${Math.floor(start / 1000)}&end=${Math.ceil(end / 1000)}` }, "open series");
  parent.append(link);
  return chart;
}

function candidateCard(inc, c, onFeedback) {
  const card = el("section", { class: "candidate", "data-service": c.service, "aria-label": `candidate ${c.rank}: ${c.service}` },
    el("header", {},
      el("h3", {}, `${c.rank}. ${c.service}`),
      el("span", { class: "conf" }, `confidence ${pct(c.confidence)}`),
      c.fault_kind && c.fault_kind !== "unknown"
        ? el("span", { class: `kind ${c.fault_kind}`, title: "what its metrics look like" }, c.fault_kind)
        : null,
      el("span", { class: "muted" }, `score ${fmtNum(c.score)}`),
      c.onset_ms ? el("span", { class: "muted" }, `onset ${fmtTime(c.onset_ms)}`) : null),
    el("p", { class: "explanation" }, c.explanation || ""),
    c.path && c.path.length ? el("p", { class: "path" }, "call path: ", c.path.join(" → ")) : null,
  );
  const button = el("button", {
    type: "button", class: "feedback",
    onclick: async () => {
      button.disabled = true;
      try {
        await onFeedback(c);
      } catch (e) {
        showError(e);
        button.disabled = false;
      }
    },
  }, inc.feedback && inc.feedback.service === c.service ? "Marked as the root cause" : "This was the root cause");
  if (inc.feedback && inc.feedback.service === c.service) button.setAttribute("aria-pressed", "true");
  card.append(el("div", { class: "toolbar" }, button));
  return card;
}

export async function incidentPage(root, id) {
  const head = el("div");
  const charts = el("div");
  const cands = el("div", { id: "candidates" });
  const timeline = el("ul", { class: "timeline" });
  root.append(
    el("p", {}, el("a", { href: "#/incidents" }, "← Incidents")),
    head, el("h2", {}, "Symptom"), charts, el("h2", {}, "Candidates"), cands,
    el("h2", {}, "Timeline"), timeline);
  let shown = null;
  const drawn = [];
  const load = async () => {
    const inc = await api(`/api/v1/incidents/${encodeURIComponent(id)}`);
    const pd = inc.pagerduty;
    head.replaceChildren(
      el("h1", {}, inc.title || inc.id),
      el("p", {},
        el("span", { class: `badge ${inc.status}` }, inc.status), " ",
        `opened ${fmtTime(inc.opened_ms)} (${fmtAge(inc.opened_ms)} ago) · source ${inc.source}`,
        inc.resolved_ms ? ` · resolved ${fmtTime(inc.resolved_ms)}` : "",
        pd ? [" · ", pd.html_url ? el("a", { href: pd.html_url, rel: "noopener noreferrer", target: "_blank" }, `PagerDuty ${pd.incident_id}`) : `PagerDuty ${pd.incident_id}`] : ""),
      el("p", {}, `services: ${(inc.services || []).join(", ")}`),
      el("p", { id: "incident-feedback", class: "muted" }, inc.feedback ? `Root cause named: ${inc.feedback.service}` : "No root cause named yet."));
    timeline.replaceChildren(...(inc.timeline || []).map((t) =>
      el("li", {}, el("span", { class: "muted" }, `${fmtTime(t.at_ms)} · ${t.kind} · `), t.text)));
    const key = `${inc.ranked_ms}|${inc.feedback ? inc.feedback.service : ""}`;
    if (key === shown) return;
    shown = key;
    drawn.splice(0).forEach((c) => c && c.destroy && c.destroy());
    charts.replaceChildren();
    cands.replaceChildren();
    // The analysis window, from half an hour before detection: the onset stays readable.
    const detected = (inc.symptom && inc.symptom.detected_ms) || inc.opened_ms;
    const start = Math.max(inc.window_start_ms, detected - 1800000), end = inc.window_end_ms || Date.now();
    const sync = `incident-${inc.id}`;
    const sym = inc.symptom || {};
    const jobs = [];
    if (sym.series) {
      jobs.push(evidenceChart(charts, { title: `symptom: ${sym.series}`, selector: sym.series, start, end, markers: [sym.detected_ms], sync }));
    } else {
      charts.append(el("p", { class: "muted" }, `symptom: ${sym.service || "—"} ${sym.metric || ""}`));
    }
    const onFeedback = async (c) => {
      const r = await api(`/api/v1/incidents/${encodeURIComponent(inc.id)}/feedback`,
        { method: "POST", body: { service: c.service, ...(c.metric ? { metric: c.metric } : {}) } });
      document.getElementById("incident-feedback").textContent =
        `Root cause named: ${c.service} · ${tally(r.accuracy)}`;
      shown = null;
      await load();
    };
    for (const c of inc.candidates || []) {
      const card = candidateCard(inc, c, onFeedback);
      cands.append(card);
      if (c.metric) {
        const half = 3 * (c.spread || 0);
        jobs.push(evidenceChart(card, {
          title: `evidence: ${c.metric}`, selector: c.metric, start, end, sync,
          band: c.baseline !== null && c.baseline !== undefined ? [c.baseline - half, c.baseline + half] : null,
          markers: c.onset_ms ? [c.onset_ms] : [],
        }));
      }
    }
    drawn.push(...(await Promise.all(jobs)));
  };
  const stop = every(10000, load);
  return () => { stop(); drawn.forEach((c) => c && c.destroy && c.destroy()); };
}
