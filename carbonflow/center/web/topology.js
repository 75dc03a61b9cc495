// Topology page: every bus at its x_km/y_km, shape by kind, colour by nodal intensity (or by region, with
// the regions named in the legend), branches as arrows in the flow direction; click for values and a 24 h
// history; a slider replays the last 24 h; find a bus by id or name.  Uses app.js's helpers at call time.
"use strict";

// time to interactive of the first render (performance marks; tests/test_web_topology.py reads the measure)
const TOPO_MARK = "cf-topology";
PAGES.topology = async () => {
  const timed = !state.topoTimed;
  if (timed) performance.mark(`${TOPO_MARK}-start`);
  state.topo = state.topo || await api("/api/v1/topology");
  const intervals = (await api("/api/v1/intervals?limit=100000")).items;
  state.intervals = intervals;
  $("topo-buses").replaceChildren(...state.topo.buses.map((b) => elem("option", { value: b.id }, b.name || b.id)));
  const slider = $("slider");
  slider.max = Math.max(0, intervals.length - 1); slider.value = slider.max;
  const c = chart("topo-chart");
  const interactive = timed ? new Promise((resolve) => c.on("finished", function done() { c.off("finished", done); resolve(); })) : null;
  await loadInterval(intervals.at(-1)?.ts);
  if (timed && state.result) { // drawn and clickable: the click handler is set with the first frame
    await interactive;
    state.topoTimed = true;
    performance.mark(`${TOPO_MARK}-interactive`);
    performance.measure(`${TOPO_MARK}-tti`, `${TOPO_MARK}-start`, `${TOPO_MARK}-interactive`);
  }
};
// group by region: nodes coloured by their region, the regions named in the legend (a click there hides one)
const REGION_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
$("topo-regions").addEventListener("change", () => { state.topoByRegion = $("topo-regions").checked; if (state.result) drawTopology(); });
$("slider").addEventListener("input", () => loadInterval(state.intervals[$("slider").value]?.ts));
// find a bus by id or name: its values shown, the node highlighted
$("topo-search").addEventListener("change", () => {
  const text = $("topo-search").value.trim().toLowerCase();
  const bus = state.topo?.buses.find((b) => b.id.toLowerCase() === text || (b.name || "").toLowerCase() === text)
    || state.topo?.buses.find((b) => b.id.toLowerCase().startsWith(text) || (b.name || "").toLowerCase().includes(text));
  $("topo-search").classList.toggle("not-found", !bus);
  if (!bus || !state.result) return;
  showBus(bus);
  const c = chart("topo-chart");
  c.dispatchAction({ type: "downplay", seriesIndex: 0 });
  c.dispatchAction({ type: "highlight", seriesIndex: 0, name: bus.id });
});

async function loadInterval(ts) {
  if (!ts) return;
  state.result = await api(`/api/v1/results?${qs({ ts })}`);
  $("slider-ts").textContent = `${localTime(ts)} ${zoneLabel()}`;
  drawTopology();
}

function drawTopology() {
  const topo = state.topo, result = state.result;
  const busResult = Object.fromEntries(result.buses.map((b) => [b.element_id, b]));
  const branchResult = Object.fromEntries(result.branches.map((b) => [b.element_id, b]));
  const maxP = Math.max(1, ...result.branches.map((b) => Math.abs(b.p_send_mw)));
  const symbol = { plant: "rect", substation: "circle", user: "triangle" };
  state.nodes = topo.buses.map((bus) => {
    const r = busResult[bus.id] || {};
    return { id: bus.id, intensity: r.intensity_g_per_kwh ?? null, color: colorOf(r.intensity_g_per_kwh) };
  });
  const byRegion = Boolean(state.topoByRegion);
  const regions = [...new Set(topo.buses.map((b) => b.region || ""))].sort();
  const regionColor = (path) => REGION_COLORS[regions.indexOf(path || "") % REGION_COLORS.length];
  const nodes = topo.buses.map((bus, k) => ({
    id: bus.id, name: bus.id, x: bus.x_km, y: -bus.y_km, value: state.nodes[k].intensity,
    symbol: symbol[bus.kind] || "circle", symbolSize: bus.kind === "plant" ? 16 : bus.kind === "user" ? 13 : 6 + bus.voltage_kv / 100,
    itemStyle: { color: byRegion ? regionColor(bus.region) : state.nodes[k].color, borderColor: "#334", borderWidth: 0.6 },
    ...(byRegion ? { category: regions.indexOf(bus.region || "") } : {}),
    label: { show: bus.kind !== "substation", position: "right", fontSize: 10 }, bus,
  }));
  $("topo-intensity-legend").classList.toggle("dimmed", byRegion);
  const edges = topo.branches.map((branch) => {
    const r = branchResult[branch.id] || {};
    const reverse = r.sending_bus && r.sending_bus === branch.to_bus;
    return { source: reverse ? branch.to_bus : branch.from_bus, target: reverse ? branch.from_bus : branch.to_bus,
      branch, result: r, symbol: ["none", r.sending_bus ? "arrow" : "none"], symbolSize: 7,
      lineStyle: { width: 0.8 + 6 * Math.abs(r.p_send_mw || 0) / maxP, color: colorOf(r.intensity_g_per_kwh), opacity: 0.85 } };
  });
  const categories = regions.map((path) => ({ name: regionName(path), itemStyle: { color: regionColor(path) } }));
  chart("topo-chart").setOption({
    animation: false, // interactive at the first frame (tests/test_web_topology.py: < 1.5 s)
    legend: byRegion ? [{ data: categories.map((c) => c.name), top: 4, left: 8, orient: "vertical", textStyle: { fontSize: 11 } }] : [],
    tooltip: { formatter: (p) => p.dataType === "edge"
      ? `${esc(p.data.branch.id)}: ${fmt(p.data.result.p_send_mw, "MW")} · ${fmt(p.data.result.intensity_g_per_kwh, "gCO₂/kWh")}`
      : `${esc(p.data.bus.id)} ${esc(p.data.bus.name)}<br>${esc(t("region"))}: ${esc(regionName(p.data.bus.region))}<br>`
        + `${esc(t("intensity"))}: ${fmt(p.data.value, "gCO₂/kWh")}` },
    // the whole canvas for the grid; labels that would overlap another are hidden (zoom in to see them)
    series: [{ type: "graph", layout: "none", roam: true, data: nodes, links: edges, emphasis: { focus: "adjacency" },
      edgeSymbol: ["none", "arrow"], left: byRegion ? 120 : 16, right: 48, top: 16, bottom: 16, labelLayout: { hideOverlap: true },
      ...(byRegion ? { categories } : {}) }],
  }, true);
  const c = chart("topo-chart");
  c.off("click");
  c.on("click", (p) => (p.dataType === "edge" ? showBranch(p.data.branch, p.data.result) : showBus(p.data.bus)));
  if (state.selected) (state.selected.kind === "bus" ? showBus(state.selected.item) : showBranch(state.selected.item, branchResult[state.selected.item.id]));
}
// pixel position of a bus on the topology canvas (the browser test clicks there)
state.busPixel = (id) => { const bus = state.topo.buses.find((b) => b.id === id);
  return chart("topo-chart").convertToPixel({ seriesIndex: 0 }, [bus.x_km, -bus.y_km]); };

// a <dl> of [term, value, attributes of the <dd>] rows
const details = (rows) => elem("dl", {}, rows.map(([term, value, attrs]) => [elem("dt", {}, term), elem("dd", attrs || {}, value)]));

async function showBus(bus) {
  state.selected = { kind: "bus", item: bus };
  const r = state.result.buses.find((b) => b.element_id === bus.id) || {};
  $("topo-info").replaceChildren(elem("h3", {}, t("bus"), " ", elem("span", { id: "info-id" }, bus.id)),
    elem("p", {}, bus.name || ""),
    details([[t("kind"), tv("bus_kind", bus.kind)], [t("region"), regionName(bus.region)], [t("voltage"), fmt(bus.voltage_kv, "kV", 0)],
      [t("intensity"), pm(r.intensity_g_per_kwh, r.intensity_band_g_per_kwh, "gCO₂/kWh"),
        { id: "info-intensity", "data-value": r.intensity_g_per_kwh ?? "" }],
      [t("flux"), fmt(r.flux_mw, "MW")], [t("load"), fmt(r.load_mw, "MW")],
      [t("load_carbon_rate"), fmt(r.load_carbon_t_per_h, "tCO₂/h", 2)]]),
    elem("h4", {}, `${t("history_of")} · ${t("intensity")}`), elem("div", { id: "info-chart", class: "chart" }));
  infoChart("bus", bus.id);
}
function showBranch(branch, r = {}) {
  state.selected = { kind: "branch", item: branch };
  $("topo-info").replaceChildren(elem("h3", {}, t("branch"), " ", elem("span", { id: "info-id" }, branch.id)),
    details([[t("kind"), tv("branch_kind", branch.kind)], [t("sending_bus"), r.sending_bus ?? "—"], [t("p_send"), fmt(r.p_send_mw, "MW")],
      [t("density"), fmt(r.intensity_g_per_kwh, "gCO₂/kWh"), { id: "info-intensity", "data-value": r.intensity_g_per_kwh ?? "" }],
      [t("carbon_flow"), fmt(r.carbon_send_t_per_h, "tCO₂/h", 2)], [t("loss_carbon"), fmt(r.loss_carbon_t_per_h, "tCO₂/h", 3)]]),
    elem("h4", {}, `${t("history_of")} · ${t("density")}`), elem("div", { id: "info-chart", class: "chart" }));
  infoChart("branch", branch.id);
}
async function infoChart(kind, id) {
  const h = await api(`/api/v1/history?${qs({ kind, element: id, bucket: "15min" })}`);
  delete state.charts["info-chart"];
  chart("info-chart").setOption({ tooltip: { trigger: "axis" }, grid: { left: 50, right: 10, top: 20, bottom: 30 },
    xAxis: { type: "category", data: h.items.map((r) => localTime(r.bucket, false)) },
    yAxis: { type: "value", name: "gCO₂/kWh", scale: true },
    series: [{ type: "line", showSymbol: false, data: h.items.map((r) => r.intensity_g_per_kwh) },
      estimatedMarks(h.items, (r) => localTime(r.bucket, false), (r) => r.intensity_g_per_kwh)] });
}

