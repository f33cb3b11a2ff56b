// drover serve: a host's page (state, services, drift, last runs, logs)
// and its actions, each confirmed before it is sent.
"use strict";

const STATE_WHY = {
  behind: "not on the project's desired state: an apply would make a new generation (a missed release, a rollback)",
  unknown: "whether it is on the project's desired state could not be told",
};

// A service's health as the page shows it: a drained host's services are
// stopped on purpose, so "drained", never "failing".
function health(s, drained) {
  if (drained) return ["drained", "muted"];
  if (s.healthy === true) return ["healthy", ""];
  if (s.healthy === false) return ["failing", "err"];
  return ["-", ""];
}

// Why a run's service failed: the supervisor's state and the service's last
// log lines (secret values already replaced by the controller).
function failure(f) {
  if (!f) return "";
  const st = f.state || {};
  const exit = st.exit_code != null ? `, exit code ${st.exit_code}` : "";
  return `<tr class="failure"><td></td><td colspan="7"><div>service <b>${esc(f.service)}</b>: supervisor ${esc(st.state)}${exit}</div>
    <pre class="failure-log">${esc((f.log || []).join("\n") || "(no log lines)")}</pre></td></tr>`;
}

async function showHost(name) {
  const sec = $("#host");
  let d;
  try { d = await api("/api/host/" + encodeURIComponent(name)); } catch (e) { sec.innerHTML = `<p class="err">${esc(e.message)}</p>`; return; }
  const h = d.host, st = h.status, drained = !!st.drained;
  const ops = session.role === "operator" ? `<p>
    <button id="do-apply">apply</button> <button id="do-drain">drain</button> <button id="do-undrain">undrain</button></p>` : "";
  const services = (st.services || []).map((s) => {
    const [word, cls] = health(s, drained);
    const state = drained && s.state !== "running" ? s.state + " (drained)" : s.state;
    return `<tr data-service="${esc(s.name)}"><td>${esc(s.name)}</td><td>${esc(state)}</td>
    <td class="health ${cls}" data-health="${word}">${word}</td><td>${esc(drained ? "" : s.detail)}</td></tr>`;
  }).join("");
  const drift = (st.drift || []).map((p) => `<li><code>${esc(p)}</code></li>`).join("");
  const runs = Array.isArray(d.runs) ? d.runs.map((r) => `<tr><td><a href="#/run/${r.run}">${r.run}</a></td><td>${esc(r.command ?? "-")}</td>
    <td>${esc(r.outcome)}</td><td>${r.generation ?? "-"}</td><td>${r.changes}</td><td>${esc(r.bytes_sent_human)}</td><td>${ago(r.at_ms)}</td>
    <td class="err">${esc(r.error)}</td></tr>${failure(r.failure)}`).join("") : "";
  // A hold says why healing leaves it so (held by rollback 7: until the next apply or rollout).
  const held = h.held ? `${h.held.why}: healing leaves it on this generation until the next apply or rollout` : "";
  const why = h.state_error || (held && STATE_WHY[h.state] + "; " + held) || STATE_WHY[h.state];
  sec.innerHTML = `<h2>${esc(h.host)} <span class="badge s-${h.state}" id="host-state">${h.state}</span></h2>
    ${why ? `<p id="state-why" class="muted">${esc(why)}</p>` : ""}
    <p class="muted">roles: ${esc(h.roles.join(", ") || "-")} · groups: ${esc(h.groups.join(", ") || "-")}
    · generation ${st.generation ?? "-"} · kept: ${esc(d.generations.join(", ") || "-")}${drained ? " · drained: " + esc(st.drained) : ""}</p>
    ${st.error ? `<p class="err">unreachable: ${esc(st.error)}</p>` : ""}${ops}
    <h3>services</h3><table id="services"><tr><th>service</th><th>state</th><th>health</th><th>detail</th></tr>${services || '<tr><td colspan="4">none</td></tr>'}</table>
    <h3>drift</h3>${drift ? `<ul id="drift">${drift}</ul>` : "<p>none</p>"}
    <h3>last runs</h3><table id="host-runs"><tr><th>run</th><th>command</th><th>outcome</th><th>gen</th><th>changes</th><th>sent</th><th>when</th><th>error</th></tr>${runs}</table>
    ${Array.isArray(d.runs) ? "" : `<p class="err">${esc(d.runs.error)}</p>`}
    <h3>recent log lines</h3><pre id="host-logs">loading…</pre>`;
  api("/api/host/" + encodeURIComponent(name) + "/logs").then(
    (l) => { const p = $("#host-logs"); if (p) p.textContent = l.lines.map((x) => `${new Date(x.at_ms).toISOString()}  ${x.service}  ${x.text}`).join("\n") || "none"; },
    (e) => { const p = $("#host-logs"); if (p) p.textContent = e.message; });
  const ask = {
    apply: [`Apply the project to ${name}? Its files change and its services restart as needed.`, false],
    drain: [`Drain ${name}? Its services stop until it is undrained. Say why:`, true],
    undrain: [null, false],
  };
  for (const v of ["apply", "drain", "undrain"]) {
    const b = $("#do-" + v);
    if (b) b.onclick = () => act(v, name, {}, ask[v][0], ask[v][1]);
  }
}
