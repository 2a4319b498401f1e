// The live view: talk to the agent (WS /browser) or watch a call read-only (WS /calls/{id}/watch).
// Everything shown comes from the gateway's "event" messages; the diagram is drawn by the
// gateway from the machines' tables (/diagram.svg) and the current state of each is highlighted.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const watching = params.get("watch");
const withToken = (path) => (token ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}` : path);
const $ = (id) => document.getElementById(id);

// What happened, for people and for tests (window.engineView).
const view = { events: [], acks: [], flushes: [], states: {}, callId: null, connected: false, closed: false };
window.engineView = view;

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = `status ${kind}`;
}

function seconds(t) {
  return `${Number(t).toFixed(3)}s`;
}

// ------------------------------------------------------------------ diagram

async function loadDiagram() {
  const response = await fetch("diagram.svg");
  $("diagram").innerHTML = await response.text();
  for (const [machine, state] of Object.entries(view.states)) highlight(machine, state);
}

function highlight(machine, state) {
  view.states[machine] = state;
  const svg = $("diagram").querySelector("svg");
  if (!svg) return;
  for (const node of svg.querySelectorAll(`.state[data-machine="${CSS.escape(machine)}"]`)) {
    node.classList.toggle("active", node.dataset.state === state);
  }
}

// ------------------------------------------------------------------ events

const lines = new Map(); // "user:<item>" / "assistant:<item>" -> <li>
const received = new Map(); // assistant item -> ms of audio received
const cut = new Set(); // assistant items interrupted

function line(kind, item) {
  const key = `${kind}:${item}`;
  let li = lines.get(key);
  if (!li) {
    li = document.createElement("li");
    li.className = kind;
    li.dataset.item = item || "";
    $("transcript").appendChild(li);
    lines.set(key, li);
  }
  return li;
}

function logState(text, t, cls) {
  const li = document.createElement("li");
  li.textContent = `${seconds(t)}  ${text}`;
  if (cls) li.className = cls;
  $("states").appendChild(li);
  li.scrollIntoView({ block: "nearest" });
}

function cell(row, text, code) {
  const td = document.createElement("td");
  if (code) {
    const c = document.createElement("code");
    c.textContent = text;
    td.appendChild(c);
  } else {
    td.textContent = text;
  }
  row.appendChild(td);
  return td;
}

const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)}`);

function onEvent(e) {
  view.events.push(e);
  switch (e.kind) {
    case "state":
      highlight(e.machine, e.new);
      logState(`${e.machine}: ${e.old ?? "–"} → ${e.new}`, e.t);
      break;
    case "gap":
      for (const [machine, state] of Object.entries(e.states)) highlight(machine, state);
      logState(`(${e.dropped} updates skipped: this view fell behind)`, 0, "error");
      break;
    case "user": {
      const li = line("user", e.item_id);
      li.textContent = e.text;
      li.classList.toggle("interim", !e.final);
      li.classList.toggle("final", e.final);
      break;
    }
    case "assistant": {
      if (cut.has(e.item_id)) break; // words of audio that was never played
      const li = line("assistant", e.item_id);
      li.textContent = e.text;
      li.classList.toggle("final", e.final);
      break;
    }
    case "interrupted": {
      cut.add(e.item_id);
      const li = lines.get(`assistant:${e.item_id}`);
      if (li) {
        const text = li.textContent;
        const total = received.get(e.item_id) || 0;
        const heard = total > 0 && e.played_ms !== null ? Math.min(1, e.played_ms / total) : 1;
        const keep = Math.round(text.length * heard);
        li.textContent = text.slice(0, keep);
        const rest = document.createElement("span");
        rest.className = "unheard";
        rest.textContent = text.slice(keep);
        li.appendChild(rest);
        const note = document.createElement("span");
        note.className = "cut-note";
        note.textContent = `(cut at ${ms(e.played_ms)} ms)`;
        li.appendChild(note);
        li.classList.add("cut");
      }
      logState(`interrupted: ${ms(e.played_ms)} ms of ${e.item_id} heard`, e.t);
      break;
    }
    case "tool_call": {
      const row = document.createElement("tr");
      row.id = `tool-${e.call_id}`;
      cell(row, e.name);
      cell(row, e.arguments, true);
      cell(row, "…", true);
      $("tools").tBodies[0].appendChild(row);
      break;
    }
    case "tool_result": {
      const row = document.getElementById(`tool-${e.call_id}`);
      if (row) {
        row.cells[2].firstChild.textContent = e.output;
        if (e.is_error) row.cells[2].classList.add("error");
      }
      break;
    }
    case "metrics": {
      const row = document.createElement("tr");
      for (const v of [e.turn, ms(e.first_audio_ms), ms(e.first_played_ms), ms(e.tools_ms), ms(e.total_ms)]) cell(row, String(v));
      $("latency").tBodies[0].appendChild(row);
      break;
    }
    case "reconnecting":
      setStatus(`reconnecting (attempt ${e.attempt})`, "reconnecting");
      logState(`reconnecting: attempt ${e.attempt} in ${e.delay}s`, e.t);
      break;
    case "reconnected":
      setStatus("reconnected", "live");
      logState(`reconnected (attempt ${e.attempt})`, e.t);
      break;
    case "error":
      logState(`error ${e.code}: ${e.message}`, e.t, "error");
      if (e.fatal) setStatus("failed", "error");
      break;
    case "closed":
      setStatus(`closed: ${e.reason}`, "closed");
      break;
  }
}

// ------------------------------------------------------------------ socket

let socket = null;
let player = null;
let audioContexts = [];
let flushRequested = null; // when the gateway's last flush arrived

function onHello(msg) {
  view.callId = msg.call_id;
  view.connected = true;
  $("call-id").textContent = msg.call_id;
  for (const [machine, state] of Object.entries(msg.states || {})) highlight(machine, state);
  setStatus(watching ? "watching" : "live", "live");
}

function onAudio(data) {
  const bytes = new Uint8Array(data);
  const n = bytes[0];
  const item = new TextDecoder().decode(bytes.subarray(1, 1 + n));
  const pcm = data.slice(1 + n);
  received.set(item, (received.get(item) || 0) + (pcm.byteLength / 2 / (player ? player.rate : 24000)) * 1000);
  if (player && !cut.has(item)) player.node.port.postMessage({ type: "audio", item, pcm }, [pcm]);
}

function connect(path, onOpen) {
  const url = new URL(withToken(path), location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  setStatus("connecting", "idle");
  socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  socket.onmessage = (m) => {
    if (typeof m.data !== "string") return onAudio(m.data);
    const msg = JSON.parse(m.data);
    if (msg.type === "hello") {
      onHello(msg);
      if (onOpen) onOpen(msg);
    } else if (msg.type === "event") onEvent(msg.event);
    else if (msg.type === "flush" && player) {
      flushRequested = performance.now();
      player.node.port.postMessage({ type: "flush", item: msg.item_id });
    }
  };
  socket.onclose = (e) => {
    view.closed = true;
    if (!$("status").classList.contains("closed")) setStatus(e.code === 1000 ? "call ended" : `disconnected (${e.code})`, "closed");
    stopAudio();
    $("talk").disabled = watching !== null;
    $("hangup").disabled = true;
  };
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(message);
}

async function startAudio(hello) {
  const out = new AudioContext({ sampleRate: hello.output_rate, latencyHint: "interactive" });
  await out.audioWorklet.addModule("static/player-worklet.js");
  const node = new AudioWorkletNode(out, "player", { outputChannelCount: [1] });
  node.connect(out.destination);
  node.port.onmessage = (e) => {
    const m = e.data;
    if (m.type === "played") {
      view.acks.push({ item: m.item, ms: m.ms, at: performance.now() });
      send(JSON.stringify({ type: "played", item_id: m.item, ms: m.ms }));
    } else if (m.type === "flushed") {
      view.flushes.push({ item: m.item, ms: m.ms, dropped_ms: m.dropped_ms, requested: flushRequested, at: performance.now() });
    }
  };
  player = { node, rate: hello.output_rate };
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
  });
  const mic = new AudioContext({ latencyHint: "interactive" });
  await mic.audioWorklet.addModule("static/mic-worklet.js");
  const capture = new AudioWorkletNode(mic, "mic-capture", { processorOptions: { targetRate: hello.input_rate } });
  capture.port.onmessage = (e) => send(e.data);
  const mute = mic.createGain();
  mute.gain.value = 0;
  mic.createMediaStreamSource(stream).connect(capture).connect(mute).connect(mic.destination);
  audioContexts = [out, mic];
  view.tracks = stream.getTracks();
  await Promise.all(audioContexts.map((c) => c.resume()));
}

function stopAudio() {
  for (const track of view.tracks || []) track.stop();
  for (const c of audioContexts) c.close().catch(() => {});
  audioContexts = [];
  player = null;
}

function talk() {
  $("talk").disabled = true;
  $("hangup").disabled = false;
  connect("browser", (hello) =>
    startAudio(hello).catch((err) => {
      logState(`audio unavailable: ${err.message}`, 0, "error");
      setStatus("no microphone", "error");
    }),
  );
}

$("talk").addEventListener("click", talk);
$("hangup").addEventListener("click", () => {
  send(JSON.stringify({ type: "hangup" }));
  $("hangup").disabled = true;
});

loadDiagram();
if (watching) {
  $("mode").textContent = `watching ${watching} (read-only)`;
  $("talk").hidden = true;
  $("hangup").hidden = true;
  connect(`calls/${encodeURIComponent(watching)}/watch`);
}
