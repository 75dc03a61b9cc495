// The analysis page: one period's carbon by a dimension, ranked, with month-on-month and year-on-year
// changes, and chosen groups side by side (GET /api/v1/analysis). Energy-weighted by the server; server
// data reaches the page only as text (app.js's elem / table). Uses app.js's $, t, api, qs, num, chart,
// table, put and PAGES.
"use strict";

(() => {
  const pct = (value) => (value === null || value === undefined ? "—" : `${value > 0 ? "+" : ""}${num(value, 1)} %`);
  const label = (dimension, key) => {
    if (key === null || key === undefined) return "—";
    if (dimension === "voltage") return `${key} kV`;
    if (dimension === "fuel" || dimension === "industry") return tv(dimension, key);
    if (dimension === "region") return regionName(key);
    return String(key);
  };

  function startFor(period) {
    const value = $("ana-start").value.trim();
    const pattern = { day: /^\d{4}-\d{2}-\d{2}$/, month: /^\d{4}-\d{2}$/, year: /^\d{4}$/ }[period];
    return pattern.test(value) ? value : null; // empty or another period's form: the server's default month
  }

  async function render() {
    const dimension = $("ana-dimension").value;
    const period = $("ana-period").value;
    const start = startFor(period);
    const params = { dimension, period: start ? period : null, start, order: $("ana-order").value,
      keys: $("ana-keys").value.trim(), region_depth: dimension === "region" ? $("ana-depth").value : null };
    $("ana-error").textContent = "";
    let body;
    try {
      body = await api(`/api/v1/analysis?${qs(params)}`);
    } catch (error) {
      $("ana-error").textContent = String(error.message || error);
      $("ana-summary").textContent = "";
      chart("ana-chart").clear();
      put("ana-table", elem("p", { class: "muted" }, "—"));
      return;
    }
    if (!start) $("ana-start").value = body.start;
    const total = body.total;
    $("ana-summary").textContent = `${t(`b_${body.period}`)} ${body.start} · ${t(body.side)} · ${t("energy")} ${num(total.energy_kwh / 1000, 1)} MWh · `
      + `${t("carbon_amount")} ${num(total.carbon_t, 2)} tCO₂ · ${num(total.intensity_g_per_kwh, 1)} gCO₂/kWh · `
      + `${t("mom")} ${pct(total.mom_carbon_pct)} · ${t("yoy")} ${pct(total.yoy_carbon_pct)}`;
    const items = body.items;
    chart("ana-chart").setOption({ tooltip: { trigger: "axis" }, legend: { top: 0 },
      grid: { left: 60, right: 60, top: 40, bottom: 60 },
      xAxis: { type: "category", data: items.map((i) => label(dimension, i.key)), axisLabel: { rotate: 20 } },
      yAxis: [{ type: "value", name: "tCO₂" }, { type: "value", name: "gCO₂/kWh" }],
      series: [
        { type: "bar", name: body.start, data: items.map((i) => i.carbon_t) },
        { type: "bar", name: body.previous_start, data: items.map((i) => i.previous?.carbon_t ?? null) },
        { type: "bar", name: body.year_ago_start, data: items.map((i) => i.year_ago?.carbon_t ?? null) },
        { type: "line", name: "gCO₂/kWh", yAxisIndex: 1, data: items.map((i) => i.intensity_g_per_kwh) },
      ] }, true);
    put("ana-table", table(items, [
      { label: "#", num: true, key: "rank" },
      { label: t(`dim_${dimension}`), render: (r) => label(dimension, r.key) },
      { label: `${t("energy")} (MWh)`, num: true, render: (r) => num(r.energy_kwh / 1000, 1) },
      { label: `${t("carbon_amount")} (tCO₂)`, num: true, render: (r) => num(r.carbon_t, 2) },
      { label: `${t("intensity_short")} (gCO₂/kWh)`, num: true, render: (r) => num(r.intensity_g_per_kwh, 1) },
      { label: t("share"), num: true, render: (r) => (r.share_of_carbon == null ? "—" : `${num(100 * r.share_of_carbon, 1)} %`) },
      { label: `${t("mom")} (tCO₂)`, num: true, render: (r) => pct(r.mom_carbon_pct) },
      { label: `${t("mom")} (gCO₂/kWh)`, num: true, render: (r) => pct(r.mom_intensity_pct) },
      { label: `${t("yoy")} (tCO₂)`, num: true, render: (r) => pct(r.yoy_carbon_pct) },
      { label: `${t("yoy")} (gCO₂/kWh)`, num: true, render: (r) => pct(r.yoy_intensity_pct) },
    ]));
  }

  PAGES.analysis = render;
  $("ana-form").addEventListener("submit", (event) => { event.preventDefault(); show("analysis"); });
})();
