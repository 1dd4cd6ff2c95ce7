// /metrics parsed as Prometheus text: every family documented in docs/deployment.md is exported, and
// counters move when the event they count happens (refused origin, bad frame, publish → deliver, …).
import t from 'tap';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { api, API_KEY, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { parsePrometheus, valueOf, type Family } from './helpers/prom.js';
import { sioConnect } from './helpers/sio.js';
import { connected, pusherClient, pusherOptions, sdk, subscribed, nextOn } from './helpers/pusher.js';
import { dropNamespace, machineRedis, redisClient, until } from './helpers/redis.js';
import { Keys } from '../src/bridge/keys.js';

const DOC = readFileSync(new URL('../docs/deployment.md', import.meta.url), 'utf8');
/** Metric names from the table in docs/deployment.md ("| `name` | type | …"). */
const DOCUMENTED = [...DOC.matchAll(/^\| `((?:rt|process)_[a-z_]+)` \| (counter|gauge|histogram) \|/gm)].map((m) => ({ name: m[1]!, type: m[2]! }));

async function scrape(base: string): Promise<Map<string, Family>> {
  const res = await fetch(base + '/metrics');
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  if (!res.headers.get('content-type')?.startsWith('text/plain; version=0.0.4')) throw new Error(`content-type ${res.headers.get('content-type')}`);
  return parsePrometheus(await res.text());
}

t.test('every documented family is exported, with its documented type', async (t) => {
  t.ok(DOCUMENTED.length >= 30, `docs list the metrics (${DOCUMENTED.length})`);
  const s = await startServer(t);
  const fams = await scrape(s.http);
  for (const d of DOCUMENTED) {
    if (d.name.startsWith('rt_redis_')) continue; // only with --redis (redis.test.ts)
    t.equal(fams.get(d.name)?.type, d.type, `${d.name} is a ${d.type}`);
  }
  for (const name of fams.keys()) t.ok(DOCUMENTED.some((d) => d.name === name), `${name} is documented`);
  t.notOk(fams.has('rt_redis_up'), 'no Redis families without --redis');
  // The main thread reports its own heap now (it was always 0).
  t.ok(valueOf(fams, 'rt_heap_used_bytes', { thread: 'main' }) > 0, 'main thread heap is measured');
  t.ok(valueOf(fams, 'rt_heap_used_bytes', { thread: '0' }) > 0, 'shard heap is measured');
  t.ok(valueOf(fams, 'process_resident_memory_bytes') > 10_000_000, 'resident memory');
  t.ok(valueOf(fams, 'process_open_fds') > 0, 'open fds');
  t.ok(valueOf(fams, 'process_cpu_seconds_total') > 0, 'cpu time');
  t.equal(valueOf(fams, 'rt_up'), 3, 'two shards and the main thread are up');
  await until('event-loop delay sampled in every thread', async () => {
    const f = await scrape(s.http);
    return ['0', '1', 'main'].every((th) => valueOf(f, 'rt_event_loop_delay_seconds', { thread: th, stat: 'max' }) > 0);
  });
});

// rt_redis_up was set by the shard's first stats tick, 250 ms after it started: a scrape right after
// the server was ready said Redis was down (0) while /health said every shard was connected.
t.test('with --redis, rt_redis_up is 1 from the first scrape after start', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-metrics-up-${process.pid}-${Date.now()}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const s = await startServer(t, { redis: redis.url, redisNamespace: ns });
  const health = await (await fetch(s.http + '/health')).json();
  const fams = await scrape(s.http);
  t.same(health.redis, { connected: 2, shards: 2 }, '/health: every shard connected');
  t.equal(valueOf(fams, 'rt_redis_up', { thread: '0' }), 1, 'shard 0 reports Redis up');
  t.equal(valueOf(fams, 'rt_redis_up', { thread: '1' }), 1, 'shard 1 reports Redis up');
});

// The main thread's own Redis reads (the embedding API's server.presence(), server.channels(), …)
// failed without counting in rt_redis_errors_total: only the shards' brokers were counted.
t.test("with --redis, the main thread's failed Redis operations count in rt_redis_errors_total", async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-metrics-err-${process.pid}-${Date.now()}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const s = await startServer(t, { redis: redis.url, redisNamespace: ns });
  // A presence hash that is not a hash: Redis answers WRONGTYPE to the main thread's read, and no
  // shard touches this channel.
  await redisClient(t, redis.port).set(new Keys(ns, '').members('presence-broken'), 'not a hash');
  const before = valueOf(await scrape(s.http), 'rt_redis_errors_total');
  await t.rejects(s.presence('presence-broken'), 'the read fails');
  await until('the failed read counted', async () => valueOf(await scrape(s.http), 'rt_redis_errors_total') >= before + 1);
  t.pass('counted');
});

t.test('with --redis the Redis families are exported too', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-metrics-${process.pid}-${Date.now()}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const s = await startServer(t, { redis: redis.url, redisNamespace: ns });
  const fams = await until('the shards report their Redis link', async () => {
    const f = await scrape(s.http);
    return valueOf(f, 'rt_redis_up') === 2 ? f : undefined;
  });
  for (const d of DOCUMENTED.filter((d) => d.name.startsWith('rt_redis_'))) t.equal(fams.get(d.name)?.type, d.type, `${d.name} is a ${d.type}`);
  t.equal(valueOf(fams, 'rt_redis_up', { thread: '0' }), 1, 'per shard');

  // deployment.md: with --redis every publication reaches its subscribers through Redis, untimed.
  const c = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => c.ws.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'timed-by-redis' })).ok, true);
  t.equal((await api(s.http, '/api/publish', { channel: 'timed-by-redis', event: 'e', data: 1 })).status, 200);
  await c.next((f) => f.op === 'message' && f.event === 'e');
  const after = await until('the delivery is counted', async () => {
    const f = await scrape(s.http);
    return valueOf(f, 'rt_deliveries_total') === 1 ? f : undefined;
  });
  t.equal(valueOf(after, 'rt_publish_deliver_seconds_count'), 0, 'rt_publish_deliver_seconds stays empty with --redis, as documented');
});

t.test('HEAD /health answers like GET without a body', async (t) => {
  const s = await startServer(t);
  const get = await fetch(s.http + '/health');
  const body = await get.text();
  const head = await fetch(s.http + '/health', { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.headers.get('content-type'), 'application/json');
  t.equal(await head.text(), '', 'no body');
  t.equal(Number(head.headers.get('content-length')), Buffer.byteLength(body), 'content-length of the GET body');
});

t.test('counters move with the events they count', async (t) => {
  const s = await startServer(t, { actors: new URL('./fixtures/metrics-actors', import.meta.url).pathname });
  const before = await scrape(s.http);
  const refusals = (f: Map<string, Family>, reason: string) => valueOf(f, 'rt_refusals_total', { reason });

  // A refused origin.
  const refused = await new Promise<number>((resolve) => {
    const ws = new WebSocket(`${s.url}/ws`, { headers: { origin: 'https://evil.example' } });
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => resolve(101));
    ws.on('error', () => {});
  });
  t.equal(refused, 403, 'the foreign origin is refused');

  // A bad frame, then a subscriber that receives a publish.
  const c = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => c.ws.close());
  c.sendRaw('{not json');
  await c.next((f) => f.op === 'error');
  t.equal((await c.request({ op: 'subscribe', channel: 'timed-room' })).ok, true);

  // Wrong API key, and a publish through the API that reaches the subscriber through the actor hook.
  t.equal((await api(s.http, '/api/publish', { channel: 'x', event: 'e', data: 1 }, { key: 'wrong' })).status, 401);
  t.equal((await api(s.http, '/api/publish', { channel: 'timed-room', event: 'hello', data: { n: 1 } })).status, 200);
  const msg = await c.next((f) => f.op === 'message' && f.event === 'hello');
  t.same(msg.data, { n: 1 });

  const after = await until('the publish is counted', async () => {
    const f = await scrape(s.http);
    return valueOf(f, 'rt_publish_deliver_seconds_count') > valueOf(before, 'rt_publish_deliver_seconds_count') && valueOf(f, 'rt_subscriptions') === 1 ? f : undefined;
  });
  t.equal(refusals(after, 'origin') - refusals(before, 'origin'), 1, 'refused origin counted');
  t.equal(refusals(after, 'malformed') - refusals(before, 'malformed'), 1, 'bad frame counted');
  t.equal(refusals(after, 'auth') - refusals(before, 'auth'), 1, 'wrong API key counted');
  t.equal(valueOf(after, 'rt_connections', { transport: 'websocket', protocol: 'native' }), 1, 'one open native WebSocket');
  t.equal(valueOf(after, 'rt_connections_opened_total', { transport: 'websocket', protocol: 'native' }), 1);
  t.ok(valueOf(after, 'rt_messages_in_total', { transport: 'websocket', protocol: 'native' }) >= 2, 'frames in counted');
  t.equal(valueOf(after, 'rt_messages_out_total', { transport: 'websocket', protocol: 'native' }), 1, 'delivery counted');
  t.equal(valueOf(after, 'rt_deliveries_total'), 1);
  t.equal(valueOf(after, 'rt_publishes_total'), 1);
  t.equal(valueOf(after, 'rt_http_requests_total', { route: '/api/publish', status: '200' }), 1);
  t.equal(valueOf(after, 'rt_http_requests_total', { route: '/api/publish', status: '401' }), 1);
  const sum = valueOf(after, 'rt_publish_deliver_seconds_sum');
  t.ok(sum > 0 && sum < 10, `publish→deliver latency recorded (${(sum * 1000).toFixed(2)} ms)`);
  t.ok(valueOf(after, 'rt_actor_hook_seconds_count', { hook: 'onPublish' }) >= 1, 'onPublish hook timed');
  t.ok(valueOf(after, 'rt_actor_hook_seconds_sum', { hook: 'onPublish' }) >= 0.001, 'hook time includes its await');

  // Closing the connection brings the gauge back down.
  c.ws.close();
  await until('connection gauge drops', async () => valueOf(await scrape(s.http), 'rt_connections') === 0);
  // Back at 0 it still reads 0: a series that vanished would make sum(rt_connections) "no data", not 0.
  const closed = (await scrape(s.http)).get('rt_connections')!.samples.filter((x) => x.labels.transport === 'websocket' && x.labels.protocol === 'native');
  t.ok(closed.length >= 1 && closed.every((x) => x.value === 0), `the native WebSocket series is listed at 0 (${JSON.stringify(closed)})`);
});

t.test('connections and messages are labelled by transport and protocol', async (t) => {
  const s = await startServer(t);
  // Socket.IO over polling then upgraded, Socket.IO straight over WebSocket, and an SSE stream.
  const upgraded = await sioConnect(t, s.http);
  await until('the Socket.IO session upgrades', () => upgraded.io.engine.transport.name === 'websocket');
  const direct = await sioConnect(t, s.http, { transports: ['websocket'] });
  const sse = new AbortController();
  t.teardown(() => sse.abort());
  const stream = await fetch(s.http + '/sse?channels=news', { signal: sse.signal });
  t.equal(stream.status, 200);
  const reader = stream.body!.getReader();
  let seen = '';
  await until('the SSE stream is subscribed', async () => {
    seen += new TextDecoder().decode((await reader.read()).value);
    return seen.includes('rt:subscribed');
  });
  direct.emit('subscribe', { channel: 'news' });
  const got = new Promise((resolve) => direct.on('e', (ch: string, data: unknown) => resolve([ch, data])));
  await until('the Socket.IO subscription is counted', async () => valueOf(await scrape(s.http), 'rt_subscriptions') === 2);
  t.equal((await api(s.http, '/api/publish', { channel: 'news', event: 'e', data: 7 })).status, 200);
  t.same(await got, ['news', 7]);

  const f = await until('deliveries counted for both protocols', async () => {
    const m = await scrape(s.http);
    return valueOf(m, 'rt_messages_out_total', { transport: 'sse', protocol: 'native' }) === 1 && valueOf(m, 'rt_messages_out_total', { transport: 'websocket', protocol: 'socketio' }) === 1 ? m : undefined;
  });
  t.equal(valueOf(f, 'rt_connections', { transport: 'websocket', protocol: 'socketio' }), 2, 'both Socket.IO sessions count as WebSocket once upgraded');
  t.equal(valueOf(f, 'rt_connections', { transport: 'polling', protocol: 'socketio' }), 0, 'the upgraded session left polling');
  t.equal(valueOf(f, 'rt_connections', { transport: 'sse', protocol: 'native' }), 1);
  t.equal(valueOf(f, 'rt_connections_opened_total', { protocol: 'socketio' }), 2);
  t.equal(valueOf(f, 'rt_connections_opened_total', { transport: 'polling', protocol: 'socketio' }), 1, 'the session that began polling was opened as polling');
  t.equal(valueOf(f, 'rt_connections_opened_total', { transport: 'websocket', protocol: 'socketio' }), 1, 'the one straight over WebSocket as WebSocket');
  t.ok(valueOf(f, 'rt_messages_in_total', { transport: 'websocket', protocol: 'socketio' }) >= 1, 'Socket.IO packets in');
});

t.test('the Pusher gateway and its HTTP API are counted too', async (t) => {
  const s = await startServer(t, pusherOptions());
  const p = pusherClient(t, s.port);
  await connected(p);
  const ch = (await subscribed(p, 'news')).channel;
  const got = nextOn(ch, 'posted');
  t.equal((await sdk(s.port).trigger('news', 'posted', { n: 1 })).status, 200);
  t.same(await got, { n: 1 });
  const f = await until('the Pusher delivery is counted', async () => {
    const m = await scrape(s.http);
    return valueOf(m, 'rt_messages_out_total', { transport: 'websocket', protocol: 'pusher' }) === 1 ? m : undefined;
  });
  t.equal(valueOf(f, 'rt_connections', { transport: 'websocket', protocol: 'pusher' }), 1);
  t.ok(valueOf(f, 'rt_messages_in_total', { protocol: 'pusher' }) >= 1, 'pusher:subscribe counted in');
  t.equal(valueOf(f, 'rt_http_requests_total', { route: '/apps/:id/events', status: '200' }), 1, 'the signed trigger is counted by route');
});

// /api/tap answered its refusals without counting them, unlike every other API route.
t.test('refusals of /api/tap are counted in rt_http_requests_total', async (t) => {
  const s = await startServer(t);
  const noKey = await fetch(s.http + '/api/tap?channel=tapped');
  t.equal(noKey.status, 401);
  const noChannel = await fetch(s.http + '/api/tap', { headers: { authorization: `Bearer ${API_KEY}` } });
  t.equal(noChannel.status, 400);
  await until('the refusals are counted', async () => {
    const f = await scrape(s.http);
    return valueOf(f, 'rt_http_requests_total', { route: '/api/tap', status: '401' }) === 1 && valueOf(f, 'rt_http_requests_total', { route: '/api/tap', status: '400' }) === 1 ? f : undefined;
  });
  t.pass('401 and 400 of /api/tap counted by route and status');
});

t.test('parser rejects what Prometheus would', async (t) => {
  t.throws(() => parsePrometheus('x 1\n'), /no # TYPE/);
  t.throws(() => parsePrometheus('# TYPE x counter\nx{a="1} 1\n'), /unterminated|expected/);
  t.throws(() => parsePrometheus('# TYPE x counter\nx 1\nx 2\n'), /duplicate/);
  t.throws(() => parsePrometheus('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'), /cumulative/);
  t.throws(() => parsePrometheus('# TYPE x gauge\nx 1'), /newline/);
});

// Counters a shard kept as its own running totals (hook failures, actor restarts, compute tasks,
// overloaded refusals, the Redis bridge's) were copied into /metrics as they stood: a replaced shard
// started them at 0 again, so rt_actor_hook_failures_total went from 3 back to 1 after a shard crash.
t.test('counters a shard keeps itself carry on over its replacement', async (t) => {
  const s = await startServer(t, { actors: new URL('./fixtures/metrics-actors', import.meta.url).pathname });
  const owner = (await api(s.http, '/api/channels/failing-a')).body.owner.shard as number;
  const fail = async () => t.equal((await api(s.http, '/api/publish', { channel: 'failing-a', event: 'fail', data: 1 })).status, 500, 'the hook failed');
  for (let i = 0; i < 3; i++) await fail();
  let highest = { failures: 0, restarts: 0 };
  const read = async () => {
    const f = await scrape(s.http);
    const now = { failures: valueOf(f, 'rt_actor_hook_failures_total'), restarts: valueOf(f, 'rt_actor_restarts_total') };
    t.ok(now.failures >= highest.failures && now.restarts >= highest.restarts, `never backwards: ${JSON.stringify(highest)} then ${JSON.stringify(now)}`);
    highest = now;
    return { f, ...now };
  };
  await until('the failures are counted', async () => (await read()).failures === 3);
  t.equal(highest.restarts, 1, 'three failures in a row restarted the actor');

  s.crashShard(owner);
  await until('the shard is replaced', async () => valueOf((await read()).f, 'rt_shard_restarts_total') === 1);
  await until('the replacement is up', async () => (await fetch(s.http + '/health')).status === 200);
  // One more failure, on the replacement: counted on top of the dead shard's three.
  t.equal((await api(s.http, '/api/channels/failing-a')).body.owner.shard, owner, 'the channel is on the replaced shard');
  await fail();
  const after = await until('the new failure is counted', async () => {
    const r = await read();
    return r.failures !== 3 && r.failures !== 0 ? r : undefined;
  });
  t.equal(after.failures, 4, 'the dead shard\'s 3 failures and the new one');
  t.equal(after.restarts, 1, 'the actor restart before the crash still counted');
});

// rt_publishes_total ("publishes accepted") counted every attempt: a client publish the policy refused,
// or one whose actor hook failed, showed as a publish like one that reached its subscribers.
t.test('rt_publishes_total counts only the publishes the channel accepted', async (t) => {
  const s = await startServer(t, { actors: new URL('./fixtures/metrics-actors', import.meta.url).pathname });
  const before = await scrape(s.http);
  const c = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => c.ws.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'counted' })).ok, true);
  const refused = await c.request({ op: 'publish', channel: 'counted', event: 'e', data: 1 });
  t.equal(refused.error?.code, 'publish_refused', 'a client may not publish to a public channel by default');
  t.equal((await api(s.http, '/api/publish', { channel: 'failing-b', event: 'fail', data: 1 })).status, 500, 'the actor hook failed');
  t.equal((await api(s.http, '/api/publish', { channel: 'counted', event: 'sentinel', data: 2 })).status, 200);
  await c.next((f) => f.op === 'message' && f.event === 'sentinel');
  const after = await until('the delivery is counted', async () => {
    const f = await scrape(s.http);
    return valueOf(f, 'rt_deliveries_total') - valueOf(before, 'rt_deliveries_total') === 1 ? f : undefined;
  });
  t.equal(valueOf(after, 'rt_publishes_total') - valueOf(before, 'rt_publishes_total'), 1, 'only the accepted publish');
});
