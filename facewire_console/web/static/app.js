// facewire dashboard: the live view (server-sent events) and the threshold charts. No framework, no build step.
"use strict";

const MAX_ROWS = 200;

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function liveView() {
  const results = document.querySelector("#results tbody");
  if (!results) return;
  const nodeFilter = document.getElementById("filter-node");
  const personFilter = document.getElementById("filter-person");
  const badge = document.getElementById("connection");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  const shown = (data) =>
    (!nodeFilter.value || data.node === nodeFilter.value.trim()) &&
    (!personFilter.value || data.name === personFilter.value.trim());

  function addResult(data, atEnd) {
    const row = document.createElement("tr");
    row.className = data.style;
    row.dataset.node = data.node;
    row.dataset.name = data.name;
    row.dataset.seq = data.seq;
    [data.time, data.node, data.track ?? "-", data.seq, data.name, Number(data.score).toFixed(3)].forEach((t) =>
      cell(row, String(t)));
    row.hidden = !shown(data);
    if (atEnd) results.appendChild(row); else results.prepend(row);
    while (results.rows.length > MAX_ROWS) results.deleteRow(results.rows.length - 1);
  }

  function refilter() {
    for (const row of results.rows) row.hidden = !shown({ node: row.dataset.node, name: row.dataset.name });
  }
  nodeFilter.addEventListener("input", refilter);
  personFilter.addEventListener("input", refilter);

  function showNodes(nodes) {
    const body = document.querySelector("#nodes tbody");
    body.replaceChildren();
    for (const node of nodes) {
      const row = document.createElement("tr");
      row.className = "state-" + node.state;
      const fmt = (v) => (v === null || v === undefined ? "-" : Number(v).toFixed(1));
      [node.node, node.state, fmt(node.fps), fmt(node.faces_per_s), node.last_person || "-"].forEach((t) =>
        cell(row, t));
      body.appendChild(row);
    }
  }

  function addAlert(alert) {
    const list = document.getElementById("alerts");
    if (list.querySelector(`li[data-id="${CSS.escape(alert.id)}"]`)) return;
    const item = document.createElement("li");
    item.dataset.id = alert.id;
    const text = document.createElement("span");
    text.className = "red";
    text.textContent = alert.message + " ";
    const meta = document.createElement("small");
    meta.textContent = `${alert.node} · ${alert.time} `;
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/alerts/ack";
    for (const [name, value] of [["csrf", csrf], ["id", alert.id], ["back", "/"]]) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.appendChild(input);
    }
    const button = document.createElement("button");
    button.type = "submit";
    button.textContent = "Acknowledge";
    form.appendChild(button);
    item.append(text, meta, form);
    list.prepend(item);
  }

  const source = new EventSource("/events");
  source.addEventListener("open", () => { badge.textContent = "live"; badge.className = "badge online"; });
  source.addEventListener("error", () => { badge.textContent = "reconnecting…"; badge.className = "badge offline"; });
  source.addEventListener("snapshot", (event) => {
    const data = JSON.parse(event.data);
    results.replaceChildren();
    data.results.forEach((r) => addResult(r, true));
    showNodes(data.nodes);
    if (!data.connected) { badge.textContent = "broker disconnected"; badge.className = "badge offline"; }
  });
  source.addEventListener("result", (event) => {
    const data = JSON.parse(event.data);
    addResult(data, false);
    for (const row of document.querySelectorAll("#nodes tbody tr")) {
      if (row.cells[0].textContent === data.node) row.cells[4].textContent = data.name;
    }
  });
  source.addEventListener("alert", (event) => addAlert(JSON.parse(event.data)));
  source.addEventListener("nodes", (event) => showNodes(JSON.parse(event.data).nodes));
}

// A vertical bar at the label nearest the threshold in use (a bar dataset inside a line chart).
function thresholdBar(labels, current, height) {
  let best = 0;
  labels.forEach((x, i) => { if (Math.abs(x - current) < Math.abs(labels[best] - current)) best = i; });
  const data = labels.map((_, i) => (i === best && current !== null ? height : null));
  return { type: "bar", label: `threshold in use (${current})`, data, backgroundColor: "#111", barThickness: 2 };
}

function lineChart(id, title, xTitle, labels, datasets) {
  new Chart(document.getElementById(id), {
    type: "line",
    data: { labels, datasets: datasets.map((d) => ({ pointRadius: 0, borderWidth: 2, ...d })) },
    options: {
      animation: false, maintainAspectRatio: false,
      plugins: { title: { display: true, text: title } },
      scales: { x: { title: { display: true, text: xTitle }, ticks: { maxTicksLimit: 12 } } },
    },
  });
}

function thresholdCharts() {
  const holder = document.getElementById("stats-data");
  if (!holder || typeof Chart === "undefined") return;
  const stats = JSON.parse(holder.textContent);
  const current = JSON.parse(document.getElementById("threshold-data").textContent);
  const hist = stats.histogram || {};
  const centres = (hist.genuine || []).map((_, i) => +(hist.start + (i + 0.5) * hist.width).toFixed(3));
  const keep = centres.map((c) => c >= -0.2);
  const pick = (values) => (values || []).filter((_, i) => keep[i]);
  const share = (values) => {
    const sum = (values || []).reduce((a, b) => a + b, 0) || 1;
    return pick(values).map((v) => v / sum);
  };
  const shares = [share(hist.genuine), share(hist.impostor), share(hist.live)];
  const highest = Math.max(...shares.flat(), 0.01);
  lineChart("distributions", "score distributions (share of faces per 0.02 bin)", "cosine score", pick(centres), [
    { label: "genuine (enrolled, leave-one-out)", data: shares[0], borderColor: "#047857" },
    { label: "impostor (not enrolled)", data: shares[1], borderColor: "#b91c1c" },
    { label: "live", data: shares[2], borderColor: "#2563eb" },
    thresholdBar(pick(centres), current, highest),
  ]);
  const grid = stats.grid || [];
  const thresholds = grid.map((r) => r.threshold);
  const empty = grid.every((r) => r.far === null && r.frr === null);
  const title = empty ? "FAR / FRR by threshold: none yet (needs 2+ photos each of 2+ enrolled people)" : "FAR / FRR by threshold";
  lineChart("rates", title, "threshold", thresholds, [
    { label: "FAR", data: grid.map((r) => r.far), borderColor: "#b91c1c" },
    { label: "FRR", data: grid.map((r) => r.frr), borderColor: "#047857" },
    thresholdBar(thresholds, current, 1),
  ]);
}

document.addEventListener("DOMContentLoaded", () => { liveView(); thresholdCharts(); });
