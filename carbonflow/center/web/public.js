// The public disclosure page: plain DOM with text nodes only (no innerHTML with server data).
"use strict";

const API = "/api/v1/public";
const WITHHELD = "withheld (too few users)";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmt(value) {
  return value === null || value === undefined ? "-" : Number(value).toLocaleString("en", { maximumFractionDigits: 1 });
}

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || "HTTP " + response.status);
  return body;
}

function query() {
  const start = document.getElementById("start").value.trim();
  if (!start) return "";
  const period = document.getElementById("period").value;
  return "?period=" + encodeURIComponent(period) + "&start=" + encodeURIComponent(start);
}

function regionLine(item) {
  const line = el("div", undefined, "region");
  line.dataset.region = item.region;
  line.appendChild(el("span", item.region, "name"));
  if (item.suppressed) {
    line.appendChild(el("span", WITHHELD, "muted"));
  } else {
    line.appendChild(el("span", fmt(item.intensity_g_per_kwh) + " g/kWh"));
    line.appendChild(el("span", fmt(item.carbon_t) + " t"));
    line.appendChild(el("span", fmt(item.energy_mwh) + " MWh"));
    line.appendChild(el("span", item.users + " users", "muted"));
  }
  return line;
}

function renderRegions(items) {
  const root = document.getElementById("regions");
  root.replaceChildren();
  const lists = new Map([[null, root]]);
  for (const item of items.slice().sort((a, b) => a.depth - b.depth || a.region.localeCompare(b.region))) {
    const parent = lists.get(item.parent ?? null) || root;
    const li = el("li");
    li.appendChild(regionLine(item));
    const children = el("ul");
    li.appendChild(children);
    lists.set(item.region, children);
    parent.appendChild(li);
  }
}

function renderTable(id, items, cells) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const item of items) {
    const row = el("tr");
    for (const value of cells(item)) row.appendChild(el("td", value));
    body.appendChild(row);
  }
}

async function renderReleases() {
  const list = document.getElementById("releases");
  list.replaceChildren();
  const body = await getJson(API + "/releases");
  for (const release of body.items) {
    const li = el("li", "v" + release.id + " - " + release.period + " " + release.start + " - " + release.created_at + " ");
    const link = el("a", "download");
    link.href = API + "/releases/" + encodeURIComponent(release.id) + "?download=true";
    li.appendChild(link);
    list.appendChild(li);
  }
  if (!body.items.length) list.appendChild(el("li", "no release published yet", "muted"));
}

async function load() {
  const error = document.getElementById("error");
  error.textContent = "";
  try {
    const q = query();
    const [regions, industries, keyUsers] = await Promise.all([
      getJson(API + "/regions" + q), getJson(API + "/industries" + q), getJson(API + "/key-users" + q),
    ]);
    document.getElementById("start").value = regions.start;
    document.getElementById("period").value = regions.period;
    document.getElementById("meta").textContent =
      regions.period + " " + regions.start + " - " + regions.intervals + " intervals - data version " +
      regions.data_version.slice(0, 12) + " - threshold " + regions.min_users + " users";
    renderRegions(regions.items);
    renderTable("industries", industries.items, (i) => i.suppressed
      ? [i.industry, WITHHELD, "", "", ""]
      : [i.industry, i.users, fmt(i.energy_mwh), fmt(i.carbon_t), fmt(i.intensity_g_per_kwh)]);
    renderTable("key-users", keyUsers.items, (u) =>
      [u.name || u.id, u.region, fmt(u.energy_mwh), fmt(u.carbon_t), fmt(u.intensity_g_per_kwh)]);
    await renderReleases();
  } catch (problem) {
    error.textContent = problem.message;
  }
}

document.getElementById("period-form").addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
load();
