// emgdx clinic: the live monitoring view (#/live).
//
// Pick a source (an LSL stream visible from the server, or one of a patient's stored
// recordings replayed in time), start a session (POST /api/v1/live/sessions) and follow it over
// its WebSocket: the last 5 s of signal as a min/max envelope on a canvas, smoothed class
// probabilities, the current state, QC flags, the event log and the per-window latency.
//
// The WebSocket cannot carry the bearer header, so the token is the socket's first message.
// A dropped socket is reopened with back-off while the session still exists; the server then
// sends its recent past again, so the view starts afresh at every "hello".

import { ApiError, api, breadcrumb, clearError, field, h, heading, num, onLeave, pct, showError, state, token, withBusy } from "./app.js";

const SHOW_S = 5; // seconds of signal on the canvas
const KEEP_S = 6; // seconds of signal kept for drawing
const MAX_EVENTS = 100;
const LATENCY_N = 20;
const TRACE = "#1d4ed8";
const BACKGROUND = "#fbfcfe";
const GRID = "#dfe4ea";
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];

// ------------------------------------------------------------------------------ the view

export async function liveView() {
  const { patients } = await api("/patients");
  const { sessions } = await api("/live/sessions");
  const monitorBox = h("div", { testid: "live-monitor-box" });
  const sessionsBox = h("div", { testid: "live-sessions" });
  let monitor = null;

  function follow(session) {
    monitor?.close();
    monitor = liveMonitor(session, { onStopped: refreshSessions });
    monitorBox.replaceChildren(monitor.element);
  }

  async function refreshSessions() {
    try {
      const { sessions: now } = await api("/live/sessions");
      sessionsBox.replaceChildren(sessionsTable(now, { follow, stop: stopSession }));
    } catch (err) {
      showError(err);
    }
  }

  async function stopSession(session) {
    clearError();
    try {
      await api(`/live/sessions/${session.id}`, { method: "DELETE" });
    } catch (err) {
      if (err.status !== 404) showError(err);
    }
    if (monitor?.sessionId === session.id) monitor.markStopped();
    await refreshSessions();
  }

  async function start(body, button) {
    clearError();
    try {
      const session = await withBusy(button, "Starting…", () => api("/live/sessions", { method: "POST", json: body }));
      follow(session);
      await refreshSessions();
    } catch (err) {
      showError(err);
    }
  }

  onLeave(() => monitor?.close());
  sessionsBox.replaceChildren(sessionsTable(sessions, { follow, stop: stopSession }));
  monitorBox.replaceChildren(h("p", { class: "muted", testid: "live-idle" }, "Start a session, or watch a running one."));

  return h(
    "div",
    { class: "view", testid: "live-view" },
    breadcrumb(["Live", null]),
    heading("Live monitoring", "An LSL stream from the bedside, or a stored recording replayed as if it were live."),
    h("div", { class: "live-sources" }, lslCard(start), replayCard(patients, start)),
    h("section", { class: "card", "aria-labelledby": "live-sessions-title" }, h("h2", { id: "live-sessions-title" }, "Sessions"), sessionsBox),
    monitorBox,
  );
}

function sessionsTable(sessions, { follow, stop }) {
  if (!sessions.length) return h("p", { class: "muted", testid: "live-sessions-empty" }, "No live session.");
  const rows = sessions.map((x) =>
    h(
      "tr",
      { testid: "live-session-row", "data-session-id": x.id },
      h("td", {}, x.source),
      h("td", {}, h("span", { class: `badge ${x.status === "running" ? "badge-ok" : "badge-neutral"}` }, x.status)),
      h("td", { class: "num" }, `${num(x.fs_hz)} Hz`),
      h(
        "td",
        {},
        h("div", { class: "actions" },
          h("button", { type: "button", class: "btn btn-quiet", testid: "live-watch", onclick: () => follow(x) }, "Watch"),
          h("button", { type: "button", class: "btn btn-quiet", testid: "live-session-stop", onclick: () => stop(x) }, x.status === "running" ? "Stop" : "Remove"),
        ),
      ),
    ),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h("table", { class: "data compact" }, h("thead", {}, h("tr", {}, ["Source", "Status", "Rate", ""].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)),
  );
}

/** LSL streams visible from the server, a Refresh button and Start. */
function lslCard(start) {
  const select = h("select", { testid: "live-streams", name: "stream" });
  const status = h("p", { class: "muted small", testid: "live-streams-status", "aria-live": "polite" });
  const refresh = h("button", { type: "button", class: "btn", testid: "live-refresh-streams" }, "Refresh");
  const startBtn = h("button", { type: "button", class: "btn btn-primary", testid: "live-start-lsl", disabled: true }, "Start");

  async function load() {
    clearError();
    status.textContent = "Looking for streams…";
    try {
      const { streams } = await withBusy(refresh, "Looking…", () => api("/live/streams"));
      const usable = streams.filter((x) => x.nominal_srate > 0);
      select.replaceChildren(
        ...usable.map((x) => h("option", { value: x.name }, `${x.name} · ${x.type || "?"} · ${x.channel_count} ch · ${num(x.nominal_srate)} Hz`)),
      );
      startBtn.disabled = usable.length === 0;
      status.textContent = usable.length
        ? `${usable.length} stream${usable.length === 1 ? "" : "s"} found.`
        : "No LSL stream with a fixed sampling rate is visible from the server.";
    } catch (err) {
      status.textContent = "The streams could not be listed.";
      showError(err);
    }
  }
  refresh.addEventListener("click", load);
  startBtn.addEventListener("click", () => {
    if (select.value) start({ source: `lsl:${select.value}` }, startBtn);
  });
  queueMicrotask(load);
  return h(
    "section",
    { class: "card", "aria-labelledby": "live-lsl-title" },
    h("h2", { id: "live-lsl-title" }, "LSL stream"),
    field("Stream", select),
    status,
    h("div", { class: "actions" }, refresh, startBtn),
  );
}

/** A patient (the current one first), one of its stored recordings, the speed, and Start. */
function replayCard(patients, start) {
  const patientSel = h(
    "select",
    { testid: "live-patient", name: "patient" },
    h("option", { value: "" }, "choose a patient"),
    [...patients].sort((a, b) => a.external_id.localeCompare(b.external_id)).map((p) => h("option", { value: p.id }, p.name ? `${p.external_id} · ${p.name}` : p.external_id)),
  );
  const recordingSel = h("select", { testid: "live-recording", name: "recording", disabled: true });
  const speed = h("input", { type: "number", min: 0.1, max: 50, step: "any", value: 1, testid: "live-speed", name: "speed" });
  const startBtn = h("button", { type: "button", class: "btn btn-primary", testid: "live-start-replay", disabled: true }, "Start replay");

  async function loadRecordings() {
    recordingSel.replaceChildren();
    recordingSel.disabled = true;
    startBtn.disabled = true;
    if (!patientSel.value) return;
    try {
      const patient = await api(`/patients/${patientSel.value}`);
      const lists = await Promise.all(patient.visits.map((v) => api(`/visits/${v.id}/recordings`).then((r) => [v, r.recordings])));
      const options = lists.flatMap(([v, recs]) => recs.map((r) => h("option", { value: r.id }, `${v.date} · ${r.name} · ${num(r.duration_s)} s`)));
      recordingSel.replaceChildren(...(options.length ? options : [h("option", { value: "" }, "no stored recording")]));
      recordingSel.disabled = !options.length;
      startBtn.disabled = !options.length;
    } catch (err) {
      showError(err);
    }
  }
  patientSel.addEventListener("change", loadRecordings);
  startBtn.addEventListener("click", () => {
    const value = Number(speed.value);
    if (!(value > 0 && value <= 50)) {
      showError(new ApiError(0, "The replay speed must be above 0 and at most 50."));
      return;
    }
    if (recordingSel.value) start({ recording_id: recordingSel.value, speed: value }, startBtn);
  });
  if (state.patientId && patients.some((p) => p.id === state.patientId)) {
    patientSel.value = state.patientId;
    queueMicrotask(loadRecordings);
  }
  return h(
    "section",
    { class: "card", "aria-labelledby": "live-replay-title" },
    h("h2", { id: "live-replay-title" }, "Replay a recording"),
    field("Patient", patientSel),
    field("Recording", recordingSel),
    field("Speed", speed, "1 = real time; up to 50× faster."),
    h("div", { class: "actions" }, startBtn),
  );
}

// ------------------------------------------------------------------------------ one session

/** The monitor panel of one session and its WebSocket. `close()` ends both. */
function liveMonitor(session, { onStopped }) {
  const classNames = session.class_names || state.classNames;
  const canvas = h("canvas", { class: "live-canvas", testid: "live-canvas", width: 960, height: 220, role: "img", "aria-label": "The last 5 seconds of signal" });
  const scale = h("span", { class: "live-scale", testid: "live-scale" }, "± — µV");
  const stateBadge = h("span", { class: "badge live-state", testid: "live-state", "data-state": "starting" }, "starting");
  const connection = h("span", { class: "muted small", testid: "live-connection", "aria-live": "polite" }, "connecting…");
  const qc = h("span", { testid: "live-qc" }, h("span", { class: "badge badge-neutral" }, "—"));
  const latency = h("span", { class: "small", testid: "live-latency" }, "—");
  const clock = h("span", { class: "small muted", testid: "live-clock" }, "t = 0.0 s");
  const events = h("ol", { class: "live-events", testid: "live-events", reversed: true });
  const stopBtn = h("button", { type: "button", class: "btn", testid: "live-stop" }, "Stop");
  const probRows = classNames.map((c) => {
    const fill = h("span", { class: `bar-fill cls-${c}` });
    const text = h("span", { class: "prob-text", testid: "live-prob-text" }, "—");
    return { c, fill, text, row: h("li", { class: "prob-row", testid: "live-prob-row", "data-class": c }, h("span", { class: "prob-label" }, c), h("span", { class: "bar" }, fill), text) };
  });

  const element = h(
    "section",
    { class: "card live-monitor", testid: "live-monitor", "data-session-id": session.id, "aria-labelledby": "live-monitor-title" },
    h(
      "div",
      { class: "card-head" },
      h("div", {}, h("h2", { id: "live-monitor-title" }, "Monitor"), h("p", { class: "muted small", testid: "live-source" }, session.source)),
      h("div", { class: "actions" }, connection, stopBtn),
    ),
    h(
      "div",
      { class: "live-status" },
      h("div", {}, h("div", { class: "muted small" }, "State"), stateBadge),
      h("div", {}, h("div", { class: "muted small" }, "Signal quality"), qc),
      h("div", {}, h("div", { class: "muted small" }, "Latency per window (p50 of the last 20)"), latency),
      h("div", {}, h("div", { class: "muted small" }, "Stream time"), clock),
    ),
    h("div", { class: "live-plot" }, canvas, h("div", { class: "live-axis small muted" }, scale, h("span", {}, "last 5 s"))),
    h(
      "div",
      { class: "live-bottom" },
      h("div", { class: "probs" }, h("h3", {}, "Smoothed probabilities"), h("ul", { class: "prob-list", testid: "live-probs" }, probRows.map((r) => r.row))),
      h("div", {}, h("h3", {}, "Events"), events),
    ),
  );

  // ---- client state, reset at every hello (the server resends its recent past)
  let chunks = []; // {t0, dt, min, max}
  let tEnd = 0;
  let latencies = [];
  let lastWindowState = "starting";
  let yScale = 0;
  let dirty = false;
  let frame = 0;
  let closed = false;
  let stopped = false;
  let ws = null;
  let attempt = 0;
  let retryTimer = 0;

  function reset() {
    chunks = [];
    tEnd = 0;
    latencies = [];
    lastWindowState = "starting";
    yScale = 0;
    events.replaceChildren();
    setState("starting");
    for (const r of probRows) {
      r.fill.style.width = "0%";
      r.text.textContent = "—";
    }
    latency.textContent = "—";
    requestDraw();
  }

  function setState(value) {
    stateBadge.textContent = value;
    stateBadge.dataset.state = value;
    const known = classNames.includes(value);
    stateBadge.className = `badge live-state ${known ? `cls-badge cls-${value}` : value === "uncertain" || value === "starting" ? "badge-neutral" : "badge-warn"}`;
  }

  function onSignal(m) {
    chunks.push({ t0: m.t0_s, dt: m.dt_s, min: m.min, max: m.max });
    tEnd = Math.max(tEnd, m.t0_s + m.min.length * m.dt_s);
    while (chunks.length && chunks[0].t0 + chunks[0].min.length * chunks[0].dt < tEnd - KEEP_S) chunks.shift();
    clock.textContent = `t = ${tEnd.toFixed(1)} s`;
    requestDraw();
  }

  function onWindow(m) {
    if (m.smoothed) {
      for (const r of probRows) {
        const p = m.smoothed[r.c];
        r.fill.style.width = `${((p ?? 0) * 100).toFixed(1)}%`;
        r.text.textContent = pct(p);
      }
    }
    lastWindowState = m.state;
    setState(m.state);
    const flags = m.qc_flags.length ? m.qc_flags.map((f) => h("span", { class: "badge badge-warn" }, f)) : [h("span", { class: "badge badge-ok" }, "ok")];
    if (m.line_freq_hz) flags.push(h("span", { class: "muted small" }, ` mains ${num(m.line_freq_hz)} Hz`));
    qc.replaceChildren(...flags);
    latencies.push(m.latency_ms);
    if (latencies.length > LATENCY_N) latencies.shift();
    const sorted = [...latencies].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    const p50 = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    latency.textContent = `${p50.toFixed(1)} ms`;
  }

  function onEvent(m) {
    if (m.kind === "stall") setState("stalled");
    else if (m.kind === "resume") setState(lastWindowState);
    else if (m.kind === "end") {
      setState("ended");
      connection.textContent = "stream ended";
    }
    const row = h(
      "li",
      { class: `live-event live-event-${m.kind}`, testid: "live-event-row", "data-kind": m.kind },
      h("span", { class: "live-event-time" }, `${Number(m.t_s).toFixed(2)} s`),
      h("span", { class: "badge badge-neutral" }, m.kind),
      h("span", {}, m.message),
    );
    events.prepend(row);
    while (events.children.length > MAX_EVENTS) events.lastElementChild.remove();
  }

  // ---- drawing
  function requestDraw() {
    dirty = true;
    if (!frame && !closed) frame = requestAnimationFrame(draw);
  }

  function draw() {
    frame = 0;
    if (!dirty) return;
    dirty = false;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(200, Math.round(canvas.clientWidth * ratio)) || canvas.width;
    const height = Math.max(100, Math.round(canvas.clientHeight * ratio)) || canvas.height;
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const g = canvas.getContext("2d");
    g.fillStyle = BACKGROUND;
    g.fillRect(0, 0, width, height);
    const t0 = tEnd - SHOW_S;
    const pxPerS = width / SHOW_S;
    // Per pixel column: the lowest and highest value that falls in it.
    const lo = new Float64Array(width).fill(Infinity);
    const hi = new Float64Array(width).fill(-Infinity);
    let peak = 0;
    for (const c of chunks) {
      for (let i = 0; i < c.min.length; i++) {
        if (c.min[i] === null || c.max[i] === null) continue;
        const x = Math.floor((c.t0 + i * c.dt - t0) * pxPerS);
        if (x < 0 || x >= width) continue;
        if (c.min[i] < lo[x]) lo[x] = c.min[i];
        if (c.max[i] > hi[x]) hi[x] = c.max[i];
        peak = Math.max(peak, Math.abs(c.min[i]), Math.abs(c.max[i]));
      }
    }
    // The scale grows at once and shrinks slowly (no jumping), on 1-2-5 steps.
    const wanted = niceCeil(Math.max(peak, 1));
    yScale = yScale === 0 || wanted > yScale ? wanted : Math.max(wanted, yScale * 0.98);
    const shown = niceCeil(yScale);
    scale.textContent = `± ${num(shown)} µV`;
    const y = (v) => height / 2 - (v / shown) * (height / 2 - 4);
    g.strokeStyle = GRID;
    g.lineWidth = 1;
    g.beginPath();
    g.moveTo(0, Math.round(height / 2) + 0.5);
    g.lineTo(width, Math.round(height / 2) + 0.5);
    for (let s = Math.ceil(t0); s <= tEnd; s++) {
      const x = Math.round((s - t0) * pxPerS) + 0.5;
      g.moveTo(x, 0);
      g.lineTo(x, height);
    }
    g.stroke();
    g.fillStyle = "#56606e";
    g.font = `${Math.round(11 * ratio)}px system-ui, sans-serif`;
    for (let s = Math.max(0, Math.ceil(t0)); s <= tEnd; s++) g.fillText(`${s} s`, (s - t0) * pxPerS + 3 * ratio, height - 4 * ratio);
    g.strokeStyle = TRACE;
    g.lineWidth = Math.max(1, ratio);
    g.beginPath();
    let drawn = 0;
    for (let x = 0; x < width; x++) {
      if (lo[x] === Infinity) continue;
      const top = y(hi[x]);
      const bottom = Math.max(y(lo[x]), top + 1);
      g.moveTo(x + 0.5, top);
      g.lineTo(x + 0.5, bottom);
      drawn++;
    }
    g.stroke();
    canvas.dataset.columns = String(drawn);
  }

  // ---- the socket
  function connect() {
    if (closed || stopped) return;
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${scheme}://${window.location.host}${session.ws_url}`);
    connection.textContent = attempt ? `reconnecting (try ${attempt + 1})…` : "connecting…";
    ws.addEventListener("open", () => ws.send(JSON.stringify({ token: token.get() })));
    ws.addEventListener("message", (event) => {
      let m;
      try {
        m = JSON.parse(event.data);
      } catch {
        return;
      }
      if (m.type === "hello") {
        attempt = 0;
        reset();
        connection.textContent = m.status === "ended" ? "stream ended" : "live";
        element.dataset.connected = "true";
      } else if (m.type === "signal") onSignal(m);
      else if (m.type === "window") onWindow(m);
      else if (m.type === "event") onEvent(m);
    });
    ws.addEventListener("close", (event) => {
      element.dataset.connected = "false";
      ws = null;
      if (closed) return;
      if (event.code === 4401) {
        connection.textContent = "not allowed";
        showError(new ApiError(401, "The live stream refused the token; sign in again."));
        return;
      }
      if (event.code === 4404 || (event.code === 1000 && event.reason === "session stopped")) {
        markStopped();
        return;
      }
      scheduleReconnect();
    });
  }

  async function scheduleReconnect() {
    const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
    attempt += 1;
    connection.textContent = `connection lost; retrying in ${(delay / 1000).toFixed(1)} s`;
    retryTimer = setTimeout(async () => {
      retryTimer = 0;
      if (closed || stopped) return;
      try {
        await api(`/live/sessions/${session.id}`);
      } catch (err) {
        if (err.status === 404) {
          markStopped();
          return;
        }
        if (err.status === 401) {
          showError(err);
          return;
        }
        scheduleReconnect(); // the server is away: keep trying
        return;
      }
      connect();
    }, delay);
  }

  function markStopped() {
    if (stopped) return;
    stopped = true;
    connection.textContent = "stopped";
    stopBtn.disabled = true;
    if (stateBadge.dataset.state !== "ended") setState("stopped");
    ws?.close(1000);
  }

  stopBtn.addEventListener("click", async () => {
    clearError();
    try {
      await withBusy(stopBtn, "Stopping…", () => api(`/live/sessions/${session.id}`, { method: "DELETE" }));
    } catch (err) {
      if (err.status !== 404) {
        showError(err);
        return;
      }
    }
    markStopped();
    onStopped?.();
  });

  function close() {
    closed = true;
    if (retryTimer) clearTimeout(retryTimer);
    if (frame) cancelAnimationFrame(frame);
    ws?.close(1000);
  }

  connect();
  requestDraw();
  return { element, close, markStopped, sessionId: session.id };
}

/** The smallest of 1, 2, 5 × 10^k that is at least `v`. */
function niceCeil(v) {
  const k = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) if (step * k >= v * 0.999) return step * k;
  return 10 * k;
}
