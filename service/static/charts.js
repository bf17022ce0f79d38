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

const LEGEND_ENTRY = 260;

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
  const { xLabel = "", yLabel = "", empty = "no data yet", height = 300 } = options;
  const clean = series.map((s, i) => ({
    name: s.name,
    color: s.color ?? PALETTE[i % PALETTE.length],
    points: (s.points ?? []).filter(
      ([x, y]) => Number.isFinite(x) && Number.isFinite(y),
    ),
  }));
  const all = clean.flatMap((s) => s.points);
  if (all.length === 0) {
    message(container, empty);
    return;
  }
  const width = chartWidth(container);
  const perRow = Math.max(1, Math.floor((width - 80) / LEGEND_ENTRY));
  const margin = { left: 64, right: 16, top: 16 + 18 * Math.ceil(clean.length / perRow), bottom: 46 };
  const { svg, plot } = frame(container, { width, height, margin });
  let [xMin, xMax] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  let [yMin, yMax] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  if (options.xZero !== false) xMin = Math.min(0, xMin);
  if (xMax === xMin) xMax = xMin + 1;
  const pad = (yMax - yMin) * 0.05 || Math.abs(yMax) * 0.05 || 0.05;
  yMin -= pad;
  yMax += pad;
  const yTicks = niceTicks(yMin, yMax, 5);
  const xTicks = niceTicks(xMin, xMax, 6);
  const xScale = (x) => plot.left + ((x - xMin) / (xMax - xMin)) * (plot.right - plot.left);
  const yScale = (y) => plot.bottom - ((y - yMin) / (yMax - yMin)) * (plot.bottom - plot.top);
  axes(svg, plot, {
    xTicks, yTicks, xScale, yScale, xFormat: formatTick, yFormat: formatTick, xLabel, yLabel,
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

  // Legend above the plot, as many entries a row as fit.
  const legend = svgEl("g", { class: "legend" }, svg);
  clean.forEach((s, i) => {
    const x = plot.left + (i % perRow) * LEGEND_ENTRY;
    const y = 12 + 18 * Math.floor(i / perRow);
    const entry = svgEl("g", { "data-series": s.name }, legend);
    svgEl("rect", { x, y: y - 8, width: 14, height: 4, fill: s.color }, entry);
    const label = s.name.length > 36 ? `${s.name.slice(0, 35)}…` : s.name;
    text(entry, x + 20, y - 2, label, { class: "legend-text" });
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
