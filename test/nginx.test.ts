// deploy/nginx.conf for real: nginx runs the example's server block (TLS and the public port swapped for
// a loopback port) in front of a server, and every client goes through it — native WebSocket, SSE,
// long-polling, Socket.IO (polling, and the upgrade), pusher-js and the Pusher SDK, the HTTP API, the
// load balancer's /health, /metrics, /client.js and the dashboard; and /client.js revalidated through
// an nginx that compresses it. .ci/run installs nginx when missing; without it this test fails saying so.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { startServer, api, API_KEY } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { SseStream, request } from './helpers/http-stream.js';
import { freePort, until } from './helpers/redis.js';
import { portOpen } from './helpers/cli.js';
import { nextEvent, sioConnect, upgraded } from './helpers/sio.js';
import { APP, pusherClient, sdk } from './helpers/pusher.js';

const NGINX = process.env.NGINX_PATH ?? ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));
const example = readFileSync(fileURLToPath(new URL('../deploy/nginx.conf', import.meta.url)), 'utf8');

/** The example, served on `port` without TLS, proxying to `upstream`; everything else as shipped. */
function config(dir: string, port: number, upstream: number): string {
  const site = example
    .replace('server 127.0.0.1:6001;', `server 127.0.0.1:${upstream};`)
    .replace(/listen 443 ssl http2;/, `listen 127.0.0.1:${port};`)
    .replace(/^\s*ssl_certificate(_key)?\s.*$/gm, '');
  const tmp = (name: string) => `${name}_temp_path ${join(dir, name)};`;
  return `daemon off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 256; }
http {
  access_log off;
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(tmp).join('\n  ')}
${site}
}
`;
}

function within<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  return Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms).unref())]);
}

/** nginx running the example (its site passed through `edit`) in front of `upstream`: its URL, and what it logged. */
async function startNginx(t: { teardown(fn: () => unknown): void }, upstream: number, edit: (conf: string) => string = (c) => c): Promise<{ front: string; port: number; errors: () => string }> {
  if (!NGINX) throw new Error("nginx not found: install it with 'apt-get install -y nginx' (or set NGINX_PATH)");
  const dir = mkdtempSync(join(tmpdir(), 'rt-nginx-'));
  const port = await freePort();
  writeFileSync(join(dir, 'nginx.conf'), edit(config(dir, port, upstream)));
  const nginx = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errors = '';
  nginx.stderr.on('data', (d) => (errors += d));
  t.teardown(() => {
    nginx.kill('SIGQUIT');
    rmSync(dir, { recursive: true, force: true });
  });
  await until('nginx listening', async () => (nginx.exitCode !== null ? Promise.reject(new Error(`nginx exited: ${errors}`)) : await portOpen(port)));
  return { front: `http://127.0.0.1:${port}`, port, errors: () => errors };
}

t.test('every transport works through the example nginx configuration', async (t) => {
  const s = await startServer(t, { workers: 2, dashboard: true, trustProxy: ['127.0.0.1'], pusherApps: [APP] });
  const { front, port, errors } = await startNginx(t, s.port);

  for (const path of ['/health', '/metrics', '/client.js', '/dashboard']) {
    const res = await request('GET', front + path);
    t.equal(res.status, 200, `${path} through nginx (${res.status})`);
  }

  const ws = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
  t.teardown(() => ws.close());
  await ws.request({ op: 'subscribe', channel: 'via-nginx' });
  const sse = await SseStream.open(`${front}/sse?channels=via-nginx`);
  t.teardown(() => sse.close());
  await sse.until((evs) => evs.some((e) => e.event === 'rt:subscribed'), 8000, 'the SSE subscription');
  const open = (await request('GET', `${front}/poll`)).json;
  const sid = open.frames[0].session as string;
  t.equal((await request('POST', `${front}/poll?sid=${sid}`, JSON.stringify({ op: 'subscribe', channel: 'via-nginx', ref: 1 }))).status, 200, 'a long-polling POST');
  const upgradedSio = await sioConnect(t, front, { transports: ['polling', 'websocket'] });
  await upgraded(upgradedSio);
  const pollingSio = await sioConnect(t, front, { transports: ['polling'] });
  for (const so of [upgradedSio, pollingSio]) t.same(await so.emitWithAck('subscribe', { channel: 'via-nginx' }), { ok: true });
  const pusher = pusherClient(t, port);
  const pusherGot = new Promise<unknown>((resolve) => pusher.subscribe('via-nginx').bind('api', resolve));
  await within(new Promise<void>((resolve) => pusher.channel('via-nginx').bind('pusher:subscription_succeeded', () => resolve())), 'the pusher-js subscription at /app/');

  const sioGot = [upgradedSio, pollingSio].map((so) => nextEvent(so, 'api'));
  const pub = await api(front, '/api/publish', { channel: 'via-nginx', event: 'api', data: { n: 1 } });
  t.equal(pub.status, 200, 'the HTTP API through nginx');
  t.match(await ws.next((f) => f.op === 'message'), { channel: 'via-nginx', data: { n: 1 } }, 'WebSocket');
  t.match(JSON.parse((await sse.until((evs) => evs.find((e) => e.event === 'api'), 8000, 'the SSE event')).data), { data: { n: 1 } }, 'SSE');
  let ack = open.seq as number;
  const polled = await until('the long-poll answer', async () => {
    const r = (await request('GET', `${front}/poll?sid=${sid}&ack=${ack}`)).json;
    ack = r.seq;
    return r.frames.find((f: { op: string }) => f.op === 'message');
  });
  t.match(polled, { channel: 'via-nginx', data: { n: 1 } }, 'long-polling');
  for (const got of sioGot) t.same(((await got) as unknown[]).slice(0, 2), ['via-nginx', { n: 1 }], 'Socket.IO');
  t.same(await within(pusherGot, 'the pusher-js event'), { n: 1 }, 'pusher-js at /app/');

  const sdkGot = new Promise<unknown>((resolve) => pusher.channel('via-nginx').bind('sdk', resolve));
  const trigger = await sdk(port).trigger('via-nginx', 'sdk', { n: 2 });
  t.equal(trigger.status, 200, 'the Pusher SDK at /apps/');
  t.same(await within(sdkGot, 'the Pusher SDK event'), { n: 2 });
  t.equal(errors().trim(), '', 'nginx logged no error');
});

t.test('/client.js through an nginx that compresses it: the weak ETag nginx hands out revalidates with 304', async (t) => {
  const s = await startServer(t, { workers: 1 });
  const { front } = await startNginx(t, s.port, (c) => c.replace('location = /client.js {', 'location = /client.js {\n        gzip on; gzip_types application/javascript;'));
  // fetch asks for gzip as a browser does, and keeps the tag as the browser's cache would.
  const first = await fetch(`${front}/client.js`);
  t.equal(first.status, 200);
  t.equal(first.headers.get('content-encoding'), 'gzip', 'nginx compressed it');
  const etag = first.headers.get('etag') ?? '';
  t.match(etag, /^W\/"/, `nginx weakened the tag (${etag})`);
  t.ok((await first.text()).includes('RtActors'), 'the bundle');
  const again = await fetch(`${front}/client.js`, { headers: { 'if-none-match': etag } });
  t.equal(again.status, 304, 'revalidated without sending the bundle again');
  await again.text();
  // A cache holding several versions asks with a list.
  const listed = await fetch(`${s.http}/client.js`, { headers: { 'if-none-match': `"older", ${etag}` } });
  t.equal(listed.status, 304, 'a list holding the tag matches too');
  await listed.text();
  const other = await fetch(`${s.http}/client.js`, { headers: { 'if-none-match': '"older"' } });
  t.equal(other.status, 200, 'another tag gets the bundle');
  await other.text();
});

t.test('a page served from the proxy\'s own origin may use /ws, /sse, /poll and the API through it (the server sees the Host it was asked for)', async (t) => {
  const s = await startServer(t, { workers: 1 });
  const { front, port } = await startNginx(t, s.port);
  // A page of https://realtime.example.com talks to https://realtime.example.com: same origin, and no
  // --allowed-origins needed. Browsers send Origin on WebSocket upgrades, on EventSource/fetch
  // requests in CORS mode and on every POST.
  const origin = front;
  const sse = await SseStream.open(`${front}/sse?channels=same-origin`, { origin });
  t.teardown(() => sse.close());
  t.equal(sse.status, 200, `SSE (${sse.status} ${sse.raw.slice(0, 120)})`);
  const poll = await request('GET', `${front}/poll`, undefined, { origin });
  t.equal(poll.status, 200, `a polling session (${poll.status} ${poll.text.slice(0, 120)})`);
  const post = await request('POST', `${front}/api/publish`, JSON.stringify({ channel: 'same-origin', event: 'e', data: 1 }), { origin, authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' });
  t.equal(post.status, 200, `an API POST, as the dashboard sends (${post.status} ${post.text.slice(0, 120)})`);
  const ws = await within(
    new Promise<number>((resolve) => {
      const sock = new WebSocket(`ws://127.0.0.1:${port}/ws`, { origin });
      sock.on('open', () => (sock.close(), resolve(101)));
      sock.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      sock.on('error', () => resolve(0));
    }),
    'the WebSocket upgrade',
  );
  t.equal(ws, 101, 'a WebSocket');
  // Another origin is still refused: the check is not off, it sees the right host.
  const other = await request('GET', `${front}/poll`, undefined, { origin: 'https://evil.example' });
  t.equal(other.status, 403);
});
