// A master of a Redis Cluster (3 masters, 3 replicas) dies with kill -9 and its replica takes over: the
// host moves its subscriptions to the new master, delivers what is published there, and reports
// Redis as up again (/health, rt_redis_up) without waiting for the dead node to come back.
import t from 'tap';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { parsePrometheus, valueOf } from './helpers/prom.js';
import { redisClient, startHost, startRedisCluster, until } from './helpers/redis.js';

const cluster = await startRedisCluster(t, { replicas: 1 });
const host = await startHost(t, cluster.seeds, 'rt', { args: ['--redis-cluster'] });
const [seed, ...others] = cluster.ports.map((p) => redisClient(t, p));

// The victim is the master of the host's control channel (rt:ctl), so that another master holds none
// of the host's own channels (its inbox is on one master at most): the second test needs one.
const slot = Number(await seed!.cluster('KEYSLOT', 'rt:ctl'));
const masterOf = async (r: typeof seed) => {
  const ranges = (await r!.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
  return ranges.find(([from, to]) => slot >= from && slot <= to)![2][1];
};
const victim = await masterOf(seed);
const victimRange = ((await seed!.cluster('SLOTS')) as unknown as [number, number, [string, number]][]).find(([from, to]) => slot >= from && slot <= to)!;
let ch = '';
for (let i = 0; !ch; i++) {
  const s = Number(await seed!.cluster('KEYSLOT', `rt:{failover-news-${i}}:c`));
  if (s >= victimRange[0] && s <= victimRange[1]) ch = `failover-news-${i}`;
}
const survivor = [seed, ...others][cluster.ports.findIndex((p) => p !== victim)]!;

const health = async () => (await fetch(`${host.http}/health`).then((r) => r.json())).redis as { connected: number; shards: number };
const redisUp = async () => valueOf(parsePrometheus(await fetch(`${host.http}/metrics`).then((r) => r.text())), 'rt_redis_up', { thread: '0' });

t.test('kill -9 of the master serving a channel: the replica takes over, delivery and /health recover', async (t) => {
  const c = await TestClient.connect(`${host.url}/ws`);
  t.teardown(() => c.close());
  t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true);
  t.equal((await api(host.http, '/api/publish', { channel: ch, event: 'e', data: 'before' })).status, 200);
  await c.waitForMessages(ch, 1);
  t.same(await health(), { connected: 1, shards: 1 });

  await cluster.kill(victim);
  await until('the replica promoted', async () => (await masterOf(survivor)) !== victim && /cluster_state:ok/.test(String(await survivor.cluster('INFO'))), 30000);

  // Publishes fail with 503 during the switch; the first one accepted after it reaches the subscriber.
  await until('a publish accepted by the new master', async () => (await api(host.http, '/api/publish', { channel: ch, event: 'e', data: 'after' })).status === 200, 30000);
  const got = await until("'after' delivered", () => (c.messages(ch).some((f) => f.data === 'after') ? c.messages(ch) : undefined), 20000);
  // (a publish answered 503 for a timeout may still have happened: count offsets, not messages)
  t.same(got.map((f) => f.offset), Array.from({ length: got.length }, (_, i) => i + 1), 'published on the new master, delivered once each, in order');

  // The dead node stays dead: nothing of this host waits for it.
  await until('/health says Redis is connected again', async () => (await health()).connected === 1, 20000);
  t.ok(await until('rt_redis_up is 1 again', async () => (await redisUp()) === 1, 10000), 'rt_redis_up is 1 again');
});

// A replica promoted on a master this host had nothing on gets no subscriber connection until a
// channel needs one: that first subscribe failed with "the connection to Redis is down" (the new
// connection was still connecting, and commands are not queued) although the cluster was healthy.
t.test('the first subscribe to a channel on a promoted replica this host had no connection to', async (t) => {
  const ours = async (port: number) => {
    const r = redisClient(t, port);
    return ((await r.call('PUBSUB', 'SHARDCHANNELS', 'rt:*')) as string[]).length + ((await r.call('PUBSUB', 'CHANNELS', 'rt:*')) as string[]).length;
  };
  const alive = cluster.ports.filter((p) => p !== victim);
  let clean: number | undefined;
  for (const p of alive) if ((await ours(p)) === 0) clean = p;
  if (clean === undefined) throw new Error('every live master holds one of the host’s own channels');
  const r = redisClient(t, clean);
  const slots = (await r.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
  const range = slots.find(([, , m]) => m[1] === clean)!;
  let channel = '';
  for (let i = 0; !channel; i++) {
    const s = Number(await r.cluster('KEYSLOT', `rt:{fresh-${i}}:c`));
    if (s >= range[0] && s <= range[1]) channel = `fresh-${i}`;
  }
  const other = redisClient(t, alive.find((p) => p !== clean)!);
  await cluster.kill(clean);
  await until('its replica promoted', async () => {
    const now = (await other.cluster('SLOTS')) as unknown as [number, number, [string, number]][];
    return now.some(([from, , m]) => from === range[0] && m[1] !== clean) && /cluster_state:ok/.test(String(await other.cluster('INFO')));
  }, 30000);
  // Back up once the host dropped its connection to the dead node, i.e. once it read the new slot map.
  await until('/health says Redis is connected again', async () => (await health()).connected === 1, 20000);
  const c = await TestClient.connect(`${host.url}/ws`);
  t.teardown(() => c.close());
  const sub = await c.request({ op: 'subscribe', channel });
  t.equal(sub.ok, true, `subscribed at once (${JSON.stringify(sub.error ?? null)})`);
  t.equal((await api(host.http, '/api/publish', { channel, event: 'e', data: 1 })).status, 200);
  t.same((await c.waitForMessages(channel, 1)).map((f) => f.data), [1], 'and receives what is published there');
});
