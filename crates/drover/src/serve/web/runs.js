// drover serve: the runs page (one row per run, a plot of run durations
// over time) and a run's page (a timeline: one bar per host, split by
// phase). The charts are inline SVG written here: no chart library.
"use strict";

const PHASES = ["connect", "hello", "diff", "send", "activate", "restart", "health", "confirm"];

function dur(ms) {
  if (ms == null) return "-";
  if (ms < 1000) return Math.round(ms) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  const s = Math.round(ms / 1000);
  return Math.floor(s / 60) + "m " + String(s % 60).padStart(2, "0") + "s";
}
function outcomes(o) {
  return Object.entries(o || {}).map(([k, n]) => `${n} ${k}`).join(", ") || "no hosts";
}
function svgEsc(s) { return esc(s); }

// Run durations over time: x the start, y the duration; one dot per run.
function durationPlot(runs) {
  const pts = runs.filter((r) => r.duration_ms != null);
  if (!pts.length) return '<p class="muted">no finished runs to plot</p>';
  const W = 640, H = 180, L = 60, B = 24, T = 10, R = 10;
  const t0 = Math.min(...pts.map((r) => r.started_ms)), t1 = Math.max(...pts.map((r) => r.started_ms));
  const ymax = Math.max(...pts.map((r) => r.duration_ms), 1);
  const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (ms) => H - B - (ms / ymax) * (H - B - T);
  const dots = pts.map((r) => `<circle class="run-dot o-${r.status}" data-run="${r.id}" data-ms="${r.duration_ms}"
    cx="${x(r.started_ms).toFixed(1)}" cy="${y(r.duration_ms).toFixed(1)}" r="4"><title>run ${r.id} ${svgEsc(r.command)}: ${dur(r.duration_ms)}</title></circle>`).join("");
  const line = pts.slice().sort((a, b) => a.started_ms - b.started_ms)
    .map((r) => `${x(r.started_ms).toFixed(1)},${y(r.duration_ms).toFixed(1)}`).join(" ");
  return `<svg id="durations" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="run durations over time">
    <line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" class="axis"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" class="axis"/>
    <text x="${L - 4}" y="${T + 8}" text-anchor="end">${dur(ymax)}</text><text x="${L - 4}" y="${H - B}" text-anchor="end">0</text>
    <text x="${L}" y="${H - 6}">${new Date(t0).toLocaleString()}</text><text x="${W - R}" y="${H - 6}" text-anchor="end">${new Date(t1).toLocaleString()}</text>
    <polyline points="${line}" class="trend"/>${dots}</svg>`;
}

async function showRuns() {
  const sec = $("#runs");
  try {
    const runs = await api("/api/runs?limit=100");
    sec.innerHTML = `<h2>runs</h2><h3>duration over time</h3>${durationPlot(runs)}
      <table id="runs-table"><tr><th>run</th><th>command</th><th>by</th><th>revision</th><th>status</th><th>hosts</th>
      <th>sent</th><th>took</th><th>when</th></tr>` +
      runs.map((r) => `<tr data-run="${r.id}"><td><a href="#/run/${r.id}">${r.id}</a></td><td>${esc(r.command)}</td>
      <td>${esc(r.user)}</td><td><code>${esc(r.project_rev)}</code></td><td>${esc(r.status)}</td>
      <td class="hosts" data-hosts="${r.hosts}">${esc(outcomes(r.outcomes))}</td><td class="sent">${esc(r.bytes_sent_human)}</td>
      <td>${dur(r.duration_ms)}</td><td>${ago(r.started_ms)}</td></tr>`).join("") + "</table>";
  } catch (e) { sec.innerHTML = `<p class="err">${esc(e.message)}</p>`; }
}

// One bar per host from its start to its end on the run's time axis, split
// into its phases (the rest of its time: compiling, closing, retry waits).
function timeline(hosts) {
  if (!hosts.length) return '<p class="muted">no hosts in this run</p>';
  const W = 760, L = 120, R = 10, ROW = 18, H = hosts.length * ROW + 24;
  const t0 = Math.min(...hosts.map((h) => h.started_ms));
  const t1 = Math.max(...hosts.map((h) => h.started_ms + h.duration_ms), t0 + 1);
  const sx = (W - L - R) / (t1 - t0);
  const bars = hosts.map((h, i) => {
    const y = i * ROW + 4;
    let at = L + (h.started_ms - t0) * sx, used = 0;
    const segs = PHASES.map((p) => {
      const ms = (h.phases && h.phases[p + "_ms"]) || 0;
      used += ms;
      const w = ms * sx, x = at;
      at += w;
      return ms > 0 ? `<rect class="ph-${p}" data-phase="${p}" data-ms="${ms}" x="${x.toFixed(2)}" y="${y}" width="${w.toFixed(2)}" height="${ROW - 4}"><title>${svgEsc(h.host)} ${p}: ${dur(ms)}</title></rect>` : "";
    }).join("");
    const rest = Math.max(0, h.duration_ms - used);
    const other = rest > 0 ? `<rect class="ph-other" data-phase="other" data-ms="${rest}" x="${at.toFixed(2)}" y="${y}" width="${(rest * sx).toFixed(2)}" height="${ROW - 4}"><title>${svgEsc(h.host)} other: ${dur(rest)}</title></rect>` : "";
    return `<g class="bar" data-host="${svgEsc(h.host)}" data-ms="${h.duration_ms}"><text x="${L - 6}" y="${y + ROW - 7}" text-anchor="end">${svgEsc(h.host)}</text>${segs}${other}</g>`;
  }).join("");
  const legend = PHASES.concat(["other"]).map((p) => `<span class="legend"><span class="dot ph-${p}"></span>${p}</span>`).join(" ");
  return `<svg id="timeline" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="hosts by phase">${bars}
    <text x="${L}" y="${H - 4}">0</text><text x="${W - R}" y="${H - 4}" text-anchor="end">${dur(t1 - t0)}</text></svg><p>${legend}</p>`;
}

async function showRun(id) {
  const sec = $("#runs");
  let d;
  try { d = await api("/api/run/" + id); } catch (e) { sec.innerHTML = `<p class="err">${esc(e.message)}</p>`; return; }
  const r = d.run;
  sec.innerHTML = `<h2 id="run-title">run ${r.id}: ${esc(r.command)} <span class="muted">${esc(r.args)}</span></h2>
    <p>by <b>${esc(r.user)}</b> · revision <code>${esc(r.project_rev)}</code> · ${esc(r.status)} · ${esc(outcomes(r.outcomes))}
    · sent <span id="run-sent">${esc(r.bytes_sent_human)}</span> · took ${dur(r.duration_ms)} · ${new Date(r.started_ms).toLocaleString()}</p>
    <h3>timeline</h3>${timeline(d.hosts)}
    <table id="run-hosts"><tr><th>host</th><th>outcome</th><th>gen</th><th>changes</th><th>sent</th><th>took</th><th>error</th></tr>` +
    d.hosts.map((h) => `<tr data-host="${esc(h.host)}"><td><a href="#/host/${encodeURIComponent(h.host)}">${esc(h.host)}</a></td>
      <td>${esc(h.outcome)}</td><td>${h.generation ?? "-"}</td><td>${h.changes}</td><td class="sent">${esc(h.bytes_sent_human)}</td>
      <td>${dur(h.duration_ms)}</td><td class="err">${esc(h.error)}</td></tr>`).join("") + `</table><p><a href="#/runs">all runs</a></p>`;
}
