// A shard crash under a placed custom actor (docs/scaling.md, Faults: "a shard crashes"): the crashed
// shard relayed the channel for its host, so its replacement registers the host's surviving subscribers
// with the activation again, under its own node. The sweep that then makes the dead node's subscribers
// leave must not take the survivors with them: they are still connected, and still subscribed. And a
// survivor publishing while the replacement starts is answered once its subscription is back there,
// not refused `not_subscribed`.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { TestClient } from './helpers/ws-client.js';
import { channelOwnedBy, clientOnShard } from './helpers/faults.js';
import { dropNamespace, machineRedis, startHost, until, type Host } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/placed-crash', import.meta.url));
const args = (id: string) => ['--actors', actors, '--lease-ttl', '2s', '--host-id', id];

const redis = await machineRedis(t);
const ns = `rt-test-${randomBytes(4).toString('hex')}`;
t.teardown(() => dropNamespace(redis.port, ns));
const [h1, h2] = await Promise.all([startHost(t, redis.url, ns, { workers: 2, args: args('h1') }), startHost(t, redis.url, ns, { args: args('h2') })]);

async function subscribe(c: TestClient, channel: string): Promise<void> {
  const r = await c.request({ op: 'subscribe', channel }, 20000);
  if (!r.ok) throw new Error(`subscribe to ${channel}: ${JSON.stringify(r)}`);
}

async function onHost(host: Host): Promise<TestClient> {
  const c = await TestClient.connect(`${host.url}/ws`);
  t.teardown(() => c.close());
  return c;
}

const ask = async (c: TestClient, channel: string) => {
  const r = await c.request({ op: 'publish', channel, event: 'roster', data: null }, 20000);
  if (!r.ok) throw new Error(`roster: ${JSON.stringify(r)}`);
  return r.data as { subscribers: string[]; left: string[] };
};

t.test("a shard crash on one host: the dead node's subscribers leave, its host's survivors stay", async (t) => {
  // Shard 0 of h1 relays the channel for h1 and, taking the lease first, runs its activation too.
  const ch = channelOwnedBy('roster-', 0, 2);
  const doomed = await clientOnShard(`${h1.url}/ws`, 0, t);
  await subscribe(doomed, ch);
  const survivor = await clientOnShard(`${h1.url}/ws`, 1, t);
  await subscribe(survivor, ch);
  const remote = await onHost(h2);
  await subscribe(remote, ch);
  const ids = [doomed, survivor, remote].map((c) => c.welcome.socket_id as string);
  t.same((await ask(remote, ch)).subscribers, [...ids].sort(), 'the activation counts all three');

  doomed.send({ op: 'publish', channel: ch, event: 'crash', data: null });
  t.equal((await doomed.waitClose(20000)).code, 1011, 'the crashed shard tells its client to reconnect');
  // The crashed shard's own client leaves once the sweep finds its node dead (onLeave runs for it).
  await until('the crashed shard client left', async () => (await ask(remote, ch)).left.includes(ids[0]!), 60000, 250);
  const after = await ask(remote, ch);
  t.same(after.subscribers, [ids[1], ids[2]].sort(), 'the survivor on the other shard of h1 is still counted');
  t.same(after.left, [ids[0]], 'only the crashed shard client left');
  t.equal((await survivor.request({ op: 'publish', channel: ch, event: 'roster', data: null }, 20000)).ok, true, 'the survivor still publishes');
});

t.test("a survivor publishing while the crashed shard's replacement starts is not told it is not subscribed", async (t) => {
  const ch = channelOwnedBy('roster-pub-', 0, 2);
  const doomed = await clientOnShard(`${h1.url}/ws`, 0, t);
  await subscribe(doomed, ch);
  const survivor = await clientOnShard(`${h1.url}/ws`, 1, t);
  await subscribe(survivor, ch);
  doomed.send({ op: 'publish', channel: ch, event: 'crash', data: null });
  await doomed.waitClose(20000);
  // Publishes sent back to back from the moment the shard died: those that reach its replacement
  // before the survivor's subscription is registered there again wait for it.
  const answers: Array<{ ok: boolean; error?: { code: string } }> = [];
  await until('a publish through the replacement shard', async () => {
    const r = await survivor.request({ op: 'publish', channel: ch, event: 'roster', data: null }, 20000);
    answers.push(r as { ok: boolean; error?: { code: string } });
    return r.ok;
  }, 30000, 10);
  t.same(answers.filter((a) => !a.ok).map((a) => a.error?.code), [], 'no publish refused meanwhile');
});
