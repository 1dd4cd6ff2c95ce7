// Placement on a Redis Cluster: three rt-actors processes on a 3-master Redis Cluster of our own run the
// auction actor with one activation (lease, fence, state and stream in the channel's slot; node inboxes
// on sharded pub/sub). Bids from every host form one sequence; kill -9 of the owner loses no accepted bid.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET } from './helpers/server.js';
import { TestClient, type Frame } from './helpers/ws-client.js';
import { startHost, startRedisCluster, until, type Host } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/cluster-actors', import.meta.url));
const token = (sub: string) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

const cluster = await startRedisCluster(t);
const hosts: Host[] = [];
for (const id of ['c1', 'c2', 'c3']) hosts.push(await startHost(t, cluster.seeds, 'rt', { args: ['--redis-cluster', '--actors', actors, '--lease-ttl', '1.5s', '--host-id', id] }));
const idOf = (h: Host) => `c${hosts.indexOf(h) + 1}`;

const clients: { c: TestClient; host: string }[] = [];
const ch = 'auction-cluster';
for (const h of hosts) {
  const c = await TestClient.connect(`${h.url}/ws?token=${token(`user-${idOf(h)}`)}`);
  t.teardown(() => c.close());
  const r = await c.request({ op: 'subscribe', channel: ch }, 60000);
  if (!r.ok) throw new Error(`subscribe: ${JSON.stringify(r)}`);
  clients.push({ c, host: idOf(h) });
}
const bid = (c: TestClient, amount: number) => c.request({ op: 'publish', channel: ch, event: 'bid', data: { amount } }, 60000);
const bids = (c: TestClient) => c.messages(ch).filter((f: Frame) => f.event === 'bid').map((f) => [f.offset, f.data.amount]);

t.test('bids from three hosts on a Redis Cluster: one sequence', async (t) => {
  const replies = await Promise.all(clients.map(async ({ c }, i) => {
    const out: [number, boolean][] = [];
    for (let k = 0; k < 6; k++) {
      const amount = 10 + k * 3 + i;
      const r = await bid(c, amount);
      out.push([amount, r.ok === true]);
      if (!r.ok && r.error?.code !== 'bid_too_low') throw new Error(`unexpected ${JSON.stringify(r)}`);
    }
    return out;
  }));
  const ok = replies.flat().filter(([, a]) => a).map(([n]) => n).sort((a, b) => a - b);
  await api(hosts[0]!.http, '/api/publish', { channel: ch, event: 'marker', data: 1 });
  for (const { c } of clients) await until('marker', () => c.messages(ch).some((f) => f.event === 'marker'), 60000);
  const ref = bids(clients[0]!.c);
  t.same(ref.map((x) => x[1]), ok, 'the sequence is exactly the bids answered ok');
  for (const { c, host } of clients) t.same(bids(c), ref, `client on ${host}: same sequence and offsets`);
  // Private pushes through the owner's sharded inboxes: each outbid bidder is told, on its own host.
  const seq = clients[0]!.c.messages(ch).filter((f: Frame) => f.event === 'bid').map((f) => f.data as { amount: number; bidder: string });
  const expected = new Map<string, number[]>();
  for (let i = 1; i < seq.length; i++) {
    if (seq[i - 1]!.bidder === seq[i]!.bidder) continue;
    expected.set(seq[i - 1]!.bidder, [...(expected.get(seq[i - 1]!.bidder) ?? []), seq[i]!.amount]);
  }
  t.ok(expected.size >= 1, `${[...expected.values()].flat().length} outbid pushes expected`);
  for (const { c, host } of clients) {
    const want = expected.get(`user-${host}`) ?? [];
    const got = await until(`outbids on ${host}`, () => {
      const o = c.messages(ch).filter((f) => f.event === 'outbid').map((f) => f.data.amount as number);
      return o.length >= want.length ? o : undefined;
    }, 60000);
    t.same(got, want, `client on ${host}: told each time it was outbid (${want.length})`);
  }
});

t.test('kill -9 the owner: accepted bids kept, auction closes once', async (t) => {
  const before = (await api(hosts[0]!.http, `/api/channels/${ch}`)).body.owner;
  t.equal(before.placement, 'leased');
  const top = bids(clients[0]!.c).at(-1)![1] as number;
  const victim = hosts.find((h) => idOf(h) === before.host)!;
  await victim.crash();
  const survivors = clients.filter((x) => x.host !== before.host);
  const low = await bid(survivors[0]!.c, top - 1);
  t.equal(low.error?.code, 'bid_too_low', `a bid under ${top} is still too low after the owner died`);
  t.equal((await bid(survivors[1]!.c, top + 100)).ok, true, 'a higher one is accepted on the new owner');
  const alive = hosts.filter((h) => h !== victim);
  const after = (await api(alive[0]!.http, `/api/channels/${ch}`)).body.owner;
  t.ok(after.host !== before.host && after.epoch > before.epoch, `moved to ${after.host}, epoch ${before.epoch} → ${after.epoch}`);
  const closes = await Promise.all(alive.map((h) => api(h.http, '/api/publish', { channel: ch, event: 'close', data: null })));
  t.same(closes.map((r) => r.status).sort(), [200, 403], 'closed once');
  await api(alive[0]!.http, '/api/publish', { channel: ch, event: 'marker', data: 2 });
  for (const { c, host } of survivors) {
    await until('marker 2', () => c.messages(ch).some((f) => f.event === 'marker' && f.data === 2), 60000);
    t.same(c.messages(ch).filter((f) => f.event === 'closed').map((f) => f.data.amount), [top + 100], `client on ${host}: one closed, the right winner`);
  }
});
