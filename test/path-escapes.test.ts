// A path that does not percent-decode (`%ZZ`, a cut-off UTF-8 sequence) is a 400 on every route that
// takes a name from the path, and an unknown key on Pusher's WebSocket: before, decodeURIComponent's
// URIError escaped the uWS handler — an HTTP one replaced the shard (its connections and channels with
// it), the Pusher upgrade aborted the whole process. Anyone could send them: no key is checked first.
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { startServer, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { APP, RawPusher, pusherOptions } from './helpers/pusher.js';

const s = await startServer(t, { workers: 2, ...pusherOptions() });

/** Subscribers spread over both shards, to see that neither was replaced. */
const clients: TestClient[] = [];
for (let i = 0; i < 4; i++) {
  const c = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => c.close());
  const r = await c.request({ op: 'subscribe', channel: 'escapes' });
  if (!r.ok) throw new Error(`subscribe: ${JSON.stringify(r)}`);
  clients.push(c);
}

async function stillServing(t: Test, tag: string): Promise<void> {
  const r = await api(s.http, '/api/publish', { channel: 'escapes', event: 'sentinel', data: tag });
  t.equal(r.status, 200, `publish after the bad requests (${tag})`);
  for (const c of clients) await c.next((f) => f.event === 'sentinel' && f.data === tag);
  t.ok(clients.every((c) => !c.closed), 'no subscriber lost its connection (no shard was replaced)');
  const health = await fetch(`${s.http}/health`);
  t.equal(health.status, 200, '/health is 200, not degraded');
}

t.test('native API routes answer 400 naming the escape', async (t) => {
  const bad = [
    ['GET', '/api/channels/%ZZ'],
    ['GET', '/api/channels/%E0'],
    ['GET', '/api/channels/%E0%A4%A/users'],
    ['POST', '/api/users/%ZZ/disconnect'],
  ] as const;
  for (const [method, path] of bad) {
    for (const key of [undefined, null]) {
      // Twice per shard at least: requests land on either.
      for (let i = 0; i < 2; i++) {
        const r = await api(s.http, path, method === 'POST' ? {} : undefined, { key, method });
        t.equal(r.status, 400, `${method} ${path}${key === null ? ' without a key' : ''}: 400`);
        t.equal(r.body?.error?.code, 'bad_request');
        t.match(r.body?.error?.message, /malformed percent-escape/);
      }
    }
  }
  await stillServing(t, 'native');
});

t.test('Pusher HTTP API routes answer 400', async (t) => {
  for (const path of [`/apps/${APP.id}/channels/%ZZ`, '/apps/%E0%A4%A/channels', `/apps/${APP.id}/users/%ZZ/terminate_connections`]) {
    for (let i = 0; i < 2; i++) {
      const r = await fetch(s.http + path, { method: path.endsWith('terminate_connections') ? 'POST' : 'GET' });
      t.equal(r.status, 400, `${path}: 400`);
      t.equal((await r.json()).error?.code, 'bad_request');
    }
  }
  await stillServing(t, 'pusher-http');
});

t.test("a Pusher connection to a key that does not decode is refused with 4001; the process lives", async (t) => {
  for (const key of ['%ZZ', '%E0', 'app%']) {
    const raw = await RawPusher.open(t, `${s.url}/app/${key}?protocol=7`);
    const err = await raw.event('pusher:error');
    t.equal((typeof err.data === 'string' ? JSON.parse(err.data) : err.data).code, 4001, `${key}: pusher:error 4001`);
    t.equal((await raw.waitClose()).code, 4001, `${key}: closed with 4001`);
  }
  const ok = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  await ok.event('pusher:connection_established');
  t.pass('a good key still connects');
  await stillServing(t, 'pusher-ws');
});

// The query too: URLSearchParams read `%ZZ` as those characters and `%E0` as U+FFFD, so the request ran
// with a value nobody sent (`?prefix=%ZZ` answered 200 with no channels).
t.test('a malformed escape in a query parameter is a 400 naming it', async (t) => {
  const bad = [
    ['/api/channels?prefix=%ZZ', 'prefix', undefined],
    ['/api/channels?prefix=%E0%A4', 'prefix', undefined],
    ['/api/channels?api_key=%ZZ', 'api_key', null],
    ['/api/tap?channel=%ZZ', 'channel', undefined],
    ['/api/channels?prefix=ok&x=%ZZ', 'x', undefined],
  ] as const;
  for (const [path, name, key] of bad) {
    for (let i = 0; i < 2; i++) {
      const r = await api(s.http, path, undefined, { key });
      t.equal(r.status, 400, `${path}: 400`);
      t.equal(r.body?.error?.code, 'bad_request');
      t.match(r.body?.error?.message, `malformed percent-escape in query parameter "${name}"`);
    }
  }
  const good = await api(s.http, '/api/channels?prefix=%65sc');
  t.same(good.body.channels.map((c: { name: string }) => c.name), ['escapes'], 'a good escape still decodes');

  for (const path of ['/sse?channels=%ZZ', '/sse?channels=a%2', `/apps/${APP.id}/channels?filter_by_prefix=%ZZ`]) {
    const r = await fetch(s.http + path);
    t.equal(r.status, 400, `${path}: 400`);
    t.match((await r.json()).error, { code: 'bad_request', message: /malformed percent-escape in query parameter/ });
  }
  for (const path of ['/ws?format=%ZZ', '/ws?token=%E0']) {
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(s.url + path);
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => reject(new Error(`${path} opened`)));
      ws.on('error', () => {});
    });
    t.equal(status, 400, `${path}: upgrade refused with 400`);
    // The same URL without the upgrade (a client asking why its socket never opened) threw out of its
    // handler and replaced the shard.
    for (const method of ['GET', 'HEAD']) {
      for (let i = 0; i < 2; i++) {
        const r = await fetch(s.http + path, { method });
        t.equal(r.status, 400, `plain ${method} ${path}: 400`);
        if (method === 'GET') t.match((await r.json()).error, { code: 'bad_request', message: /malformed percent-escape in query parameter/ });
      }
    }
  }
  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=%ZZ`);
  const err = await raw.event('pusher:error');
  t.match(typeof err.data === 'string' ? JSON.parse(err.data) : err.data, { code: 4007, message: /query parameter "protocol"/ }, 'Pusher: told over the socket');
  await stillServing(t, 'query');
});
