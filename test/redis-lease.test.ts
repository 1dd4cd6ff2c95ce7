// Leases with fencing (src/bridge/lease.ts) against real Redis: one holder at a time, a growing epoch
// per new holder, renewal, release, and writes (publish, state) refused in the same Lua call once the
// writer's lease is gone. Brokers here are the same objects a shard runs, driven directly.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { Keys } from '../src/bridge/keys.js';
import { RedisBroker } from '../src/bridge/redis-broker.js';
import { parseRedisTarget } from '../src/bridge/redis-conn.js';
import type { Fence } from '../src/bridge/lease.js';
import { createLogger } from '../src/log.js';
import { dropNamespace, machineRedis, redisClient, startRedis, startRedisCluster, until } from './helpers/redis.js';

const bounds = { size: 100, ttlMs: 60_000 };
const msg = (data: unknown) => ({ event: 'e', data });

interface Node {
  broker: RedisBroker;
  lost: string[];
}

async function node(t: { teardown(fn: () => unknown): void }, url: string, ns: string, name: string, leaseTtlMs: number, cluster = false): Promise<Node> {
  const lost: string[] = [];
  const broker = new RedisBroker({
    target: parseRedisTarget(url, cluster),
    keys: new Keys(ns, ''),
    node: `${name}:0:${randomBytes(3).toString('hex')}`,
    presenceTtlMs: 5000,
    leaseTtlMs,
    log: createLogger('error', 'test'),
    onControl: () => {},
    onLeaseLost: (ch) => lost.push(ch),
  });
  await broker.start(5000);
  t.teardown(() => broker.close(false));
  return { broker, lost };
}

const redis = await machineRedis(t);
const ns = `rt-test-${randomBytes(4).toString('hex')}`;
t.teardown(() => dropNamespace(redis.port, ns));

t.test('one holder at a time; a new holder gets a larger epoch; fenced writes follow the lease', async (t) => {
  const a = await node(t, redis.url, ns, 'hostA', 600);
  const b = await node(t, redis.url, ns, 'hostB', 600);
  const ch = 'auction-1';
  const first = await a.broker.leases.acquire(ch);
  t.equal(first.held, true, 'A takes the free lease');
  const e1 = (first as { epoch: number }).epoch;
  const other = await b.broker.leases.acquire(ch);
  t.same([other.held, (other as { holder: string }).holder, other.epoch], [false, a.broker.node, e1], 'B is told who holds it');
  t.same(await a.broker.leases.acquire(ch), { held: true, epoch: e1 }, 'acquiring again keeps the epoch');
  t.same(await b.broker.leases.owner(ch).then((o) => o && [o.holder, o.epoch]), [a.broker.node, e1], 'anyone can read the owner');

  const fa = a.broker.leases.fence(ch)!;
  t.same((await a.broker.publish(ch, msg(1), bounds, undefined, fa))?.offset, 1, 'the holder publishes');
  await a.broker.leases.saveState(ch, Buffer.from('state-1'), 60_000);
  t.equal((await b.broker.leases.loadState(ch))?.toString(), 'state-1', 'the holder persists state; anyone reads it');
  const notMine: Fence = { holder: b.broker.node, epoch: e1 };
  await t.rejects(b.broker.publish(ch, msg('x'), bounds, undefined, notMine), { code: 'moved' }, 'a non-holder cannot publish with a made-up fence');
  await t.rejects(b.broker.leases.saveState(ch, Buffer.from('x'), 60_000), { code: 'moved' }, 'nor persist state');

  // The holder stops renewing (as if paused): after the ttl, B takes over with a larger epoch.
  await a.broker.leases.close(false);
  const taken = await until('B to take the expired lease', async () => {
    const r = await b.broker.leases.acquire(ch);
    return r.held ? r : undefined;
  });
  t.ok(taken.epoch > e1, `B's epoch ${taken.epoch} is larger than A's ${e1}`);
  await t.rejects(a.broker.publish(ch, msg('stale'), bounds, undefined, fa), { code: 'moved' }, "A's publish with its old fence is refused");
  const fb = b.broker.leases.fence(ch)!;
  t.same((await b.broker.publish(ch, msg(2), bounds, undefined, fb))?.offset, 2, 'the new holder continues the offsets: the stale write left no trace');
  const hist = await b.broker.history(ch, 0, undefined, 10, bounds);
  t.same(hist.pubs.map((p) => p.data), [1, 2], 'history holds only fenced-in publications');

  // Release hands over at once: no ttl wait.
  await b.broker.leases.release(ch);
  t.equal(await b.broker.leases.owner(ch), null, 'released');
  const c = await node(t, redis.url, ns, 'hostC', 600);
  const third = await c.broker.leases.acquire(ch);
  t.same(third, { held: true, epoch: taken.epoch + 1 }, 'the next holder takes it immediately, epoch + 1');
});

t.test('a holder learns it lost its lease: renewal refused, or its own clock when Redis is away', async (t) => {
  const a = await node(t, redis.url, ns, 'hostA', 900);
  const admin = redisClient(t, redis.port);
  const keys = new Keys(ns, '');
  t.equal((await a.broker.leases.acquire('room')).held, true);
  // Someone else holds it now (as after an expiry A did not notice): A's next renewal is refused.
  await admin.hset(keys.lease('room'), 'h', 'intruder:0:x', 'e', '999');
  await until('A to report the lease lost', () => a.lost.includes('room'));
  t.equal(a.broker.leases.fence('room'), undefined, 'A no longer offers a fence for it');

  // Redis gone: after a ttl without a successful renewal, the holder stops trusting its lease.
  const own = await startRedis(t);
  const b = await node(t, own.url, `${ns}-own`, 'hostB', 600);
  t.equal((await b.broker.leases.acquire('solo')).held, true);
  t.ok(b.broker.leases.fence('solo'), 'fence while renewals succeed');
  await own.kill();
  await until('B to give up the lease on its own clock', () => b.lost.includes('solo'));
  t.equal(b.broker.leases.fence('solo'), undefined);
});

t.test('leases and fenced writes on a Redis Cluster (lease, fence and stream share one slot)', async (t) => {
  const cluster = await startRedisCluster(t);
  const a = await node(t, cluster.seeds, 'rt', 'hostA', 600, true);
  const b = await node(t, cluster.seeds, 'rt', 'hostB', 600, true);
  for (const ch of ['auction-1', 'auction-2', 'lobby']) {
    const r = await a.broker.leases.acquire(ch);
    t.equal(r.held, true, `${ch}: A holds it`);
    t.equal((await b.broker.leases.acquire(ch)).held, false, `${ch}: B does not`);
    t.same((await a.broker.publish(ch, msg(ch), bounds, undefined, a.broker.leases.fence(ch)))?.offset, 1, `${ch}: fenced publish`);
    await t.rejects(b.broker.publish(ch, msg('x'), bounds, undefined, { holder: b.broker.node, epoch: r.epoch }), { code: 'moved' });
    await a.broker.leases.saveState(ch, Buffer.from(ch), 60_000);
    t.equal((await b.broker.leases.loadState(ch))?.toString(), ch);
    await a.broker.leases.release(ch);
    t.equal((await b.broker.leases.acquire(ch)).held, true, `${ch}: handed over on release`);
  }
});
