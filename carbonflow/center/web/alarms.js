// The alarm page, the header badge and live alarm updates. Server data is only ever set as text
// (textContent / text nodes), never as HTML. Uses app.js's $, t, api, localTime, state and PAGES.
"use strict";

(() => {
  const el = (tag, text, className) => {
    const node = document.createElement(tag);
    if (text != null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  };

  function badge(counts) {
    const b = $("alarm-badge");
    const n = counts?.active || 0;
    b.hidden = n === 0;
    b.textContent = `${t("alarms")} ${n}`;
    b.title = `${n} ${t("active_alarms")}, ${counts?.unacknowledged || 0} ${t("unacknowledged")}`;
    b.classList.toggle("critical", (counts?.critical || 0) > 0);
  }

  async function acknowledge(alarm) {
    const note = window.prompt(t("ack_note"), "");
    if (note === null) return;
    await api(`/api/v1/alarms/${alarm.id}/ack`, { method: "POST", body: JSON.stringify({ note }) });
    await render();
  }

  function row(alarm) {
    const tr = el("tr", null, `sev-${alarm.severity}`);
    tr.dataset.alarm = alarm.id;
    const cells = [
      t(alarm.severity), alarm.rule, `${alarm.subject.kind} ${alarm.subject.id}`, alarm.message,
      localTime(alarm.raised_at), alarm.cleared_at ? localTime(alarm.cleared_at) : "—",
    ];
    cells.forEach((text) => tr.appendChild(el("td", text)));
    const image = el("td");
    if (alarm.image) {
      const link = el("a", localTime(alarm.image.ts));
      link.href = alarm.image.url; link.target = "_blank"; link.rel = "noopener";
      image.appendChild(link);
    }
    tr.appendChild(image);
    const ack = el("td");
    if (alarm.acknowledged) {
      ack.appendChild(el("span", `✓ ${alarm.ack?.by ?? ""}`, "acked"));
      if (alarm.ack?.note) ack.title = alarm.ack.note;
    } else {
      const button = el("button", t("acknowledge"));
      button.type = "button";
      button.addEventListener("click", () => acknowledge(alarm));
      ack.appendChild(button);
    }
    tr.appendChild(ack);
    return tr;
  }

  async function render() {
    const body = await api(`/api/v1/alarms?state=${encodeURIComponent($("alarm-state").value)}`);
    badge(body.counts);
    const c = body.counts;
    $("alarm-counts").textContent = `${c.active} ${t("active_alarms")} · ${c.unacknowledged} ${t("unacknowledged")}`;
    const list = $("alarm-list");
    list.replaceChildren();
    if (!body.items.length) { list.appendChild(el("p", t("no_alarms"), "muted")); return; }
    const tableEl = el("table", null, "alarms");
    const head = el("tr");
    ["severity", "rule", "subject", "message", "raised_at", "cleared_at", "image", "acknowledged"]
      .forEach((key) => head.appendChild(el("th", t(key))));
    tableEl.appendChild(el("thead")).appendChild(head);
    const tbody = tableEl.appendChild(el("tbody"));
    body.items.forEach((alarm) => tbody.appendChild(row(alarm)));
    list.appendChild(tableEl);
  }

  PAGES.alarms = render;
  $("alarm-state").addEventListener("change", () => render());

  window.cfAlarms = {
    async start() { try { badge((await api("/api/v1/alarms?limit=1")).counts); } catch {} },
    onLive(message) {
      badge(message.counts);
      if (state.page === "alarms") render();
      else if (state.page === "overview") PAGES.overview();
    },
  };
})();
