// Repro of the open bug noted on issue 13 (stop 8): under CPU load, WebSocket connections that connected
// with a token are sometimes closed abruptly (1006) right after their welcome, so their requests never get
// a reply; anonymous connections are not. Run 4-5 copies at once: `for i in 1 2 3 4 5; do node
// scripts/repro-token-close.mjs & done; wait` (after npm run build). Prints "hang …" / "closed 1006".
import { createServer, signJwt } from '../dist/src/index.js';
import WebSocket from 'ws';
const sec = 'test-jwt-secret-0123456789';
const s = await createServer({ port: 0, host: '127.0.0.1', workers: 2, apiKey: 'k', jwtSecret: sec, logLevel: 'error', env: {} });
const tok = (u) => signJwt({ sub: u, exp: Math.floor(Date.now()/1000)+600, channels: ['presence-*'], user_info: { name: 'user ' + u } }, { secret: sec });
async function client(t) {
  const ws = new WebSocket(`ws://127.0.0.1:${s.port}/ws?token=${t}`);
  const waiters = []; ws.on('close', (code, reason) => { if (code !== 1005 && code !== 1000) console.log('closed', code, String(reason)); });
  ws.on('message', (m) => { const f = JSON.parse(String(m)); for (const w of [...waiters]) if (w.p(f)) { waiters.splice(waiters.indexOf(w), 1); w.r(f); } });
  const welcome = await new Promise((r) => { waiters.push({ p: (f) => f.op === 'welcome', r }); });
  let ref = 0;
  return { ws, welcome, req: (f, ms = 5000) => new Promise((res) => { const id = ++ref; const to = setTimeout(() => res({ timeout: true }), ms); waiters.push({ p: (x) => x.op === 'reply' && x.ref === id, r: (x) => { clearTimeout(to); res(x); } }); ws.send(JSON.stringify({ ...f, ref: id })); }) };
}
let bad = 0;
for (let k = 0; k < 30; k++) {
  const ch = 'presence-l' + k;
  const w = await client(tok('w'));
  const wr = await w.req({ op: 'subscribe', channel: ch }); if (wr.timeout) console.log('watcher hang', k, w.welcome.socket_id);
  const tabs = [];
  for (let i = 0; i < 4; i++) tabs.push(await client(tok('42')));
  for (const c of tabs) { const r = await c.req({ op: 'subscribe', channel: ch }); if (r.timeout) { bad++; const info = await fetch(`http://127.0.0.1:${s.port}/api/channels/${ch}`, { headers: { authorization: 'Bearer k' } }).then((x) => x.text()); const again = await c.req({ op: 'presence', channel: ch }, 3000); const other = await c.req({ op: 'subscribe', channel: 'zz' + k }, 3000); console.log('hang', k, c.welcome.socket_id, info, JSON.stringify(again), JSON.stringify(other)); } }
  for (const c of [w, ...tabs]) c.ws.close();
}
console.log('bad', bad);
await s.close();
