/**
 * The dashboard's two pages, as text the host serves itself (also from the single file): a login
 * form, and the dashboard, whose script polls the host's own JSON routes every two seconds with
 * the session cookie and draws the last five minutes with uPlot.
 * @module
 */

const _STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: center; }
header h1 { font-size: 18px; margin: 0; } header .state { margin-left: auto; }
main { padding: 16px 20px; display: grid; gap: 16px; }
section { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 2px #0001; }
h2 { font-size: 15px; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e5e7eb; }
.ok { color: #137333; } .bad { color: #b3261e; } .muted { color: #6b7280; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
button { cursor: pointer; } .bar { background: #e5e7eb; height: 8px; border-radius: 4px; } .bar > div { background: #3b82f6; height: 8px; border-radius: 4px; }
form.login { max-width: 360px; margin: 80px auto; background: #fff; padding: 24px; border-radius: 8px; display: grid; gap: 12px; }
`;

function _esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The login form. */
export function loginPage(error?: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Outpost · sign in</title><style>${_STYLE}</style></head>
<body><form class="login" method="post" action="/ui/login">
<h1>Outpost</h1>
<label>Admin or read-only token <input id="token" name="token" type="password" autocomplete="current-password" required style="width:100%"></label>
${error ? `<p class="bad" id="error">${_esc(error)}</p>` : ""}
<button id="signin" type="submit">Sign in</button>
<p class="muted">The host made its admin token in &lt;data-dir&gt;/admin.token unless one was configured.</p>
</form></body></html>`;
}

/** The dashboard; `csrf` goes back with every change, `role` decides whether actions show. */
export function dashboardPage(csrf: string, role: "admin" | "read"): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Outpost</title>
<meta name="csrf" content="${_esc(csrf)}"><meta name="role" content="${role}">
<link rel="stylesheet" href="/ui/uplot.css"><style>${_STYLE}</style><script src="/ui/uplot.js"></script></head>
<body>
<header><h1>Outpost</h1><span id="version" class="muted"></span><span class="state" id="broker">…</span>
<form method="post" action="/ui/logout" style="margin:0"><input type="hidden" name="csrf" value="${_esc(csrf)}"><button>Sign out</button></form></header>
<main>
<section><h2>Handlers</h2><table id="handlers"><thead><tr><th>handler</th><th>status</th><th>version</th><th>tier</th><th>acked</th><th>rate /s</th><th>backlog</th><th>p50 / p99 ms</th><th>failed</th><th>DLQ</th><th>last error</th></tr></thead><tbody></tbody></table></section>
<div class="charts"><section><h2>Acked per second</h2><div id="rates"></div></section><section><h2>Backlog</h2><div id="backlog"></div></section></div>
<section><h2>Dead letters <input id="dlq-filter" placeholder="handler" size="14"></h2><pre id="dlq-entry" class="muted" style="white-space:pre-wrap;max-height:240px;overflow:auto"></pre><table id="dlq"><thead><tr><th>id</th><th>handler</th><th>subject</th><th>attempts</th><th>error</th><th>failed at</th><th></th></tr></thead><tbody></tbody></table></section>
<section><h2>Storage</h2><div id="storage"></div></section>
<section><h2>Releases</h2><div id="releases"></div></section>
</main>
<script>${_SCRIPT}</script></body></html>`;
}

// The page's script: plain JavaScript, no build step. Polls, keeps five minutes of points, draws.
const _SCRIPT = `
const csrf = document.querySelector('meta[name=csrf]').content;
const admin = document.querySelector('meta[name=role]').content === 'admin';
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
const get = (p) => fetch(p, { credentials: 'same-origin' }).then((r) => r.ok ? r.json() : Promise.reject(new Error(p + ': ' + r.status)));
const points = { t: [], rates: {}, backlog: {} };
let last = null, charts = {};
function chart(id, series, data) {
  const el = document.getElementById(id);
  const names = Object.keys(series);
  const key = id + ':' + names.join(',');
  if (!window.uPlot || !names.length) return;
  if (!charts[id] || charts[id].key !== key) {
    el.innerHTML = '';
    const opts = { width: el.clientWidth || 500, height: 180, series: [{}, ...names.map((n, i) => ({ label: n, stroke: ['#3b82f6', '#ef4444', '#10b981', '#f59e0b', '#8b5cf6'][i % 5] }))], axes: [{}, {}] };
    charts[id] = { key, plot: new uPlot(opts, data, el) };
  } else charts[id].plot.setData(data);
}
async function refresh() {
  let s;
  try { s = await get('/ui/api/state'); } catch (e) { document.getElementById('broker').textContent = 'host unreachable'; return; }
  document.getElementById('version').textContent = s.version + ' on ' + s.runtime;
  const b = document.getElementById('broker');
  b.textContent = s.ready ? 'ready' : 'not ready: ' + (s.reasons || []).join('; ');
  b.className = 'state ' + (s.ready ? 'ok' : 'bad');
  const now = Date.now() / 1000;
  const rows = [];
  for (const h of s.handlers) {
    const prev = last && last.handlers.find((x) => x.name === h.name);
    const rate = prev ? Math.max(0, (h.counts.acked - prev.counts.acked) / (now - last.t)) : 0;
    h.rate = rate;
    rows.push('<tr data-handler="' + esc(h.name) + '"><td>' + esc(h.name) + '</td><td class="' + (h.status === 'running' ? 'ok' : 'bad') + '">' + esc(h.status) + '</td><td>' + esc(h.version) +
      '</td><td>' + esc(h.isolation) + '</td><td class="acked">' + h.counts.acked + '</td><td>' + rate.toFixed(1) + '</td><td class="backlog">' + (h.backlog ?? '') +
      '</td><td>' + (h.p50Ms ?? '–') + ' / ' + (h.p99Ms ?? '–') + '</td><td>' + h.counts.failed + '</td><td>' + h.counts.deadLettered + '</td><td class="muted">' + esc(h.lastError ?? '') + '</td></tr>');
    // A shadow run or a canary beside the active version: its comparison under the handler's row.
    const pct = (x) => x === null || x === undefined ? 'n/a' : (x * 100).toFixed(1) + ' %';
    if (h.shadow) {
      const v = h.shadow;
      rows.push('<tr class="release" data-shadow="' + esc(h.name) + '"><td></td><td colspan="10">shadow ' + esc(v.candidate) + ' ' + esc(v.state) + (v.endReason ? ' (' + esc(v.endReason) + ')' : '') +
        ': ' + v.compared + ' of ' + v.limits.readings + ' compared, agreement ' + pct(v.agreement) + ', different output ' + v.counts['different output'] +
        ', new failures ' + v.counts['new failure'] + ', median ms ' + (v.latencyMs.active ?? '–') + ' active / ' + (v.latencyMs.shadow ?? '–') + ' shadow</td></tr>');
    }
    if (h.canary) {
      const v = h.canary;
      rows.push('<tr class="release" data-canary="' + esc(h.name) + '"><td></td><td colspan="10">canary ' + esc(v.candidate) + ' ' + esc(v.state) + (v.reason ? ' (' + esc(v.reason) + ')' : '') +
        ': ' + (v.policy.share * 100).toFixed(1) + ' % of readings; canary ' + v.canary.attempts + ' attempts, errors ' + pct(v.canary.errorRate) + ', p99 ' + (v.canary.p99Ms ?? '–') +
        ' ms; active errors ' + pct(v.activeVersion.errorRate) + ', p99 ' + (v.activeVersion.p99Ms ?? '–') + ' ms</td></tr>');
    }
  }
  document.querySelector('#handlers tbody').innerHTML = rows.join('');
  points.t.push(now);
  for (const h of s.handlers) { (points.rates[h.name] ??= []); (points.backlog[h.name] ??= []); }
  for (const name of Object.keys(points.rates)) {
    const h = s.handlers.find((x) => x.name === name);
    points.rates[name].push(h ? h.rate : null);
    points.backlog[name].push(h ? h.backlog ?? 0 : null);
  }
  if (points.t.length > 150) { points.t.shift(); for (const k of Object.keys(points.rates)) { points.rates[k].shift(); points.backlog[k].shift(); } }
  chart('rates', points.rates, [points.t, ...Object.values(points.rates)]);
  chart('backlog', points.backlog, [points.t, ...Object.values(points.backlog)]);
  document.getElementById('storage').innerHTML = s.storage.map((x) => '<div>' + esc(x.stream) + ' ' + x.bytes + ' of ' + x.maxBytes + ' bytes<div class="bar"><div style="width:' +
    Math.min(100, x.maxBytes > 0 ? 100 * x.bytes / x.maxBytes : 0).toFixed(1) + '%"></div></div></div>').join('');
  const r = s.releases;
  document.getElementById('releases').innerHTML = r ? 'active: release ' + esc(r.active.release) + ' ' + esc(r.active.name ?? '') + ' ' + esc(r.active.version ?? '') +
    (r.probation ? ' <b>on probation</b> (' + r.probation.handled + ' handled, ' + r.probation.failed + ' failed)' : '') +
    (r.previous ? '<br>previous: release ' + esc(r.previous.release) : '') + (r.lastRollback ? '<br>last rollback: ' + esc(JSON.stringify(r.lastRollback)) : '') +
    (r.failed.length ? '<br>failed: ' + r.failed.map((f) => esc(f.release + ' (' + f.reason + ')')).join(', ') : '') : '';
  last = { t: now, handlers: s.handlers };
  await refreshDlq();
}
async function refreshDlq() {
  const f = document.getElementById('dlq-filter').value.trim();
  const d = await get('/v1/dlq?limit=50' + (f ? '&handler=' + encodeURIComponent(f) : '')).catch(() => ({ entries: [] }));
  document.querySelector('#dlq tbody').innerHTML = d.entries.map((e) => '<tr data-id="' + e.id + '"><td>' + e.id + '</td><td>' + esc(e.handler) + '</td><td>' + esc(e.subject) +
    '</td><td>' + e.attempts + '</td><td title="' + esc(e.error.stack ?? '') + '">' + esc(e.error.name + ': ' + e.error.message) + '</td><td>' + esc(e.failedAt) + '</td><td>' +
    '<button class="show" data-id="' + e.id + '">Show</button> ' +
    (admin ? '<button class="replay" data-id="' + e.id + '">Replay</button> <button class="delete" data-id="' + e.id + '">Delete</button>' : '') + '</td></tr>').join('');
}
document.addEventListener('click', async (ev) => {
  const t = ev.target;
  if (!(t instanceof HTMLButtonElement) || !t.dataset.id) return;
  if (t.classList.contains('show')) {
    const e = await get('/v1/dlq/' + t.dataset.id).catch((err) => ({ error: String(err) }));
    document.getElementById('dlq-entry').textContent = JSON.stringify(e, null, 2);
    return;
  }
  t.disabled = true;
  const replay = t.classList.contains('replay');
  const r = await fetch('/v1/dlq/' + t.dataset.id + (replay ? '/replay' : ''), { method: replay ? 'POST' : 'DELETE', credentials: 'same-origin', headers: { 'x-csrf-token': csrf } });
  t.textContent = r.ok ? 'done' : 'failed';
  await refreshDlq();
});
document.getElementById('dlq-filter').addEventListener('input', () => void refreshDlq());
refresh();
setInterval(refresh, 2000);
`;
