// Maintenance page: collectors (status, last contact, configuration versions, outbox), a collector's
// configuration history (read a version, compare it with the one before, roll back to it), device clocks
// by offset with one-click sync and their offsets over time (the worst clocks as bars; a click on a bar or a
// row draws that device's measured offsets), electric-carbon meter checks, and what the site cameras keep.
// Uses app.js's api/elem/t/tv/table/put/localTime/zoneLabel/num at call time.
"use strict";
(() => {
  const mt = { collector: null, clock: null };
  const WORST_CLOCKS = 15;

  // a line diff (longest common subsequence): "  " same, "- " only in the older, "+ " only in the newer
  function lineDiff(older, newer) {
    const a = older.split("\n"), b = newer.split("\n");
    const common = Array.from({ length: a.length + 1 }, () => new Array(b.length + 1).fill(0));
    for (let i = a.length - 1; i >= 0; i -= 1) {
      for (let j = b.length - 1; j >= 0; j -= 1) {
        common[i][j] = a[i] === b[j] ? common[i + 1][j + 1] + 1 : Math.max(common[i + 1][j], common[i][j + 1]);
      }
    }
    const out = [];
    let i = 0, j = 0;
    while (i < a.length || j < b.length) {
      if (i < a.length && j < b.length && a[i] === b[j]) { out.push(["same", `  ${a[i]}`]); i += 1; j += 1; }
      else if (j < b.length && (i >= a.length || common[i][j + 1] >= common[i + 1][j])) { out.push(["added", `+ ${b[j]}`]); j += 1; }
      else { out.push(["removed", `- ${a[i]}`]); i += 1; }
    }
    return out;
  }

  const configText = async (id, version) =>
    (await api(`/api/v1/collectors/${encodeURIComponent(id)}/configs/${encodeURIComponent(version)}`)).text;

  function showText(title, lines) {
    $("mt-config-title").textContent = title;
    $("mt-config").replaceChildren(...lines.map(([kind, text]) => elem("div", { class: `diff-${kind}` }, text)));
  }

  async function showCollector(id) {
    mt.collector = id;
    const c = await api(`/api/v1/collectors/${encodeURIComponent(id)}`);
    $("mt-detail-title").textContent = `${c.id}${c.name ? ` · ${c.name}` : ""}`;
    const versions = c.configs;
    const actions = (row, k) => {
      const show = elem("button", { "data-show": row.version }, t("show_version"));
      show.addEventListener("click", async () => showText(`${t("version")} ${row.version}`,
        (await configText(id, row.version)).split("\n").map((line) => ["same", line])));
      const older = versions[k + 1];
      const compare = older ? elem("button", { "data-compare": row.version }, t("compare_previous")) : null;
      compare?.addEventListener("click", async () => {
        const [before, after] = await Promise.all([configText(id, older.version), configText(id, row.version)]);
        showText(`${t("version")} ${older.version} → ${row.version}`, lineDiff(before, after));
      });
      const back = k > 0 ? elem("button", { "data-rollback": row.version }, t("roll_back")) : null;
      back?.addEventListener("click", async () => {
        const r = await api(`/api/v1/collectors/${encodeURIComponent(id)}/config/${encodeURIComponent(row.version)}/rollback`, { method: "POST" });
        $("mt-config-title").textContent = `${t("rolled_back_to")} ${row.version}: ${t("version")} ${r.version} ${t(r.status)}`;
        await showCollector(id);
      });
      return [show, compare, back];
    };
    put("mt-versions", table(versions.map((v, k) => ({ ...v, k })), [
      { label: t("version"), key: "version" },
      { label: `${t("created")} ${zoneLabel()}`, render: (r) => localTime(r.created_at) },
      { label: t("user"), key: "actor" },
      { label: "SHA-256", render: (r) => (r.sha256 || "").slice(0, 12) },
      { label: t("actions"), render: (r) => actions(r, r.k) }], null, { key: "mt-versions" }));
  }

  async function syncClock(device) {
    await api(`/api/v1/devices/${encodeURIComponent(device)}/commands`, { method: "POST", body: JSON.stringify({ kind: "time_sync" }) });
    $("mt-clocks-note").textContent = `${device}: ${t("time_sync")} ${t("queued")}`;
  }

  // the worst clocks now, worst at the top; a click on a bar shows that device's offsets over time
  function drawWorstClocks(clocks) {
    const worst = clocks.slice(0, WORST_CLOCKS).reverse(); // a category axis draws its first value at the bottom
    const c = chart("mt-clock-worst");
    c.setOption({ title: { text: t("clock_worst"), textStyle: { fontSize: 13 } }, tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      grid: { left: 110, right: 30, top: 40, bottom: 30 }, xAxis: { type: "value", name: "s" },
      yAxis: { type: "category", data: worst.map((d) => d.id) },
      series: [{ name: `${t("clock_offset")} (s)`, type: "bar", data: worst.map((d) => d.clock_offset_s),
        itemStyle: { color: "#c2410c" } }] }, true);
    c.off("click");
    c.on("click", (p) => showClockSeries(p.name));
  }

  async function showClockSeries(device) {
    mt.clock = device;
    const body = await api(`/api/v1/devices/${encodeURIComponent(device)}/clock-offsets`);
    if (mt.clock !== device) return; // another device was chosen meanwhile
    const points = body.items.map((s) => [Date.parse(s.ts), s.offset_s]);
    const c = chart("mt-clock-series");
    c.setOption({ title: { text: `${t("clock_series")} · ${device}`, textStyle: { fontSize: 13 } },
      tooltip: { trigger: "axis", formatter: (ps) => ps.map((p) => `${esc(localTime(new Date(p.value[0]).toISOString()))}: ${esc(num(p.value[1], 3))} s`).join("<br>") },
      grid: { left: 60, right: 20, top: 56, bottom: 30 },
      xAxis: { type: "time", axisLabel: { formatter: (v) => localTime(new Date(v).toISOString(), false) } },
      yAxis: { type: "value", name: "s", scale: true },
      series: [{ name: `${t("clock_offset")} (s)`, type: "line", step: "end", showSymbol: true, data: points }] }, true);
    c.getDom().dataset.device = device;
    c.getDom().dataset.points = String(points.length);
  }

  PAGES.maintenance = async () => {
    const [collectors, devices, checks, cameras] = await Promise.all([api("/api/v1/collectors?limit=100000"),
      api("/api/v1/devices?limit=100000"), api("/api/v1/meter-checks/summary"), api("/api/v1/cameras?limit=100000")]);
    put("mt-collectors", table(collectors.items, [
      { label: t("collector"), key: "id" },
      { label: t("status"), filter: true, render: (r) => elem("span", { class: `status-${r.status}` }, t(r.status)) },
      { label: `${t("last_seen")} ${zoneLabel()}`, render: (r) => localTime(r.last_seen) },
      { label: t("config_running"), render: (r) => r.config_version ?? "—" },
      { label: t("config_pushed"), render: (r) => r.pushed_config_version ?? "—" },
      { label: t("outbox_pending"), num: true, render: (r) => r.outbox?.pending_readings ?? "—" },
      { label: t("dead_letters"), num: true, render: (r) => r.outbox?.dead_letters ?? "—" },
      { label: t("devices"), num: true, key: "devices" },
      { label: t("open_commands"), num: true, render: (r) => r.commands_queued + r.commands_sent },
    ], (row) => showCollector(row.id), { key: "mt-collectors", name: "collectors" }));
    if (mt.collector || collectors.items.length) await showCollector(mt.collector || collectors.items[0].id);

    const clocks = devices.items.filter((d) => d.clock_offset_s !== null && d.clock_offset_s !== undefined);
    clocks.sort((a, b) => Math.abs(b.clock_offset_s) - Math.abs(a.clock_offset_s));
    put("mt-clocks", table(clocks, [
      { label: t("device"), key: "id" },
      { label: t("kind"), filter: true, render: (r) => tv("device_kind", r.kind) },
      { label: `${t("clock_offset")} (s)`, num: true, sort: (r) => Math.abs(r.clock_offset_s), render: (r) => num(r.clock_offset_s, 2) },
      { label: `${t("last_seen")} ${zoneLabel()}`, render: (r) => localTime(r.last_seen) },
      { label: t("actions"), render: (r) => elem("button", { "data-sync": r.id }, t("time_sync")) },
    ], (row) => showClockSeries(row.id), { key: "mt-clocks", name: "clock-offsets" }));
    drawWorstClocks(clocks);
    const shown = clocks.some((d) => d.id === mt.clock) ? mt.clock : clocks[0]?.id;
    if (shown) await showClockSeries(shown);
    $("mt-clocks").onclick = (event) => { const b = event.target.closest("button[data-sync]"); if (b) syncClock(b.dataset.sync); };

    put("mt-checks", table(checks.items, [
      { label: t("device"), key: "device_id" },
      { label: t("status"), filter: true, render: (r) => t(r.latest_status) },
      { label: `${t("energy")} (kWh)`, num: true, render: (r) => String(r.energy_kwh) },
      { label: `${t("meter_shown")} (kg)`, num: true, render: (r) => String(r.shown_kg) },
      { label: `${t("platform_computed")} (kg)`, num: true, render: (r) => String(r.computed_kg) },
      { label: `${t("deviation")} (kg)`, num: true, render: (r) => String(r.deviation_kg) },
      { label: t("mismatched_checks"), num: true, render: (r) => `${r.mismatched_checks} / ${r.checks}` },
    ], null, { key: "mt-checks", name: "meter-checks" }));

    const images = cameras.items.reduce((sum, c) => sum + (c.images || 0), 0);
    $("mt-images").textContent = `${cameras.items.length} ${t("cameras")} · ${images} ${t("images_stored")}`;
  };
  window.cfMaintenance = { lineDiff, showClockSeries };
})();
