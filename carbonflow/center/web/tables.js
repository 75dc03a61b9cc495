// Tables that scale: every table of the UI gets a search box, filters for its enumerations, sorting by any
// column (click its header; again to reverse), pages of TABLE_PAGE_ROWS rows and a CSV or XLSX export of
// what the search and filters left (all pages, as shown: the user's language and time zone).  A table's query,
// filters, sort and page survive a re-render of its page (a live update, a command sent).
// Uses app.js's elem/t at call time (classic scripts share one global scope).
"use strict";
const TABLE_PAGE_ROWS = 50;
const tableStates = {};

// what a cell shows, as text: for searching, filtering, sorting and the CSV
function cellText(column, row) {
  const value = column.render ? column.render(row) : row[column.key];
  const text = (v) => (v instanceof Node ? v.textContent : String(v ?? "—"));
  return Array.isArray(value) ? value.map(text).join(" ") : text(value);
}

function sortKey(column, row, shown) {
  if (column.sort) return column.sort(row);
  if (column.key && typeof row[column.key] === "number") return row[column.key];
  const number = Number(shown.replace(/[,\s\u00a0]/g, "")); // "1,234.5" as shown -> 1234.5
  return shown !== "" && shown !== "—" && Number.isFinite(number) ? number : shown;
}

const isEmpty = (v) => v === null || v === undefined || v === "—" || (typeof v === "number" && Number.isNaN(v));

function compareKeys(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

const csvField = (text) => (/[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text);

function downloadCsv(name, columns, rows) {
  const lines = [columns.map((c) => csvField(c.label)), ...rows.map((r) => r.texts.map(csvField))];
  const blob = new Blob(["\ufeff" + lines.map((l) => l.join(",")).join("\r\n")], { type: "text/csv;charset=utf-8" });
  const link = elem("a", { href: URL.createObjectURL(blob), download: `${name}.csv` });
  document.body.append(link); link.click(); link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

// the same rows as XLSX: the center turns the texts into a workbook (numbers as numbers, shown digits kept)
async function downloadXlsx(name, columns, rows, button) {
  button.disabled = true;
  try {
    const response = await fetch("/api/v1/exports/table", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, columns: columns.map((c) => c.label),
        rows: rows.map((r) => r.texts.map((x) => (x === "—" ? null : x))) }) });
    if (!response.ok) throw new Error((await response.json()).error || `HTTP ${response.status}`);
    const link = elem("a", { href: URL.createObjectURL(await response.blob()), download: `${name}.xlsx` });
    document.body.append(link); link.click(); link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  } catch (error) {
    button.title = String(error.message || error);
  } finally {
    button.disabled = false;
  }
}

// rows: objects; columns: [{label, key | render(row), num, filter (an enumeration: a select), sort(row)}];
// onClick(row): rows are clickable; options.key names the table's remembered state (default: its labels),
// options.name the CSV file, options.rowAttrs(row) the attributes of a row's <tr>.
function table(rows, columns, onClick, options = {}) {
  const key = options.key || columns.map((c) => c.label).join("|");
  const st = (tableStates[key] ||= { query: "", filters: {}, sort: null, desc: false, page: 0 });
  const all = rows.map((row) => ({ row, texts: columns.map((c) => cellText(c, row)) }));
  const body = elem("tbody");
  const info = elem("span", { class: "table-info" });
  const prev = elem("button", { class: "table-prev", title: t("previous_page") }, "‹");
  const next = elem("button", { class: "table-next", title: t("next_page") }, "›");
  const search = elem("input", { type: "search", class: "table-search", placeholder: t("search") });
  search.value = st.query;
  const filters = columns.map((c, i) => {
    if (!c.filter) return null;
    const values = [...new Set(all.map((r) => r.texts[i]))].sort((a, b) => a.localeCompare(b));
    const select = elem("select", { class: "table-filter", "data-column": i, title: c.label },
      elem("option", { value: "" }, `${c.label}: ${t("all")}`), values.map((v) => elem("option", { value: v }, v)));
    select.value = values.includes(st.filters[i]) ? st.filters[i] : "";
    select.addEventListener("change", () => { st.filters[i] = select.value; st.page = 0; render(); });
    return select;
  });
  const heads = columns.map((c, i) => {
    const th = elem("th", { class: `sortable ${c.num ? "num" : ""}`, "data-column": i }, c.label);
    th.addEventListener("click", () => {
      st.desc = st.sort === i ? !st.desc : false; st.sort = i; st.page = 0; render();
    });
    return th;
  });
  let shown = all;
  function visible() {
    const query = st.query.trim().toLowerCase();
    let out = all.filter((r) => (!query || r.texts.some((x) => x.toLowerCase().includes(query)))
      && columns.every((_, i) => !st.filters[i] || r.texts[i] === st.filters[i]));
    if (st.sort !== null && columns[st.sort]) {
      const c = columns[st.sort], sign = st.desc ? -1 : 1;
      const keyed = out.map((r) => ({ r, k: sortKey(c, r.row, r.texts[st.sort]) }));
      keyed.sort((a, b) => (isEmpty(a.k) || isEmpty(b.k) ? isEmpty(a.k) - isEmpty(b.k) // empty cells last
        : sign * compareKeys(a.k, b.k)));
      out = keyed.map((x) => x.r);
    }
    return out;
  }
  function render() {
    shown = visible();
    const pages = Math.max(1, Math.ceil(shown.length / TABLE_PAGE_ROWS));
    st.page = Math.min(Math.max(0, st.page), pages - 1);
    const first = st.page * TABLE_PAGE_ROWS;
    body.replaceChildren(...shown.slice(first, first + TABLE_PAGE_ROWS).map(({ row }) => {
      const tr = elem("tr", { class: onClick ? "clickable" : "", ...(options.rowAttrs?.(row) || {}) },
        columns.map((c) => elem("td", { class: c.num ? "num" : "" }, c.render ? c.render(row) : (row[c.key] ?? "—"))));
      if (onClick) tr.addEventListener("click", () => onClick(row));
      return tr;
    }));
    heads.forEach((th, i) => { th.dataset.sorted = st.sort === i ? (st.desc ? "desc" : "asc") : ""; });
    const range = shown.length ? `${first + 1}–${Math.min(first + TABLE_PAGE_ROWS, shown.length)}` : "0";
    info.textContent = `${range} / ${shown.length}` + (shown.length < all.length ? ` (${all.length} ${t("in_all")})` : "");
    prev.disabled = st.page === 0; next.disabled = st.page >= pages - 1;
  }
  search.addEventListener("input", () => { st.query = search.value; st.page = 0; render(); });
  prev.addEventListener("click", () => { st.page -= 1; render(); });
  next.addEventListener("click", () => { st.page += 1; render(); });
  const csv = elem("button", { class: "table-csv" }, t("export_csv"));
  csv.addEventListener("click", () => downloadCsv(options.name || "table", columns, shown));
  const xlsx = elem("button", { class: "table-xlsx" }, t("export_xlsx"));
  xlsx.addEventListener("click", () => downloadXlsx(options.name || "table", columns, shown, xlsx));
  render();
  const tools = elem("div", { class: "table-tools" }, search, filters, info, prev, next, csv, xlsx);
  return elem("div", { class: "cf-table" }, tools,
    elem("table", {}, elem("thead", {}, elem("tr", {}, heads)), body));
}
