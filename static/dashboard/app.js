// rt-actors dashboard: polls /api/stats every second (each once the last answered), plots rates on canvas, inspects a channel
// through /api/tap (a fetch stream) and publishes through /api/publish. The credential lives in this
// tab's sessionStorage and travels only in the Authorization header, never in a URL.
'use strict';

const TOKEN_KEY = 'rt-dashboard-token';
const POLL_MS = 1000;
const HISTORY = 120; // seconds kept in the plots
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(TOKEN_KEY) || '';
let timer = null;
let prev = null;
const series = { t: [], in: [], out: [], pub: [], conn: [] };
const refusalHistory = []; // [time, refusals] pairs for the 10 s column
const latencyHistory = []; // [time, latency] pairs for the p99 of the last 10 s

function authed(path, init = {}) {
  const headers = Object.assign({}, init.headers, { authorization: 'Bearer ' + token });
  return fetch(path, Object.assign({}, init, { headers }));
}

// ---- formatting

function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + 'M';
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
function fmtBytes(b) {
  if (!b) return '0';
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + ' ' + u[i];
}
function fmtSeconds(s) {
  if (s === null || s === undefined) return '–';
  if (s < 0.001) return (s * 1e6).toFixed(0) + ' µs';
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + ' ms';
  return s.toFixed(2) + ' s';
}
function fmtUptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}
function text(id, v) { const el = $(id); if (el.textContent !== v) el.textContent = v; }
function cell(tr, v, cls) { const td = document.createElement('td'); td.textContent = v; if (cls) td.className = cls; tr.appendChild(td); return td; }
function fillTable(id, rows, build) {
  const body = $(id).tBodies[0];
  const frag = document.createDocumentFragment();
  for (const r of rows) { const tr = document.createElement('tr'); build(tr, r); frag.appendChild(tr); }
  body.replaceChildren(frag);
}

// ---- plots (canvas, drawn here: no library)

function plot(canvas, lines) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const padL = 48, padB = 18, padT = 8, padR = 8;
  const n = series.t.length;
  let max = 1;
  for (const l of lines) for (const v of l.data) if (v > max) max = v;
  max = niceCeil(max);
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = '#8a99a8';
  g.strokeStyle = '#263240';
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = padT + ((h - padT - padB) * i) / 4;
    g.beginPath(); g.moveTo(padL, y + 0.5); g.lineTo(w - padR, y + 0.5); g.stroke();
    g.textAlign = 'right'; g.textBaseline = 'middle';
    g.fillText(fmtNum((max * (4 - i)) / 4), padL - 6, y);
  }
  g.textAlign = 'left'; g.textBaseline = 'bottom';
  g.fillText(`-${HISTORY}s`, padL, h);
  g.textAlign = 'right';
  g.fillText('now', w - padR, h);
  const x = (i) => padL + ((w - padL - padR) * (HISTORY - (n - 1 - i))) / HISTORY;
  const y = (v) => padT + (h - padT - padB) * (1 - v / max);
  for (const l of lines) {
    if (n < 1) continue;
    g.strokeStyle = l.color;
    g.lineWidth = 2;
    g.beginPath();
    l.data.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
    if (n === 1) g.lineTo(x(0) + 1, y(l.data[0]));
    g.stroke();
  }
}
/** A round axis maximum whose quarters are round too (4 grid lines). */
function niceCeil(v) {
  if (v <= 4) return 4;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 4, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

// ---- stats

async function poll() {
  let res;
  try {
    res = await authed('/api/stats');
  } catch {
    text('updated', 'server unreachable');
    $('status').className = 'badge down';
    text('status', 'unreachable');
    return;
  }
  if (res.status === 401) return signOut('The credential was refused.');
  if (!res.ok) { text('updated', `stats: HTTP ${res.status}`); return; }
  render(await res.json());
}

function render(s) {
  $('status').className = 'badge ' + s.status;
  text('status', s.status);
  text('host', s.host);
  text('workers', `${s.workers.alive}/${s.workers.total}` + (s.workers.stuck ? ` (${s.workers.stuck} stuck)` : ''));
  text('uptime', fmtUptime(s.uptime));
  text('redis', s.redis.enabled ? `${s.redis.connected}/${s.redis.shards} shards connected` : 'off');
  text('updated', 'updated ' + new Date(s.time).toLocaleTimeString());
  text('connections-total', String(s.connections.total));
  text('rss', fmtBytes(s.process.residentBytes));
  // The server's p99 is since start: after hours of traffic a slowdown now would hardly move it.
  latencyHistory.push([s.time, s.latency]);
  while (latencyHistory.length > 1 && s.time - latencyHistory[0][0] > 10_000) latencyHistory.shift();
  text('latency-p99', fmtSeconds(windowQuantile(latencyHistory[0][1], s.latency, 0.99)));

  const refusalsTotal = Object.values(s.refusals).reduce((a, b) => a + b, 0);
  if (prev) {
    const dt = Math.max(0.001, (s.time - prev.time) / 1000);
    const rate = (a, b) => Math.max(0, (a - b) / dt);
    const rin = rate(s.messages.in, prev.messages.in), rout = rate(s.messages.out, prev.messages.out), rpub = rate(s.messages.published, prev.messages.published);
    text('rate-in', fmtNum(rin));
    text('rate-out', fmtNum(rout));
    text('rate-published', fmtNum(rpub));
    text('rate-refusals', fmtNum(rate(refusalsTotal, prev.refusalsTotal)));
    text('cpu', (100 * rate(s.process.cpuSeconds, prev.process.cpuSeconds)).toFixed(0) + ' %');
    push(s.time, rin, rout, rpub, s.connections.total);
  } else {
    push(s.time, 0, 0, 0, s.connections.total);
  }
  prev = Object.assign({}, s, { refusalsTotal });
  plot($('plot-messages'), [
    { data: series.in, color: css('--in') },
    { data: series.out, color: css('--out') },
    { data: series.pub, color: css('--pub') },
  ]);
  plot($('plot-connections'), [{ data: series.conn, color: css('--in') }]);

  fillTable('by-kind', s.connections.byKind, (tr, k) => { cell(tr, k.transport); cell(tr, k.protocol); cell(tr, String(k.count), 'n'); });
  fillTable('threads', s.threads, (tr, t) => {
    tr.dataset.thread = t.thread;
    cell(tr, t.thread === 'main' ? 'main' : 'shard ' + t.thread);
    cell(tr, t.up ? 'up' : 'down', t.up ? 'up' : 'down');
    cell(tr, String(t.connections), 'n');
    cell(tr, String(t.subscriptions), 'n');
    cell(tr, String(t.channels), 'n');
    cell(tr, fmtBytes(t.heapUsedBytes), 'n');
    cell(tr, fmtSeconds(t.eventLoopDelayP99Seconds), 'n');
    cell(tr, (100 * t.eventLoopUtilization).toFixed(0) + ' %', 'n');
    cell(tr, t.redisUp === undefined ? '–' : t.redisUp ? 'connected' : 'reconnecting', t.redisUp === false ? 'down' : '');
  });

  refusalHistory.push([s.time, s.refusals]);
  while (refusalHistory.length > 1 && s.time - refusalHistory[0][0] > 10_000) refusalHistory.shift();
  const old = refusalHistory[0][1];
  fillTable('refusals', Object.entries(s.refusals), (tr, [reason, n]) => {
    tr.dataset.reason = reason;
    cell(tr, reason);
    cell(tr, String(n), 'n' + (n > 0 ? ' nonzero' : ''));
    cell(tr, String(n - (old[reason] || 0)), 'n');
  });
  fillTable('top-channels', s.topChannels, (tr, c) => {
    tr.className = 'clickable';
    tr.dataset.channel = c.name;
    cell(tr, c.name);
    cell(tr, String(c.subscribers), 'n');
    cell(tr, c.presence === undefined ? '–' : String(c.presence), 'n');
    cell(tr, String(c.offset), 'n');
    tr.addEventListener('click', () => {
      $('inspect-channel').value = c.name;
      inspect(c.name);
      if (c.name.startsWith('presence-')) { $('presence-channel').value = c.name; showPresence(); }
    });
  });
}

/** The bucket bound under which q of the publications between two answers fall (null: none). */
function windowQuantile(old, now, q) {
  const total = now.count - old.count;
  if (total <= 0 || !now.buckets || !old.buckets) return null;
  for (let i = 0; i < now.buckets.length; i++) {
    if (now.buckets[i].count - (old.buckets[i] ? old.buckets[i].count : 0) >= q * total) return now.buckets[i].le;
  }
  return now.buckets.length ? now.buckets[now.buckets.length - 1].le : null;
}

function push(t, rin, rout, rpub, conn) {
  series.t.push(t); series.in.push(rin); series.out.push(rout); series.pub.push(rpub); series.conn.push(conn);
  if (series.t.length > HISTORY) for (const k of Object.keys(series)) series[k].shift();
}

// ---- presence

let presenceTimer = null;
async function showPresence() {
  clearInterval(presenceTimer);
  const load = async () => {
    const ch = $('presence-channel').value.trim();
    if (!ch) return;
    const res = await authed('/api/channels/' + encodeURIComponent(ch) + '/users').catch(() => null);
    if (!res) return;
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      text('presence-summary', (body.error && body.error.message) || `HTTP ${res.status}`);
      $('presence-members').replaceChildren();
      return;
    }
    text('presence-summary', `${body.users.length} member${body.users.length === 1 ? '' : 's'} of ${ch}`);
    const frag = document.createDocumentFragment();
    for (const u of body.users) {
      const li = document.createElement('li');
      li.textContent = u.user_id + (u.user_info === undefined || u.user_info === null ? '' : '  ' + JSON.stringify(u.user_info));
      li.dataset.user = u.user_id;
      frag.appendChild(li);
    }
    $('presence-members').replaceChildren(frag);
  };
  await load();
  presenceTimer = setInterval(load, 2000);
}

// ---- inspector

let tapAbort = null;
let inspected = '';
function logLine(parts, cls) {
  const li = document.createElement('li');
  if (cls) li.className = cls;
  for (const [t, c] of parts) {
    const span = document.createElement('span');
    span.textContent = t;
    if (c) span.className = c;
    li.appendChild(span);
  }
  const log = $('inspector-log');
  log.insertBefore(li, log.firstChild);
  while (log.children.length > 200) log.removeChild(log.lastChild);
}

async function inspect(channel) {
  stopInspect();
  inspected = channel;
  const ctrl = new AbortController();
  tapAbort = ctrl;
  $('inspect-stop').disabled = false;
  text('inspect-state', 'connecting…');
  let res;
  try {
    res = await authed('/api/tap?channel=' + encodeURIComponent(channel), { signal: ctrl.signal });
  } catch (err) {
    if (!ctrl.signal.aborted) text('inspect-state', 'cannot reach the server');
    return;
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    text('inspect-state', (body.error && body.error.message) || `HTTP ${res.status}`);
    return;
  }
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line) onFrame(JSON.parse(line));
      }
    }
    if (tapAbort === ctrl) text('inspect-state', 'stream ended');
  } catch {
    if (!ctrl.signal.aborted) text('inspect-state', 'stream broken');
  }
}

function onFrame(f) {
  if (f.op === 'subscribed') {
    text('inspect-state', `watching ${f.channel} (offset ${f.offset})`);
    logLine([[`watching ${f.channel} from offset ${f.offset}`]], 'sys');
  } else if (f.op === 'message') {
    const time = new Date().toLocaleTimeString();
    logLine([[time + ' '], [`#${f.offset} `, 'off'], [f.event, 'ev'], [' ' + JSON.stringify(f.data)]]);
  } else if (f.op === 'join' || f.op === 'leave') {
    logLine([[`${f.op} ${f.member && f.member.user_id}`]], 'sys');
  } else if (f.op === 'error') {
    text('inspect-state', f.error.message);
    logLine([[`refused: ${f.error.message}`]], 'sys');
  } else if (f.op === 'disconnect') {
    logLine([[`disconnected: ${f.reason}`]], 'sys');
  }
}

function stopInspect() {
  if (tapAbort) tapAbort.abort();
  tapAbort = null;
  // A test publish goes to the watched channel, or else to the one in the box: not to one left behind.
  inspected = '';
  $('inspect-stop').disabled = true;
  text('inspect-state', '');
}

async function publishTest(e) {
  e.preventDefault();
  const channel = inspected || $('inspect-channel').value.trim();
  if (!channel) return text('publish-result', 'choose a channel first');
  let data;
  const raw = $('publish-data').value.trim();
  try {
    data = raw === '' ? null : JSON.parse(raw);
  } catch {
    return text('publish-result', 'data is not valid JSON');
  }
  const res = await authed('/api/publish', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ channel, event: $('publish-event').value.trim(), data }) }).catch(() => null);
  if (!res) return text('publish-result', 'cannot reach the server');
  const body = await res.json().catch(() => ({}));
  text('publish-result', res.ok ? `published to ${channel} at offset ${body.offsets[channel]}` : (body.error && body.error.message) || `HTTP ${res.status}`);
}

// ---- sign in / out

async function signIn(candidate) {
  // fetch refuses such a header before sending anything, which would read as "cannot reach the server".
  const bad = /[^\u0000-\u00ff]/.exec(candidate);
  if (bad) {
    const code = 'U+' + bad[0].codePointAt(0).toString(16).toUpperCase().padStart(4, '0');
    text('login-error', `the key or token contains "${bad[0]}" (${code}), which an HTTP header cannot carry: check what was pasted`);
    return false;
  }
  token = candidate;
  const res = await authed('/api/stats').catch(() => null);
  if (!res || !res.ok) {
    token = '';
    text('login-error', !res ? 'cannot reach the server' : res.status === 401 ? 'wrong key or token' : `HTTP ${res.status}`);
    return false;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $('login').hidden = true;
  $('app').hidden = false;
  render(await res.json());
  pollAfter(++polling);
  return true;
}

// The next poll once this one settled: on a fixed interval a slow server had requests pile up, and an
// answer arriving after a newer one drew the older figures over them. `session` ends the loop on sign-out.
let polling = 0;
function pollAfter(session) {
  timer = setTimeout(async () => {
    await poll().catch(() => {});
    if (session === polling) pollAfter(session);
  }, POLL_MS);
}

function signOut(why) {
  polling++;
  clearTimeout(timer);
  clearInterval(presenceTimer);
  stopInspect();
  sessionStorage.removeItem(TOKEN_KEY);
  token = '';
  prev = null;
  for (const k of Object.keys(series)) series[k].length = 0;
  refusalHistory.length = 0;
  latencyHistory.length = 0;
  $('app').hidden = true;
  $('login').hidden = false;
  text('login-error', why || '');
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    signIn($('login-token').value);
  });
  $('logout').addEventListener('click', () => signOut());
  $('presence-form').addEventListener('submit', (e) => { e.preventDefault(); showPresence(); });
  $('inspect-form').addEventListener('submit', (e) => { e.preventDefault(); inspect($('inspect-channel').value.trim()); });
  $('inspect-stop').addEventListener('click', stopInspect);
  $('publish-form').addEventListener('submit', publishTest);
  if (token) signIn(token).then((ok) => ok || signOut());
  else $('login').hidden = false;
});
