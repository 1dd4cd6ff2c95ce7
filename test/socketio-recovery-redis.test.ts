// Socket.IO connection state recovery across hosts (Redis): the official socket.io-client and
// laravel-echo behind a TCP "load balancer" that sends reconnects to another host, or to a restarted
// one. The client gets what was published while it was away, in order, once, with `recovered === true`.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { io, type Socket } from 'socket.io-client';
import Echo from 'laravel-echo';
import { api } from './helpers/server.js';
import { dropNamespace, machineRedis, startHost, until, type Host } from './helpers/redis.js';
import { balancer } from './helpers/balancer.js';

const ns = `rt-test-${randomBytes(4).toString('hex')}`;
const redis = await machineRedis(t);
t.teardown(() => dropNamespace(redis.port, ns));

const publish = (h: Host, channel: string, data: unknown, event = 'seq') => api(h.http, '/api/publish', { channel, event, data });

function track(c: Socket): Map<string, number[]> {
  const seen = new Map<string, number[]>();
  c.on('seq', (ch: string, n: number) => {
    if (!seen.has(ch)) seen.set(ch, []);
    seen.get(ch)!.push(n);
  });
  return seen;
}

t.test('host change and restart: socket.io-client recovers through Redis', async (t) => {
  const A = await startHost(t, redis.url, ns, { workers: 2 });
  let B = await startHost(t, redis.url, ns, { workers: 1 });
  const lb = await balancer(t, B.port);
  const c = io(`http://127.0.0.1:${lb.port}`, { forceNew: true, transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 300 });
  t.teardown(() => c.close());
  const seen = track(c);
  await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
  t.same(await c.emitWithAck('subscribe', { channel: 'moving' }), { ok: true });
  for (let i = 0; i < 3; i++) await publish(A, 'moving', i);
  await until('the first publications on B', () => seen.get('moving')?.length === 3);
  const id = c.id;

  // B stops (SIGTERM); the balancer sends the reconnect to A; meanwhile A publishes.
  let back = new Promise<void>((r) => c.once('connect', () => r()));
  lb.to(A.port);
  const stopping = B.stop();
  for (let i = 3; i < 6; i++) await publish(A, 'moving', i);
  await stopping;
  await back;
  t.equal(c.recovered, true, 'recovered on another host');
  t.equal(c.id, id, 'same socket id');
  await publish(A, 'moving', 6);
  await until('everything on A', () => seen.get('moving')?.at(-1) === 6);
  t.same(seen.get('moving'), [0, 1, 2, 3, 4, 5, 6], 'in order, once');

  // A host restart: B comes back (a new process), A goes away; the client lands on the new B.
  B = await startHost(t, redis.url, ns, { workers: 1 });
  back = new Promise<void>((r) => c.once('connect', () => r()));
  lb.to(B.port);
  const gone = A.stop();
  await gone;
  for (let i = 7; i < 10; i++) await publish(B, 'moving', i);
  await back;
  t.equal(c.recovered, true, 'recovered after the restart');
  await publish(B, 'moving', 10);
  await until('everything on the new B', () => seen.get('moving')?.at(-1) === 10);
  t.same(seen.get('moving'), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'in order, once');
});

t.test('laravel-echo on host B, B stops, a publication via A, the client comes back: nothing missed', async (t) => {
  const A = await startHost(t, redis.url, ns, { workers: 1 });
  const B = await startHost(t, redis.url, ns, { workers: 1 });
  const lb = await balancer(t, B.port);
  const echo = new Echo({ broadcaster: 'socket.io', host: `http://127.0.0.1:${lb.port}`, client: io, transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 300 } as any);
  t.teardown(() => echo.disconnect());
  const got: unknown[] = [];
  echo.channel('orders').listen('.shipped', (e: unknown) => got.push(e));
  const socket = (echo.connector as any).socket as Socket;
  await until('echo connected and subscribed', async () => {
    await publish(A, 'orders', { n: 0 }, 'shipped');
    return got.length > 0;
  });
  const before = got.length;
  const back = new Promise<void>((r) => socket.once('connect', () => r()));
  lb.to(A.port);
  await B.stop();
  await publish(A, 'orders', { n: 'while away' }, 'shipped');
  await back;
  t.equal(socket.recovered, true, 'socket.recovered');
  await publish(A, 'orders', { n: 'after' }, 'shipped');
  await until('after the reconnect', () => got.some((e: any) => e.n === 'after'));
  // (The n: 0 probes that found the subscription ready may still be arriving around `before`.)
  t.same(got.slice(before).filter((e: any) => e.n !== 0), [{ n: 'while away' }, { n: 'after' }], 'the message published while away arrives, once, before the next');
});

t.test('with Redis, missed publications of several channels come back in the order they were published', async (t) => {
  const A = await startHost(t, redis.url, ns, { workers: 2 });
  const c = io(A.http, { forceNew: true, transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 300 });
  t.teardown(() => c.close());
  const log: string[] = [];
  c.on('seq', (ch: string, n: number) => log.push(`${ch}:${n}`));
  await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
  for (const ch of ['ro-a', 'ro-b']) t.same(await c.emitWithAck('subscribe', { channel: ch }), { ok: true });
  await publish(A, 'ro-a', 0);
  await until('the first publication', () => log.length === 1);
  c.io.reconnection(false);
  const gone = new Promise((r) => c.once('disconnect', r));
  (c.io.engine as unknown as { transport: { ws: { _socket: { destroy(): void } } } }).transport.ws._socket.destroy();
  await gone;
  const expected = ['ro-a:0'];
  for (const [i, ch] of ['ro-b', 'ro-a', 'ro-a', 'ro-b', 'ro-b', 'ro-a'].entries()) {
    // Distinct milliseconds: Redis stream ids order the publications.
    const t0 = Date.now();
    while (Date.now() === t0) await new Promise((r) => setImmediate(r));
    await publish(A, ch, i + 1);
    expected.push(`${ch}:${i + 1}`);
  }
  const back = new Promise<void>((r) => c.once('connect', () => r()));
  c.connect();
  await back;
  t.equal(c.recovered, true, 'recovered');
  await publish(A, 'ro-a', 100);
  await publish(A, 'ro-b', 101);
  await until('the sentinels', () => log.includes('ro-a:100') && log.includes('ro-b:101'));
  t.same(log.slice(0, expected.length), expected, 'the missed publications, interleaved as published');
  t.same(log.slice(expected.length), ['ro-a:100', 'ro-b:101'], 'then the live ones, once');
});

t.test('a client that moves A → B → A recovers each time: A does not resume it from its own older copy of the session', async (t) => {
  const A = await startHost(t, redis.url, ns, { workers: 1 });
  const B = await startHost(t, redis.url, ns, { workers: 1 });
  const lb = await balancer(t, A.port);
  const c = io(`http://127.0.0.1:${lb.port}`, { forceNew: true, transports: ['websocket'], reconnectionDelay: 100, reconnectionDelayMax: 300 });
  t.teardown(() => c.close());
  const seen = track(c);
  await new Promise<void>((resolve, reject) => (c.once('connect', () => resolve()), c.once('connect_error', reject)));
  t.same(await c.emitWithAck('subscribe', { channel: 'back-and-forth' }), { ok: true });
  await publish(A, 'back-and-forth', 0);
  await until('the first publication', () => seen.get('back-and-forth')?.length === 1);
  let n = 1;
  for (const [to, name] of [[B, 'B'], [A, 'A'], [B, 'B again']] as const) {
    const gone = new Promise((r) => c.once('disconnect', r));
    const back = new Promise<void>((r) => c.once('connect', () => r()));
    lb.to(to.port);
    lb.cut();
    await gone;
    await publish(B, 'back-and-forth', n++);
    await back;
    t.equal(c.recovered, true, `recovered on ${name}`);
    await publish(A, 'back-and-forth', n++);
    await until(`the live publication on ${name}`, () => seen.get('back-and-forth')?.at(-1) === n - 1);
  }
  t.same(seen.get('back-and-forth'), Array.from({ length: n }, (_, i) => i), 'in order, once');
});
