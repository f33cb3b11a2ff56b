// drover serve: the fleet grid and what every page shares, kept live by
// SSE. No framework, no CDN: the page's scripts (this file, host.js,
// runs.js) and app.css are embedded in the binary.
"use strict";
const $ = (s) => document.querySelector(s);
const STATES = ["unreachable", "failed", "unknown", "unhealthy", "drifted", "behind", "drained", "converged"];
let session = { role: "viewer", csrf: "" };
const hosts = new Map(); // name -> host view (as /api/status sends it)
const cells = new Map(); // name -> grid cell element

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? s + "s ago" : s < 7200 ? Math.round(s / 60) + "m ago" : Math.round(s / 3600) + "h ago";
}
async function api(path, opts) {
  const r = await fetch(path, opts);
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || r.status + " " + r.statusText);
  return body;
}
// Asks first (the confirmation dialog; `needReason`: a reason must be
// typed, sent as `reason`); cancelled, nothing is sent.
async function act(verb, hostSel, extra, question, needReason) {
  if (question) {
    const answer = await confirmDialog(question, needReason);
    if (!answer) return;
    if (needReason) extra = Object.assign({}, extra, { reason: answer.reason });
  }
  try {
    const r = await api("/api/action/" + verb, {
      method: "POST",
      headers: { "content-type": "application/json", "x-drover-csrf": session.csrf },
      body: JSON.stringify(Object.assign({ hosts: hostSel || "" }, extra || {})),
    });
    flash("started: " + r.started);
  } catch (e) {
    flash("refused: " + e.message);
  }
}
// The confirmation dialog: resolves {reason} on OK, null on cancel/Escape.
function confirmDialog(question, needReason) {
  const d = $("#confirm"), ok = $("#confirm-ok"), reason = $("#confirm-reason");
  $("#confirm-text").textContent = question;
  $("#confirm-reason-row").hidden = !needReason;
  reason.value = "";
  ok.disabled = !!needReason;
  reason.oninput = () => { ok.disabled = needReason && !reason.value.trim(); };
  return new Promise((resolve) => {
    const done = (v) => { d.onclose = null; if (d.open) d.close(); resolve(v); };
    ok.onclick = () => done({ reason: reason.value.trim() });
    $("#confirm-cancel").onclick = () => done(null);
    d.onclose = () => done(null);
    d.showModal();
    (needReason ? reason : ok).focus();
  });
}
function flash(msg) {
  const p = $("#problems");
  p.hidden = false;
  p.textContent = msg;
}

function cellTitle(h) {
  const why = h.status.error || h.state_error || (h.held ? h.held.why : "") ||
    (h.state === "behind" ? "not on the project's desired state" : "") ||
    (h.status.drained ? "drained: " + h.status.drained : "");
  return h.host + ": " + h.state + (why ? " — " + why : "");
}
function buildGrid() {
  const grid = $("#grid");
  grid.classList.toggle("big", hosts.size <= 200);
  const frag = document.createDocumentFragment();
  cells.clear();
  for (const h of hosts.values()) {
    const c = document.createElement("div");
    c.className = "cell s-" + h.state;
    c.dataset.host = h.host;
    c.dataset.state = h.state;
    c.title = cellTitle(h);
    if (hosts.size <= 200) c.textContent = h.host;
    cells.set(h.host, c);
    frag.appendChild(c);
  }
  grid.replaceChildren(frag);
  fillFilters();
  filter();
}
function fillFilters() {
  const fill = (sel, values, label) => {
    const cur = sel.value;
    sel.replaceChildren(new Option(label, ""), ...[...values].sort().map((v) => new Option(v, v)));
    sel.value = cur;
  };
  const roles = new Set(), groups = new Set();
  for (const h of hosts.values()) {
    h.roles.forEach((r) => roles.add(r));
    h.groups.forEach((g) => groups.add(g));
  }
  fill($("#f-role"), roles, "any role");
  fill($("#f-group"), groups, "any group");
  fill($("#f-state"), STATES, "any state");
}
function filter() {
  const q = $("#search").value.trim().toLowerCase();
  const role = $("#f-role").value, group = $("#f-group").value, state = $("#f-state").value;
  let shown = 0;
  for (const [name, c] of cells) {
    const h = hosts.get(name);
    const ok = (!q || name.toLowerCase().includes(q)) && (!role || h.roles.includes(role)) &&
      (!group || h.groups.includes(group)) && (!state || h.state === state);
    c.classList.toggle("hidden", !ok);
    shown += ok;
  }
  $("#shown").textContent = shown + " of " + hosts.size + " shown";
}
function summary(s) {
  $("#counts").innerHTML = STATES.map((st) =>
    `<span class="count" data-state="${st}"><span class="dot s-${st}"></span>${st} <b id="n-${st}">${s.counts[st] || 0}</b></span>`).join("");
  $("#live").textContent = "pass " + s.pass + (s.at_ms ? " · " + new Date(s.at_ms).toLocaleTimeString() : "");
  $("#live").dataset.pass = s.pass;
  const p = $("#problems");
  p.hidden = !s.problems.length;
  p.textContent = s.problems.join("\n");
  const r = s.rollout;
  $("#rollout").hidden = !r && !s.project_error && session.role !== "operator";
  $("#ro-start").disabled = !!s.project_error;
  const info = $("#rollout-info");
  if (s.project_error) {
    // Nothing can be rolled out until the project loads: say why.
    info.dataset.status = "project-error";
    info.innerHTML = `<span class="err">the project does not load, so no rollout can start: ${esc(s.project_error)}</span>` +
      (r ? ` (last: rollout ${r.id}, ${esc(r.status)})` : "");
  } else if (!r) {
    info.dataset.status = "none";
    info.textContent = "no rollout yet";
  } else {
    info.dataset.status = r.status;
    info.dataset.done = r.next_batch;
    info.innerHTML = `rollout ${r.id}: <b id="rollout-status">${esc(r.status)}</b>, ${r.next_batch} of ${r.batches.length} batches done ` +
      r.batches.map((b, i) => `<span class="batch ${i < r.next_batch ? "done" : ""}" title="${esc(b.join(", "))}">${i + 1}: ${b.length}</span>`).join("");
  }
}
async function load() {
  const s = await api("/api/status");
  hosts.clear();
  s.hosts.forEach((h) => hosts.set(h.host, h));
  buildGrid();
  summary(s);
}
function update(msg) {
  let rebuild = msg.total !== hosts.size;
  for (const h of msg.changed) {
    hosts.set(h.host, h);
    const c = cells.get(h.host);
    if (!c) { rebuild = true; continue; }
    c.className = "cell s-" + h.state;
    c.dataset.state = h.state;
    c.title = cellTitle(h);
  }
  if (rebuild) return load();
  filter();
  summary(msg);
  const m = location.hash.match(/^#\/host\/(.+)$/);
  if (m && msg.changed.some((h) => h.host === decodeURIComponent(m[1]))) showHost(decodeURIComponent(m[1]));
}

function route() {
  const m = location.hash.match(/^#\/host\/(.+)$/);
  const run = location.hash.match(/^#\/run\/(\d+)$/);
  const runs = location.hash === "#/runs";
  $("#fleet").hidden = !!m || runs || !!run;
  $("#host").hidden = !m;
  $("#runs").hidden = !runs && !run;
  if (m) showHost(decodeURIComponent(m[1]));
  if (runs) showRuns();
  if (run) showRun(Number(run[1]));
}

async function main() {
  try { session = await api("/api/session"); } catch (e) { flash(e.message); return; }
  $("#who").textContent = session.name + " (" + session.role + ")";
  document.querySelectorAll(".op").forEach((b) => (b.hidden = session.role !== "operator"));
  $("#check-now").onclick = () => act("check", "");
  $("#ro-start").onclick = () => {
    const sel = $("#ro-hosts").value.trim() || "all hosts", batch = $("#ro-batch").value.trim();
    act("rollout-start", $("#ro-hosts").value, { batch: $("#ro-batch").value },
      `Start a rollout of the project to ${sel}, in batches of ${batch || "the [rollout] policy's size"}?`);
  };
  for (const v of ["pause", "resume", "abort"]) {
    $("#ro-" + v).onclick = () => act("rollout-" + v, "", {}, `${v[0].toUpperCase() + v.slice(1)} the rollout in progress?`);
  }
  ["#search", "#f-role", "#f-group", "#f-state"].forEach((s) => $(s).addEventListener("input", filter));
  $("#grid").addEventListener("click", (e) => { if (e.target.dataset.host) location.hash = "#/host/" + encodeURIComponent(e.target.dataset.host); });
  $("#counts").addEventListener("click", (e) => { const c = e.target.closest(".count"); if (c) { $("#f-state").value = c.dataset.state; filter(); } });
  window.addEventListener("hashchange", route);
  await load();
  route();
  const es = new EventSource("/api/events");
  es.addEventListener("update", (e) => update(JSON.parse(e.data)));
  es.addEventListener("reload", () => load());
  es.onerror = () => { $("#live").textContent = "disconnected; retrying…"; };
}
// After host.js and runs.js have run too (they define the other pages).
window.addEventListener("DOMContentLoaded", main);
