// Redis bridge under faults, against a redis-server this test starts, kills and restarts itself: two
// rt-actors processes lose their subscriptions, then Redis altogether (with and without its data).
import t from 'tap';
import { rmSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { createServer } from 'rt-actors';
import { RtClient } from 'rt-actors/client';
import { api, API_KEY } from './helpers/server.js';
import { TestClient, type Frame } from './helpers/ws-client.js';
import { metric, redisClient, startHost, startRedis, until, type Host } from './helpers/redis.js';

// Append-only file with fsync on every write: a kill -9 keeps the data, like a production Redis.
const R = await startRedis(t, { persist: true });
const ns = 'rt';
const A = await startHost(t, R.url, ns, { workers: 2 });
const B = await startHost(t, R.url, ns, { workers: 1 });

async function connect(h: Host): Promise<TestClient> {
  const c = await TestClient.connect(h.url + '/ws');
  t.teardown(() => c.close());
  return c;
}

const redisUp = async (h: Host, up: boolean) => {
  const body = (await api(h.http, '/health', undefined, { key: null })).body;
  return up ? body.redis.connected === body.redis.shards : body.redis.connected === 0;
};

t.test('subscriptions dropped by Redis are restored, and what was missed comes from the stream', async (t) => {
  const ca = await connect(A);
  const cb = await connect(B);
  for (const c of [ca, cb]) t.equal((await c.request({ op: 'subscribe', channel: 'orders' })).ok, true);
  for (let i = 1; i <= 3; i++) await api(A.http, '/api/publish', { channel: 'orders', event: 'e', data: i });
  await ca.waitForMessages('orders', 3);
  await cb.waitForMessages('orders', 3);
  const admin = redisClient(t, R.port);
  // Every pub/sub connection of both hosts is cut; their command connections stay.
  t.ok(Number(await admin.client('KILL', 'TYPE', 'pubsub')) >= 2, 'killed the subscriber connections');
  // Published while no host is subscribed: nobody receives these live.
  for (let i = 4; i <= 23; i++) {
    const r = await api(i % 2 ? A.http : B.http, '/api/publish', { channel: 'orders', event: 'e', data: i });
    t.equal(r.status, 200, `publish ${i} accepted`);
  }
  for (const [name, c] of [['A', ca], ['B', cb]] as const) {
    const got = await c.waitForMessages('orders', 23);
    t.same(got.map((f) => f.data), Array.from({ length: 23 }, (_, k) => k + 1), `client on host ${name}: every message, in order, once`);
    t.same(got.map((f) => f.offset), Array.from({ length: 23 }, (_, k) => k + 1), `client on host ${name}: offsets without gaps`);
    t.equal(c.closed, undefined, `client on host ${name} stayed connected`);
  }
  await until('the hosts to report recovered publications', async () => (await metric(A, 'rt_redis_recovered_total')) + (await metric(B, 'rt_redis_recovered_total')) > 0);
  t.pass('the gap was filled from the Redis stream');
});

t.test('Redis killed and restarted with its data: local traffic goes on, publishes fail loudly, then channels resume', async (t) => {
  const ca = await connect(A);
  const cb = await connect(B);
  for (const c of [ca, cb]) await c.request({ op: 'subscribe', channel: 'ledger' });
  for (let i = 1; i <= 3; i++) await api(B.http, '/api/publish', { channel: 'ledger', event: 'e', data: i });
  await ca.waitForMessages('ledger', 3);
  await cb.waitForMessages('ledger', 3);

  await R.kill();
  // Nothing accepted is lost silently: while Redis is gone, a publish is refused with a clear error.
  const refused = await api(A.http, '/api/publish', { channel: 'ledger', event: 'e', data: 'lost?' });
  t.equal(refused.status, 503, 'publish refused');
  t.equal(refused.body.error.code, 'unavailable');
  t.match(refused.body.error.message, /^Redis unavailable: the connection to Redis is down; rt-actors is reconnecting; retry shortly$/, 'in our words');
  t.notMatch(refused.body.error.message, /enableOfflineQueue|Stream isn't|ECONNREFUSED|Connection is closed/, 'no driver internals');
  await until('both hosts to notice Redis is gone', async () => (await redisUp(A, false)) && (await redisUp(B, false)));
  // Local traffic goes on: connections stay, answer pings, and a channel this host relays takes a new subscriber.
  t.equal((await ca.request({ op: 'ping' })).pong, true);
  t.equal((await cb.request({ op: 'ping' })).pong, true);
  const late = await connect(A);
  const lateSub = await late.request({ op: 'subscribe', channel: 'ledger' });
  t.equal(lateSub.ok, true, 'subscribe to an already relayed channel works during the outage');
  t.equal(lateSub.offset, 3);
  const fresh = await late.request({ op: 'subscribe', channel: 'not-relayed-yet' });
  t.equal(fresh.error?.code, 'unavailable', 'a channel that needs a new Redis subscription says so');
  t.match(fresh.error?.message, /^Redis unavailable: [a-z][^:]*; retry shortly$/, 'in our words');
  const health = await api(A.http, '/health', undefined, { key: null });
  t.equal(health.status, 200, 'host stays in rotation: it still serves its own connections');

  await R.start();
  await until('both hosts to reconnect', async () => (await redisUp(A, true)) && (await redisUp(B, true)));
  for (let i = 4; i <= 9; i++) {
    const r = await api(i % 2 ? A.http : B.http, '/api/publish', { channel: 'ledger', event: 'e', data: i });
    t.equal(r.status, 200, `publish ${i} after the restart`);
  }
  for (const [name, c, from] of [['A', ca, 1], ['B', cb, 1], ['A (late)', late, 4]] as const) {
    const got = await c.waitForMessages('ledger', 10 - from);
    t.same(got.map((f) => f.data), Array.from({ length: 10 - from }, (_, k) => k + from), `client on host ${name}: resubscribed, nothing missing`);
    t.same(got.map((f) => f.offset), Array.from({ length: 10 - from }, (_, k) => k + from), `client on host ${name}: offsets continue`);
    t.equal(c.closed, undefined, `client on host ${name} never disconnected`);
  }
});

t.test('Redis restarted empty: subscribers are told to resync, and resume reports the loss', async (t) => {
  const ca = await connect(A);
  const cb = await connect(B);
  const sub = await ca.request({ op: 'subscribe', channel: 'journal' });
  await cb.request({ op: 'subscribe', channel: 'journal' });
  for (let i = 1; i <= 3; i++) await api(A.http, '/api/publish', { channel: 'journal', event: 'e', data: i });
  await ca.waitForMessages('journal', 3);
  await cb.waitForMessages('journal', 3);

  await R.kill();
  for (const f of readdirSync(R.dir)) rmSync(join(R.dir, f), { recursive: true, force: true });
  await R.start();
  // The hosts find the channel's stream gone when they reconnect: their clients must not carry on as
  // if nothing happened.
  for (const [name, c] of [['A', ca], ['B', cb]] as const) {
    const closed = await c.waitClose(20000);
    t.equal(closed.code, 4012, `client on host ${name} closed with the resync code`);
    const bye = c.frames.find((f: Frame) => f.op === 'disconnect');
    t.equal(bye?.reconnect, true, `client on host ${name} is told to reconnect`);
  }
  const again = await connect(B);
  const resumed = await again.request({ op: 'subscribe', channel: 'journal', since: { offset: 3, epoch: sub.epoch } });
  t.equal(resumed.ok, true);
  t.equal(resumed.recovered, false, 'resume says the history is gone, so the client reloads');
  t.not(resumed.epoch, sub.epoch, 'a new epoch');
  await api(A.http, '/api/publish', { channel: 'journal', event: 'e', data: 'after' });
  const live = await again.next((f) => f.op === 'message');
  t.same([live.data, live.offset], ['after', 1], 'the channel works again, offsets of the new epoch');
});

// Redis restarted empty resets every channel a host relays at once, and each said so on a line of its
// own: thousands of warnings in a second on a busy host. They are one kind, bounded by --log-rate.
t.test('Redis restarted empty: the resync lines of many channels are bounded by --log-rate', async (t) => {
  const channels = Array.from({ length: 150 }, (_, i) => `many-${i}`);
  const clients = [await connect(B), await connect(B)];
  await Promise.all(channels.map((ch, i) => clients[i % 2]!.request({ op: 'subscribe', channel: ch })));
  const before = B.output().length;
  await R.kill();
  for (const f of readdirSync(R.dir)) rmSync(join(R.dir, f), { recursive: true, force: true });
  await R.start();
  for (const c of clients) t.equal((await c.waitClose(20000)).code, 4012, 'told to resync');
  const log = () => B.output().slice(before);
  await until('the suppressed-lines summary', () => /suppressed \d+ more "redis\.resync" line\(s\)/.test(log()));
  const lines = log().split('\n').filter((l) => /subscribers were told to resync/.test(l)).length;
  // 50 a second (--log-rate): two windows at most on a slow machine, not one line per channel.
  t.ok(lines > 0 && lines <= 100, `${lines} resync lines for ${channels.length} channels`);
});

t.test('a shard that crashes catches its channels up from Redis when it is replaced', async (t) => {
  // In-process, for crashShard(); host B stays a separate process.
  const s = await createServer({ port: 0, host: '127.0.0.1', workers: 2, apiKey: API_KEY, redis: R.url, redisNamespace: ns, presenceTtl: '2s', logLevel: 'error', env: {} });
  t.teardown(() => s.close());
  const url = `ws://127.0.0.1:${s.port}/ws`;
  const a = await TestClient.connect(url);
  const b = await TestClient.connect(url);
  t.teardown(() => (a.close(), b.close()));
  const [onZero, onOne] = a.welcome.socket_id.startsWith('0.') ? [a, b] : [b, a];
  const channels = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'];
  for (const c of [onZero, onOne]) for (const ch of channels) await c.request({ op: 'subscribe', channel: ch });
  for (const ch of channels) await api(`http://127.0.0.1:${s.port}`, '/api/publish', { channel: ch, event: 'e', data: 1 });
  s.crashShard(0);
  t.equal((await onZero.waitClose(10000)).code, 1011, 'clients of the crashed shard are told to reconnect');
  // Published elsewhere while shard 0 (owner of some of these channels) is gone.
  for (const ch of channels) t.equal((await api(B.http, '/api/publish', { channel: ch, event: 'e', data: 2 })).status, 200);
  await until('shard 0 to be replaced', async () => (await api(`http://127.0.0.1:${s.port}`, '/health', undefined, { key: null })).body.workers.alive === 2);
  for (const ch of channels) await api(`http://127.0.0.1:${s.port}`, '/api/publish', { channel: ch, event: 'e', data: 3 });
  for (const ch of channels) {
    const got = await onOne.waitForMessages(ch, 3);
    t.same(got.map((f) => [f.offset, f.data]), [[1, 1], [2, 2], [3, 3]], `${ch}: the surviving shard's client missed nothing`);
  }
});

// The server answers a subscribe that needs Redis during an outage with `unavailable`, "retry shortly":
// the client left the channel failed, and it stayed deaf on a connection that lived on after Redis came back.
t.test("the client's subscribes refused while Redis is away are tried again once Redis is back", async (t) => {
  const client = new RtClient(A.url, { WebSocket, transports: ['websocket'], reconnectDelay: 100, maxReconnectDelay: 400, rememberTransport: false });
  t.teardown(() => client.disconnect());
  await new Promise<void>((r) => client.once('connected', () => r()));
  const kept = client.channel('kept-through-outage');
  await new Promise<void>((r) => kept.subscribed(() => r()));
  // Listening before publishing: the message can reach the client before the publish's answer.
  const got: unknown[] = [];
  kept.listen('e', (d) => got.push(d));
  t.equal((await api(B.http, '/api/publish', { channel: 'kept-through-outage', event: 'e', data: 1 })).status, 200);
  await until('the first message', () => got.length === 1);

  await R.kill();
  await until('host A to notice Redis is gone', () => redisUp(A, false));
  const errors: string[] = [];
  const fresh = client.channel('new-during-outage');
  fresh.error((e) => errors.push(e.code));
  await until('the refusal', () => errors.length > 0);
  t.equal(errors[0], 'unavailable', 'the app is told why');
  t.equal(fresh.state, 'failed');
  await R.start();
  await until('host A to reconnect', () => redisUp(A, true));
  await until('the channel to be subscribed again', () => fresh.state === 'subscribed');
  t.pass('subscribed once Redis was back, on the same connection');
  const heard = new Promise((r) => fresh.listen('e', r));
  t.equal((await api(B.http, '/api/publish', { channel: 'new-during-outage', event: 'e', data: 'hello' })).status, 200);
  const hello = await heard;
  t.equal(hello, 'hello', 'and it hears the channel');
  t.equal((await api(B.http, '/api/publish', { channel: 'kept-through-outage', event: 'e', data: 2 })).status, 200);
  await until('the channel subscribed before the outage to go on', () => got.length === 2);
  t.same(got, [1, 2]);
});

// Redis pub/sub ignores the database: a deployment on redis://…/2 beside one on database 0 (same
// namespace) heard its publications, and their foreign offsets closed its subscribers with 4012.
t.test('a deployment on another database of the same Redis hears nothing of this one', async (t) => {
  const other = await startHost(t, R.url + '/2', ns, { workers: 1 });
  const here = await connect(A);
  const there = await connect(other);
  for (const c of [here, there]) t.equal((await c.request({ op: 'subscribe', channel: 'same-name' })).ok, true);
  t.equal((await api(A.http, '/api/publish', { channel: 'same-name', event: 'e', data: 'db 0' })).status, 200);
  t.equal((await api(other.http, '/api/publish', { channel: 'same-name', event: 'e', data: 'db 2' })).status, 200);
  const [mine] = await here.waitForMessages('same-name', 1);
  const [theirs] = await there.waitForMessages('same-name', 1);
  t.same([mine!.data, mine!.offset], ['db 0', 1], 'database 0 got its own publication');
  t.same([theirs!.data, theirs!.offset], ['db 2', 1], 'database 2 got its own publication');
  // Anything crossing over would have come before these.
  await api(A.http, '/api/publish', { channel: 'same-name', event: 'e', data: 'db 0 again' });
  await api(other.http, '/api/publish', { channel: 'same-name', event: 'e', data: 'db 2 again' });
  t.same((await here.waitForMessages('same-name', 2)).map((f) => f.data), ['db 0', 'db 0 again'], 'nothing from database 2');
  t.same((await there.waitForMessages('same-name', 2)).map((f) => f.data), ['db 2', 'db 2 again'], 'nothing from database 0');
  t.equal(here.closed, undefined, 'not told to resync');
  t.equal(there.closed, undefined, 'not told to resync');
});
