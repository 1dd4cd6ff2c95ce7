// Redis Sentinel: two rt-actors processes reach Redis only through three real sentinels (a master and a
// replica of our own). A SENTINEL FAILOVER promotes the replica; without restarting rt-actors, publishing,
// live delivery and history carry on against the new master, with the same offsets and epoch.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { createServer, type Socket } from 'node:net';
import { api } from './helpers/server.js';
import { TestClient, type Frame } from './helpers/ws-client.js';
import { redisCall, startHost, startSentinelGroup, until, type Host } from './helpers/redis.js';

const g = await startSentinelGroup(t);
const actors = fileURLToPath(new URL('./fixtures/cluster-actors', import.meta.url));
const args = ['--redis-sentinels', g.spec, '--redis-sentinel-name', g.name, '--actors', actors, '--lease-ttl', '3s'];
const A = await startHost(t, '', 'rt', { args });
const B = await startHost(t, '', 'rt', { args });

async function connect(h: Host): Promise<TestClient> {
  const c = await TestClient.connect(h.url + '/ws');
  t.teardown(() => c.close());
  return c;
}

t.test('hosts find the master through the sentinels', async (t) => {
  for (const h of [A, B]) {
    const health = (await api(h.http, '/health', undefined, { key: null })).body;
    t.same(health.redis, { connected: 1, shards: 1 }, 'the shard is connected to Redis');
  }
  const clients = (await redisCall(g.master.port, 'CLIENT', 'LIST')) as string;
  t.match(clients, /name=rt-actors:/, 'the master the sentinels named serves the bridge');
});

t.test('SENTINEL FAILOVER: publishing, delivery and history resume without restarting rt-actors', async (t) => {
  const ca = await connect(A);
  const cb = await connect(B);
  const sub = await ca.request({ op: 'subscribe', channel: 'ledger' });
  t.equal((await cb.request({ op: 'subscribe', channel: 'ledger' })).ok, true);
  for (let i = 1; i <= 3; i++) t.equal((await api(i % 2 ? A.http : B.http, '/api/publish', { channel: 'ledger', event: 'e', data: i })).status, 200);
  // A placed actor (one activation for both hosts) with state in Redis.
  t.equal((await ca.request({ op: 'subscribe', channel: 'auction-s' }, 30000)).ok, true);
  t.equal((await cb.request({ op: 'subscribe', channel: 'auction-s' }, 30000)).ok, true);
  t.equal((await cb.request({ op: 'publish', channel: 'auction-s', event: 'bid', data: { amount: 10 } }, 30000)).ok, true, 'a bid accepted before the failover');
  await ca.waitForMessages('ledger', 3);
  await cb.waitForMessages('ledger', 3);
  // Replication is asynchronous: the test makes sure the replica has everything before promoting it.
  t.equal(await redisCall(g.master.port, 'WAIT', '1', '5000'), 1, 'the replica acknowledged the writes');

  t.equal(await redisCall(g.sentinels[0]!, 'SENTINEL', 'FAILOVER', g.name), 'OK');
  await until('the sentinels to name the replica as master', async () => (await g.masterPort()) === g.replica.port, 30000);
  // Between the promotion and the old master's demotion, the old master still takes writes, which are
  // lost when it becomes a replica (Redis replication is asynchronous; docs/scaling.md): the test
  // publishes once the old master has been demoted, so what it checks is rt-actors' switch-over.
  await until('the old master to be demoted', async () => ((await redisCall(g.master.port, 'ROLE')) as string[])[0] === 'slave', 30000);
  t.pass('the replica is the master now');

  // Publishes may fail with 503 while the hosts switch over; each one either fails loudly or lands once.
  const publishUntilOk = async (h: Host, data: unknown) => {
    const r = await until(`a publish of ${JSON.stringify(data)} to succeed after the failover`, async () => {
      const res = await api(h.http, '/api/publish', { channel: 'ledger', event: 'e', data });
      if (res.status !== 200 && res.status !== 503) throw new Error(`unexpected ${res.status} ${JSON.stringify(res.body)}`);
      return res.status === 200 ? res : undefined;
    }, 30000);
    return r;
  };
  await publishUntilOk(A, 'after-a');
  await publishUntilOk(B, 'after-b');
  const seqA = await ca.waitForMessages('ledger', 5, 30000);
  const seqB = await cb.waitForMessages('ledger', 5, 30000);
  t.same(seqA.map((f) => f.data), [1, 2, 3, 'after-a', 'after-b'], 'host A: old and new publications, in order');
  t.same(seqB.map((f) => [f.offset, f.data]), seqA.map((f) => [f.offset, f.data]), 'host B saw the same sequence with the same offsets');
  t.same(seqA.map((f) => f.offset), [1, 2, 3, 4, 5], 'offsets continue from the promoted replica');

  // The placed actor carries on from the state the new master has: retried while the hosts switch over.
  const bidUntilAnswered = async (c: TestClient, amount: number) =>
    until(`a bid of ${amount} to be judged after the failover`, async () => {
      const r = await c.request({ op: 'publish', channel: 'auction-s', event: 'bid', data: { amount } }, 30000);
      if (!r.ok && !['unavailable', 'moved', 'timeout', 'bid_too_low'].includes(r.error?.code)) throw new Error(`unexpected ${JSON.stringify(r)}`);
      return r.ok || r.error?.code === 'bid_too_low' ? r : undefined;
    }, 30000);
  t.equal((await bidUntilAnswered(ca, 5)).error?.code, 'bid_too_low', 'the bid accepted before the failover is still the highest');
  t.equal((await bidUntilAnswered(ca, 20)).ok, true, 'placement and bidding resume on the new master');

  // History written before the failover is served by the new master, under the same epoch.
  // The hosts' connections may still be switching over (the sentinels' +switch-master makes ioredis
  // reconnect once more): a read then fails loudly with `unavailable`, and a client retries.
  const late = await connect(B);
  const resumed = await until('a resume to be served', async () => {
    const r = await late.request({ op: 'subscribe', channel: 'ledger', since: { offset: 1, epoch: sub.epoch } });
    if (!r.ok && r.error?.code !== 'unavailable') throw new Error(`unexpected ${JSON.stringify(r)}`);
    return r.ok ? r : undefined;
  }, 30000);
  t.equal(resumed.epoch, sub.epoch, 'same epoch after the failover');
  t.equal(resumed.recovered, true);
  t.same(resumed.publications.map((p: Frame) => p.data), [2, 3, 'after-a', 'after-b'], 'history spans the failover');
  await until('the bridge to be connected to the promoted replica', async () => /name=rt-actors:/.test(String(await redisCall(g.replica.port, 'CLIENT', 'LIST'))));
  t.pass('the bridge now talks to the promoted replica');
  for (const h of [A, B]) {
    await until('the host to report Redis connected', async () => (await api(h.http, '/health', undefined, { key: null })).body.redis.connected === 1);
  }
  t.pass('both hosts healthy and connected after the failover');
});

t.test('--redis carries only credentials and database beside the sentinels: redis://user:password@/2 as documented', async (t) => {
  // An ACL user on both nodes (ACLs are not replicated), so the default user and the other hosts are untouched.
  const master = await g.masterPort();
  for (const port of [g.master.port, g.replica.port]) t.equal(await redisCall(port, 'ACL', 'SETUSER', 'rtsent', 'on', '>s3cret', '~*', '&*', '+@all'), 'OK');
  const C = await startHost(t, 'redis://rtsent:s3cret@/2', 'rtacl', { args: ['--redis-sentinels', g.spec, '--redis-sentinel-name', g.name] });
  const health = (await api(C.http, '/health', undefined, { key: null })).body;
  t.same(health.redis, { connected: 1, shards: 1 }, 'connected through the sentinels with the URL\'s user');
  t.match(String(await redisCall(master, 'CLIENT', 'LIST')), /name=rt-actors:\S+ .*db=2 .*user=rtsent/, 'on the master, database 2, as that user');
  const c = await connect(C);
  t.equal((await c.request({ op: 'subscribe', channel: 'acl-news' })).ok, true);
  t.equal((await api(C.http, '/api/publish', { channel: 'acl-news', event: 'e', data: 1 })).status, 200);
  t.same((await c.waitForMessages('acl-news', 1)).map((f) => f.data), [1], 'publish and delivery work');
  const err = await startHost(t, 'redis://rtsent:wrong@/2', 'rtacl', { args: ['--redis-sentinels', g.spec, '--redis-sentinel-name', g.name] }).then(() => undefined, (e: Error) => e);
  t.match(err?.message ?? '', /refused our credentials .*redis:\/\/:password@\/ .*beside --redis-sentinels/, 'a wrong password names the sentinel form of --redis');
});

t.test('a sentinel that is down does not print ioredis stack traces outside the log', async (t) => {
  // One sentinel of the group down (maintenance, a lost machine) is a state Sentinel tolerates. The
  // failover detector's client for it has no 'error' listener in ioredis: each failed attempt printed
  // "[ioredis] Unhandled error event" and a stack. The down sentinel here resets every connection, so
  // the test sees each attempt.
  let attempts = 0;
  const down = createServer((s: Socket) => { attempts++; s.resetAndDestroy(); });
  await new Promise<void>((r) => down.listen(0, '127.0.0.1', r));
  t.teardown(() => down.close());
  const downPort = (down.address() as { port: number }).port;
  const C = await startHost(t, '', 'rtdown', { args: ['--redis-sentinels', `${g.spec},127.0.0.1:${downPort}`, '--redis-sentinel-name', g.name, '--log-level', 'info'] });
  // The main thread's connection and the shard's two each watch every sentinel.
  await until('the failover detectors to try the down sentinel', () => attempts >= 3, 30000);
  t.equal((await api(C.http, '/api/publish', { channel: 'down-s', event: 'e', data: 1 })).status, 200, 'the host serves');
  t.equal((await api(C.http, '/health', undefined, { key: null })).body.redis.connected, 1);
  t.notMatch(C.output(), /Unhandled error event/, 'no unhandled ioredis error');
});

t.test('bad sentinel options stop the start with a message naming them', async (t) => {
  for (const [flags, needle] of [
    [['--redis-sentinels', 'nope'], /redis-sentinels.*not host:port/],
    [['--redis-sentinels', g.spec, '--redis-sentinel-name', 'bad name'], /sentinel-name/],
    [['--redis-sentinels', g.spec, '--redis-cluster'], /exclude each other/],
    // The sentinels answer, but for another master: not "All sentinels are unreachable".
    [['--redis-sentinels', g.spec, '--redis-sentinel-name', 'nosuchmaster'], /sentinels answer but monitor no master named "nosuchmaster"/],
  ] as const) {
    const err = await startHost(t, '', 'rt', { args: [...flags] }).then(() => undefined, (e: Error) => e);
    t.ok(err, `${flags.join(' ')} refused`);
    t.match(err?.message ?? '', needle, 'the message names the problem');
  }
});
