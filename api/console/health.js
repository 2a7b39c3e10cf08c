// Health: readiness and its reasons, sources, the archive, the queue, and the ingest rate
// (from two readings of /metrics).

import { api, el, every, fmtAge, fmtNum } from "./app.js";

/** Sums every sample of `name` in OpenMetrics text (all label sets). */
function metric(text, name) {
  let sum = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name) || line.startsWith("#")) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    const v = Number(line.trim().split(/\s+/).pop());
    if (Number.isFinite(v)) sum = (sum || 0) + v;
  }
  return sum;
}

const bytes = (b) => (b === null || b === undefined ? "—" : b >= 1 << 30 ? `${fmtNum(b / (1 << 30))} GiB` : b >= 1 << 20 ? `${fmtNum(b / (1 << 20))} MiB` : `${fmtNum(b / 1024)} KiB`);

export async function healthPage(root) {
  const status = el("div", { id: "health" });
  root.append(el("h1", {}, "Health"), status);
  let prev = null;
  return every(5000, async () => {
    const [ready, text] = await Promise.all([api("/readyz"), api("/metrics", { text: true })]);
    const now = Date.now();
    const received = metric(text, "aiops_ingest_samples_received_total");
    const rate = prev && received !== null ? (received - prev.received) / ((now - prev.at) / 1000) : null;
    prev = { received, at: now };
    const kv = (k, v) => [el("dt", {}, k), el("dd", {}, v)];
    const a = ready.archive || {};
    const sources = Object.entries(ready.sources || {});
    status.replaceChildren(
      el("p", {}, el("span", { class: `badge ${ready.status}`, id: "ready-status" }, ready.status),
        (ready.reasons || []).length ? ` ${ready.reasons.join("; ")}` : " no problems reported"),
      el("div", { class: "cards" },
        el("section", { class: "card" }, el("h2", {}, "Ingest"), el("dl", { class: "kv" },
          kv("samples received", fmtNum(received, 6)),
          kv("rate", rate === null ? "measuring…" : `${fmtNum(rate)} samples/s`),
          kv("series", fmtNum(ready.series, 6)),
          kv("queue", fmtNum((ready.queue || {}).queued, 6)),
          kv("detection queue", bytes(metric(text, "aiops_detect_queue_bytes"))))),
        el("section", { class: "card" }, el("h2", {}, "Archive"), el("dl", { class: "kv" },
          kv("size", bytes(a.bytes)), kv("parts", fmtNum(a.parts, 6)), kv("WAL segments", fmtNum(a.wal_segments, 6)),
          kv("healthy", a.healthy ? "yes" : "no"), kv("damage", (a.damage || []).length ? JSON.stringify(a.damage) : "none"),
          kv("free disk", bytes((ready.disk || {}).free_bytes)))),
        el("section", { class: "card" }, el("h2", {}, "Detection"), el("dl", { class: "kv" },
          kv("series scored", fmtNum(metric(text, "aiops_detect_series"), 6)),
          kv("samples scored", fmtNum(metric(text, "aiops_detect_samples_total"), 6)),
          kv("open incidents", fmtNum(metric(text, "aiops_incidents_open"), 6))))),
      el("h2", {}, "Sources"),
      sources.length
        ? el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Source"), el("th", {}, "State"))),
          el("tbody", {}, ...sources.map(([name, s]) => el("tr", {}, el("td", {}, name),
            el("td", {}, typeof s === "object" ? JSON.stringify(s) : String(s)))))))
        : el("p", { class: "muted" }, "No pulling sources (data arrives by remote_write or Kafka)."),
      el("p", { class: "muted" }, `updated ${fmtAge(now, Date.now())} ago`));
  });
}
