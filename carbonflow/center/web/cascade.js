// The cascade page: this center's level and region, its upper and lower centers (last exchange, backlog,
// verification status) and the recent verifications with both sides' numbers next to each other.
// Drill down: each lower center's own UI (its page "cascade"); step up: the upper center's. Server data
// reaches the page only as text (app.js's elem / table). Uses app.js's $, t, api, qs, num, localTime,
// table, put and PAGES.
"use strict";

(() => {
  const statusCell = (status) => elem("span", { class: `cascade-${status}` }, t(`cs_${status}`));
  const link = (url, text, id) => elem("a", { href: `${url.replace(/\/$/, "")}/#cascade`, id, class: "cascade-link" }, text);
  // a center by its region's name where the topology names it ("Hefei (ah-hf)"), else by its id
  const regionOf = {};
  const centerName = (id) => {
    const path = regionOf[id];
    const name = path ? regionName(path) : path;
    return name && name !== path ? `${name} (${id})` : id;
  };
  const value = (v) => (v === null || v === undefined ? "—" : typeof v === "number" ? num(v, 6) : String(v));

  async function render() {
    let view;
    try {
      view = await api("/api/v1/cascade");
    } catch (error) {
      $("cas-center").textContent = t("no_cascade");
      $("cas-nav").replaceChildren();
      put("cas-peers", elem("p", { class: "muted" }, String(error.message || error)));
      put("cas-checks", elem("div"));
      return;
    }
    const center = view.center;
    for (const c of [center, ...view.peers]) regionOf[c.id] = c.region;
    $("cas-center").replaceChildren(
      `${t("this_center")}: ${centerName(center.id)} · ${t(center.level)} · ${t("region")} ${regionName(center.region)} (${center.region}) · ${t("self_check")} `,
      statusCell(view.self_check?.status || "pending"));
    const upper = view.peers.find((p) => p.direction === "upper");
    $("cas-nav").replaceChildren(...(upper ? [link(upper.url, `↑ ${t("step_up")}: ${centerName(upper.id)} · ${t(upper.level)}`, "cas-up")] : []));
    put("cas-peers", table(view.peers, [
      { label: t("center"), render: (p) => (p.direction === "lower" ? link(p.url, `↓ ${centerName(p.id)}`, `cas-down-${p.id}`) : centerName(p.id)) },
      { label: t("region"), render: (r) => regionName(r.region) },
      { label: t("level"), render: (p) => t(p.level) },
      { label: t("direction"), render: (p) => t(`dir_${p.direction}`) },
      { label: t("last_exchange"), render: (p) => (p.last_exchange_ts ? localTime(p.last_exchange_ts) : "—") },
      { label: t("backlog"), num: true, key: "backlog" },
      { label: t("refused"), num: true, key: "refused" },
      { label: t("verification"), render: (p) => statusCell(p.verification.status) },
      { label: t("last_verified"), render: (p) => (p.verification.last_verified_ts ? localTime(p.verification.last_verified_ts) : "—") },
      { label: t("mismatch_intervals"), num: true, render: (p) => p.verification.mismatches },
    ]));
    const newest = view.peers.map((p) => p.verification.last_verified_ts).filter(Boolean).sort().pop();
    const since = newest ? new Date(Date.parse(newest) - 3 * 3600 * 1000).toISOString() : null;
    const checks = (await api(`/api/v1/cascade/verifications?${qs({ since })}`)).items;
    // mismatches first, then the newest
    checks.sort((a, b) => (a.status === "mismatch") === (b.status === "mismatch") ? b.ts.localeCompare(a.ts) : a.status === "mismatch" ? -1 : 1);
    put("cas-checks", table(checks.slice(0, 200), [
      { label: t("time"), render: (c) => localTime(c.ts) },
      { label: t("center"), render: (c) => centerName(c.peer) },
      { label: t("judge"), render: (c) => centerName(c.judge) },
      { label: t("check"), key: "check" },
      { label: t("subject"), key: "subject" },
      { label: t("verification"), render: (c) => statusCell(c.status) },
      { label: t("expected"), num: true, render: (c) => value(c.expected) },
      { label: t("found"), num: true, render: (c) => value(c.found) },
      { label: t("tolerance"), num: true, render: (c) => value(c.tolerance) },
      { label: t("detail"), key: "detail" },
    ]));
  }

  PAGES.cascade = render;
})();
