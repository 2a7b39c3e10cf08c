// Time charts on uPlot (vendored): lines, bands between two series, shaded ranges (anomaly
// events) and vertical markers (onsets), coloured from the theme's CSS variables so that a
// theme switch redraws them. Each chart records how many points it drew (`data-points`) and
// that it drew (`data-drawn`), which the browser tests check.

import { el } from "./app.js";

const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function overlays(ranges, markers) {
  return {
    hooks: {
      drawClear: [(u) => {
        const { top, height, left, width } = u.bbox;
        const ctx = u.ctx;
        ctx.save();
        ctx.fillStyle = css("--c-event");
        let painted = 0;
        for (const [a, b] of ranges) {
          const x0 = Math.max(left, u.valToPos(a / 1000, "x", true));
          const x1 = b === null || b === undefined ? left + width
            : Math.min(left + width, u.valToPos(b / 1000, "x", true));
          if (x1 >= x0 && x0 <= left + width) {
            ctx.fillRect(x0, top, Math.max(x1 - x0, 3 * devicePixelRatio), height);
            painted++;
          }
        }
        ctx.restore();
        u.root.parentElement.parentElement.dataset.ranges = String(painted);
      }],
      draw: [(u) => {
        const { top, height } = u.bbox;
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = css("--c-onset");
        ctx.lineWidth = 2 * devicePixelRatio;
        ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
        for (const m of markers) {
          const x = u.valToPos(m / 1000, "x", true);
          ctx.beginPath();
          ctx.moveTo(x, top);
          ctx.lineTo(x, top + height);
          ctx.stroke();
        }
        ctx.restore();
        u.root.parentElement.parentElement.dataset.drawn = "true";
      }],
    },
  };
}

/**
 * Draws a time chart into a new element appended to `parent` and returns it.
 * opts: { title, times (ms), lines: [{label, values, color (CSS var), width, dash, fill}],
 *         bands: [[upperLineIndex, lowerLineIndex, colorVar]], ranges: [[startMs, endMs|null]],
 *         markers: [ms], height, sync, xRange: [ms, ms], yLabel }
 */
export function timeChart(parent, opts) {
  const box = el("figure", { class: "chart", role: "img", "aria-label": opts.title || "chart" });
  if (opts.title) box.append(el("figcaption", { class: "title" }, opts.title));
  const holder = el("div");
  box.append(holder);
  parent.append(box);
  const x = opts.times.map((t) => t / 1000);
  const data = [x, ...opts.lines.map((l) => l.values.map((v) => (v === null || v === undefined || Number.isNaN(v) ? null : v)))];
  const first = data[1] || [];
  box.dataset.points = String(first.filter((v) => v !== null).length);
  const axis = () => ({
    stroke: () => css("--muted"),
    grid: { stroke: () => css("--line"), width: 1 },
    ticks: { stroke: () => css("--line"), width: 1 },
  });
  const series = [{}].concat(opts.lines.map((l) => ({
    label: l.label,
    stroke: () => css(l.color || "--c-value"),
    width: l.width || 1.5,
    dash: l.dash,
    fill: l.fill ? () => css(l.fill) : undefined,
    points: { show: false },
    spanGaps: false,
  })));
  const bands = (opts.bands || []).map(([hi, lo, color]) => ({ series: [hi + 1, lo + 1], fill: () => css(color) }));
  const width = () => Math.max(280, Math.floor(holder.clientWidth || parent.clientWidth || 600));
  const u = new uPlot({
    width: width(),
    height: opts.height || 220,
    series,
    bands,
    scales: { x: { time: true, ...(opts.xRange ? { range: () => [opts.xRange[0] / 1000, opts.xRange[1] / 1000] } : {}) } },
    axes: [axis(), { ...axis(), label: opts.yLabel, size: 60 }],
    cursor: opts.sync ? { sync: { key: opts.sync } } : {},
    legend: { live: true },
    plugins: [overlays(opts.ranges || [], opts.markers || [])],
  }, data, holder);
  const ro = new ResizeObserver(() => u.setSize({ width: width(), height: opts.height || 220 }));
  ro.observe(holder);
  const redraw = () => u.redraw(false);
  window.addEventListener("aiops-theme", redraw);
  box.destroy = () => { ro.disconnect(); window.removeEventListener("aiops-theme", redraw); u.destroy(); };
  return box;
}
