// Per-app connection quotas (pusherApps[].maxConnections): counted across the host's shards, refused
// with Pusher's 4004, released on close, and not leaked by a shard that crashes with connections open.
import t from 'tap';
import { createServer } from 'rt-actors';
import { startServer, api } from './helpers/server.js';
import { until } from './helpers/faults.js';
import { APP, APP_B, connected, pusherClient, RawPusher } from './helpers/pusher.js';

t.setTimeout(600_000);

type Attempt = { ok: true; raw: RawPusher; socketId: string } | { ok: false; error: any; close: { code: number; reason: string } };

/** Opens a raw Pusher connection: established, or refused with a pusher:error and a close code. */
async function attempt(t: { teardown(fn: () => unknown): void }, url: string): Promise<Attempt> {
  const raw = await RawPusher.open(t, url);
  const first = await raw.next((f) => f.event === 'pusher:connection_established' || f.event === 'pusher:error');
  if (first.event === 'pusher:connection_established') return { ok: true, raw, socketId: JSON.parse(first.data).socket_id };
  return { ok: false, error: first.data, close: await raw.waitClose() };
}

async function openConnections(s: { metrics?: unknown; http: string }): Promise<Record<string, number>> {
  const text = (await api(s.http, "/metrics")).body as string;
  const per: Record<string, number> = {};
  for (const m of text.matchAll(/^rt_connections\{([^}]*)\} (\d+)/gm)) {
    if (!m[1]!.includes('protocol="pusher"')) continue;
    const shard = /shard="([^"]+)"/.exec(m[1]!)?.[1] ?? /thread="([^"]+)"/.exec(m[1]!)?.[1] ?? '?';
    per[shard] = (per[shard] ?? 0) + Number(m[2]);
  }
  return per;
}

/** Opens `n` connections one after the other, each of which must be admitted. */
async function admitEach(t: Parameters<typeof attempt>[0] & { ok(v: unknown, msg: string): void }, url: string, n: number): Promise<RawPusher[]> {
  const out: RawPusher[] = [];
  for (let i = 0; i < n; i++) {
    const a = await attempt(t, url);
    t.ok(a.ok, `connection ${i + 1} of ${n} is admitted`);
    if (a.ok) out.push(a.raw);
  }
  return out;
}

t.test('maxConnections: counted across shards, 4004 past it, other apps unaffected, freed on close', async (t) => {
  const s = await startServer(t, { workers: 2, pusherApps: [{ ...APP, maxConnections: 3 }, APP_B] });
  const url = `${s.url}/app/${APP.key}?protocol=7`;
  const admitted = await admitEach(t, url, 3);
  const per = await until(async () => {
    const p = await openConnections(s);
    return Object.values(p).reduce((x, y) => x + y, 0) === 3 ? p : undefined;
  }, 'three pusher connections in /metrics');
  t.ok(Object.values(per).filter((n) => n > 0).length === 2, `the three connections are on both shards (${JSON.stringify(per)})`);

  const refused = await attempt(t, url);
  t.equal(refused.ok, false, 'the fourth connection is refused');
  if (!refused.ok) {
    t.equal(refused.error.code, 4004, 'pusher:error 4004');
    t.match(refused.error.message, /over connection quota/);
    t.equal(refused.close.code, 4004, 'closed with 4004 (pusher-js does not reconnect)');
  }
  // pusher-js sees the same error
  const p = pusherClient(t, s.port);
  const err = await new Promise<any>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('pusher-js reported no 4004')), 10_000);
    // A refusal during the handshake arrives wrapped: { type: 'WebSocketError', error: { type: 'PusherError', data } }.
    p.connection.bind('error', (e: any) => {
      const data = e?.error?.data ?? e?.data;
      if (data?.code === 4004) {
        clearTimeout(timer);
        resolve(data);
      }
    });
  });
  t.equal(err.code, 4004, 'pusher-js reports error 4004');
  await until(() => p.connection.state === 'disconnected', 'pusher-js gives up (no reconnect)');
  t.pass('pusher-js stops: a refused app does not retry');
  p.disconnect();

  // another app has its own (unlimited) count
  const b = pusherClient(t, s.port, { app: APP_B });
  await connected(b);
  t.pass('app B connects while app A is full');

  // closing one frees one place
  admitted.pop()!.ws.close();
  const again = await until(async () => {
    const a = await attempt(t, url);
    if (a.ok) return a;
    return undefined;
  }, 'a place freed by a close');
  t.ok(again.ok, 'a connection is admitted after one closed');
  const full = await attempt(t, url);
  t.equal(full.ok, false, 'and the app is full again');
});

t.test('a crashed shard does not leave its connections counted', async (t) => {
  const s = await startServer(t, { workers: 2, pusherApps: [{ ...APP, maxConnections: 4 }] });
  const url = `${s.url}/app/${APP.key}?protocol=7`;
  const open = await admitEach(t, url, 4);
  t.equal((await attempt(t, url)).ok, false, 'full');
  (s as any).crashShard(0);
  // the crashed shard's connections are closed by the crash; wait until the shard is back
  await until(async () => (await api(s.http, '/health', undefined, { key: null })).body.workers?.alive === 2 && open.filter((r) => r.closed).length > 0, 'shard replaced', 20_000);
  await until(() => open.every((r) => r.closed || r.ws.readyState === 1), 'settled');
  const lost = open.filter((r) => r.closed).length;
  t.ok(lost > 0 && lost < 4, `the crash closed ${lost} of the 4 connections`);
  // exactly `lost` places are free again, no more
  for (let i = 0; i < lost; i++) {
    const a = await until(async () => {
      const r = await attempt(t, url);
      return r.ok ? r : undefined;
    }, `place ${i + 1} of ${lost} freed`);
    t.ok(a.ok, `place ${i + 1} of ${lost} is free again`);
  }
  t.equal((await attempt(t, url)).ok, false, 'and then the app is full: the survivors are still counted');
});

t.test('a bad maxConnections fails the start, naming the key', async (t) => {
  for (const bad of [-1, 1.5, '10']) {
    await t.rejects(
      createServer({ port: 0, host: '127.0.0.1', workers: 1, logLevel: 'error', env: {}, pusherApps: [{ ...APP, maxConnections: bad }] } as never),
      /pusherApps\[0\]\.maxConnections must be an integer from 0/,
      `maxConnections: ${JSON.stringify(bad)} is refused`,
    );
  }
});

t.test('a limit of 0 that would refuse every event fails the start, naming the key', async (t) => {
  for (const key of ['maxEventPayload', 'maxEventChannels', 'maxBatchSize']) {
    await t.rejects(
      createServer({ port: 0, host: '127.0.0.1', workers: 1, logLevel: 'error', env: {}, pusherApps: [{ ...APP, [key]: 0 }] } as never),
      new RegExp(`pusherApps\\[0\\]\\.${key} must be an integer from 1`),
      `${key}: 0 is refused (it is not "no limit")`,
    );
  }
});
