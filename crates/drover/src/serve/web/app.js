// drover serve: the fleet grid, host page and runs, kept live by SSE.
// No framework, no CDN: this file and app.css are embedded in the binary.
"use strict";
const $ = (s) => document.querySelector(s);
const STATES = ["unreachable", "failed", "unhealthy", "drifted", "drained", "converged"];
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
async function act(verb, hostSel, extra) {
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
function flash(msg) {
  const p = $("#problems");
  p.hidden = false;
  p.textContent = msg;
}

function cellTitle(h) {
  return h.host + ": " + h.state + (h.status.error ? " — " + h.status.error : "");
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
  $("#rollout").hidden = !r && session.role !== "operator";
  const info = $("#rollout-info");
  if (!r) {
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

async function showHost(name) {
  const sec = $("#host");
  let d;
  try { d = await api("/api/host/" + encodeURIComponent(name)); } catch (e) { sec.innerHTML = `<p class="err">${esc(e.message)}</p>`; return; }
  const h = d.host, st = h.status;
  const ops = session.role === "operator" ? `<p>
    <button id="do-apply">apply</button> <button id="do-drain">drain</button> <button id="do-undrain">undrain</button></p>` : "";
  const services = (st.services || []).map((s) => `<tr><td>${esc(s.name)}</td><td>${esc(s.state)}</td>
    <td>${s.healthy === true ? "healthy" : s.healthy === false ? '<span class="err">failing</span>' : "-"}</td><td>${esc(s.detail)}</td></tr>`).join("");
  const drift = (st.drift || []).map((p) => `<li><code>${esc(p)}</code></li>`).join("");
  const runs = Array.isArray(d.runs) ? d.runs.map((r) => `<tr><td>${r.run}</td><td>${esc(r.outcome)}</td><td>${r.generation ?? "-"}</td>
    <td>${r.changes}</td><td>${r.bytes_sent}</td><td>${ago(r.at_ms)}</td><td class="err">${esc(r.error)}</td></tr>`).join("") : "";
  sec.innerHTML = `<h2>${esc(h.host)} <span class="badge s-${h.state}" id="host-state">${h.state}</span></h2>
    <p class="muted">roles: ${esc(h.roles.join(", ") || "-")} · groups: ${esc(h.groups.join(", ") || "-")}
    · generation ${st.generation ?? "-"} · kept: ${esc(d.generations.join(", ") || "-")}${st.drained ? " · drained: " + esc(st.drained) : ""}</p>
    ${st.error ? `<p class="err">unreachable: ${esc(st.error)}</p>` : ""}${ops}
    <h3>services</h3><table><tr><th>service</th><th>state</th><th>health</th><th>detail</th></tr>${services || '<tr><td colspan="4">none</td></tr>'}</table>
    <h3>drift</h3>${drift ? `<ul id="drift">${drift}</ul>` : "<p>none</p>"}
    <h3>last runs</h3><table id="host-runs"><tr><th>run</th><th>outcome</th><th>gen</th><th>changes</th><th>bytes</th><th>when</th><th>error</th></tr>${runs}</table>
    ${Array.isArray(d.runs) ? "" : `<p class="err">${esc(d.runs.error)}</p>`}
    <h3>recent log lines</h3><pre id="host-logs">loading…</pre>`;
  api("/api/host/" + encodeURIComponent(name) + "/logs").then(
    (l) => { const p = $("#host-logs"); if (p) p.textContent = l.lines.map((x) => `${new Date(x.at_ms).toISOString()}  ${x.service}  ${x.text}`).join("\n") || "none"; },
    (e) => { const p = $("#host-logs"); if (p) p.textContent = e.message; });
  for (const v of ["apply", "drain", "undrain"]) {
    const b = $("#do-" + v);
    if (b) b.onclick = () => act(v, name);
  }
}
async function showRuns() {
  const sec = $("#runs");
  try {
    const rows = await api("/api/history?limit=200");
    sec.innerHTML = `<h2>runs</h2><table><tr><th>run</th><th>host</th><th>outcome</th><th>gen</th><th>changes</th><th>bytes</th><th>when</th><th>error</th></tr>` +
      rows.map((r) => `<tr><td>${r.run}</td><td><a href="#/host/${encodeURIComponent(r.host)}">${esc(r.host)}</a></td><td>${esc(r.outcome)}</td>
      <td>${r.generation ?? "-"}</td><td>${r.changes}</td><td>${r.bytes_sent}</td><td>${ago(r.at_ms)}</td><td class="err">${esc(r.error)}</td></tr>`).join("") + "</table>";
  } catch (e) { sec.innerHTML = `<p class="err">${esc(e.message)}</p>`; }
}
function route() {
  const m = location.hash.match(/^#\/host\/(.+)$/);
  $("#fleet").hidden = !!m || location.hash === "#/runs";
  $("#host").hidden = !m;
  $("#runs").hidden = location.hash !== "#/runs";
  if (m) showHost(decodeURIComponent(m[1]));
  if (location.hash === "#/runs") showRuns();
}

async function main() {
  try { session = await api("/api/session"); } catch (e) { flash(e.message); return; }
  $("#who").textContent = session.name + " (" + session.role + ")";
  document.querySelectorAll(".op").forEach((b) => (b.hidden = session.role !== "operator"));
  $("#check-now").onclick = () => act("check", "");
  $("#ro-start").onclick = () => act("rollout-start", $("#ro-hosts").value, { batch: $("#ro-batch").value });
  for (const v of ["pause", "resume", "abort"]) $("#ro-" + v).onclick = () => act("rollout-" + v, "");
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
main();
