// carbonflow center web UI: plain modern JS, ECharts (vendored), data only from /api/v1 (login required).
"use strict";

const $ = (id) => document.getElementById(id);
// Every piece of server data reaches the page as a text node or an attribute value — never as HTML
// (a device or user named "<img src=x onerror=...>" shows as those characters).  elem("div", {class: "x"},
// "text", node, [more]) builds an element; strings become text nodes.
function elem(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) if (value !== null && value !== undefined) el.setAttribute(name, value);
  append(el, children);
  return el;
}
function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
// for the one place a library takes HTML (ECharts tooltips)
const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (ch) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]);
const state = { lang: localStorage.getItem("cf-lang") || "zh", zone: "Asia/Shanghai", page: "overview",
  topo: null, intervals: [], result: null, charts: {}, latest: null, nodes: [] };
window.cf = state; // for tests and the curious: state.nodes = [{id, intensity, color}]

// ---- i18n, units, time -----------------------------------------------------------------------------
const t = (key) => (window.CF_I18N[state.lang] || {})[key] ?? key;
// a region by its name in the user's language (the code as its title), from the topology's names
const regionName = (path) => {
  if (!path) return "—";
  const names = state.topo?.region_names?.[path];
  return (names && names[state.lang]) || path;
};
const tv = (kind, value) => (value == null ? "—" : (window.CF_ENUMS[state.lang]?.[kind] || {})[value] ?? value);
function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("lang").textContent = state.lang === "zh" ? "EN" : "中文";
}
function num(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return Number(value).toLocaleString(state.lang === "zh" ? "zh-CN" : "en-US",
    { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
const fmt = (value, unit, digits = 1) => (value === null || value === undefined ? "—" : `${num(value, digits)} ${unit}`);
// a metered value with its expanded uncertainty: "812.3 ± 1.2 gCO₂/kWh"
const pm = (value, band, unit, digits = 1) => (value === null || value === undefined ? "—"
  : band === null || band === undefined ? fmt(value, unit, digits) : `${num(value, digits)} ± ${num(band, digits)} ${unit}`);
function localTime(iso, withDate = true) {
  if (!iso) return "—";
  const options = { timeZone: state.zone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (withDate) Object.assign(options, { year: "numeric", month: "2-digit", day: "2-digit" });
  return new Intl.DateTimeFormat(state.lang === "zh" ? "zh-CN" : "en-GB", options).format(new Date(iso));
}
const zoneLabel = () => `(${state.zone})`;

// ---- colour scale of intensity (also the legend's gradient) -------------------------------------------
const STOPS = ["#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027", "#67001f"];
const MAX_INTENSITY = 1000;
function colorOf(intensity) {
  if (intensity === null || intensity === undefined) return "#b0b7bf";
  const x = Math.max(0, Math.min(1, intensity / MAX_INTENSITY)) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2), f = x - i;
  const a = STOPS[i].match(/\w\w/g).map((h) => parseInt(h, 16));
  const b = STOPS[i + 1].match(/\w\w/g).map((h) => parseInt(h, 16));
  return "#" + a.map((v, k) => Math.round(v + (b[k] - v) * f).toString(16).padStart(2, "0")).join("");
}

// ---- API ----------------------------------------------------------------------------------------------
async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options,
    headers: { "Content-Type": "application/json", ...(options.headers || {}) } });
  if (response.status === 401) { showLogin(); throw new Error("login required"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}
const qs = (params) => new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString();

function chart(id) {
  if (!state.charts[id]) state.charts[id] = echarts.init($(id));
  return state.charts[id];
}
window.addEventListener("resize", () => Object.values(state.charts).forEach((c) => c.resize()));

// columns: {label, key | render(row) -> text, node or array of nodes, num}
const put = (id, el) => { $(id).replaceChildren(el); };

// ---- login / navigation -------------------------------------------------------------------------------
function showLogin() {
  document.querySelectorAll(".page").forEach((p) => { p.hidden = true; });
  $("login-page").hidden = false; $("nav").hidden = true; $("logout").hidden = true;
}
$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/api/v1/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: $("login-user").value, password: $("login-password").value }) });
  if (!response.ok) { $("login-error").textContent = t("login_failed"); return; }
  $("login-error").textContent = "";
  start();
});
$("logout").addEventListener("click", async () => {
  await fetch("/api/v1/logout", { method: "POST" });
  leavePage(); stopLive(); showLogin();
});
$("lang").addEventListener("click", () => {
  state.lang = state.lang === "zh" ? "en" : "zh"; localStorage.setItem("cf-lang", state.lang); applyLang(); show(state.page);
});
document.querySelectorAll("#nav button").forEach((b) => b.addEventListener("click", () => show(b.dataset.page)));

async function start() {
  let me;
  try { me = await api("/api/v1/me"); } catch { return; }
  state.zone = me.time_zone || state.zone;
  try { state.topo = await api("/api/v1/topology"); } catch { state.topo = null; } // region names, buses
  $("login-page").hidden = true; $("nav").hidden = false; $("logout").hidden = false;
  connectLive();
  window.cfAlarms?.start();
  show(location.hash.slice(1) || "overview");
}

const PAGES = {};
async function show(page) {
  if (!PAGES[page]) page = "overview";
  document.body.dataset.ready = ""; // not ready until this render is done (tests wait for it)
  if (page !== state.page) leavePage();
  state.page = page; location.hash = page;
  document.querySelectorAll(".page").forEach((p) => { p.hidden = p.id !== `page-${page}`; });
  document.querySelectorAll("#nav button").forEach((b) => b.classList.toggle("active", b.dataset.page === page));
  try { await PAGES[page](); } catch (error) { console.error(error); }
  Object.values(state.charts).forEach((c) => c.resize());
  document.body.dataset.ready = page; // tests wait for this
}

// no work in the background for a page that is not shown: playback and pending refreshes end with it
function leavePage() {
  camStop();
  if (state.pending) { clearTimeout(state.pending); state.pending = null; }
}

// ---- live updates: WebSocket, else polling ------------------------------------------------------------
function stopLive() {
  if (state.socket) { state.socket.onerror = null; state.socket.close(); state.socket = null; }
  if (state.pollTimer) { clearInterval(state.pollTimer); state.pollTimer = null; }
}
function connectLive() {
  stopLive(); // one connection per login, never one more per login

  const refresh = (ts) => { if (ts && ts !== state.latest) { state.latest = ts; if (state.page === "overview") refreshOverview(); } };
  try {
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/live`);
    state.socket = socket;
    socket.onmessage = (m) => {
      $("live").textContent = `● ${t("live")}`;
      const message = JSON.parse(m.data);
      if (message.type === "alarms") { window.cfAlarms?.onLive(message); return; } // alarms.js
      refresh(message.ts);
    };
    socket.onerror = () => poll();
  } catch { poll(); }
  function poll() {
    $("live").textContent = `○ ${t("polling")}`;
    if (state.pollTimer) return;
    state.pollTimer = setInterval(async () => { try { refresh((await api("/api/v1/intervals?limit=1&offset=0")).items.at(-1)?.ts); } catch {} }, 15000);
  }
}

// ---- Overview -----------------------------------------------------------------------------------------
const OVERVIEW_REFRESH_MS = 30000;
// a refresh outside show() (live update, timer): a failure is logged, never an unhandled rejection
const refreshOverview = () => PAGES.overview().catch((error) => console.error(error));
// seconds as "45 s", "12 min", "2 h 10 min", "3 d 4 h" in the user's language
function duration(seconds) {
  const s = Math.max(0, Math.round(seconds || 0)), m = Math.round(s / 60), h = Math.floor(s / 3600);
  if (s < 90) return `${s} ${t("u_s")}`;
  if (s < 90 * 60) return `${m} ${t("u_min")}`;
  if (s < 48 * 3600) return `${h} ${t("u_h")} ${Math.round((s - h * 3600) / 60)} ${t("u_min")}`;
  return `${Math.floor(s / 86400)} ${t("u_d")} ${Math.round((s % 86400) / 3600)} ${t("u_h")}`;
}
PAGES.overview = async () => {
  const o = await api("/api/v1/overview");
  state.latest = o.ts;
  $("ov-ts").textContent = `${localTime(o.ts)} ${zoneLabel()}`;
  // the latest complete interval's age on the center's clock (simulated in the demo), and "data is late"
  $("ov-age").textContent = `· ${t("age_fmt").replace("{d}", duration(o.age_s))}`;
  $("ov-age").className = o.late ? "age late" : "age";
  $("ov-late").hidden = !o.late;
  $("ov-late").textContent = o.late ? t("data_late").replace("{d}", duration(o.age_s)).replace("{i}", duration(o.interval_s)) : "";
  $("page-overview").dataset.late = o.late ? "1" : "";
  // no new interval is also news: look again while the page is shown (the timer ends with the page)
  if (state.pending) clearTimeout(state.pending);
  state.pending = setTimeout(() => { state.pending = null; if (state.page === "overview") refreshOverview(); }, OVERVIEW_REFRESH_MS);
  const c = o.completeness;
  const band = o.now_band || {};
  const iv = o.interval || {};
  const cards = [
    [t("gen_carbon"), pm(o.now.generation_carbon_t_per_h, band.generation_carbon_t_per_h, "tCO₂/h"), `${t("today")} ${fmt(o.today.generation_carbon_t, "tCO₂")}`],
    [t("loss_carbon"), pm(o.now.loss_carbon_t_per_h, band.loss_carbon_t_per_h, "tCO₂/h", 2), `${t("today")} ${fmt(o.today.loss_carbon_t, "tCO₂")}`],
    [t("load_carbon"), pm(o.now.load_carbon_t_per_h, band.load_carbon_t_per_h, "tCO₂/h"), `${t("today")} ${fmt(o.today.load_carbon_t, "tCO₂")}`],
    [t("sys_intensity"), fmt(o.now.generation_intensity_g_per_kwh, "gCO₂/kWh"), `${t("today")} ${fmt(o.today.generation_intensity_g_per_kwh, "gCO₂/kWh")}`],
    [t("load_intensity"), fmt(o.now.load_intensity_g_per_kwh, "gCO₂/kWh"), `${fmt(o.now.load_mw, "MW")}`],
    [t("residual"), fmt(o.now.residual_t_per_h, "tCO₂/h", 2),
      `${iv.complete ? t("interval_complete") : t("interval_incomplete")} · ${iv.estimated_inputs ?? 0} ${t("estimates")}` +
      (iv.newer_incomplete ? ` · ${iv.newer_incomplete} ${t("newer_waiting")}` : "")],
    [t("completeness"), fmt(c.intervals_ratio * 100, "%"), `${c.intervals_today} ${t("of")} ${c.intervals_expected} ${t("intervals")} ${t("since")} ${localTime(c.expected_since)} · ${c.devices_online} ${t("of")} ${c.devices_total} ${t("devices_online")}`],
    [t("alarms"), o.alarms_active ?? t("not_yet"), ""],
  ];
  $("ov-cards").replaceChildren(...cards.map(([label, value, sub]) => elem("div", { class: "card" },
    elem("div", { class: "label" }, label), elem("div", { class: "value" }, value), elem("div", { class: "sub" }, sub))));
  const h = await api(`/api/v1/history?${qs({ kind: "total", bucket: "15min" })}`);
  chart("ov-chart").setOption({
    tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 60, right: 60, top: 40, bottom: 30 },
    xAxis: { type: "category", data: h.items.map((r) => localTime(r.bucket, false)) },
    yAxis: [{ type: "value", name: "tCO₂" }, { type: "value", name: "gCO₂/kWh" }],
    series: [
      { name: `${t("gen_carbon")} (tCO₂)`, type: "bar", data: h.items.map((r) => paleIfEstimated(r, r.generation_carbon_kg / 1000)) },
      { name: `${t("loss_carbon")} (tCO₂)`, type: "bar", data: h.items.map((r) => paleIfEstimated(r, r.loss_carbon_kg / 1000)) },
      { name: `${t("sys_intensity")} (gCO₂/kWh)`, type: "line", yAxisIndex: 1, data: h.items.map((r) => r.generation_intensity_g_per_kwh) },
      estimatedMarks(h.items, (r) => localTime(r.bucket, false), (r) => r.generation_intensity_g_per_kwh, { yAxisIndex: 1 }),
    ] }, true);
};

// ---- estimated data in charts -------------------------------------------------------------------------
// a bucket holding intervals metered from incomplete data (an input estimated) is drawn differently: an
// orange hollow marker over lines (a series of its own, "with estimated data" in the legend), paler bars
const ESTIMATED_COLOR = "#e67e22";
const isEstimated = (row) => (row.incomplete_intervals || 0) > 0;
function estimatedMarks(rows, x, y, extra = {}) {
  const data = rows.map((r) => (isEstimated(r) && y(r) != null ? [x(r), y(r)] : [x(r), null]));
  return { name: t("estimated_buckets"), type: "scatter", symbol: "emptyCircle", symbolSize: 8, z: 5,
    itemStyle: { color: ESTIMATED_COLOR, borderWidth: 2 }, data, ...extra };
}
const paleIfEstimated = (row, value) => (isEstimated(row)
  ? { value, itemStyle: { opacity: 0.45, borderColor: ESTIMATED_COLOR, borderWidth: 1, borderType: "dashed" } } : value);

// ---- Generation ---------------------------------------------------------------------------------------
PAGES.generation = async () => {
  const g = await api("/api/v1/generation");
  $("gen-range").textContent = `${localTime(g.start)} – ${localTime(g.end)} ${zoneLabel()}`;
  const amounts = [
    { label: `${t("export_energy")} (MWh)`, num: true, render: (r) => num(r.range_energy_kwh / 1000) },
    { label: `${t("carbon_amount")} (tCO₂)`, num: true, render: (r) => num(r.range_carbon_t) },
    { label: `${t("factor")} (gCO₂/kWh)`, num: true, render: (r) => num(r.range_intensity_g_per_kwh) },
  ];
  put("gen-plants", table(g.plants, [{ label: t("plant"), key: "plant" }, { label: t("fuel"), filter: true, render: (r) => tv("fuel", r.fuel) },
    { label: t("region"), filter: true, render: (r) => regionName(r.region) }, { label: `${t("p_mw")} (MW)`, num: true, render: (r) => num(r.p_mw) },
    { label: `${t("carbon_rate")} (tCO₂/h)`, num: true, render: (r) => num(r.carbon_t_per_h, 2) }, ...amounts]));
  put("gen-units", table(g.units, [{ label: t("unit"), key: "id" }, { label: t("plant"), key: "plant", filter: true },
    { label: t("fuel"), filter: true, render: (r) => tv("fuel", r.fuel) }, { label: `${t("p_mw")} (MW)`, num: true, render: (r) => num(r.p_mw) },
    { label: `${t("carbon_rate")} (tCO₂/h)`, num: true, render: (r) => num(r.carbon_t_per_h, 2) }, ...amounts]));
  chart("gen-chart").setOption({ tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 60, right: 60, top: 40, bottom: 40 },
    xAxis: { type: "category", data: g.plants.map((p) => p.plant) },
    yAxis: [{ type: "value", name: "tCO₂" }, { type: "value", name: "MWh" }],
    series: [{ name: `${t("carbon_amount")} (tCO₂)`, type: "bar", data: g.plants.map((p) => p.range_carbon_t) },
      { name: `${t("export_energy")} (MWh)`, type: "bar", yAxisIndex: 1, data: g.plants.map((p) => p.range_energy_kwh / 1000) }] }, true);
};

// ---- Grid ---------------------------------------------------------------------------------------------
PAGES.grid = async () => {
  const g = await api("/api/v1/grid");
  $("grid-range").textContent = `${localTime(g.start)} – ${localTime(g.end)} ${zoneLabel()}`;
  const bars = (id, rows, key, title) => chart(id).setOption({ title: { text: title, textStyle: { fontSize: 13 } },
    tooltip: {}, grid: { left: 60, right: 20, top: 40, bottom: 40 },
    xAxis: { type: "category", data: rows.map((r) => (key === "voltage_kv" ? `${r[key]} kV` : regionName(r[key]))) },
    yAxis: { type: "value", name: "tCO₂" }, series: [{ type: "bar", data: rows.map((r) => r.loss_carbon_t) }] }, true);
  bars("grid-voltage", g.loss_by_voltage, "voltage_kv", t("loss_by_voltage"));
  bars("grid-region", g.loss_by_region, "region", t("loss_by_region"));
  $("grid-csv").href = `/api/v1/results/branch?${qs({ ts: g.ts, format: "csv" })}`;
  const rows = [...g.branches].sort((a, b) => b.carbon_send_t_per_h - a.carbon_send_t_per_h);
  put("grid-branches", table(rows, [{ label: t("branch"), key: "id" }, { label: t("kind"), filter: true, render: (r) => tv("branch_kind", r.kind) },
    { label: t("sending_bus"), key: "sending_bus" }, { label: `${t("voltage")} (kV)`, num: true, key: "voltage_kv" },
    { label: `${t("p_send")} (MW)`, num: true, render: (r) => num(r.p_send_mw) },
    { label: `${t("density")} (gCO₂/kWh)`, num: true, render: (r) => num(r.density_g_per_kwh) },
    { label: `${t("carbon_flow")} (tCO₂/h)`, num: true, render: (r) => num(r.carbon_send_t_per_h, 2) },
    { label: `${t("loss_carbon")} (tCO₂/h)`, num: true, render: (r) => num(r.loss_carbon_t_per_h, 3) }]));
};

// ---- Consumption --------------------------------------------------------------------------------------
PAGES.consumption = async () => {
  const [c, origin] = await Promise.all([api("/api/v1/consumption"), api("/api/v1/origin")]);
  $("con-range").textContent = `${localTime(c.start)} – ${localTime(c.end)} ${zoneLabel()}`;
  const bars = (id, rows, title) => chart(id).setOption({ title: { text: title, textStyle: { fontSize: 13 } }, tooltip: {},
    grid: { left: 60, right: 60, top: 40, bottom: 50 }, xAxis: { type: "category", data: rows.map((r) => r.key ?? "—"), axisLabel: { rotate: 20 } },
    yAxis: [{ type: "value", name: "tCO₂" }, { type: "value", name: "gCO₂/kWh" }],
    series: [{ type: "bar", name: "tCO₂", data: rows.map((r) => r.carbon_t) },
      { type: "line", name: "gCO₂/kWh", yAxisIndex: 1, data: rows.map((r) => r.intensity_g_per_kwh) }] }, true);
  bars("con-region", c.by_region.map((r) => ({ ...r, key: regionName(r.key) })), t("by_region"));
  bars("con-industry", c.by_industry.map((r) => ({ ...r, key: tv("industry", r.key) })), t("by_industry"));
  state.topo = state.topo || await api("/api/v1/topology");
  const userBuses = new Set(state.topo.buses.filter((b) => b.kind === "user").map((b) => b.id));
  let users = origin.loads.filter((l) => Object.keys(l.power_mw || {}).length);
  if (users.some((l) => userBuses.has(l.bus))) users = users.filter((l) => userBuses.has(l.bus)); // key users
  const plantOf = Object.fromEntries(origin.sources.map((s) => [s.id, `${s.plant || s.id} (${tv("fuel", s.fuel)})`]));
  const plants = [...new Set(origin.sources.map((s) => plantOf[s.id]))];
  chart("con-origin").setOption({ tooltip: { trigger: "axis", axisPointer: { type: "shadow" } }, legend: { top: 0, type: "scroll" },
    grid: { left: 80, right: 20, top: 40, bottom: 30 }, xAxis: { type: "value", max: 100, name: "%" },
    yAxis: { type: "category", data: users.map((u) => u.id) },
    series: plants.map((plant) => ({ name: plant, type: "bar", stack: "share", data: users.map((u) => {
      const total = Object.values(u.power_mw).reduce((a, b) => a + b, 0);
      const mine = Object.entries(u.power_mw).filter(([s]) => plantOf[s] === plant).reduce((a, [, v]) => a + v, 0);
      return total ? +(100 * mine / total).toFixed(2) : 0; }) })) }, true);
  put("con-users", table(c.users, [{ label: t("users"), key: "id" }, { label: t("region"), filter: true, render: (r) => regionName(r.region) },
    { label: t("industry"), filter: true, render: (r) => tv("industry", r.industry) }, { label: `${t("p_mw")} (MW)`, num: true, render: (r) => num(r.p_mw) },
    { label: `${t("intensity")} (gCO₂/kWh)`, num: true, render: (r) => num(r.intensity_g_per_kwh) },
    { label: `${t("energy")} (MWh)`, num: true, render: (r) => num(r.range_energy_kwh / 1000) },
    { label: `${t("carbon_amount")} (tCO₂)`, num: true, render: (r) => num(r.range_carbon_t) }]));
};

// ---- History ------------------------------------------------------------------------------------------
// [time ms, value] points with a null where buckets are missing (a step over 1.5 × the usual one): gaps show
function withGaps(points) {
  const steps = points.slice(1).map((p, k) => p[0] - points[k][0]).filter((d) => d > 0);
  const usual = steps.length ? Math.min(...steps) : 0;
  const out = [];
  points.forEach((p, k) => {
    if (k && usual && p[0] - points[k - 1][0] > 1.5 * usual) out.push([points[k - 1][0] + usual, null]);
    out.push(p);
  });
  return out;
}
const historyLabel = (key) => {
  const group = $("hist-group").value;
  return group === "region" ? regionName(key) : group === "industry" ? tv("industry", key) : key;
};
function historyQuery(format) {
  const hours = Number($("hist-range").value);
  const end = state.latest ? new Date(new Date(state.latest).getTime() + 1000) : new Date();
  const start = new Date(end.getTime() - hours * 3600 * 1000);
  return qs({ kind: $("hist-kind").value, element: $("hist-element").value.trim(), group_by: $("hist-group").value,
    bucket: $("hist-bucket").value, start: start.toISOString(), end: end.toISOString(), format });
}
PAGES.history = async () => {
  if (!state.latest) state.latest = (await api("/api/v1/overview")).ts;
  $("hist-csv").href = `/api/v1/history?${historyQuery("csv")}`;
  $("hist-error").textContent = "";
  let h;
  try { h = await api(`/api/v1/history?${historyQuery()}`); } catch (error) { $("hist-error").textContent = error.message; return; }
  const total = $("hist-kind").value === "total";
  // the whole grid is one series: say so rather than ignore a grouping silently
  if (total && !["element", "total"].includes($("hist-group").value)) $("hist-error").textContent = t("whole_grid_no_group");
  const keys = total ? [null] : [...new Set(h.items.map((r) => r.key))].slice(0, 12);
  const value = (r) => (total ? r.generation_intensity_g_per_kwh : r.intensity_g_per_kwh);
  state.historySeries = keys.map((key) => ({ key, points: withGaps(h.items.filter((x) => total || x.key === key)
    .map((r) => [Date.parse(r.bucket), value(r)])) }));
  chart("hist-chart").setOption({ tooltip: { trigger: "axis" }, legend: { top: 0, type: "scroll" },
    grid: { left: 60, right: 20, top: 40, bottom: 30 }, xAxis: { type: "time" },
    yAxis: { type: "value", name: "gCO₂/kWh", scale: true },
    // a lone point gets its symbol (a line needs two); a missing bucket breaks the line (no made-up values)
    series: [...state.historySeries.map(({ key, points }) => ({ name: key == null ? t("sys_intensity") : (historyLabel(key)),
      type: "line", connectNulls: false, showSymbol: points.filter((p) => p[1] !== null).length <= 2, data: points })),
    estimatedMarks(h.items.filter((r) => total || keys.includes(r.key)), (r) => Date.parse(r.bucket), value)] }, true);
  const columns = total
    ? [{ label: `${t("time")} ${zoneLabel()}`, sort: (r) => Date.parse(r.bucket), render: (r) => localTime(r.bucket) }, { label: `${t("gen_carbon")} (tCO₂)`, num: true, render: (r) => num(r.generation_carbon_kg / 1000) },
      { label: `${t("loss_carbon")} (tCO₂)`, num: true, render: (r) => num(r.loss_carbon_kg / 1000, 2) },
      { label: `${t("sys_intensity")} (gCO₂/kWh)`, num: true, render: (r) => num(r.generation_intensity_g_per_kwh) }]
    : [{ label: `${t("time")} ${zoneLabel()}`, sort: (r) => Date.parse(r.bucket), render: (r) => localTime(r.bucket) },
      { label: t("element"), filter: true, render: (r) => historyLabel(r.key) },
      { label: `${t("energy")} (MWh)`, num: true, render: (r) => num(r.energy_kwh / 1000, 2) },
      { label: `${t("carbon_amount")} (tCO₂)`, num: true, render: (r) => num(r.carbon_kg / 1000, 2) },
      { label: `${t("intensity")} (gCO₂/kWh)`, num: true, render: (r) => num(r.intensity_g_per_kwh) }];
  put("hist-table", table(h.items.slice(0, 500), columns, null,
    { name: "history", rowAttrs: (r) => (isEstimated(r) ? { class: "estimated", title: t("estimated_buckets") } : {}) }));
};
$("hist-form").addEventListener("submit", (event) => { event.preventDefault(); PAGES.history(); });

// ---- Devices ------------------------------------------------------------------------------------------
const ROUTINE_COMMAND = "set_carbon_factor";
PAGES.devices = async () => {
  // routine factor downloads (one per electric-carbon meter and interval) are summed up, not listed
  const [d, commands, summary] = await Promise.all([api("/api/v1/devices?limit=100000"),
    api(`/api/v1/commands?${qs({ limit: 500, exclude_kind: ROUTINE_COMMAND })}`), api("/api/v1/commands/summary")]);
  const routine = summary.items.find((k) => k.kind === ROUTINE_COMMAND);
  $("dev-routine").textContent = routine ? `${t(ROUTINE_COMMAND)}: ${routine.count} (` +
    Object.entries(routine.by_status).map(([status, n]) => `${t(status)} ${n}`).join(", ") +
    `) · ${t("latest")} ${localTime(routine.last_created_at)} ${zoneLabel()}` : "";
  const online = d.items.filter((x) => x.status === "online").length;
  $("dev-summary").textContent = `${online} ${t("of")} ${d.total} ${t("devices_online")}`;
  $("dev-csv").href = "/api/v1/devices?format=csv";
  if (!$("dev-sync-all")) {  // remote maintenance: one time-sync command per meter and RTU with a clock
    const button = document.createElement("button");
    button.id = "dev-sync-all";
    button.addEventListener("click", async () => {
      const r = await api("/api/v1/commands/time-sync-all", { method: "POST" });
      $("dev-summary").textContent = `${r.queued} ${t("sync_all_queued")}`;
      state.pending = setTimeout(() => { state.pending = null; if (state.page === "devices") PAGES.devices(); }, 1500);
    });
    $("dev-csv").after(" ", button);
  }
  $("dev-sync-all").textContent = t("sync_all_clocks");
  const el = table(d.items, [{ label: t("device"), key: "id" }, { label: t("kind"), filter: true, render: (r) => tv("device_kind", r.kind) },
    { label: t("protocol"), key: "protocol", filter: true }, { label: t("bus"), key: "bus_id" },
    { label: t("status"), filter: true, render: (r) => elem("span", { class: `status-${r.status}` }, t(r.status)) },
    { label: `${t("last_seen")} ${zoneLabel()}`, render: (r) => localTime(r.last_seen) },
    { label: `${t("clock_offset")} (s)`, num: true, render: (r) => num(r.clock_offset_s, 2) },
    { label: t("actions"), render: (r) => ["time_sync", "read_now", "restart"].map((k) =>
      elem("button", { "data-device": r.id, "data-command": k }, t(k))) }]);
  el.addEventListener("click", async (event) => { // one listener for the rows of every page of the table
    const b = event.target.closest("button[data-command]");
    if (!b) return;
    await api(`/api/v1/devices/${encodeURIComponent(b.dataset.device)}/commands`, { method: "POST", body: JSON.stringify({ kind: b.dataset.command }) });
    PAGES.devices();
  });
  put("dev-table", el);
  put("dev-commands", table(commands.items, [{ label: `${t("created")} ${zoneLabel()}`, render: (r) => localTime(r.created_at) },
    { label: t("device"), key: "device_id" }, { label: t("kind"), filter: true, render: (r) => t(r.kind) },
    { label: t("status"), filter: true, render: (r) => t(r.status) }, { label: t("user"), key: "actor", filter: true }],
    null, { name: "commands" }));
};

// ---- Cameras: list, latest image, playback of stored images --------------------------------------------
// state.cam = { cameras, id, frames: [{ts, key, url}], index, timer, mode: "latest" | "playback" }
state.cam = { cameras: [], id: null, frames: [], index: 0, timer: null, mode: "latest" };
function zonedParts(date, zone) {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).formatToParts(date);
  return Object.fromEntries(parts.map((p) => [p.type, p.value]));
}
// "YYYY-MM-DDTHH:MM" in the center's zone <-> a Date (datetime-local inputs show the center's local time)
function toZonedInput(iso, zone) {
  const p = zonedParts(new Date(iso), zone);
  return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}`;
}
function fromZonedInput(text, zone) {
  const guess = new Date(`${text}:00Z`);
  const p = zonedParts(guess, zone);
  const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  return new Date(guess.getTime() - (asUtc - guess.getTime()));
}
function camStop() {
  if (state.cam.timer) clearInterval(state.cam.timer);
  state.cam.timer = null; $("cam-play").textContent = t("play"); $("cam-play").dataset.playing = "";
}
function camShowFrame(index) {
  const cam = state.cam, frame = cam.frames[index];
  if (!frame) return;
  cam.index = index; $("cam-slider").value = index;
  $("cam-image").src = frame.url;
  $("cam-ts").textContent = `${localTime(frame.ts)}:${new Date(frame.ts).toISOString().slice(17, 19)} ${zoneLabel()}`;
  $("cam-frame").textContent = `${index + 1} / ${cam.frames.length}`;
  $("cam-image").dataset.ts = frame.ts;
}
async function camLatest() {
  const cam = state.cam; camStop(); cam.mode = "latest";
  const row = cam.cameras.find((c) => c.id === cam.id);
  $("cam-mode").textContent = `· ${t("live_view")}`;
  $("cam-error").textContent = "";
  if (!row || !row.latest_key) { $("cam-image").removeAttribute("src"); $("cam-ts").textContent = "—"; return; }
  $("cam-image").src = `/api/v1/cameras/${encodeURIComponent(cam.id)}/latest?ts=${encodeURIComponent(row.latest_ts)}`;
  $("cam-image").dataset.ts = row.latest_ts;
  $("cam-ts").textContent = `${localTime(row.latest_ts)}:${new Date(row.latest_ts).toISOString().slice(17, 19)} ${zoneLabel()}`;
}
async function camPlayback() {
  const cam = state.cam; camStop(); cam.mode = "playback";
  $("cam-error").textContent = "";
  const start = fromZonedInput($("cam-start").value, state.zone), end = fromZonedInput($("cam-end").value, state.zone);
  let body;
  try {
    body = await api(`/api/v1/cameras/${encodeURIComponent(cam.id)}/images?${qs({ start: start.toISOString(),
      end: new Date(end.getTime() + 60000).toISOString(), limit: 100000 })}`);
  } catch (error) { $("cam-error").textContent = error.message; return; }
  cam.frames = body.items;
  $("cam-slider").max = Math.max(0, cam.frames.length - 1);
  $("cam-mode").textContent = `· ${t("playback")}`;
  if (!cam.frames.length) { $("cam-frame").textContent = "0 / 0"; $("cam-error").textContent = t("no_images"); return; }
  camShowFrame(0);
}
function camPlay() {
  const cam = state.cam;
  if (cam.timer) { camStop(); return; }
  if (!cam.frames.length) return;
  if (cam.index >= cam.frames.length - 1) camShowFrame(0);
  $("cam-play").textContent = t("pause"); $("cam-play").dataset.playing = "1";
  cam.timer = setInterval(() => {
    if (cam.index >= cam.frames.length - 1) { camStop(); return; }
    camShowFrame(cam.index + 1);
  }, 1000 / Number($("cam-speed").value));
}
async function camSelect(id) {
  const cam = state.cam; cam.id = id; cam.frames = []; $("cam-slider").max = 0; $("cam-frame").textContent = "0 / 0";
  const row = cam.cameras.find((c) => c.id === id) || {};
  $("cam-id").textContent = id; $("cam-title").textContent = row.bus_name ? `· ${row.bus_name}` : "";
  document.querySelectorAll("#cam-list tbody tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  const end = row.latest_ts || new Date().toISOString();
  $("cam-end").value = toZonedInput(end, state.zone);
  $("cam-start").value = toZonedInput(new Date(new Date(end).getTime() - 3600 * 1000).toISOString(), state.zone);
  await camLatest();
}
PAGES.cameras = async () => {
  const cam = state.cam; camStop();
  cam.cameras = (await api("/api/v1/cameras?limit=100000")).items;
  const el = table(cam.cameras, [{ label: t("camera"), key: "id" }, { label: t("plant"), render: (r) => r.bus_name || r.bus_id || "—" },
    { label: t("status"), render: (r) => elem("span", { class: `status-${r.status}` }, t(r.status || "unknown")) },
    { label: `${t("latest")} ${zoneLabel()}`, render: (r) => localTime(r.latest_ts) },
    { label: t("images_stored"), num: true, key: "images" }], (row) => camSelect(row.id),
    { name: "cameras", rowAttrs: (row) => ({ "data-id": row.id }) });
  put("cam-list", el);
  const keep = cam.cameras.some((c) => c.id === cam.id) ? cam.id : cam.cameras[0]?.id;
  if (keep) await camSelect(keep);
};
$("cam-latest").addEventListener("click", () => camLatest());
$("cam-load").addEventListener("click", () => camPlayback());
$("cam-play").addEventListener("click", () => camPlay());
$("cam-speed").addEventListener("change", () => { if (state.cam.timer) { camStop(); camPlay(); } });
$("cam-slider").addEventListener("input", () => { camStop(); camShowFrame(Number($("cam-slider").value)); });

// after every deferred script (topology.js, maintenance.js, ... add their pages to PAGES)
document.addEventListener("DOMContentLoaded", () => { applyLang(); start(); });
