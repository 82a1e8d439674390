// emgdx clinic: a small single-page app over the /api/v1 JSON API of the clinic service.
//
// No framework and no build step. Views are drawn from the hash route, so the back button works:
//   #/patients         patients: list, search, create
//   #/patients/<id>    one patient: visits, new visit, timeline
//   #/visits/<id>      one visit: upload, recordings, analysis and its result
//   #/live             live monitoring of an LSL stream or a replayed recording (live.js)
//
// Every API call carries the clinic's bearer token (kept in sessionStorage, for this tab only).
// Images and reports need the token too, so they are fetched and shown through blob: URLs.

import { liveView } from "./live.js";

const API = "/api/v1";
const TOKEN_KEY = "emgdx.clinic.token";

/** What the page learnt from /health and /me. */
export const state = { classNames: [], model: null, clinic: null, limits: null, patientId: null };

/** Things to undo when the view changes (a live view's socket and timers). */
let leaveHandlers = [];

/** Run `fn` when the current view is left (another route, or sign-out). */
export function onLeave(fn) {
  leaveHandlers.push(fn);
}

function leaveView() {
  const handlers = leaveHandlers;
  leaveHandlers = [];
  for (const fn of handlers) {
    try {
      fn();
    } catch (err) {
      console.warn("leaving the view:", err);
    }
  }
}

// ------------------------------------------------------------------------------ DOM helpers

/**
 * Create an element. `attrs`: "class", "testid" (-> data-testid), "onX" listeners, booleans
 * (true -> empty attribute, false/null -> left out), anything else -> attribute.
 * Children: nodes, strings (inserted as text, never as HTML) or nested arrays; null is skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    // Through CSSOM, which the page's Content-Security-Policy allows (a style attribute would not be).
    else if (key === "style") el.style.cssText = value;
    else if (key === "testid") el.dataset.testid = value;
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

let fieldCount = 0;

/** A labelled form field: <div class="field"><label for=...>text</label>input hint</div>. */
export function field(labelText, input, hint = null) {
  if (!input.id) input.id = `field-${++fieldCount}`;
  const hintEl = hint ? h("small", { class: "hint", id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: input.id }, labelText), input, hintEl);
}

/**
 * A small table: `head` is a list of column titles (a string, or `[title, "num"]` for a
 * right-aligned numeric column), `rows` a list of <tr>.
 */
function table(attrs, head, rows, caption = null) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, head.map(headCell))),
      h("tbody", {}, rows),
    ),
  );
}

function headCell(item) {
  const [title, cls] = Array.isArray(item) ? item : [item, null];
  return h("th", { scope: "col", class: cls }, title);
}

/** Disable `button` and show `busyText` while `work()` runs; restore it afterwards. */
export async function withBusy(button, busyText, work) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.classList.add("is-busy");
  button.replaceChildren(h("span", { class: "spinner", "aria-hidden": "true" }), busyText);
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.classList.remove("is-busy");
    button.textContent = label;
  }
}

// ------------------------------------------------------------------------------ formatting

function titleCase(text) {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
}

/** A probability in [0, 1] as a percentage. */
export function pct(p) {
  if (p === null || p === undefined || Number.isNaN(p)) return "—";
  if (p > 0 && p < 0.005) return "<1 %";
  return `${Math.round(p * 100)} %`;
}

/** A number with about three significant digits. */
export function num(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const v = Number(value);
  if (v === 0) return "0";
  if (Math.abs(v) >= 1000) return v.toFixed(0);
  return String(Number(v.toPrecision(3)));
}

function withUnit(value, unit) {
  const text = num(value);
  return unit && text !== "—" ? `${text} ${unit}` : text;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function dateTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function today() {
  const d = new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** Class names in the model's order, then any others found in `probs`. */
function classOrder(probs) {
  const names = [...state.classNames];
  for (const name of Object.keys(probs || {})) if (!names.includes(name)) names.push(name);
  return names.filter((name) => probs && name in probs);
}

// ------------------------------------------------------------------------------ token

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

function authHeaders() {
  const t = token.get();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

// ------------------------------------------------------------------------------ API access

/** An error answered by the API (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(status, message, requestId = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.requestId = requestId;
  }
}

/** The human message of an error body: a string, or FastAPI's list of validation errors. */
function formatDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        const where = (item.loc || []).filter((part) => part !== "body").join(".");
        return where ? `${where}: ${item.msg}` : item.msg;
      })
      .join("; ");
  }
  return detail ? JSON.stringify(detail) : null;
}

/** Build an ApiError from a response body text (JSON `{detail, request_id}` if possible). */
function errorFromBody(status, statusText, text) {
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: fall back on the status line
  }
  const message = formatDetail(body?.detail) || `${status} ${statusText || "error"}`.trim();
  return new ApiError(status, message, body?.request_id ?? null);
}

async function errorFromResponse(res) {
  return errorFromBody(res.status, res.statusText, await res.text().catch(() => ""));
}

/**
 * The full path of an API resource. `path` is either relative to /api/v1 ("/patients") or an
 * API path as the server gives it ("/api/v1/figures/x.png"). The token is only ever sent to
 * this page's own origin.
 */
function apiUrl(path) {
  const full = path.startsWith(`${API}/`) ? path : `${API}${path}`;
  const url = new URL(full, window.location.origin);
  if (url.origin !== window.location.origin) throw new ApiError(0, `refusing to send the token to ${url.origin}`);
  return url.pathname + url.search;
}

async function send(path, init = {}) {
  let res;
  try {
    res = await fetch(apiUrl(path), { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
  } catch (err) {
    throw new ApiError(0, `The server could not be reached (${err.message}).`);
  }
  if (!res.ok) throw await errorFromResponse(res);
  return res;
}

/** Call a JSON endpoint; `json` is sent as the request body. */
export async function api(path, { method = "GET", json } = {}) {
  const init = { method };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers = { "Content-Type": "application/json" };
  }
  const res = await send(path, init);
  return res.status === 204 ? null : res.json();
}

async function fetchBlob(path) {
  return (await send(path)).blob();
}

/** Upload a multipart form with XMLHttpRequest, to report real progress (0..1). */
function uploadWithProgress(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl(path));
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    };
    xhr.upload.onload = () => onProgress(1);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch {
          reject(new ApiError(xhr.status, "The server's answer to the upload was not JSON."));
        }
      } else {
        reject(errorFromBody(xhr.status, xhr.statusText, xhr.responseText));
      }
    };
    xhr.onerror = () =>
      reject(new ApiError(0, "The upload failed: the connection was closed (is a file too large?)."));
    xhr.onabort = () => reject(new ApiError(0, "The upload was cancelled."));
    xhr.send(formData);
  });
}

// ------------------------------------------------------------------------------ blob URLs

/** Object URLs made for the current view, revoked when the view changes. */
let viewUrls = [];

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  viewUrls.push(url);
  return url;
}

function revokeViewUrls() {
  for (const url of viewUrls) URL.revokeObjectURL(url);
  viewUrls = [];
}

/** An <img> whose PNG is fetched with the token; replaced by a message if that fails. */
function authImage(path, alt, attrs = {}) {
  const img = h("img", { alt, class: "auth-img", "aria-busy": "true", ...attrs });
  fetchBlob(path)
    .then((blob) => {
      img.src = objectUrl(blob);
      img.removeAttribute("aria-busy");
    })
    .catch((err) => {
      img.replaceWith(h("p", { class: "img-error" }, `Could not load “${alt}”: ${err.message}`));
      showError(err);
    });
  return img;
}

// ------------------------------------------------------------------------------ error banner

export function showError(err) {
  const banner = document.getElementById("error-banner");
  document.getElementById("error-message").textContent = err?.message || String(err);
  const rid = err?.requestId;
  document.getElementById("error-request-id").textContent = rid ? `(request ${rid})` : "";
  banner.hidden = false;
  if (err?.status === 401) signOut({ keepError: true });
}

export function clearError() {
  document.getElementById("error-banner").hidden = true;
}

// ------------------------------------------------------------------------------ session

function showLogin() {
  document.getElementById("login").hidden = false;
  document.getElementById("page").replaceChildren();
  document.getElementById("session").hidden = true;
  document.getElementById("token-input").focus();
}

function showSession() {
  document.getElementById("login").hidden = true;
  document.getElementById("session").hidden = false;
  document.getElementById("clinic-name").textContent = state.clinic?.name ?? "";
}

/** Check the token with /me; on success show the clinic and draw the current route. */
async function signIn() {
  try {
    const me = await api("/me");
    state.clinic = me.clinic;
    showSession();
    await route();
  } catch (err) {
    showError(err);
    if (err.status !== 401) showLogin();
  }
}

function signOut({ keepError = false } = {}) {
  token.clear();
  state.clinic = null;
  leaveView();
  revokeViewUrls();
  if (!keepError) clearError();
  showLogin();
}

/** Model name and class names from the public /health endpoint. */
async function loadHealth() {
  try {
    const health = await (await fetch(`${API}/health`)).json();
    state.model = health.model ?? null;
    state.classNames = health.model?.class_names ?? [];
    state.limits = health.limits ?? null;
    if (state.model) {
      const sha = state.model.weights_sha256 ? ` · weights ${state.model.weights_sha256.slice(0, 12)}` : "";
      document.getElementById("model-info").textContent = `Model: ${state.model.name} ${state.model.version}${sha}`;
    }
  } catch (err) {
    showError(new ApiError(0, `The service health check failed (${err.message}).`));
  }
}

// ------------------------------------------------------------------------------ router

const ROUTES = [
  [/^#\/patients\/?$/, () => patientsView()],
  [/^#\/patients\/([\w-]+)$/, (m) => patientView(m[1])],
  [/^#\/visits\/([\w-]+)$/, (m) => visitView(m[1])],
  [/^#\/live\/?$/, () => liveView()],
];

/** Increases at every navigation, so that a slow older view never replaces a newer one. */
let routeSeq = 0;

async function route() {
  clearError();
  leaveView();
  revokeViewUrls();
  if (!token.get()) {
    showLogin();
    return;
  }
  const hash = window.location.hash || "#/patients";
  const found = ROUTES.map(([pattern, view]) => [hash.match(pattern), view]).find(([m]) => m);
  if (!found) {
    window.location.replace("#/patients");
    return;
  }
  const section = hash.startsWith("#/live") ? "live" : "patients";
  for (const link of document.querySelectorAll(".mainnav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const seq = ++routeSeq;
  const page = document.getElementById("page");
  page.setAttribute("aria-busy", "true");
  page.replaceChildren(h("p", { class: "muted", testid: "loading" }, "Loading…"));
  try {
    const view = await found[1](found[0]);
    if (seq !== routeSeq) return;
    page.replaceChildren(view);
    view.querySelector("h1")?.focus({ preventScroll: true });
  } catch (err) {
    if (seq !== routeSeq) return;
    page.replaceChildren(h("p", { class: "muted" }, "This page could not be loaded."));
    showError(err);
  } finally {
    if (seq === routeSeq) page.removeAttribute("aria-busy");
  }
}

export function breadcrumb(...items) {
  const parts = items.map(([text, href]) => h("li", {}, href ? h("a", { href }, text) : h("span", { "aria-current": "page" }, text)));
  return h("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" }, h("ol", {}, parts));
}

export function heading(text, sub = null) {
  return h("div", { class: "page-head" }, h("h1", { tabindex: "-1" }, text), sub ? h("p", { class: "muted" }, sub) : null);
}

// ------------------------------------------------------------------------------ patients

async function patientsView() {
  const { patients } = await api("/patients");
  const list = patientList(patients);
  const form = patientForm((created) => {
    patients.push(created);
    list.refresh(created.id);
  });
  return h(
    "div",
    { class: "view", testid: "patients-view" },
    breadcrumb(["Patients", null]),
    heading("Patients"),
    h("div", { class: "grid-main-side" }, list.element, form),
  );
}

/** The searchable patients table; `refresh(highlightId)` redraws it. */
function patientList(patients) {
  const search = h("input", {
    type: "search",
    id: "patient-search",
    testid: "patient-search",
    placeholder: "External id or name",
    autocomplete: "off",
  });
  const tbody = h("tbody", { testid: "patient-rows" });
  const count = h("p", { class: "muted small", "aria-live": "polite" });

  function refresh(highlightId = null) {
    const q = search.value.trim().toLowerCase();
    const shown = patients
      .filter((p) => !q || `${p.external_id} ${p.name ?? ""}`.toLowerCase().includes(q))
      .sort((a, b) => a.external_id.localeCompare(b.external_id));
    tbody.replaceChildren(...shown.map((p) => patientRow(p, p.id === highlightId)));
    if (!shown.length) {
      tbody.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, patients.length ? "No patient matches the search." : "No patients yet.")));
    }
    count.textContent = `${shown.length} of ${patients.length} patient${patients.length === 1 ? "" : "s"}`;
  }
  search.addEventListener("input", () => refresh());
  refresh();

  const element = h(
    "section",
    { class: "card", "aria-labelledby": "patients-title" },
    h("h2", { id: "patients-title" }, "All patients"),
    field("Search", search),
    count,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { testid: "patient-list", class: "data" },
        h("thead", {}, h("tr", {}, ["External id", "Name", "Birth year", "Sex", "Visits"].map((t) => h("th", { scope: "col" }, t)))),
        tbody,
      ),
    ),
  );
  return { element, refresh };
}

function patientRow(p, highlight) {
  return h(
    "tr",
    { testid: "patient-row", class: highlight ? "is-new" : null },
    h("td", {}, h("a", { href: `#/patients/${p.id}`, testid: "patient-link" }, p.external_id)),
    h("td", {}, p.name ?? "—"),
    h("td", {}, p.birth_year ?? "—"),
    h("td", {}, p.sex ?? "—"),
    h("td", { class: "num" }, p.n_visits ?? 0),
  );
}

/** The "new patient" form; `onCreated(patient)` runs after the API created it. */
function patientForm(onCreated) {
  const externalId = h("input", { name: "external_id", required: true, testid: "patient-external-id", autocomplete: "off" });
  const name = h("input", { name: "name", testid: "patient-name", autocomplete: "off" });
  const birthYear = h("input", { name: "birth_year", type: "number", min: 1900, max: new Date().getFullYear(), step: 1, testid: "patient-birth-year" });
  const sex = h(
    "select",
    { name: "sex", testid: "patient-sex" },
    h("option", { value: "" }, "not given"),
    ["female", "male", "other"].map((s) => h("option", { value: s }, s)),
  );
  const status = h("p", { class: "form-status", "aria-live": "polite", testid: "patient-form-status" });
  const submit = h("button", { type: "submit", class: "btn btn-primary", testid: "patient-submit" }, "Create patient");

  const form = h(
    "form",
    { testid: "patient-form", class: "stack" },
    field("External id (e.g. hospital number)", externalId),
    field("Name", name, "Optional."),
    h("div", { class: "row" }, field("Birth year", birthYear), field("Sex", sex)),
    submit,
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const body = {
      external_id: externalId.value.trim(),
      name: name.value.trim() || null,
      birth_year: birthYear.value ? Number(birthYear.value) : null,
      sex: sex.value || null,
    };
    try {
      const created = await withBusy(submit, "Creating…", () => api("/patients", { method: "POST", json: body }));
      form.reset();
      status.textContent = `Patient ${created.external_id} created.`;
      onCreated(created);
    } catch (err) {
      showError(err);
    }
  });
  return h("section", { class: "card", "aria-labelledby": "new-patient-title" }, h("h2", { id: "new-patient-title" }, "New patient"), form);
}

// ------------------------------------------------------------------------------ one patient

async function patientView(patientId) {
  const [patient, timeline] = await Promise.all([
    api(`/patients/${patientId}`),
    api(`/patients/${patientId}/timeline`).catch((err) => ({ error: err })),
  ]);
  state.patientId = patient.id;
  const title = patient.name ? `${patient.external_id} · ${patient.name}` : patient.external_id;
  const facts = [
    patient.birth_year ? `born ${patient.birth_year}` : null,
    patient.sex,
    `${patient.visits.length} visit${patient.visits.length === 1 ? "" : "s"}`,
  ].filter(Boolean);
  const view = h(
    "div",
    { class: "view", testid: "patient-view", "data-patient-id": patient.id },
    breadcrumb(["Patients", "#/patients"], [patient.external_id, null]),
    heading(title, facts.join(" · ")),
    h("div", { class: "grid-main-side" }, visitsCard(patient), newVisitCard(patient)),
    timelineCard(patient, timeline),
  );
  if (timeline.error) queueMicrotask(() => showError(timeline.error));
  return view;
}

function visitsCard(patient) {
  const visits = [...patient.visits].sort((a, b) => a.date.localeCompare(b.date));
  const rows = visits.map((v) =>
    h(
      "tr",
      { testid: "visit-row" },
      h("td", {}, h("a", { href: `#/visits/${v.id}`, testid: "visit-link" }, v.date)),
      h("td", {}, statusBadge(v.status)),
      h("td", { class: "num" }, v.n_recordings ?? 0),
      h("td", { class: "notes" }, v.notes ?? ""),
    ),
  );
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 4, class: "empty" }, "No visits yet.")));
  return h(
    "section",
    { class: "card", "aria-labelledby": "visits-title" },
    h("h2", { id: "visits-title" }, "Visits"),
    table({ class: "data", testid: "visit-list" }, ["Date", "Status", ["Recordings", "num"], "Notes"], rows),
  );
}

function statusBadge(status) {
  const tone = { analysed: "ok", failed: "warn" }[status] ?? "neutral";
  return h("span", { class: `badge badge-${tone}` }, status ?? "new");
}

/** The "new visit" form; opens the visit once it is created (the next step is the upload). */
function newVisitCard(patient) {
  const date = h("input", { type: "date", name: "date", required: true, value: today(), testid: "visit-date" });
  const notes = h("textarea", { name: "notes", rows: 3, testid: "visit-notes" });
  const submit = h("button", { type: "submit", class: "btn btn-primary", testid: "visit-submit" }, "Create visit");
  const form = h("form", { class: "stack", testid: "visit-form" }, field("Date", date), field("Notes", notes, "Optional."), submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    try {
      const body = { date: date.value, notes: notes.value.trim() || null };
      const visit = await withBusy(submit, "Creating…", () =>
        api(`/patients/${patient.id}/visits`, { method: "POST", json: body }),
      );
      window.location.hash = `#/visits/${visit.id}`;
    } catch (err) {
      showError(err);
    }
  });
  return h("section", { class: "card", "aria-labelledby": "new-visit-title" }, h("h2", { id: "new-visit-title" }, "New visit"), form);
}

// ------------------------------------------------------------------------------ timeline

function timelineCard(patient, timeline) {
  const card = h("section", { class: "card", id: "timeline", testid: "timeline", "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"));
  if (timeline.error) {
    card.append(h("p", { class: "muted" }, "The timeline could not be loaded."));
    return card;
  }
  const points = [...(timeline.points || [])].sort((a, b) => a.date.localeCompare(b.date));
  card.append(alertsList(timeline.alerts || []));
  if (!points.length) {
    card.append(h("p", { class: "muted", testid: "timeline-empty" }, "No analysed visit yet: analyse a visit to start the timeline."));
    return card;
  }
  const plotPath = timeline.plot_url || `/patients/${patient.id}/timeline.png`;
  card.append(
    h("h3", {}, "Visits"),
    timelineTable(points),
    measuresByVisit(points, timeline.labels || {}),
    h("h3", {}, "Trends"),
    trendsTable(timeline.trends || [], timeline.alerts || []),
    h(
      "figure",
      { class: "plot" },
      authImage(plotPath, "Class probabilities and measures over the visit dates, with trend lines", { testid: "timeline-plot" }),
      h("figcaption", {}, "Probabilities and measures over the visit dates, with their trend lines."),
    ),
  );
  return card;
}

function alertsList(alerts) {
  if (!alerts.length) return h("div", { class: "alerts alerts-none", testid: "alerts" }, h("p", { class: "muted" }, "No alerts."));
  return h(
    "div",
    { class: "alerts", testid: "alerts", role: "region", "aria-label": "Alerts" },
    h(
      "ul",
      {},
      alerts.map((a) =>
        h(
          "li",
          { class: `alert alert-${a.severity}`, testid: "alert", "data-severity": a.severity },
          h("span", { class: "alert-tag" }, a.severity === "warning" ? "Warning" : "Note"),
          h("span", {}, a.message),
        ),
      ),
    ),
  );
}

/** One row per analysed visit: date, predicted class and every class probability. */
function timelineTable(points) {
  const classes = classOrder(Object.assign({}, ...points.map((p) => p.probs || {})));
  const rows = points.map((p) =>
    h(
      "tr",
      { testid: "timeline-row", "data-visit-id": p.visit_id },
      h("td", {}, h("a", { href: `#/visits/${p.visit_id}` }, p.date)),
      h("td", {}, classBadge(p.predicted)),
      classes.map((c) => h("td", { class: "num" }, probCell(p.probs?.[c]))),
    ),
  );
  const head = ["Visit", "Predicted", ...classes.map((c) => [`p(${c})`, "num"])];
  return table({ class: "data", testid: "timeline-table" }, head, rows);
}

function probCell(p) {
  if (p === undefined || p === null) return "—";
  return h("span", { class: "mini-bar", title: pct(p) }, h("span", { class: "mini-fill", style: `width:${(p * 100).toFixed(1)}%` }), h("span", { class: "mini-text" }, pct(p)));
}

/** Measures as rows and visits as columns (only when some visit has measures). */
function measuresByVisit(points, labels = {}) {
  const names = [...new Set(points.flatMap((p) => Object.keys(p.measures || {})))];
  if (!names.length) return null;
  const rows = names.map((name) => h("tr", {}, h("th", { scope: "row" }, labels[name] || name), points.map((p) => h("td", { class: "num" }, num(p.measures?.[name])))));
  return h(
    "details",
    { class: "measures-by-visit" },
    h("summary", {}, "Measures by visit"),
    table({ class: "data", testid: "timeline-measures" }, ["Measure", ...points.map((p) => [p.date, "num"])], rows),
  );
}

/** "p_neurogenic" -> "p(neurogenic)"; measure names are shown as the API gives them. */
function quantityLabel(name) {
  const m = /^p_(.+)$/.exec(name);
  return m ? `p(${m[1]})` : name;
}

const ARROWS = { rising: "↑", falling: "↓", stable: "→", unknown: "?" };

function trendsTable(trends, alerts) {
  if (!trends.length) return h("p", { class: "muted", testid: "trends-empty" }, "Trends need at least two analysed visits.");
  const alerted = new Set(alerts.map((a) => a.quantity));
  const rows = trends.map((t) => {
    const unit = t.unit ? `${t.unit}/year` : "/year";
    const ci = t.ci95 ? `${num(t.ci95[0])} to ${num(t.ci95[1])}` : "—";
    const slope = t.slope_per_year === null || t.slope_per_year === undefined ? "—" : `${num(t.slope_per_year)} ${unit}`;
    return h(
      "tr",
      { testid: "trend-row", class: alerted.has(t.quantity) ? "is-flagged" : null },
      h("th", { scope: "row" }, t.label || quantityLabel(t.quantity)),
      h("td", { class: "num" }, slope),
      h("td", { class: "num" }, ci),
      h("td", { class: "num" }, t.n_visits),
      h("td", {}, h("span", { class: `trend trend-${t.direction}` }, `${ARROWS[t.direction] ?? ""} ${t.direction}`)),
    );
  });
  const head = ["Quantity", ["Slope", "num"], ["95 % CI", "num"], ["Visits", "num"], "Direction"];
  return table({ class: "data", testid: "trends-table" }, head, rows);
}

// ------------------------------------------------------------------------------ one visit

async function visitView(visitId) {
  const visit = await api(`/visits/${visitId}`);
  const patient = await api(`/patients/${visit.patient_id}`);
  const ctx = { visit, patient, recordings: visit.recordings || [] };
  state.patientId = patient.id;

  const recordingsBox = h("div", { testid: "recordings" });
  const analysisCard = h("section", { class: "card", testid: "analysis", "aria-labelledby": "analysis-title" });
  ctx.redrawRecordings = () => recordingsBox.replaceChildren(recordingsTable(ctx.recordings));
  ctx.redrawAnalysis = (analysis) => analysisCard.replaceChildren(...analysisContent(ctx, analysis));
  ctx.redrawRecordings();
  ctx.redrawAnalysis(visit.analysis ?? null);

  return h(
    "div",
    { class: "view", testid: "visit-view", "data-visit-id": visit.id },
    breadcrumb(["Patients", "#/patients"], [patient.external_id, `#/patients/${patient.id}`], [`Visit ${visit.date}`, null]),
    heading(`Visit of ${visit.date}`, [patient.external_id, patient.name, visit.notes].filter(Boolean).join(" · ")),
    h(
      "div",
      { class: "grid-main-side" },
      h("section", { class: "card", "aria-labelledby": "recordings-title" }, h("h2", { id: "recordings-title" }, "Recordings"), recordingsBox),
      uploadCard(ctx),
    ),
    analysisCard,
  );
}

function recordingsTable(recordings) {
  if (!recordings.length) return h("p", { class: "muted", testid: "recordings-empty" }, "No recordings yet: upload some.");
  const rows = recordings.map((r) =>
    h(
      "tr",
      { testid: "recording-row", "data-recording-id": r.id },
      h("td", {}, h("span", { class: "rec-name" }, r.name), h("div", { class: "muted small" }, `${r.format} · ${r.files.length} file${r.files.length === 1 ? "" : "s"}, ${bytes(r.files.reduce((s, f) => s + f.size_bytes, 0))}`)),
      h("td", {}, r.muscle ?? "—"),
      h("td", {}, (r.channels || []).join(", ") || "—"),
      h("td", { class: "num" }, withUnit(r.fs_hz, "Hz")),
      h("td", { class: "num" }, withUnit(r.duration_s, "s")),
      h("td", { testid: "qc-flags" }, qcBadges(r.qc_flags)),
    ),
  );
  const head = ["Recording", "Muscle", "Channels", ["Sampling", "num"], ["Length", "num"], "Quality"];
  return table({ class: "data", testid: "recordings-table" }, head, rows);
}

function qcBadges(flags) {
  if (!flags || !flags.length) return h("span", { class: "badge badge-ok" }, "ok");
  return flags.map((f) => h("span", { class: "badge badge-warn", title: "quality-check flag" }, f));
}

/** The upload form: files (several at once), optional muscle / sampling rate / scale. */
/** Why the server would refuse these files by size or count (checked here, before sending:
 * a server refusing an oversized body early can only drop the connection). */
function uploadProblem(fileList, limits) {
  if (!limits) return null;
  const mib = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  const big = fileList.find((f) => f.size > limits.max_file_bytes);
  if (big) return `${big.name}: larger than the limit of ${mib(limits.max_file_bytes)} per file.`;
  const total = fileList.reduce((sum, f) => sum + f.size, 0);
  if (total > limits.max_request_bytes) return `These files add up to more than ${mib(limits.max_request_bytes)}: upload them in smaller groups.`;
  if (fileList.length > limits.max_files_per_request) return `At most ${limits.max_files_per_request} files per upload.`;
  return null;
}

function uploadCard(ctx) {
  const files = h("input", { type: "file", multiple: true, required: true, name: "files", testid: "upload-files" });
  const muscle = h("input", { name: "muscle", testid: "upload-muscle", placeholder: "e.g. biceps brachii", autocomplete: "off" });
  const fs = h("input", { name: "fs_hz", type: "number", min: 1, step: "any", testid: "upload-fs", placeholder: "from the file" });
  const scale = h("input", { name: "uv_per_unit", type: "number", step: "any", min: 0, testid: "upload-uv", placeholder: "from the file" });
  const progress = h("progress", { max: 100, value: 0, testid: "upload-progress", id: "upload-progress", "aria-label": "Upload progress" });
  const progressText = h("span", { class: "progress-text", testid: "upload-progress-text", "aria-live": "polite" }, "0 %");
  const progressBox = h("div", { class: "progress-box", hidden: true }, progress, progressText);
  const submit = h("button", { type: "submit", class: "btn btn-primary", testid: "upload-submit" }, "Upload");

  const setProgress = (fraction, note = "") => {
    const percent = Math.round(fraction * 100);
    progress.value = percent;
    progressText.textContent = `${percent} %${note ? ` — ${note}` : ""}`;
  };

  const form = h(
    "form",
    { class: "stack", testid: "upload-form" },
    field("Files", files, "A WFDB record needs its .hea together with its .dat; EDF and other files on their own."),
    field("Muscle", muscle, "Optional."),
    h("div", { class: "row" }, field("Sampling rate (Hz)", fs, "Optional."), field("µV per unit", scale, "Optional.")),
    submit,
    progressBox,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    if (!files.files.length) return;
    const tooMany = uploadProblem([...files.files], state.limits);
    if (tooMany) {
      showError(new ApiError(0, tooMany));
      return;
    }
    const data = new FormData();
    for (const file of files.files) data.append("files", file, file.name);
    if (muscle.value.trim()) data.append("muscle", muscle.value.trim());
    if (fs.value) data.append("fs_hz", fs.value);
    if (scale.value) data.append("uv_per_unit", scale.value);
    progressBox.hidden = false;
    setProgress(0);
    try {
      const answer = await withBusy(submit, "Uploading…", () =>
        uploadWithProgress(`/visits/${ctx.visit.id}/recordings`, data, (f) => setProgress(f, f >= 1 ? "processing…" : "")),
      );
      const n = answer.recordings?.length ?? 0;
      setProgress(1, `uploaded, ${n} recording${n === 1 ? "" : "s"} added`);
      form.reset();
      await refreshRecordings(ctx);
    } catch (err) {
      progressText.textContent = `${progress.value} % — failed`;
      showError(err);
    }
  });
  return h("section", { class: "card", "aria-labelledby": "upload-title" }, h("h2", { id: "upload-title" }, "Upload recordings"), form);
}

async function refreshRecordings(ctx) {
  const { recordings } = await api(`/visits/${ctx.visit.id}/recordings`);
  ctx.recordings = recordings;
  ctx.redrawRecordings();
  const button = document.querySelector('[data-testid="analyse-button"]');
  if (button && !button.classList.contains("is-busy")) button.disabled = recordings.length === 0;
}

// ------------------------------------------------------------------------------ analysis

/** The analysis card: the Analyse button, then the latest result if there is one. */
function analysisContent(ctx, analysis) {
  const button = h("button", { type: "button", class: "btn btn-primary", testid: "analyse-button", disabled: ctx.recordings.length === 0 }, analysis ? "Analyse again" : "Analyse");
  const status = h("p", { class: "muted small", testid: "analysis-status", "aria-live": "polite" });
  button.addEventListener("click", async () => {
    clearError();
    const n = ctx.recordings.length;
    status.textContent = `Running the model on ${n} recording${n === 1 ? "" : "s"}… this can take a minute.`;
    try {
      const result = await withBusy(button, "Analysing…", () => api(`/visits/${ctx.visit.id}/analysis`, { method: "POST", json: { explain: true } }));
      ctx.redrawAnalysis(result);
    } catch (err) {
      status.textContent = "The analysis failed.";
      showError(err);
    }
  });
  const head = h(
    "div",
    { class: "card-head" },
    h("h2", { id: "analysis-title" }, "Analysis"),
    h("div", { class: "actions" }, button),
  );
  if (!analysis) return [head, status, h("p", { class: "muted" }, "Not analysed yet.")];
  return [head, status, resultView(ctx, analysis)];
}

/** The result: predicted class, probabilities with intervals, summary, reports, per-record detail. */
function resultView(ctx, a) {
  if (a.status === "failed") {
    // no result and no report: the reason, and a way to try again
    return h(
      "div",
      { class: "result result-failed", testid: "result", "data-analysis-id": a.id, "data-status": "failed" },
      h("div", { class: "predicted cls-none", testid: "result-predicted", "data-class": "" }, "analysis failed"),
      h("p", { class: "summary", testid: "result-failure" }, a.failure),
      h("p", { class: "muted small" }, `${a.model?.name ?? ""} ${a.model?.version ?? ""} · ${dateTime(a.created_at)} · "Analyse again" runs it anew.`),
    );
  }
  const names = new Map(ctx.recordings.map((r) => [r.id, r.name]));
  return h(
    "div",
    { class: "result", testid: "result", "data-analysis-id": a.id },
    h(
      "div",
      { class: "result-top" },
      h(
        "div",
        { class: "verdict" },
        h("div", { class: "muted small" }, "Model output"),
        h("div", { class: `predicted cls-${a.predicted ?? "none"}`, testid: "result-predicted", "data-class": a.predicted ?? "", "data-outcome": a.outcome ?? "" }, a.predicted ?? (a.outcome === "not interpretable" ? "not interpretable" : "undetermined")),
        h("p", { class: "summary", testid: "result-summary" }, a.summary),
        a.outcome === "not interpretable" && a.reasons?.length
          ? h("ul", { class: "qc-messages", testid: "result-reasons" }, a.reasons.map((why) => h("li", {}, why)))
          : null,
        h("p", { class: "muted small" }, `${a.model?.name ?? ""} ${a.model?.version ?? ""} · ${dateTime(a.created_at)}`),
      ),
      probBars(a.probs || {}, a.intervals || {}),
    ),
    reportActions(a),
    h("h3", {}, "Per recording"),
    (a.records || []).map((rec) => recordResult(rec, names.get(rec.recording_id))),
  );
}

/** `[lo, hi]` when both ends are numbers, else null (too few windows for an interval). */
function validInterval(iv) {
  return Array.isArray(iv) && typeof iv[0] === "number" && typeof iv[1] === "number" ? iv : null;
}

/** One horizontal bar per class: the probability, its interval as a whisker, and the numbers. */
function probBars(probs, intervals) {
  const rows = classOrder(probs).map((c) => {
    const p = probs[c];
    const iv = validInterval(intervals[c]);
    const whisker = iv ? h("span", { class: "bar-interval", style: `left:${(iv[0] * 100).toFixed(1)}%;width:${Math.max(0.5, (iv[1] - iv[0]) * 100).toFixed(1)}%` }) : null;
    return h(
      "li",
      { class: "prob-row", testid: "prob-row", "data-class": c },
      h("span", { class: "prob-label" }, c),
      h("span", { class: "bar", role: "img", "aria-label": `${c}: ${pct(p)}${iv ? `, interval ${pct(iv[0])} to ${pct(iv[1])}` : ""}` }, h("span", { class: `bar-fill cls-${c}`, style: `width:${((p ?? 0) * 100).toFixed(1)}%` }), whisker),
      h("span", { class: "prob-text" }, pct(p), iv ? h("span", { class: "muted" }, ` (${pct(iv[0]).replace(" %", "")}–${pct(iv[1])})`) : null),
    );
  });
  return h("div", { class: "probs" }, h("h3", {}, "Class probabilities"), h("ul", { class: "prob-list", testid: "result-probs" }, rows), h("p", { class: "muted small" }, "Bar: probability. Line: interval over the visit's windows and recordings."));
}

/** Buttons for the HTML report (shown inline, or in a new tab) and the PDF download. */
function reportActions(a) {
  const frameBox = h("div", { class: "report-frame-box" });
  const viewBtn = h("button", { type: "button", class: "btn", testid: "open-report" }, "View report");
  const pdfBtn = h("button", { type: "button", class: "btn", testid: "download-pdf" }, "Download PDF");
  const tabLink = h("a", { class: "btn btn-link", testid: "report-new-tab", target: "_blank", rel: "noopener", hidden: true }, "Open report in a new tab");

  viewBtn.addEventListener("click", async () => {
    clearError();
    try {
      const blob = await withBusy(viewBtn, "Loading…", () => fetchBlob(a.report_html_url || `/analyses/${a.id}/report.html`));
      const url = objectUrl(new Blob([blob], { type: "text/html" }));
      tabLink.href = url;
      tabLink.hidden = false;
      frameBox.replaceChildren(h("iframe", { src: url, title: "Clinical report", class: "report-frame", testid: "report-frame", sandbox: "allow-same-origin allow-popups" }));
    } catch (err) {
      showError(err);
    }
  });
  pdfBtn.addEventListener("click", async () => {
    clearError();
    try {
      const blob = await withBusy(pdfBtn, "Preparing…", () => fetchBlob(a.report_pdf_url || `/analyses/${a.id}/report.pdf`));
      const link = h("a", { href: objectUrl(blob), download: `emgdx-report-${a.id}.pdf`, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (err) {
      showError(err);
    }
  });
  return h("div", { class: "report-actions" }, h("div", { class: "actions" }, viewBtn, tabLink, pdfBtn), frameBox);
}

function isOutOfRange(m) {
  if (m.status === "low" || m.status === "high") return true;
  const v = m.value;
  if (v === null || v === undefined) return false;
  return (m.ref_low !== null && m.ref_low !== undefined && v < m.ref_low) || (m.ref_high !== null && m.ref_high !== undefined && v > m.ref_high);
}

function statusText(m) {
  if (!isOutOfRange(m)) {
    if (m.value === null || m.value === undefined) return "not measured";
    if (m.status === "n/a") return "no reference";
    return "within range";
  }
  if (m.status === "low" || (m.ref_low != null && m.value < m.ref_low)) return "below range";
  return "above range";
}

function recordResult(rec, name) {
  const measures = (rec.measures || []).map((m) => {
    const out = isOutOfRange(m);
    const range = m.ref_low == null && m.ref_high == null ? "no reference" : `${num(m.ref_low)} – ${num(m.ref_high)}`;
    return h(
      "tr",
      { class: out ? "out-of-range" : null, testid: "measure-row", "data-out-of-range": out ? "true" : "false" },
      h("th", { scope: "row" }, m.label || m.measure),
      h("td", { class: "num" }, withUnit(m.value, m.unit)),
      h("td", { class: "num" }, range),
      h("td", { class: "status" }, out ? h("strong", {}, statusText(m)) : statusText(m)),
    );
  });
  const qc = rec.qc_messages?.length
    ? h("ul", { class: "qc-messages", testid: "qc-messages" }, rec.qc_messages.map((msg) => h("li", {}, msg)))
    : h("p", { class: "muted small", testid: "qc-messages" }, "No quality problems found.");
  const probs = classOrder(rec.probs || {}).map((c) => `${c} ${pct(rec.probs[c])}`).join(" · ");
  return h(
    "article",
    { class: "record", testid: "record-result", "data-recording-id": rec.recording_id },
    h(
      "header",
      { class: "record-head" },
      h("h4", {}, name ?? rec.recording_id, rec.channel ? h("span", { class: "muted" }, ` · ${rec.channel}`) : null),
      rec.outcome === "not interpretable" ? h("span", { class: "badge badge-warn", testid: "record-outcome" }, "not interpretable") : classBadge(rec.predicted),
    ),
    h("p", { class: "small" }, probs, h("span", { class: "muted" }, ` · ${rec.n_windows ?? "?"} windows, ${pct(rec.usable_fraction)} usable`)),
    rec.note ? h("p", { class: "small note", testid: "record-note" }, rec.note) : null,
    h("div", { class: "record-body" },
      h("div", {}, h("h5", {}, "Signal quality"), qc, measures.length ? [h("h5", {}, "Measures vs reference"), table({ class: "data compact", testid: "measures-table" }, ["Measure", ["Value", "num"], ["Reference", "num"], "Status"], measures)] : null),
      figuresGrid(rec.figures || []),
    ),
  );
}

function classBadge(cls) {
  return h("span", { class: `badge cls-badge cls-${cls ?? "none"}`, "data-class": cls ?? "" }, cls ?? "undetermined");
}

function figuresGrid(figures) {
  if (!figures.length) return h("p", { class: "muted small" }, "No evidence figures.");
  return h(
    "div",
    { class: "figures" },
    h("h5", {}, "Evidence"),
    figures.map((f) =>
      h(
        "figure",
        { class: "evidence" },
        authImage(f.url || `/figures/${f.id}.png`, f.title, { testid: "evidence-figure", loading: "eager" }),
        h("figcaption", {}, h("strong", {}, f.title), f.caption ? ` ${f.caption}` : ""),
      ),
    ),
  );
}

// ------------------------------------------------------------------------------ start

function start() {
  document.getElementById("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token-input");
    const value = input.value.trim();
    if (!value) return;
    token.set(value);
    input.value = "";
    clearError();
    signIn();
  });
  document.getElementById("sign-out").addEventListener("click", () => signOut());
  document.getElementById("error-dismiss").addEventListener("click", clearError);
  window.addEventListener("hashchange", () => {
    if (token.get() && state.clinic) route();
  });
  // Anything that escaped a handler still reaches the banner.
  window.addEventListener("unhandledrejection", (event) => showError(event.reason));

  if (!window.location.hash) window.location.replace("#/patients");
  // Class names (for the order of the probabilities) first, then the session.
  loadHealth().then(() => (token.get() ? signIn() : showLogin()));
}

start();
