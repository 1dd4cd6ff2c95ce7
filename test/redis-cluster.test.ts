// Redis bridge on a 3-master Redis Cluster this test creates: sharded pub/sub (SSUBSCRIBE/SPUBLISH)
// spreads channels over the masters, and two rt-actors processes still see one order per channel.
import t from 'tap';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET } from './helpers/server.js';
import { TestClient, type Frame } from './helpers/ws-client.js';
import { redisClient, startHost, startRedisCluster, type Host } from './helpers/redis.js';

const token = (sub: string, extra: Record<string, unknown> = {}) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, ...extra }, { secret: JWT_SECRET });
const cluster = await startRedisCluster(t);
const prefix = 'laravel_database_';
// One host is given every node, the other a single seed node and --redis-cluster.
const A = await startHost(t, cluster.seeds, 'rt', { workers: 2, args: ['--redis-prefix', prefix] });
const B = await startHost(t, `redis://127.0.0.1:${cluster.ports[1]}`, 'rt', { workers: 1, args: ['--redis-cluster', '--redis-prefix', prefix] });

async function connect(h: Host, tok?: string): Promise<TestClient> {
  const c = await TestClient.connect(h.url + '/ws' + (tok ? `?token=${tok}` : ''));
  t.teardown(() => c.close());
  return c;
}

t.test('channels spread over the masters with sharded pub/sub; every host sees one order', async (t) => {
  const channels = Array.from({ length: 8 }, (_, i) => `stream-${i}`);
  const clients = [await connect(A), await connect(A), await connect(B)];
  for (const c of clients) for (const ch of channels) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true, `subscribed to ${ch}`);

  // Each master lists the shard channels it serves: ours must be there, and on more than one master.
  const perNode = await Promise.all(cluster.ports.map((p) => redisClient(t, p).call('PUBSUB', 'SHARDCHANNELS', 'rt:*') as Promise<string[]>));
  const all = perNode.flat();
  for (const ch of channels) t.ok(all.includes(`rt:{${ch}}:c`), `${ch} is a shard channel on its master`);
  t.ok(perNode.filter((l) => l.length > 0).length >= 2, `shard channels spread over ${perNode.filter((l) => l.length > 0).length} masters`);

  const N = 10;
  const from = (h: Host, name: string) =>
    (async () => {
      for (let i = 0; i < N; i++) for (const ch of channels) {
        const r = await api(h.http, '/api/publish', { channel: ch, event: 'tick', data: { from: name, i } });
        if (r.status !== 200) throw new Error(`publish via ${name}: ${r.status} ${JSON.stringify(r.body)}`);
      }
    })();
  await Promise.all([from(A, 'A'), from(B, 'B')]);
  const seq = (fs: Frame[]) => fs.map((f) => `${f.offset}:${f.data.from}${f.data.i}`);
  for (const ch of channels) {
    const ref = seq(await clients[0]!.waitForMessages(ch, 2 * N));
    t.same(ref.map((s) => Number(s.split(':')[0])), Array.from({ length: 2 * N }, (_, k) => k + 1), `${ch}: offsets 1..${2 * N}`);
    for (const c of clients.slice(1)) t.same(seq(await c.waitForMessages(ch, 2 * N)), ref, `${ch}: same order on every host and shard`);
  }
});

t.test("Laravel's broadcaster (classic PUBLISH on any node) reaches both hosts once", async (t) => {
  const ch = 'private-invoices.3';
  const tok = token('8', { channels: ['private-invoices.*'] });
  const ca = await connect(A, tok);
  const cb = await connect(B, tok);
  for (const c of [ca, cb]) await c.request({ op: 'subscribe', channel: ch });
  const backend = redisClient(t, cluster.ports[2]!);
  await backend.publish(prefix + ch, JSON.stringify({ event: 'InvoicePaid', data: { id: 3 }, socket: null }));
  await backend.publish(prefix + ch, JSON.stringify({ event: 'InvoiceSent', data: { id: 3 }, socket: ca.welcome.socket_id }));
  await backend.publish(prefix + ch, JSON.stringify({ event: 'Done', data: null }));
  const gotA = await ca.waitForMessages(ch, 2);
  const gotB = await cb.waitForMessages(ch, 3);
  t.same(gotB.map((f) => [f.event, f.offset]), [['InvoicePaid', 1], ['InvoiceSent', 2], ['Done', 3]], 'host B: each once, in order');
  t.same(gotA.map((f) => [f.event, f.offset]), [['InvoicePaid', 1], ['Done', 3]], 'host A: the excluded socket skipped its message');
});

t.test('presence, counts and resume work on the cluster too', async (t) => {
  const tok = (u: string) => token(u, { channels: ['presence-*'] });
  const w = await connect(A, tok('w'));
  await w.request({ op: 'subscribe', channel: 'presence-desk' });
  const u = await connect(B, tok('u'));
  const sub = await u.request({ op: 'subscribe', channel: 'presence-desk' });
  t.same(sub.members.map((m: { user_id: string }) => m.user_id).sort(), ['u', 'w']);
  t.equal((await w.next((f) => f.op === 'join')).member.user_id, 'u');
  const info = await api(A.http, '/api/channels/presence-desk');
  t.same([info.body.subscribers, info.body.presence], [2, 2]);
  for (let i = 1; i <= 4; i++) await api(B.http, '/api/publish', { channel: 'presence-desk', event: 'e', data: i });
  await w.waitForMessages('presence-desk', 4);
  const again = await connect(A, tok('v'));
  const resumed = await again.request({ op: 'subscribe', channel: 'presence-desk', since: { offset: 2, epoch: sub.epoch } });
  t.equal(resumed.recovered, true);
  t.same(resumed.publications.map((p: Frame) => p.data), [3, 4], 'resumed from the stream on another host');
  u.close();
  t.equal((await w.next((f) => f.op === 'leave')).member.user_id, 'u');
});
