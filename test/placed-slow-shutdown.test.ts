// SIGTERM hands a placed actor over at once (docs/scaling.md, placement: "releases its leases: the next
// event activates the actor elsewhere at once"), also when one of its turns is still running and
// outlasts a short --shutdown-timeout: the stopping shard lets the turn run only for what is left of
// its deadline, then releases the lease, instead of being ended still holding it (the channel then
// waited out --lease-ttl).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, startHost, type Host } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/placed-crash', import.meta.url));
// A long lease, so a lease left behind is plainly still there when the test looks.
const args = (id: string) => ['--actors', actors, '--lease-ttl', '20s', '--shutdown-timeout', '2', '--host-id', id];

const redis = await machineRedis(t);
const ns = `rt-test-${randomBytes(4).toString('hex')}`;
t.teardown(() => dropNamespace(redis.port, ns));
const [h1, h2] = await Promise.all([startHost(t, redis.url, ns, { args: args('h1') }), startHost(t, redis.url, ns, { args: args('h2') })]);

async function subscribed(host: Host, channel: string): Promise<TestClient> {
  const c = await TestClient.connect(`${host.url}/ws`);
  t.teardown(() => c.close());
  const r = await c.request({ op: 'subscribe', channel }, 20000);
  if (!r.ok) throw new Error(`subscribe to ${channel}: ${JSON.stringify(r)}`);
  return c;
}

t.test('SIGTERM during a turn longer than --shutdown-timeout still releases the lease', async (t) => {
  const ch = 'roster-slow-stop';
  const own = await subscribed(h1, ch);
  const remote = await subscribed(h2, ch);
  t.equal((await api(h2.http, `/api/channels/${ch}`)).body.owner?.host, 'h1', 'h1 runs the actor');
  // A turn of 4 s, running on h1 when it is told to stop (2 s to shut down).
  own.send({ op: 'publish', ref: 99, channel: ch, event: 'slow', data: { ms: 4000 } });
  // Let the turn start (the frame reaches h1 at once; nothing else can signal that it runs).
  await new Promise((r) => setTimeout(r, 300));
  await h1.stop();
  const owner = (await api(h2.http, `/api/channels/${ch}`)).body.owner;
  t.not(owner?.host, 'h1', `the lease no longer names the stopped host (${JSON.stringify(owner)})`);
  const r = await remote.request({ op: 'publish', channel: ch, event: 'roster', data: null }, 20000);
  t.equal(r.ok, true, 'the next event is answered by a new activation');
  t.equal((await api(h2.http, `/api/channels/${ch}`)).body.owner?.host, 'h2', 'on h2');
});
