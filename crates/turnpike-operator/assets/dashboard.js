// turnpike dashboard: polls /admin/api/summary and draws its figures on canvases.
// No dependencies; the admin token stays in this tab's sessionStorage.
"use strict";

const POLL_MS = 2000;
const KEY = "turnpike-admin-token";
// The rails of the history's `passed` slots come with each summary (`rail_labels`, `none`
// first, shown as "free"); a rail with no colour of its own takes one of these.
const SPARE_COLORS = ["#f472b6", "#a78bfa", "#fb923c", "#2dd4bf"];
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const COLORS = () => ({
  free: css("--free"), pow: css("--pow"), l402: css("--l402"), oauth: css("--oauth"),
  bad: css("--bad"), warn: css("--warn"), accent: css("--accent"),
  card: css("--card"), line: css("--line"), muted: css("--muted"), text: css("--text"),
});

let token = null;
let timer = null;

function $(id) { return document.getElementById(id); }

function fmt(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(Math.round(n * 100) / 100);
}
function sats(msat) { return fmt(msat / 1000) + " sat"; }
function ago(t, now) {
  const d = Math.max(0, now - t);
  if (d < 60) return d + "s ago";
  if (d < 3600) return Math.floor(d / 60) + "m ago";
  if (d < 86400) return Math.floor(d / 3600) + "h ago";
  return new Date(t * 1000).toISOString().slice(0, 10);
}
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

// ---- charts ---------------------------------------------------------------------------------

function setupCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h };
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// series: [{name, color, values: [..]}]; times: unix seconds; opts: {stacked, bars, unit}
function drawChart(canvas, times, series, opts = {}) {
  const c = COLORS();
  const { ctx, w, h } = setupCanvas(canvas);
  // Where the chart is on the page (read by the dashboard's browser test).
  const r = canvas.getBoundingClientRect();
  canvas.dataset.box = [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round).join(",");
  if (times.length === 1 && !opts.bars) {
    // One interval so far: draw it across the chart.
    times = [times[0] - 1, times[0]];
    series = series.map((s) => ({ ...s, values: [s.values[0], s.values[0]] }));
  }
  ctx.clearRect(0, 0, w, h);
  const pad = { l: 44, r: 10, t: 8, b: 22 };
  const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
  const n = times.length;
  ctx.font = "11px system-ui, sans-serif";
  if (n < 1 || series.length === 0) {
    ctx.fillStyle = c.muted;
    ctx.fillText("waiting for data…", pad.l + 8, pad.t + ph / 2);
    return;
  }
  const stackTop = new Array(n).fill(0);
  let max = 0;
  for (const s of series) {
    for (let i = 0; i < n; i++) {
      const v = s.values[i] || 0;
      if (opts.stacked) { stackTop[i] += v; max = Math.max(max, stackTop[i]); } else max = Math.max(max, v);
    }
  }
  max = niceMax(max * 1.1);
  const x = (i) => pad.l + (n === 1 ? pw / 2 : (i / (n - 1)) * pw);
  const y = (v) => pad.t + ph - (v / max) * ph;
  // grid and y labels
  ctx.strokeStyle = c.line; ctx.lineWidth = 1; ctx.fillStyle = c.muted;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (let g = 0; g <= 4; g++) {
    const v = (max * g) / 4, yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(pad.l, yy); ctx.lineTo(w - pad.r, yy); ctx.stroke();
    ctx.fillText(fmt(v), pad.l - 6, yy);
  }
  // x labels: first, middle, last
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  const now = times[n - 1];
  for (const i of [0, Math.floor((n - 1) / 2), n - 1]) {
    const d = now - times[i];
    const label = d === 0 ? "now" : d < 60 ? `-${d}s` : `-${Math.round(d / 60)}m`;
    ctx.fillText(label, Math.min(Math.max(x(i), pad.l + 14), w - pad.r - 14), pad.t + ph + 6);
  }
  if (opts.bars) {
    const bw = Math.max(2, Math.min(18, (pw / Math.max(n, 1)) * 0.7));
    const base = new Array(n).fill(0);
    for (const s of series) {
      ctx.fillStyle = s.color;
      for (let i = 0; i < n; i++) {
        const v = s.values[i] || 0;
        if (v <= 0) continue;
        const top = y(base[i] + v), bot = y(base[i]);
        ctx.fillRect(x(i) - bw / 2, top, bw, Math.max(1, bot - top));
        base[i] += v;
      }
    }
    return;
  }
  const base = new Array(n).fill(0);
  for (const s of series) {
    const top = s.values.map((v, i) => (opts.stacked ? base[i] : 0) + (v || 0));
    // area
    ctx.beginPath();
    for (let i = 0; i < n; i++) (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(i), y(top[i]));
    for (let i = n - 1; i >= 0; i--) ctx.lineTo(x(i), y(opts.stacked ? base[i] : 0));
    ctx.closePath();
    ctx.globalAlpha = opts.stacked ? 0.55 : 0.14;
    ctx.fillStyle = s.color; ctx.fill();
    ctx.globalAlpha = 1;
    // line
    ctx.beginPath();
    for (let i = 0; i < n; i++) (i ? ctx.lineTo : ctx.moveTo).call(ctx, x(i), y(top[i]));
    ctx.strokeStyle = s.color; ctx.lineWidth = 2; ctx.stroke();
    if (n === 1) { ctx.fillStyle = s.color; ctx.beginPath(); ctx.arc(x(0), y(top[0]), 3, 0, 7); ctx.fill(); }
    if (opts.stacked) for (let i = 0; i < n; i++) base[i] = top[i];
  }
}

function legend(id, items) {
  const box = $(id);
  box.replaceChildren(...items.map(([name, color]) => el("span", { style: `--c:${color}` }, name)));
}

// Per-interval increases between consecutive history samples.
function deltas(history, pick) {
  const out = [];
  for (let i = 1; i < history.length; i++) out.push(Math.max(0, pick(history[i]) - pick(history[i - 1])));
  return out;
}

// ---- rendering ------------------------------------------------------------------------------

let last = null;

function render(s) {
  last = s;
  const c = COLORS();
  const t = s.totals, h = s.history || [];
  $("endpoint").textContent = s.endpoint ? "· " + s.endpoint : "";
  // Tool calls alone: initialize, lists, notifications and streams are counted apart.
  const tc = s.tool_calls || t;
  $("k-passed").textContent = fmt(tc.passed);
  $("k-other").textContent = fmt(Math.max(0, t.passed - tc.passed));
  const lastH = h[h.length - 1], firstH = h[0];
  if (lastH && firstH && lastH.t > firstH.t) {
    const passed = (x) => x.passed.reduce((a, b) => a + b, 0);
    const rate = (passed(lastH) - passed(firstH)) / ((lastH.t - firstH.t) / 60);
    $("k-passed-rate").textContent = fmt(rate) + " / min over the chart";
  }
  // Money: received (invoices seen paid), apart from what was invoiced (an invoice offered
  // beside a puzzle the caller solved is never paid) and from what calls were charged.
  const money = s.l402 || {};
  $("k-earned").textContent = sats(money.received_msat || 0);
  $("k-received-n").textContent = fmt(money.payments || 0);
  $("k-charged").textContent = sats(money.charged_msat || 0);
  $("k-invoices-paid").textContent = fmt(money.payments || 0);
  $("k-invoices-issued").textContent = fmt(money.invoices || 0);
  $("k-invoiced").textContent = sats(money.invoiced_msat || 0);
  $("k-challenged").textContent = fmt(t.challenged);
  $("k-refused").textContent = fmt(t.refused);
  $("k-errors").textContent = `${fmt(t.upstream_error)} upstream errors · ${fmt(t.unavailable)} unavailable`;
  $("k-limits").textContent = fmt(s.limits.gateway_429 + s.limits.upstream_429);
  $("k-limits-split").textContent = `gateway ${fmt(s.limits.gateway_429)} · upstream ${fmt(s.limits.upstream_429)}`;
  $("k-effort").textContent = s.pow.current_effort != null ? fmt(s.pow.current_effort) : "–";
  $("k-mult").textContent = s.pow.multiplier != null ? `×${s.pow.multiplier} load multiplier` : "proof-of-work off";

  const times = h.slice(1).map((x) => x.t);
  const railNames = (s.rail_labels || ["none"]).map((r) => (r === "none" ? "free" : r));
  const railSeries = railNames.map((name, i) => ({ name, color: c[name] || SPARE_COLORS[i % SPARE_COLORS.length], values: deltas(h, (x) => x.passed[i] || 0) }))
    .filter((s, i) => i === 0 || (s.values.some((v) => v > 0)) || (last.rails || []).includes(s.name));
  legend("legend-rails", railSeries.map((s) => [s.name, s.color]));
  drawChart($("chart-rails"), times, railSeries, { stacked: true });

  drawChart($("chart-earnings"), times, [
    { name: "received", color: c.l402, values: deltas(h, (x) => x.received_msat / 1000) },
  ], { bars: true });

  const refusals = [
    ["challenged", c.accent, (x) => x.challenged],
    ["refused", c.bad, (x) => x.refused],
    ["gateway 429", c.warn, (x) => x.gateway_429],
    ["upstream 429", c.l402, (x) => x.upstream_429],
    ["upstream errors", c.muted, (x) => x.upstream_errors],
  ];
  legend("legend-refusals", refusals.map(([n, col]) => [n, col]));
  drawChart($("chart-refusals"), times, refusals.map(([name, color, f]) => ({ name, color, values: deltas(h, f) })));

  drawChart($("chart-effort"), h.map((x) => x.t), [
    { name: "multiplier", color: c.pow, values: h.map((x) => x.pow_multiplier) },
  ]);

  // top tools
  const tools = s.top_tools || [];
  const tmax = Math.max(1, ...tools.map((x) => x.calls));
  $("top-tools").replaceChildren(...(tools.length ? tools.map((x) =>
    el("div", { class: "bar" },
      el("span", { class: "name", title: x.tool }, x.tool || "(none)"),
      el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(100 * x.calls) / tmax}%;display:block` })),
      el("span", { class: "n" }, fmt(x.calls)))) : [el("div", { class: "empty" }, "no tool calls yet")]));

  // top callers
  const callers = s.top_callers || [];
  $("top-callers").replaceChildren(...(callers.length ? callers.map((x) =>
    el("tr", {},
      el("td", {}, el("span", { class: "badge " + x.kind }, x.kind)),
      el("td", { title: x.label }, x.label),
      el("td", { class: "num" }, fmt(x.calls)),
      el("td", { class: "num" }, fmt(x.other)),
      el("td", { class: "num" }, sats(x.paid_msat)),
      el("td", { class: "num" }, fmt(x.refused)))) :
    [el("tr", {}, el("td", { colspan: "6", class: "empty" }, "no callers yet"))]));

  // ledger
  const rows = Array.isArray(s.ledger) ? s.ledger : [];
  $("ledger").replaceChildren(...(rows.length ? rows.slice(0, 12).map((e) =>
    el("tr", {},
      el("td", {}, e.id),
      el("td", {}, ago(e.at, s.now)),
      el("td", {}, el("span", { class: "badge " + e.kind }, e.kind)),
      el("td", { title: e.token_id }, e.token_id.slice(0, 12) + "…"),
      el("td", { class: "num" }, sats(e.amount_msat)))) :
    [el("tr", {}, el("td", { colspan: "5", class: "empty" },
      s.ledger === null ? "no L402 rail configured" : "no ledger rows yet"))]));

  // dry runs: refused beside would-refuse, per rule, per price (tool, reason) and the limits
  const dry = s.dry_runs || { rules: [], prices: [], limits: { refused: 0, would_refuse: 0 } };
  const dryRow = (kind, name, refused, would, classed) =>
    el("tr", { "data-dry": kind + ":" + name },
      el("td", {}, el("span", { class: "badge dry-" + kind }, kind)),
      el("td", { title: name }, name),
      el("td", { class: "num refused" }, fmt(refused)),
      el("td", { class: "num would" + (would > 0 ? " hot" : "") }, fmt(would)),
      el("td", { class: "num classed" }, classed));
  $("dry-rows").replaceChildren(
    ...dry.rules.map((r) => dryRow("rule", r.rule, r.refused, r.would_refuse,
      r.classed || r.would_class ? `${fmt(r.classed)} · ${fmt(r.would_class)}` : "")),
    ...dry.prices.map((p) => dryRow("price", `${p.tool} (${p.reason})`, p.refused, p.would_refuse, "")),
    dryRow("limits", "all limits", dry.limits.refused, dry.limits.would_refuse, ""));

  $("footer").textContent = `turnpike ${s.version} · rails: ${(s.rails || []).join(", ")} · limits ${s.limits_enabled ? "on" : "off"} · history every ${s.sample_every_secs}s`;
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

// ---- data -----------------------------------------------------------------------------------

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
  if (r.status === 401) { signOut("The token was refused."); throw new Error("unauthorized"); }
  if (!r.ok) throw new Error("HTTP " + r.status);
  return r;
}

async function poll() {
  try {
    const s = await (await api("/admin/api/summary")).json();
    render(s);
    $("live-dot").className = "dot ok";
    $("updated").textContent = "live · updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("live-dot").className = "dot bad";
    $("updated").textContent = "disconnected (" + e.message + ")";
  }
}

async function download(format) {
  const r = await api("/admin/api/ledger?format=" + format);
  const blob = await r.blob();
  const a = el("a", { href: URL.createObjectURL(blob), download: "turnpike-ledger." + (format === "csv" ? "csv" : "jsonl") });
  document.body.append(a); a.click(); a.remove();
}

function start() {
  $("login").hidden = true;
  $("main").hidden = false;
  poll();
  clearInterval(timer);
  timer = setInterval(poll, POLL_MS);
}

function signOut(msg) {
  sessionStorage.removeItem(KEY);
  token = null;
  clearInterval(timer);
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
}

window.addEventListener("DOMContentLoaded", () => {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  token = sessionStorage.getItem(KEY);
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    sessionStorage.setItem(KEY, token);
    start();
  });
  $("logout").addEventListener("click", () => signOut(""));
  $("export-csv").addEventListener("click", (ev) => { ev.preventDefault(); download("csv"); });
  $("export-jsonl").addEventListener("click", (ev) => { ev.preventDefault(); download("jsonl"); });
  window.addEventListener("resize", () => last && render(last));
  if (token) start(); else signOut("");
});
