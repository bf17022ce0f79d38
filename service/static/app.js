// The adaserve dashboard: models, experiments, learning rates. Vanilla JS, no dependencies.
import {
  barHistogram, lineChart, logLogDomain, PALETTE, rateScatter, svgEl,
} from "./charts.js";

const TOKEN_KEY = "adaserve.token";
const REFRESH_MS = 2000;
const HISTORY_POINTS = 2000;
// The page lives at <root>/ui/; the API at <root>/v1/...
const API_ROOT = new URL("../", window.location.href);

// ---------------------------------------------------------------- small helpers
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const $ = (selector) => document.querySelector(selector);
const isNum = (v) => typeof v === "number" && Number.isFinite(v);

function fmt(v, digits = 4) {
  if (!isNum(v)) return "—";
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return v.toLocaleString("en-US");
  const abs = Math.abs(v);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return v.toExponential(digits - 1);
  return v.toFixed(digits);
}

function fmtSci(v) {
  if (!isNum(v)) return "—";
  if (v === 0) return "0";
  const abs = Math.abs(v);
  return abs < 1e-2 || abs >= 1e4 ? v.toExponential(3) : v.toPrecision(4);
}

function fmtBytes(v) {
  if (!isNum(v)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

// The optimizer and the hyperparameters that differ from its defaults (GET /v1/optimizers).
function describeOptimizer(optimizer) {
  if (!optimizer) return "—";
  if (typeof optimizer === "string") return optimizer;
  if (optimizer.name === "auto") return `auto (${optimizer.members?.length ?? "?"} members)`;
  const { name, ...rest } = optimizer;
  const defaults = state.optimizers?.[name]?.hyperparameters ?? {};
  const params = Object.entries(rest)
    .filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(defaults[k]))
    .map(([k, v]) => `${k}=${isNum(v) ? +v.toPrecision(4) : JSON.stringify(v)}`);
  return params.length ? `${name} (${params.join(", ")})` : String(name);
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- API and token
class ApiError extends Error {
  constructor(status, code, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

function getToken() {
  try {
    return window.localStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return "";
  }
}

function setToken(token) {
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lives for this page only
  }
  state.sessionToken = token;
}

// GET (or, with {method, body}, another method sending JSON) of the API; its JSON answer.
async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken() || state.sessionToken;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(new URL(path, API_ROOT), {
      method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, "network", `cannot reach the server (${error.message})`);
  }
  if (!response.ok) {
    let body = {};
    try {
      body = await response.json();
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, body.error, body.detail || response.statusText);
  }
  return response.status === 204 ? null : response.json();
}

async function loadOptimizers() {
  if (state.optimizers) return;
  try {
    state.optimizers = await api("v1/optimizers");
  } catch (error) {
    if (error.status === 401) throw error;
    state.optimizers = {}; // show every hyperparameter then
  }
}

// ---------------------------------------------------------------- page state
const state = {
  config: { auth_required: false, experiments: false },
  sessionToken: "",
  authProblem: null, // null, or a sentence: polling waits for a new token
  generation: 0,
  timer: null,
  view: null,
  optimizers: null, // {name: {hyperparameters: {name: default}}}, fetched once
  // Fallback curves: [rows, overall log-loss] seen by this page, per model or experiment member.
  history: new Map(),
};

function remember(key, rows, loss) {
  if (!isNum(rows) || !isNum(loss)) return;
  let points = state.history.get(key);
  if (!points) state.history.set(key, (points = []));
  const last = points[points.length - 1];
  if (last && last[0] === rows) return;
  if (last && rows < last[0]) points.length = 0; // the model was reset or replaced
  points.push([rows, loss]);
  if (points.length > HISTORY_POINTS) points.splice(0, points.length - HISTORY_POINTS);
}

function showAuthBanner(sentence) {
  const banner = $("#auth-banner");
  banner.replaceChildren(
    h("strong", {}, "API token needed. "),
    sentence,
    " Enter a token (the read role is enough) in the field at the top right and press Save.",
  );
  banner.hidden = false;
  $("#token-input").focus();
  setStatus("token needed", "warn");
}

function showError(error) {
  const banner = $("#error-banner");
  if (!error) {
    banner.hidden = true;
    return;
  }
  banner.replaceChildren(h("strong", {}, "Error: "), error.message);
  banner.hidden = false;
}

function setStatus(textContent, kind = "ok") {
  const status = $("#status");
  status.textContent = textContent;
  status.className = `status ${kind}`;
}

// ---------------------------------------------------------------- tables
// columns: [{key, label, value(row) -> raw, render(row) -> text|Node, numeric}]
function table(columns, rows, { id, rowAttrs = () => ({}), empty = "none yet" } = {}) {
  if (rows.length === 0) return h("p", { class: "empty", id }, empty);
  return h(
    "table",
    { id, class: "data" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.numeric ? "num" : "" }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          rowAttrs(row),
          columns.map((c) => {
            const raw = c.value ? c.value(row) : undefined;
            const shown = c.render ? c.render(row) : fmt(raw);
            return h(
              "td",
              {
                class: c.numeric ? "num" : "",
                "data-field": c.key,
                "data-value": raw === undefined || raw === null ? undefined : String(raw),
              },
              shown,
            );
          }),
        ),
      ),
    ),
  );
}

const link = (href, label) => h("a", { href }, label);

// ---------------------------------------------------------------- list view
const MODEL_COLUMNS = [
  { key: "name", label: "model", render: (m) => link(`#/models/${enc(m.name)}`, m.name) },
  {
    key: "optimizer", label: "optimizer",
    render: (m) => (m.status === "unavailable" ? `unavailable: ${m.reason}`
      : describeOptimizer(m.config?.optimizer)),
  },
  { key: "rows", label: "rows", numeric: true, value: (m) => m.metrics?.rows ?? m.step },
  { key: "log_loss", label: "log-loss", numeric: true, value: (m) => m.metrics?.overall?.log_loss },
  {
    key: "recent_log_loss", label: "recent log-loss", numeric: true,
    value: (m) => m.metrics?.recent?.log_loss,
  },
  { key: "auc", label: "recent AUC", numeric: true, value: (m) => m.metrics?.recent?.auc },
  {
    key: "holdout_log_loss", label: "holdout log-loss", numeric: true,
    value: (m) => m.holdout?.overall?.log_loss,
  },
  {
    key: "calibration", label: "calibration", numeric: true,
    value: (m) => m.metrics?.overall?.calibration,
  },
  { key: "touched", label: "touched", numeric: true, value: (m) => m.touched_coordinates },
  {
    key: "state_bytes", label: "state", numeric: true, value: (m) => m.state_bytes,
    render: (m) => fmtBytes(m.state_bytes),
  },
];

function bestMember(experiment) {
  const members = experiment.members ?? [];
  const leader = experiment.leaderboard?.[0];
  return members.find((m) => m.model === leader) ?? members[0];
}

const EXPERIMENT_COLUMNS = [
  {
    key: "name", label: "experiment",
    render: (e) => link(`#/experiments/${enc(e.name)}`, e.name),
  },
  { key: "members", label: "members", numeric: true, value: (e) => (e.members ?? []).length },
  {
    key: "leader", label: "leader",
    render: (e) => {
      const best = bestMember(e);
      return best ? `${best.model} (${describeOptimizer(best.optimizer)})` : "—";
    },
  },
  {
    key: "rows", label: "rows", numeric: true,
    value: (e) => Math.max(0, ...(e.members ?? []).map((m) => m.rows ?? 0)),
  },
  { key: "log_loss", label: "best log-loss", numeric: true, value: (e) => bestMember(e)?.log_loss },
  {
    key: "recent_log_loss", label: "recent log-loss", numeric: true,
    value: (e) => bestMember(e)?.recent_log_loss,
  },
  {
    key: "calibration", label: "calibration", numeric: true,
    value: (e) => bestMember(e)?.calibration,
  },
];

function listOf(payload, key) {
  if (Array.isArray(payload)) return payload;
  return Array.isArray(payload?.[key]) ? payload[key] : [];
}

async function experimentsWithMembers() {
  const items = listOf(await api("v1/experiments"), "experiments").map((e) =>
    typeof e === "string" ? { name: e } : e,
  );
  // The list may carry names only; fetch the details then (few experiments expected).
  return Promise.all(
    items.map((e) => (Array.isArray(e.members) ? e : api(`v1/experiments/${enc(e.name)}`))),
  );
}

// The nodes of GET /v1/cluster (one, this process, when embedded) and what each holds.
const NODE_COLUMNS = [
  { key: "id", label: "node", render: (n) => (n.id.length > 12 ? `${n.id.slice(0, 12)}…` : n.id) },
  { key: "address", label: "address", render: (n) => n.address },
  { key: "cpus", label: "CPUs", numeric: true, value: (n) => n.cpus },
  {
    key: "memory_bytes", label: "memory", numeric: true, value: (n) => n.memory_bytes,
    render: (n) => fmtBytes(n.memory_bytes),
  },
  {
    key: "placed_bytes", label: "models' state", numeric: true, value: (n) => n.placed_bytes,
    render: (n) => fmtBytes(n.placed_bytes),
  },
  { key: "models", label: "models", render: (n) => n.models.join(", ") || "—" },
  { key: "replicas", label: "read replicas of", render: (n) => n.replicas.join(", ") || "—" },
];

function clusterTable(cluster) {
  const waiting = Object.entries(cluster.models).filter(([, s]) => s !== "ready");
  return h(
    "div",
    {},
    table(NODE_COLUMNS, cluster.nodes, {
      id: "nodes",
      rowAttrs: (n) => ({ "data-name": n.id, "data-testid": "node-row" }),
    }),
    waiting.length
      ? h("p", { class: "empty" }, waiting.map(([name, s]) => `${name}: ${s}`).join("; "))
      : "",
  );
}

function listView() {
  const models = h("div", { id: "models-table", "data-testid": "models-table" }, "loading…");
  const experiments = h("div", { id: "experiments-table", "data-testid": "experiments-table" });
  const nodes = h("div", { id: "cluster-table", "data-testid": "cluster-table" });
  const section = h("section", { id: "experiments-section" }, h("h2", {}, "Experiments"), experiments);
  $("#view").replaceChildren(
    h("section", { id: "models-section" }, h("h2", {}, "Models"), models),
    state.config.experiments ? section : "",
    h("section", { id: "cluster-section" }, h("h2", {}, "Cluster"), nodes),
  );
  setCrumbs([]);
  return {
    async refresh() {
      const [modelList, experimentList, cluster] = await Promise.all([
        api("v1/models"),
        state.config.experiments ? experimentsWithMembers() : Promise.resolve(null),
        api("v1/cluster").catch(() => null), // a server without the route: no section
      ]);
      nodes.replaceChildren(cluster ? clusterTable(cluster) : "");
      const rows = listOf(modelList, "models");
      for (const m of rows) remember(`model:${m.name}`, m.step, m.metrics?.overall?.log_loss);
      models.replaceChildren(
        table(MODEL_COLUMNS, rows, {
          id: "models",
          empty: "No models yet: create one with POST /v1/models.",
          rowAttrs: (m) => ({ "data-name": m.name, "data-testid": "model-row" }),
        }),
      );
      if (experimentList) {
        experiments.replaceChildren(
          table(EXPERIMENT_COLUMNS, experimentList, {
            id: "experiments",
            empty: "No experiments yet: create one with POST /v1/experiments.",
            rowAttrs: (e) => ({ "data-name": e.name, "data-testid": "experiment-row" }),
          }),
        );
      }
    },
  };
}

// ---------------------------------------------------------------- model view
const COORDINATE_COLUMNS = [
  { key: "index", label: "index", numeric: true, value: (c) => c.index },
  { key: "feature", label: "feature", render: (c) => c.feature ?? "—" },
  {
    key: "weight", label: "weight", numeric: true, value: (c) => c.weight,
    render: (c) => fmtSci(c.weight),
  },
  {
    key: "effective_learning_rate", label: "effective rate", numeric: true,
    value: (c) => c.effective_learning_rate, render: (c) => fmtSci(c.effective_learning_rate),
  },
  { key: "times_touched", label: "times touched", numeric: true, value: (c) => c.times_touched },
];

// "seen": a feature asked by name and never seen has no numbers; "shared with" names the feature
// first seen at its coordinate when that is another one (a hash collision)
const LOOKUP_COLUMNS = [
  ...COORDINATE_COLUMNS,
  {
    key: "seen", label: "seen",
    render: (c) =>
      (c.seen ? "yes" : "never seen") + (c.shared_with ? ` (shared with ${c.shared_with})` : ""),
  },
  {
    key: "state", label: "state slots",
    render: (c) =>
      Object.entries(c.state ?? {})
        .map(([slot, v]) => `${slot}=${fmtSci(v)}`)
        .join(", ") || "—",
  },
  {
    key: "last_touched_step", label: "last touched step", numeric: true,
    value: (c) => c.last_touched_step,
  },
];

function card(label, value, id) {
  return h("div", { class: "card", "data-field": id }, h("div", { class: "card-label" }, label),
    h("div", { class: "card-value" }, value));
}

// The running (row-weighted) mean of a block loss curve [[rows at the block's end, loss], ...].
function runningMean(curve) {
  const running = [];
  let lossSum = 0;
  let previous = 0;
  for (const [rows, loss] of curve) {
    lossSum += loss * (rows - previous);
    previous = rows;
    running.push([rows, lossSum / rows]);
  }
  return running;
}

// Block log-loss and its running mean from metrics.curve.
function curveSeries(curve) {
  return [
    { name: "log-loss per block", points: curve, color: PALETTE[0] },
    { name: "progressive (running mean)", points: runningMean(curve), color: PALETTE[1] },
  ];
}

// GET .../learning-rates/by-frequency as a scatter panel: points and the binned medians, each
// drawn at the median times touched of its bin.
function frequencyPanel(byFrequency, color, title) {
  return {
    title,
    color,
    points: (byFrequency.points ?? []).map((p) => [p.times_touched, p.effective_learning_rate]),
    medians: (byFrequency.bins ?? []).map((b) => [
      b.median_times_touched, b.median_effective_learning_rate,
    ]),
  };
}

const SCATTER_NOTE =
  "Each dot is a touched coordinate (a sample stratified by times touched, so rare and " +
  "frequent features both show); the dark line is the median rate of each power-of-two bin " +
  "of times touched. AdaGrad's rate falls as a feature is seen more often; RMSProp's follows a " +
  "moving average of recent gradients and stays level (with lazy=\"exact\" an absent " +
  "coordinate's average decays, so rarely seen features get large rates from Adam and RMSProp " +
  "too).";

// Quantiles {"0": v, "0.01": v, ..., "1": v} in the order of their levels.
const quantiles = (q) =>
  Object.entries(q ?? {})
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([k, v]) => `q${k}: ${fmtSci(v)}`)
    .join(" · ");

function checkbox(id, label, onchange, checked = false) {
  const input = h("input", { id, type: "checkbox", checked, onchange });
  return h("label", { class: "toggle", for: id }, input, ` ${label}`);
}

function parseLookup(textValue) {
  const indices = [];
  const features = [];
  for (const part of textValue.split(",").map((p) => p.trim()).filter(Boolean)) {
    if (/^\d+$/.test(part)) indices.push(Number(part));
    else features.push(part);
  }
  return { indices, features };
}

// Delayed labels (a model with a feedback setting): served metrics, join rate, pending, delays.
function feedbackCards(feedback) {
  if (!feedback) return [];
  const served = feedback.served ?? {};
  const delay = feedback.delay_seconds ?? {};
  return [
    card("pending (ids)", `${fmt(feedback.pending)} · ${fmtBytes(feedback.pending_bytes)}`, "pending"),
    card("join rate", fmt(feedback.join_rate, 3), "join_rate"),
    card("served log-loss", fmt(served.overall?.log_loss), "served_log_loss"),
    card("served AUC / calibration",
      `${fmt(served.recent?.auc)} / ${fmt(served.overall?.calibration, 3)}`, "served_auc"),
    card("label delay p50 / p90 / p99 (s)",
      `${fmt(delay.p50, 3)} / ${fmt(delay.p90, 3)} / ${fmt(delay.p99, 3)}`, "label_delay"),
  ];
}

// GET .../watches/samples as line-chart series: one per watched coordinate, of ``key``.
function watchSeries(watched, key) {
  return (watched.curves ?? []).map((c, i) => ({
    name: c.feature ?? `#${c.index}`,
    label: c.feature ? `${c.feature} (#${c.index})` : `#${c.index}`,
    color: PALETTE[i % PALETTE.length],
    points: c.steps.map((step, k) => [step, c[key][k]]),
  }));
}

function modelView(name) {
  const title = h("h2", {}, "Model ", h("code", {}, name));
  const summary = h("div", { id: "model-summary", class: "cards" }, "loading…");
  // optimizer "auto": its members ranked by recent progressive log-loss (hidden otherwise)
  const leaderboard = h("section", { id: "leaderboard", hidden: true });
  const lossCurve = h("div", { id: "loss-curve", "data-testid": "loss-curve", class: "chart-box" });
  const lossNote = h("p", { id: "loss-curve-note", class: "note" });
  const rateHistogram = h("div", { id: "rate-histogram", "data-testid": "rate-histogram", class: "chart-box" });
  const weightHistogram = h("div", { id: "weight-histogram", "data-testid": "weight-histogram", class: "chart-box" });
  const rateQuantiles = h("p", { id: "rate-quantiles", class: "note" });
  const weightQuantiles = h("p", { id: "weight-quantiles", class: "note" });
  const topWeight = h("div", { id: "top-weight", "data-testid": "top-weight" });
  const topRate = h("div", { id: "top-rate", "data-testid": "top-rate" });
  const scatter = h("div", { id: "rate-scatter", "data-testid": "rate-scatter", class: "chart-box" });
  const scatterNote = h("p", { id: "rate-scatter-note", class: "note" });
  const minTouches = h("input", {
    id: "min-touches", "data-testid": "min-touches", type: "number", min: 1, value: 10,
    title: "coordinates touched fewer times are left out of this table",
    onchange: () => {
      lastStep = null; // fetch the summary again with the new threshold
      state.view?.refresh().catch(handleError);
    },
  });
  const lookupInput = h("input", {
    id: "lookup-input", "data-testid": "lookup-input", type: "search", autocomplete: "off",
    placeholder: "feature name or index, e.g. IQ or 17 (comma-separated for several)",
  });
  const lookupResult = h("div", { id: "lookup-result", "data-testid": "lookup-result" });
  const watchRate = h("div", { id: "watch-rate", "data-testid": "watch-rate", class: "chart-box" });
  const watchWeight = h("div", { id: "watch-weight", "data-testid": "watch-weight", class: "chart-box" });
  const watchList = h("div", { id: "watch-list", "data-testid": "watch-list" });
  const watchNote = h("p", { id: "watch-note", class: "note" });
  let lookup = null; // {indices, features} being shown, refreshed with the model
  let dim = null;
  let lastStep = null;

  async function runLookup() {
    if (!lookup) return;
    const { indices, features } = lookup;
    const bad = indices.find((i) => dim !== null && i > dim);
    if (bad !== undefined) {
      lookupResult.replaceChildren(
        h("p", { class: "error" }, `index ${bad} is outside [0, ${dim}] (${dim} is the intercept)`),
      );
      return;
    }
    const query = new URLSearchParams();
    if (indices.length) query.set("indices", indices.join(","));
    if (features.length) query.set("features", features.join(","));
    try {
      const result = await api(`v1/models/${enc(name)}/learning-rates?${query}`);
      lookupResult.replaceChildren(
        h("p", { class: "note" }, `at step ${fmt(result.step)}`),
        table(LOOKUP_COLUMNS, result.coordinates ?? [], {
          id: "lookup-table",
          rowAttrs: (c) => ({ "data-index": c.index, "data-testid": "lookup-row" }),
        }),
      );
    } catch (error) {
      if (error.status === 401) throw error;
      lookupResult.replaceChildren(h("p", { class: "error" }, error.message));
    }
  }

  function lookUp(textValue) {
    lookupInput.value = textValue;
    const parsed = parseLookup(textValue);
    lookup = parsed.indices.length || parsed.features.length ? parsed : null;
    if (!lookup) lookupResult.replaceChildren();
    runLookup().catch(handleError);
  }

  async function refreshWatches() {
    const watched = await api(`v1/models/${enc(name)}/watches/samples`);
    lineChart(watchRate, watchSeries(watched, "effective_learning_rate"), {
      xLabel: "rows", yLabel: "effective learning rate", yLog: true,
      empty: "no watched features: look one up and press Watch",
    });
    lineChart(watchWeight, watchSeries(watched, "weight"), {
      xLabel: "rows", yLabel: "weight", empty: "no watched features yet",
    });
    watchNote.textContent = `Sampled at the end of the first batch learned at or after every ` +
      `${fmt(watched.every)} rows; the newest ${fmt(watched.capacity)} samples are kept ` +
      `(up to ${fmt(watched.limit)} features).` + (watched.saved ? "" : ` ${watched.problem}`);
    watchList.replaceChildren(...(watched.curves ?? []).map((c, i) => h("span", {
      class: "watch-chip", "data-index": c.index, "data-testid": "watch-chip",
    }, swatch(PALETTE[i % PALETTE.length]), c.feature ? `${c.feature} (#${c.index})` : `#${c.index}`,
    h("button", {
      type: "button", class: "watch-remove", title: "stop watching",
      onclick: () => unwatch(c.index).catch(handleError),
    }, "×"))));
  }

  async function watch(textValue) {
    const { indices, features } = parseLookup(textValue);
    try {
      for (const index of indices) await api(`v1/models/${enc(name)}/watches`, { method: "POST", body: { index } });
      for (const feature of features) await api(`v1/models/${enc(name)}/watches`, { method: "POST", body: { feature } });
    } catch (error) {
      if (error.status === 401) throw error;
      watchNote.textContent = error.message;
      return;
    }
    await refreshWatches();
  }

  async function unwatch(index) {
    await api(`v1/models/${enc(name)}/watches/${index}`, { method: "DELETE" });
    await refreshWatches();
  }

  const topRows = (c) => ({
    "data-index": c.index, "data-testid": "top-row", class: "clickable",
    title: "look this coordinate up", onclick: () => lookUp(String(c.index)),
  });

  $("#view").replaceChildren(
    title,
    summary,
    leaderboard,
    h("section", {}, h("h3", {}, "Progressive log-loss"), lossCurve, lossNote),
    h("section", {}, h("h3", {}, "Rare versus frequent: effective learning rate against times touched"),
      scatter, scatterNote),
    h("div", { class: "two" },
      h("section", {}, h("h3", {}, "Effective learning rates"), rateHistogram, rateQuantiles),
      h("section", {}, h("h3", {}, "Weights"), weightHistogram, weightQuantiles)),
    h("div", { class: "two" },
      h("section", {}, h("h3", {}, "Top features by |weight|"), topWeight),
      h("section", {}, h("h3", {}, "Top features by effective rate"),
        h("p", { class: "note" }, h("label", { for: "min-touches" }, "touched at least "), minTouches,
          " times (features seen a few times keep their initial rate)"),
        topRate)),
    h("section", { id: "lookup" },
      h("h3", {}, "Look up a coordinate"),
      h("form", {
        id: "lookup-form",
        onsubmit: (event) => {
          event.preventDefault();
          lookUp(lookupInput.value);
        },
      }, lookupInput, h("button", { id: "lookup-button", type: "submit" }, "Look up"),
      h("button", {
        id: "watch-button", "data-testid": "watch-button", type: "button",
        title: "record this feature's weight and rate as the model learns",
        onclick: () => watch(lookupInput.value).catch(handleError),
      }, "Watch")),
      lookupResult),
    h("section", { id: "watched" },
      h("h3", {}, "Watched features over rows"), watchList,
      h("div", { class: "two" }, watchRate, watchWeight), watchNote),
  );
  setCrumbs([["models", "#/"], [name, `#/models/${enc(name)}`]]);

  return {
    async refresh() {
      const info = await api(`v1/models/${enc(name)}`);
      const metrics = info.metrics ?? {};
      const config = info.config ?? {};
      dim = isNum(config.dim) ? config.dim : null;
      remember(`model:${name}`, info.step, metrics.overall?.log_loss);
      summary.replaceChildren(
        card("optimizer", describeOptimizer(config.optimizer), "optimizer"),
        card("rows", fmt(info.step), "rows"),
        card("log-loss", fmt(metrics.overall?.log_loss), "log_loss"),
        card(`recent log-loss (${fmt(metrics.recent?.rows)} rows)`, fmt(metrics.recent?.log_loss), "recent_log_loss"),
        card("recent AUC", fmt(metrics.recent?.auc), "auc"),
        // rows held out (config.holdout_every, or a stream's own): scored, never learned
        ...(info.holdout?.rows || config.holdout_every ? [
          card(`holdout log-loss (${fmt(info.holdout?.rows)} rows)`, fmt(info.holdout?.overall?.log_loss),
            "holdout_log_loss"),
          card("holdout AUC (recent)", fmt(info.holdout?.recent?.auc), "holdout_auc"),
        ] : []),
        card("calibration (overall / recent)",
          `${fmt(metrics.overall?.calibration, 3)} / ${fmt(metrics.recent?.calibration, 3)}`, "calibration"),
        card("coordinates", config.hash_bits ? `2^${config.hash_bits} hashed` : fmt(config.dim), "dim"),
        card("touched", fmt(info.touched_coordinates), "touched"),
        card("state", fmtBytes(info.state_bytes), "state_bytes"),
        ...feedbackCards(info.feedback),
      );

      const portfolio = info.portfolio;
      leaderboard.hidden = !portfolio;
      if (portfolio) {
        leaderboard.replaceChildren(
          h("h3", {}, "Portfolio leaderboard"),
          h("p", { class: "note" }, `Predicting with the mixture of the members, led by ${portfolio.leader} `
            + `(highest weight; ${fmt(portfolio.switches)} switches; the combination's weight `
            + `${fmt(portfolio.combination_weight)}; recent = discounted over ~${fmt(portfolio.window)} rows; `
            + `the rates below are the leader's).`),
          table(LEADERBOARD_COLUMNS, portfolio.leaderboard ?? [], { id: "leaderboard-table" }),
        );
      }

      const curve = Array.isArray(metrics.curve) ? metrics.curve : null;
      if (curve && curve.length >= 2) {
        lineChart(lossCurve, curveSeries(curve), { xLabel: "rows", yLabel: "log-loss" });
        lossNote.textContent = `${curve.length} blocks; the last ends at row ${fmt(curve[curve.length - 1][0])}.`;
      } else {
        const points = state.history.get(`model:${name}`) ?? [];
        lineChart(lossCurve, [{ name: "overall log-loss (sampled by this page)", points }], {
          xLabel: "rows", yLabel: "log-loss", empty: "no rows learned yet",
        });
        lossNote.textContent = curve
          ? "Fewer than two completed blocks: the curve shows the overall log-loss as this page saw it."
          : "The server sends no loss curve: this is the overall log-loss sampled by this page.";
      }

      if (info.step === lastStep) return; // nothing learned since: the rates are unchanged
      await refreshWatches();
      const threshold = Math.max(1, Math.floor(Number(minTouches.value)) || 1);
      const [rates, byFrequency] = await Promise.all([
        api(`v1/models/${enc(name)}/learning-rates/summary?top=20&bins=30&min_touches=${threshold}`),
        api(`v1/models/${enc(name)}/learning-rates/by-frequency?sample=2000`),
      ]);
      lastStep = info.step;
      const panel = frequencyPanel(byFrequency, PALETTE[0]);
      rateScatter(scatter, panel, logLogDomain([panel]));
      scatterNote.textContent = `${fmt(panel.points.length)} of ${fmt(byFrequency.touched)} touched coordinates. ${SCATTER_NOTE}`;
      barHistogram(rateHistogram, rates.effective_learning_rate?.histogram, {
        xLabel: "effective learning rate", color: PALETTE[0],
      });
      barHistogram(weightHistogram, rates.weight?.histogram, {
        xLabel: "weight", color: PALETTE[2],
      });
      rateQuantiles.textContent = quantiles(rates.effective_learning_rate?.quantiles);
      weightQuantiles.textContent = quantiles(rates.weight?.quantiles);
      topWeight.replaceChildren(
        table(COORDINATE_COLUMNS, rates.top_by_abs_weight ?? [], {
          id: "top-weight-table", rowAttrs: topRows, empty: "no touched coordinates yet",
        }),
      );
      topRate.replaceChildren(
        table(COORDINATE_COLUMNS, rates.top_by_effective_learning_rate ?? [], {
          id: "top-rate-table", rowAttrs: topRows,
          empty: `no coordinate touched ${fmt(rates.min_touches ?? threshold)} times or more yet`,
        }),
      );
      await runLookup();
    },
  };
}

const LEADERBOARD_COLUMNS = [
  { key: "name", label: "member", value: (m) => m.name, render: (m) => (m.leader ? `${m.name} ★` : m.name) },
  { key: "optimizer", label: "configuration", value: (m) => describeOptimizer(m.config), render: (m) => describeOptimizer(m.config) },
  { key: "recent_log_loss", label: "recent log-loss", numeric: true, value: (m) => m.recent_log_loss },
  { key: "log_loss", label: "log-loss", numeric: true, value: (m) => m.log_loss },
  { key: "rows", label: "rows", numeric: true, value: (m) => m.rows },
  { key: "weight", label: "weight", numeric: true, value: (m) => m.weight },
  { key: "combination_share", label: "combination share", numeric: true, value: (m) => m.combination_share },
  { key: "retired", label: "retired", value: (m) => m.retired, render: (m) => m.retired ?? "" },
];

// ---------------------------------------------------------------- experiment view
const MEMBER_COLUMNS = [
  { key: "rank", label: "#", numeric: true, value: (m) => m.rank },
  {
    key: "model", label: "model",
    render: (m) => h("span", {}, swatch(PALETTE[m.colorIndex]), link(`#/models/${enc(m.model)}`, m.model)),
  },
  { key: "optimizer", label: "optimizer", render: (m) => describeOptimizer(m.optimizer) },
  { key: "lazy", label: "lazy", render: (m) => m.lazy ?? "—" },
  { key: "rows", label: "rows", numeric: true, value: (m) => m.rows },
  { key: "log_loss", label: "log-loss", numeric: true, value: (m) => m.log_loss },
  { key: "recent_log_loss", label: "recent log-loss", numeric: true, value: (m) => m.recent_log_loss },
  { key: "auc", label: "AUC", numeric: true, value: (m) => m.auc },
  { key: "calibration", label: "calibration", numeric: true, value: (m) => m.calibration },
];

function swatch(color) {
  const svg = svgEl("svg", { class: "swatch", viewBox: "0 0 10 10", width: 10, height: 10 });
  svgEl("rect", { width: 10, height: 10, rx: 2, fill: color }, svg);
  return svg;
}

// A column for each hyperparameter whose value differs between members ("—": not one of its own).
function differingColumns(members) {
  const keys = [...new Set(members.flatMap((m) => Object.keys(m.optimizer ?? {})))];
  const shown = (v) => (v === undefined ? "—" : isNum(v) ? String(+v.toPrecision(6)) : JSON.stringify(v));
  return keys
    .filter((k) => k !== "name") // the optimizer column shows it
    .filter((k) => new Set(members.map((m) => shown(m.optimizer?.[k]))).size > 1)
    .map((k) => ({
      key: `hp-${k}`, label: k, numeric: true, render: (m) => shown(m.optimizer?.[k]),
    }));
}

const memberLabel = (m) =>
  `${m.model}: ${describeOptimizer(m.optimizer)}${m.lazy === "frozen" ? ", lazy=frozen" : ""}`;

function experimentView(name) {
  const summary = h("p", { id: "experiment-summary", class: "note" }, "loading…");
  const curves = h("div", { id: "experiment-curves", "data-testid": "experiment-curves", class: "chart-box" });
  const note = h("p", { id: "experiment-curves-note", class: "note" });
  const leaderboard = h("div", { id: "leaderboard", "data-testid": "leaderboard" });
  const scatters = h("div", { id: "member-scatters", "data-testid": "member-scatters", class: "multiples" });
  let experiment = null;
  let drawnSteps = "";
  const draw = () => experiment && drawCurves();
  const logScale = checkbox("log-scale", "log scale", draw);
  const running = checkbox("running-mean", "running mean (progressive log-loss so far)", draw);
  $("#view").replaceChildren(
    h("h2", {}, "Experiment ", h("code", {}, name)),
    summary,
    h("section", {}, h("h3", {}, "Progressive log-loss of each member"),
      h("div", { class: "controls" }, logScale, running), curves, note),
    h("section", {}, h("h3", {}, "Leaderboard"), leaderboard),
    h("section", {}, h("h3", {}, "Rare versus frequent: effective learning rate against times touched, per member"),
      scatters, h("p", { class: "note" }, SCATTER_NOTE)),
  );

  function drawCurves() {
    const members = experiment.members;
    const useRunning = $("#running-mean").checked;
    let sampled = false;
    const series = members.map((m) => {
      const curve = Array.isArray(m.curve) && m.curve.length >= 2 ? m.curve : null;
      if (!curve) sampled = true;
      return {
        name: m.model,
        label: memberLabel(m),
        color: PALETTE[m.colorIndex],
        points: curve
          ? (useRunning ? runningMean(curve) : curve)
          : state.history.get(`experiment:${name}:${m.model}`) ?? [],
      };
    });
    lineChart(curves, series, {
      xLabel: "rows", yLabel: useRunning ? "progressive log-loss" : "log-loss per block",
      empty: "no rows learned yet", yLog: $("#log-scale").checked,
    });
    note.textContent = (sampled
      ? "Members without a server-side curve show the log-loss sampled by this page. "
      : "") + (useRunning
      ? "Running mean: each member's log-loss over all rows so far."
      : "Log-loss per block of rows, one line per member.");
  }

  async function drawScatters(members) {
    const answers = await Promise.all(members.map((m) =>
      api(`v1/models/${enc(m.model)}/learning-rates/by-frequency?sample=1000`)));
    const panels = members.map((m, i) => frequencyPanel(
      answers[i], PALETTE[m.colorIndex], memberLabel(m)));
    const domain = logLogDomain(panels);
    const boxes = members.map((m) => h("div", { class: "chart-box", "data-model": m.model }));
    scatters.replaceChildren(...boxes); // laid out first: each chart takes its box's width
    panels.forEach((panel, i) => rateScatter(boxes[i], panel, domain, { height: 260 }));
  }

  setCrumbs([["experiments", "#/"], [name, `#/experiments/${enc(name)}`]]);
  return {
    async refresh() {
      const answer = await api(`v1/experiments/${enc(name)}`);
      const members = (answer.members ?? []).map((m, i) => ({ ...m, colorIndex: i % PALETTE.length }));
      for (const m of members) remember(`experiment:${name}:${m.model}`, m.rows, m.log_loss);
      experiment = { ...answer, members };
      drawCurves();
      const order = Array.isArray(experiment.leaderboard) ? experiment.leaderboard : [];
      const ranked = [...members].sort((a, b) => {
        const [ia, ib] = [order.indexOf(a.model), order.indexOf(b.model)];
        if (ia !== -1 || ib !== -1) return (ia === -1 ? 1e9 : ia) - (ib === -1 ? 1e9 : ib);
        return (a.log_loss ?? Infinity) - (b.log_loss ?? Infinity);
      });
      ranked.forEach((m, i) => {
        m.rank = i + 1;
      });
      summary.textContent = `${members.length} members learning one stream; ${
        fmt(Math.max(0, ...members.map((m) => m.rows ?? 0)))} rows so far.`;
      leaderboard.replaceChildren(
        table([...MEMBER_COLUMNS.slice(0, 3), ...differingColumns(members), ...MEMBER_COLUMNS.slice(3)], ranked, {
          id: "leaderboard-table",
          rowAttrs: (m) => ({ "data-model": m.model, "data-testid": "leaderboard-row" }),
        }),
      );
      const steps = members.map((m) => `${m.model}:${m.rows}`).join(",");
      if (steps !== drawnSteps) {
        await drawScatters(members); // only when a member learned: the rates are unchanged else
        drawnSteps = steps;
      }
    },
  };
}

// ---------------------------------------------------------------- routing and polling
function setCrumbs(parts) {
  const nav = $("#breadcrumbs");
  nav.replaceChildren(
    ...parts.flatMap(([label, href], i) => [i ? " / " : "", link(href, label)]),
  );
}

function notFound(message) {
  $("#view").replaceChildren(
    h("p", { class: "error", id: "not-found" }, message, " ", link("#/", "Back to the list.")),
  );
}

function route() {
  const hash = decodeURIComponent(window.location.hash.replace(/^#\/?/, ""));
  const [kind, ...rest] = hash.split("/");
  const name = rest.join("/");
  if (kind === "models" && name) return modelView(name);
  if (kind === "experiments" && name) {
    if (!state.config.experiments) {
      notFound("This server has no experiments API.");
      return null;
    }
    return experimentView(name);
  }
  return listView();
}

function handleError(error) {
  if (error instanceof ApiError && error.status === 401) {
    state.authProblem = getToken()
      ? "The server refused the saved token (401 Unauthorized)."
      : "This server requires a token (401 Unauthorized).";
    showAuthBanner(state.authProblem);
    return;
  }
  if (error instanceof ApiError && error.status === 404) {
    state.view = null; // stop polling a model or experiment that is gone
    notFound(`${error.message}.`);
    setStatus("not found", "warn");
    return;
  }
  showError(error);
  setStatus("error", "error");
}

async function tick() {
  clearTimeout(state.timer);
  const generation = state.generation;
  if (!state.view) return;
  if (state.authProblem) return; // waits for a token
  if (document.visibilityState !== "visible") {
    setStatus("paused while hidden", "warn");
    return; // visibilitychange restarts it
  }
  try {
    await loadOptimizers();
    await state.view.refresh();
    if (generation !== state.generation) return;
    showError(null);
    setStatus(`live · updated ${new Date().toLocaleTimeString("en-GB")}`);
  } catch (error) {
    if (generation !== state.generation) return;
    handleError(error);
    if (state.authProblem || !state.view) return;
  }
  if (generation === state.generation) state.timer = setTimeout(tick, REFRESH_MS);
}

function restart({ rebuild = false } = {}) {
  state.generation += 1;
  clearTimeout(state.timer);
  if (rebuild || !state.view) state.view = route();
  tick();
}

function setUpToken() {
  const input = $("#token-input");
  input.value = getToken();
  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    state.authProblem = null;
    $("#auth-banner").hidden = true;
    if (state.config.auth_required && !input.value.trim()) {
      state.authProblem = "This server requires a token.";
      showAuthBanner(state.authProblem);
      return;
    }
    restart({ rebuild: true });
  });
  $("#token-clear").addEventListener("click", () => {
    setToken("");
    input.value = "";
    if (state.config.auth_required) {
      state.authProblem = "The token was forgotten.";
      showAuthBanner(state.authProblem);
    }
  });
}

async function main() {
  try {
    const response = await fetch(new URL("config.json", window.location.href), { cache: "no-store" });
    if (response.ok) state.config = { ...state.config, ...(await response.json()) };
  } catch {
    // an older server without config.json: assume the defaults
  }
  setUpToken();
  if (state.config.auth_required && !getToken()) {
    state.authProblem = "This server requires a token.";
    showAuthBanner(state.authProblem);
  }
  window.addEventListener("hashchange", () => restart({ rebuild: true }));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") restart();
  });
  restart({ rebuild: true });
}

main().catch((error) => showError(error));
