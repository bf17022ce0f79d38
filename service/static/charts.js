// Small SVG charts: a line chart with axes and a legend, and a bar histogram. No dependencies.

const SVG_NS = "http://www.w3.org/2000/svg";
export const PALETTE = [
  "#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed",
  "#0891b2", "#db2777", "#4d7c0f", "#475569", "#ea580c",
];

export function svgEl(tag, attrs = {}, parent = null) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (parent) parent.appendChild(el);
  return el;
}

function text(parent, x, y, content, attrs = {}) {
  const el = svgEl("text", { x, y, ...attrs }, parent);
  el.textContent = content;
  return el;
}

// "Nice" ticks (1, 2, 5 x 10^k) covering [lo, hi].
export function niceTicks(lo, hi, count = 5) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi === lo) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

export function formatTick(value) {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e6 || abs < 1e-3) return value.toExponential(0).replace("e+", "e");
  if (abs >= 1000) return `${+(value / 1000).toPrecision(3)}k`;
  return String(+value.toPrecision(3));
}

// Ticks for a log axis spanning [10**lo, 10**hi] (lo, hi in log10): powers of ten, or 1-2-5
// steps over less than two decades, or plain nice ticks over less than one.
export function logTicks(lo, hi) {
  const values = [];
  const multiples = hi - lo > 6 ? [1] : hi - lo > 2 ? [1, 10 ** 0.5] : [1, 2, 5];
  for (let k = Math.floor(lo); k <= Math.ceil(hi); k += 1) {
    for (const m of multiples) {
      const v = m * 10 ** k;
      if (Math.log10(v) >= lo - 1e-9 && Math.log10(v) <= hi + 1e-9) values.push(v);
    }
  }
  if (values.length >= 2) return values;
  return niceTicks(10 ** lo, 10 ** hi, 4).filter((v) => v > 0);
}

// Legend entries flow left to right, wrapping: each as wide as its label.
const LEGEND_GAP = 24;
const CHAR_WIDTH = 7; // ~12px system-ui, generous so that labels never overlap

function legendLayout(names, left, right) {
  let x = left;
  let row = 0;
  return names.map((name) => {
    const label = name.length > 60 ? `${name.slice(0, 59)}…` : name;
    const width = 20 + label.length * CHAR_WIDTH + LEGEND_GAP;
    if (x > left && x + width > right) {
      x = left;
      row += 1;
    }
    const entry = { label, x, row };
    x += width;
    return entry;
  });
}

// The drawing is as wide as its box (in CSS pixels), so text keeps its size at any width.
function chartWidth(container) {
  return Math.max(360, Math.round(container.clientWidth || 720));
}

function frame(container, { width, height, margin }) {
  container.replaceChildren();
  const svg = svgEl("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width: "100%",
    role: "img",
    class: "chart",
  });
  container.appendChild(svg);
  const plot = {
    left: margin.left,
    right: width - margin.right,
    top: margin.top,
    bottom: height - margin.bottom,
  };
  return { svg, plot };
}

function axes(svg, plot, { xTicks, yTicks, xScale, yScale, xFormat, yFormat, xLabel, yLabel }) {
  const g = svgEl("g", { class: "axes" }, svg);
  for (const t of yTicks) {
    const y = yScale(t);
    svgEl("line", { x1: plot.left, x2: plot.right, y1: y, y2: y, class: "grid" }, g);
    text(g, plot.left - 6, y + 4, yFormat(t), { "text-anchor": "end", class: "tick" });
  }
  for (const t of xTicks) {
    const x = xScale(t);
    svgEl("line", { x1: x, x2: x, y1: plot.bottom, y2: plot.bottom + 5, class: "axis" }, g);
    text(g, x, plot.bottom + 18, xFormat(t), { "text-anchor": "middle", class: "tick" });
  }
  svgEl("line", { x1: plot.left, x2: plot.right, y1: plot.bottom, y2: plot.bottom, class: "axis" }, g);
  svgEl("line", { x1: plot.left, x2: plot.left, y1: plot.top, y2: plot.bottom, class: "axis" }, g);
  if (xLabel) {
    text(g, (plot.left + plot.right) / 2, plot.bottom + 36, xLabel, {
      "text-anchor": "middle",
      class: "label",
    });
  }
  if (yLabel) {
    const y = (plot.top + plot.bottom) / 2;
    text(g, 14, y, yLabel, {
      "text-anchor": "middle",
      class: "label",
      transform: `rotate(-90 14 ${y})`,
    });
  }
}

function message(container, content) {
  container.replaceChildren();
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = content;
  container.appendChild(p);
}

// series: [{name, points: [[x, y], ...]}]; points with a non-finite y are left out.
export function lineChart(container, series, options = {}) {
  const { xLabel = "", yLabel = "", empty = "no data yet", height = 300, yLog = false } = options;
  const clean = series.map((s, i) => ({
    name: s.name,
    label: s.label ?? s.name,
    color: s.color ?? PALETTE[i % PALETTE.length],
    points: (s.points ?? []).filter(
      ([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!yLog || y > 0),
    ),
  }));
  const all = clean.flatMap((s) => s.points);
  if (all.length === 0) {
    message(container, empty);
    return;
  }
  const width = chartWidth(container);
  const legendEntries = legendLayout(clean.map((s) => s.label), 64, width - 16);
  const legendRows = 1 + Math.max(0, ...legendEntries.map((e) => e.row));
  const margin = { left: 64, right: 16, top: 16 + 18 * legendRows, bottom: 46 };
  const { svg, plot } = frame(container, { width, height, margin });
  svg.dataset.yScale = yLog ? "log" : "linear";
  const ty = yLog ? Math.log10 : (y) => y;
  let [xMin, xMax] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [yMin, yMax] = [Math.min(...all.map((p) => ty(p[1]))), Math.max(...all.map((p) => ty(p[1])))];
  if (options.xZero !== false) xMin = Math.min(0, xMin);
  if (xMax === xMin) xMax = xMin + 1;
  const pad = (yMax - yMin) * 0.05 || Math.abs(yMax) * 0.05 || 0.05;
  yMin -= pad;
  yMax += pad;
  const yTicks = yLog ? logTicks(yMin, yMax).map(Math.log10) : niceTicks(yMin, yMax, 5);
  const xTicks = niceTicks(xMin, xMax, 6);
  const xScale = (x) => plot.left + ((x - xMin) / (xMax - xMin)) * (plot.right - plot.left);
  const yScale = (y) => plot.bottom - ((ty(y) - yMin) / (yMax - yMin)) * (plot.bottom - plot.top);
  axes(svg, plot, {
    xTicks, yTicks, xScale, yScale: (t) => plot.bottom - ((t - yMin) / (yMax - yMin)) * (plot.bottom - plot.top),
    xFormat: formatTick, yFormat: yLog ? (t) => formatTick(10 ** t) : formatTick, xLabel,
    yLabel: yLog ? `${yLabel} (log scale)` : yLabel,
  });

  const lines = svgEl("g", { class: "series" }, svg);
  clean.forEach((s) => {
    if (s.points.length === 0) return;
    const d = s.points
      .map(([x, y], i) => `${i ? "L" : "M"}${xScale(x).toFixed(1)} ${yScale(y).toFixed(1)}`)
      .join(" ");
    const path = svgEl("path", {
      d,
      class: "line",
      stroke: s.color,
      "data-series": s.name,
      "data-points": s.points.length,
    }, lines);
    const last = s.points[s.points.length - 1];
    svgEl("title", {}, path).textContent = `${s.name}: ${formatTick(last[1])} at ${last[0]}`;
    if (s.points.length === 1) {
      svgEl("circle", { cx: xScale(last[0]), cy: yScale(last[1]), r: 3, fill: s.color }, lines);
    }
  });

  // Legend above the plot, wrapped to the chart's width.
  const legend = svgEl("g", { class: "legend" }, svg);
  clean.forEach((s, i) => {
    const { label, x, row } = legendEntries[i];
    const y = 12 + 18 * row;
    const entry = svgEl("g", { "data-series": s.name }, legend);
    svgEl("rect", { x, y: y - 8, width: 14, height: 4, fill: s.color }, entry);
    text(entry, x + 20, y - 2, label, { class: "legend-text" });
    if (label !== s.label) svgEl("title", {}, entry).textContent = s.label;
  });

  // Hover: a vertical rule and each series' value at the nearest point.
  const hover = svgEl("g", { class: "hover", visibility: "hidden" }, svg);
  const rule = svgEl("line", { y1: plot.top, y2: plot.bottom, class: "rule" }, hover);
  const readout = text(hover, 0, plot.top + 12, "", { class: "readout" });
  const overlay = svgEl("rect", {
    x: plot.left, y: plot.top, width: plot.right - plot.left, height: plot.bottom - plot.top,
    fill: "transparent", class: "overlay",
  }, svg);
  overlay.addEventListener("mousemove", (event) => {
    const box = svg.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * width;
    const x = xMin + ((px - plot.left) / (plot.right - plot.left)) * (xMax - xMin);
    const parts = [];
    for (const s of clean) {
      if (!s.points.length) continue;
      let best = s.points[0];
      for (const p of s.points) if (Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
      parts.push(`${s.name} ${formatTick(best[1])}`);
    }
    rule.setAttribute("x1", px);
    rule.setAttribute("x2", px);
    readout.textContent = `${Math.round(x).toLocaleString()} rows: ${parts.join(" · ")}`;
    const right = px > (plot.left + plot.right) / 2;
    readout.setAttribute("x", right ? px - 6 : px + 6);
    readout.setAttribute("text-anchor", right ? "end" : "start");
    hover.setAttribute("visibility", "visible");
  });
  overlay.addEventListener("mouseleave", () => hover.setAttribute("visibility", "hidden"));
}

// histogram: {edges: [n+1], counts: [n], log10: bool} as /learning-rates/summary returns it.
export function barHistogram(container, histogram, options = {}) {
  const { xLabel = "", empty = "no touched coordinates yet", color = PALETTE[0] } = options;
  const edges = histogram?.edges ?? [];
  const counts = histogram?.counts ?? [];
  if (counts.length === 0 || edges.length !== counts.length + 1) {
    message(container, empty);
    return;
  }
  const log = Boolean(histogram.log10);
  const tx = log ? (v) => Math.log10(v) : (v) => v;
  const width = chartWidth(container);
  const height = 240;
  const { svg, plot } = frame(container, {
    width, height, margin: { left: 64, right: 16, top: 12, bottom: 46 },
  });
  const [xMin, xMax] = [tx(edges[0]), tx(edges[edges.length - 1])];
  const yMax = Math.max(1, ...counts);
  const xScale = (v) => plot.left + ((v - xMin) / (xMax - xMin || 1)) * (plot.right - plot.left);
  const yScale = (c) => plot.bottom - (c / yMax) * (plot.bottom - plot.top);
  const xTicks = log
    ? niceTicks(xMin, xMax, 6).filter((t) => Number.isInteger(t))
    : niceTicks(xMin, xMax, 6);
  axes(svg, plot, {
    xTicks: xTicks.length ? xTicks : [xMin, xMax],
    yTicks: niceTicks(0, yMax, 4).filter((t) => Number.isInteger(t)),
    xScale,
    yScale,
    xFormat: log ? (t) => (Number.isInteger(t) ? `1e${t}` : formatTick(10 ** t)) : formatTick,
    yFormat: formatTick,
    xLabel: log ? `${xLabel} (log scale)` : xLabel,
    yLabel: "coordinates",
  });
  const bars = svgEl("g", { class: "bars" }, svg);
  counts.forEach((count, i) => {
    const x0 = xScale(tx(edges[i]));
    const x1 = xScale(tx(edges[i + 1]));
    const y = yScale(count);
    const bar = svgEl("rect", {
      x: x0.toFixed(2),
      y: y.toFixed(2),
      width: Math.max(0.5, x1 - x0 - 1).toFixed(2),
      height: (plot.bottom - y).toFixed(2),
      fill: color,
      "data-count": count,
    }, bars);
    svgEl("title", {}, bar).textContent =
      `[${formatTick(edges[i])}, ${formatTick(edges[i + 1])}): ${count}`;
  });
}

// Effective learning rate against times touched, log-log: one panel per model, sharing `domain`
// ({x: [lo, hi], y: [lo, hi]} in log10) so that panels side by side compare at a glance.
// panel: {points: [[touches, rate], ...], medians: [[touches, rate], ...], color, title}
export function logLogDomain(panels) {
  const xs = [];
  const ys = [];
  for (const p of panels) {
    for (const [x, y] of [...p.points, ...p.medians]) {
      if (x > 0 && y > 0 && Number.isFinite(y)) {
        xs.push(Math.log10(x));
        ys.push(Math.log10(y));
      }
    }
  }
  if (!xs.length) return null;
  const span = (v) => {
    let [lo, hi] = [Math.min(...v), Math.max(...v)];
    if (hi - lo < 0.5) [lo, hi] = [lo - 0.25, hi + 0.25];
    const pad = (hi - lo) * 0.04;
    return [lo - pad, hi + pad];
  };
  return { x: span(xs), y: span(ys) };
}

export function rateScatter(container, panel, domain, options = {}) {
  const { height = 300, empty = "no touched coordinates yet" } = options;
  const points = panel.points.filter(([x, y]) => x > 0 && y > 0 && Number.isFinite(y));
  if (!domain || !points.length) {
    message(container, empty);
    return;
  }
  const width = chartWidth(container);
  const { svg, plot } = frame(container, {
    width, height, margin: { left: 64, right: 16, top: panel.title ? 24 : 12, bottom: 46 },
  });
  const [[x0, x1], [y0, y1]] = [domain.x, domain.y];
  const xScale = (t) => plot.left + ((t - x0) / (x1 - x0)) * (plot.right - plot.left);
  const yScale = (t) => plot.bottom - ((t - y0) / (y1 - y0)) * (plot.bottom - plot.top);
  axes(svg, plot, {
    xTicks: logTicks(x0, x1).filter((v) => Number.isInteger(Math.log10(v)) || x1 - x0 < 2)
      .map(Math.log10),
    yTicks: logTicks(y0, y1).map(Math.log10),
    xScale, yScale,
    xFormat: (t) => formatTick(10 ** t),
    yFormat: (t) => formatTick(10 ** t),
    xLabel: "times touched (log scale)",
    yLabel: "effective rate (log)",
  });
  if (panel.title) text(svg, plot.left, 14, panel.title, { class: "label" });
  const medians = panel.medians.filter(([x, y]) => x > 0 && y > 0 && Number.isFinite(y));
  if (medians.length) {
    const d = medians
      .map(([x, y], i) => `${i ? "L" : "M"}${xScale(Math.log10(x)).toFixed(1)} ${yScale(Math.log10(y)).toFixed(1)}`)
      .join(" ");
    const line = svgEl("path", {
      d, class: "line median", stroke: "#111827", "data-points": medians.length,
    }, svg);
    svgEl("title", {}, line).textContent = "median effective rate per bin of times touched";
    for (const [x, y] of medians) {
      const dot = svgEl("circle", {
        cx: xScale(Math.log10(x)), cy: yScale(Math.log10(y)), r: 3.5, class: "median-dot",
      }, svg);
      svgEl("title", {}, dot).textContent = `median rate ${formatTick(y)} at ~${formatTick(x)} touches`;
    }
  }
  // The points on top of the medians: where a bin's coordinates were touched alike, they sit on
  // its median and must still show.
  const dots = svgEl("g", { class: "points", fill: panel.color, "fill-opacity": 0.45 }, svg);
  for (const [x, y] of points) {
    svgEl("circle", {
      cx: xScale(Math.log10(x)).toFixed(1), cy: yScale(Math.log10(y)).toFixed(1), r: 2.5,
    }, dots);
  }
  svg.dataset.points = points.length;
}
