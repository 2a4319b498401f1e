// The operator's list of live calls, refreshed every second from /calls.json.
"use strict";

const token = new URLSearchParams(location.search).get("token");
const withToken = (path) => (token ? `${path}?token=${encodeURIComponent(token)}` : path);
const watchLink = (id) => `./?watch=${encodeURIComponent(id)}${token ? `&token=${encodeURIComponent(token)}` : ""}`;

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

async function refresh() {
  const response = await fetch(withToken("calls.json"));
  if (!response.ok) {
    document.getElementById("count").textContent = `refused: ${response.status} ${await response.text()}`;
    return;
  }
  const { calls } = await response.json();
  document.getElementById("count").textContent = `${calls.length} live`;
  const body = document.querySelector("#calls tbody");
  body.replaceChildren();
  for (const c of calls) {
    const row = document.createElement("tr");
    row.dataset.call = c.id;
    cell(row, c.id);
    cell(row, c.kind);
    cell(row, c.states.conversation || c.call);
    cell(row, `${c.duration_s.toFixed(1)} s`);
    cell(row, String(c.turns));
    const last = c.last_turn;
    const fmt = (v) => (v === null || v === undefined ? "–" : Math.round(v));
    cell(row, last ? `${fmt(last.total_ms)} / ${fmt(last.first_audio_ms)}` : "–");
    const link = document.createElement("a");
    link.href = watchLink(c.id);
    link.textContent = "watch";
    cell(row, "").appendChild(link);
    body.appendChild(row);
  }
}

refresh();
setInterval(() => refresh().catch(() => {}), 1000);
