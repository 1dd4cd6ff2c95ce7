// A placed custom actor (one activation cluster-wide, --redis) follows the failure rules of one host
// (docs/actors.md "Failures, deadlines and limits"): a hook is cut off at --actor-hook-timeout, a full
// mailbox refuses with `overloaded`, a failing hook is answered `actor_failed` without its message and
// logged with the actor's file, three failures in a row restart it with fresh state; a refused join
// leaves no subscriber behind. And what the multi-host path adds: an event the owner is slow to answer
// is not run twice, a Date in a broadcast reaches every host, and subscribers of a dead host leave.
// Real rt-actors processes on the machine's Redis; the actor is test/fixtures/placed-faults/faulty.ts.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { api } from './helpers/server.js';
import { TestClient, type Frame } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, startHost, until, type Host } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/placed-faults', import.meta.url));
// A lease of 3 s: a forwarded event waits at most 3 s for its answer (the node RPC timeout).
const args = (id: string) => ['--actors', actors, '--lease-ttl', '3s', '--actor-hook-timeout', '1', '--actor-mailbox-size', '4', '--host-id', id];

const redis = await machineRedis(t);
const ns = `rt-test-${randomBytes(4).toString('hex')}`;
t.teardown(() => dropNamespace(redis.port, ns));
const [h1, h2] = await Promise.all([startHost(t, redis.url, ns, { args: args('h1') }), startHost(t, redis.url, ns, { args: args('h2') })]);

async function client(host: Host): Promise<TestClient> {
  const c = await TestClient.connect(`${host.url}/ws`);
  t.teardown(() => c.close());
  return c;
}

async function subscribed(host: Host, channel: string, data?: unknown): Promise<TestClient> {
  const c = await client(host);
  const r = await c.request({ op: 'subscribe', channel, ...(data === undefined ? {} : { data }) }, 20000);
  if (!r.ok) throw new Error(`subscribe to ${channel}: ${JSON.stringify(r)}`);
  return c;
}

const send = (c: TestClient, channel: string, event: string, data: unknown = null, ms = 20000) => c.request({ op: 'publish', channel, event, data }, ms);

/** The channel's activation runs on h1: its first subscriber is there. */
async function ownedByH1(channel: string): Promise<{ owner: TestClient; remote: TestClient }> {
  const owner = await subscribed(h1, channel);
  const remote = await subscribed(h2, channel);
  const o = (await api(h2.http, `/api/channels/${channel}`)).body.owner;
  if (o?.host !== 'h1') throw new Error(`expected h1 to run ${channel}, got ${JSON.stringify(o)}`);
  return { owner, remote };
}

/** A backend publish through the activation after everything sent before it: once both see it, the earlier events ran. */
async function settle(channel: string, clients: TestClient[], tag: string): Promise<void> {
  const r = await api(h2.http, '/api/publish', { channel, event: 'marker', data: tag });
  if (r.status !== 200) throw new Error(`marker: ${r.status} ${JSON.stringify(r.body)}`);
  for (const c of clients) await c.next((f) => f.channel === channel && f.event === 'marker' && f.data === tag, 20000);
}

t.test('an event the owner is slow to answer times out once and runs once', async (t) => {
  const ch = 'faulty-slow';
  const { owner, remote } = await ownedByH1(ch);
  // Four slow turns (0.9 s each, inside the 1 s hook deadline) hold the activation for 3.6 s; the inc
  // queued behind them waits past the 3 s a forwarded event is given.
  const slow = [1, 2, 3, 4].map(() => send(remote, ch, 'slow', { ms: 900 }));
  const inc = await send(remote, ch, 'inc');
  t.equal(inc.ok, false, 'the inc is not answered in time');
  t.equal(inc.error?.code, 'timeout', `answered timeout (${JSON.stringify(inc.error)})`);
  const answers = await Promise.all(slow);
  t.ok(answers.filter((a) => a.ok).length >= 1, 'the slow turns ran');
  await settle(ch, [owner, remote], 'after-inc');
  const counts = (c: TestClient) => c.messages(ch).filter((f: Frame) => f.event === 'count').map((f: Frame) => f.data.n);
  t.same(counts(owner), [1], 'the inc ran once (subscriber on the owner)');
  t.same(counts(remote), [1], 'the inc ran once (subscriber on the other host)');
  const get = await send(remote, ch, 'get');
  t.equal(get.data?.n, 1, 'the state counted one inc');
});

t.test('a hook blocking its owner past the lease runs once: answered timeout, not run again at the next owner', async (t) => {
  const ch = 'faulty-spin';
  const { owner, remote } = await ownedByH1(ch);
  // Sent on h1, which runs the activation: the hook blocks h1 for 5 s, past the 3 s lease, and h2
  // (which has a subscriber) takes the channel over meanwhile. The turn's writes are then refused.
  const spin = await send(owner, ch, 'spin', { ms: 5000 }, 60000);
  t.equal(spin.ok, false, 'the turn that lost its lease is not answered ok');
  t.equal(spin.error?.code, 'timeout', `answered timeout (${JSON.stringify(spin.error)})`);
  await settle(ch, [owner, remote], 'after-spin');
  const runs = (h: Host) => h.output().split('\n').filter((l) => l.includes(`spin ran in ${ch}`)).length;
  t.equal(runs(h1) + runs(h2), 1, `the hook ran once in the cluster (h1 ${runs(h1)}, h2 ${runs(h2)})`);
  t.same(remote.messages(ch).filter((f: Frame) => f.event === 'count'), [], 'its fenced publication reached nobody');
  const get = await send(remote, ch, 'get');
  t.equal(get.data?.n, 0, 'and its state change was not saved');
});

t.test('a hook past --actor-hook-timeout is cut off with actor_timeout', async (t) => {
  const ch = 'faulty-deadline';
  const { remote, owner } = await ownedByH1(ch);
  for (const c of [remote, owner]) {
    const r = await send(c, ch, 'slow', { ms: 2500 });
    t.equal(r.error?.code, 'actor_timeout', `cut off at 1 s (${JSON.stringify(r.error)})`);
  }
  const after = await send(remote, ch, 'inc');
  t.equal(after.ok, true, 'the channel goes on');
});

t.test('failing hooks: actor_failed without their message, logged with the file; three in a row restart the actor', async (t) => {
  const ch = 'faulty-boom';
  const { owner, remote } = await ownedByH1(ch);
  t.equal((await send(remote, ch, 'inc')).ok, true);
  t.equal((await send(remote, ch, 'inc')).ok, true);
  t.equal((await send(remote, ch, 'get')).data?.n, 2, 'two incs counted');
  const refusal = await send(remote, ch, 'refuse');
  t.same(refusal.error, { code: 'refused_on_purpose', message: 'the actor says no' }, 'an ActorError refusal reaches the client as it is');
  const wrong = await send(remote, ch, 'number');
  t.equal(wrong.error?.code, 'actor_failed', 'a value that is not a message is actor_failed');
  for (const c of [remote, owner, remote]) {
    const r = await send(c, ch, 'boom');
    t.equal(r.error?.code, 'actor_failed', `a throwing hook is actor_failed (${JSON.stringify(r.error)})`);
    t.notMatch(JSON.stringify(r.error), /secret detail/, "the hook's own message stays in the server log");
  }
  await owner.next((f) => f.channel === ch && f.event === 'stopped' && f.data?.reason === 'failed', 20000);
  const get = await send(remote, ch, 'get');
  t.equal(get.data?.n, 0, 'the restarted actor has fresh state');
  await until('the failure in h1 log', () => /onMessage failed \(actor .*faulty\.ts\)/.test(h1.output()) && /restarts with fresh state/.test(h1.output()), 10000);
  t.match(h1.output(), /a secret detail of the failure/, "the owner's log has the hook's error");
  t.notMatch(h2.output(), /a secret detail/, 'the forwarding host logs nothing of it');
});

t.test('a full mailbox refuses with overloaded; what it accepted runs', async (t) => {
  const ch = 'faulty-mailbox';
  const { remote } = await ownedByH1(ch);
  const hold = send(remote, ch, 'slow', { ms: 800 });
  const incs = await Promise.all(Array.from({ length: 10 }, () => send(remote, ch, 'inc')));
  const codes = incs.map((r) => (r.ok ? 'ok' : r.error?.code));
  t.ok(codes.includes('overloaded'), `some are refused with overloaded (${codes.join(',')})`);
  t.ok(codes.every((c) => c === 'ok' || c === 'overloaded'), 'the others are accepted');
  await hold;
  const accepted = codes.filter((c) => c === 'ok').length;
  t.equal((await send(remote, ch, 'get')).data?.n, accepted, 'every accepted inc ran, and only those');
});

t.test('a refused join leaves no subscriber; the same socket joins later with onJoin', async (t) => {
  const ch = 'faulty-join';
  const { remote } = await ownedByH1(ch);
  const c = await client(h2);
  const refused = await c.request({ op: 'subscribe', channel: ch, data: { refuse: true } }, 20000);
  t.equal(refused.error?.code, 'actor_failed', `the throwing onJoin refuses (${JSON.stringify(refused.error)})`);
  const get = await send(remote, ch, 'get');
  t.equal(get.data?.subscribers.length, 2, `two subscribers, not the refused one (${JSON.stringify(get.data)})`);
  const again = await c.request({ op: 'subscribe', channel: ch }, 20000);
  t.equal(again.ok, true, 'the same socket subscribes');
  t.equal(again.data?.count, 2, 'onJoin ran for it (its reply), before it was counted');
  t.equal((await send(remote, ch, 'get')).data?.subscribers.length, 3, 'now it counts');
});

t.test('a Date and an undefined in a broadcast reach every host as JSON has them', async (t) => {
  const ch = 'faulty-stamp';
  const { owner, remote } = await ownedByH1(ch);
  t.equal((await send(remote, ch, 'stamp')).data, 'stamped');
  for (const c of [owner, remote]) {
    const f = await c.next((f) => f.channel === ch && f.event === 'stamp', 20000);
    t.same(f.data, { at: '1970-01-01T00:00:00.000Z', kept: 1 }, 'the Date as its ISO text, the undefined left out');
  }
  await settle(ch, [owner, remote], 'after-stamp');
  t.equal((await send(remote, ch, 'inc')).ok, true, 'the subscribers are still there');
});

t.test("a dead host's subscribers leave the activation", async (t) => {
  const ch = 'faulty-dead';
  const { remote } = await ownedByH1(ch);
  const h3 = await startHost(t, redis.url, ns, { args: args('h3') });
  await subscribed(h3, ch);
  await subscribed(h3, ch);
  t.equal((await send(remote, ch, 'get')).data?.subscribers.length, 4, 'four subscribers on three hosts');
  await h3.crash();
  // --presence-ttl 2s (the helper's): the node's heartbeat expires, then the activation's sweep (every 5 s) prunes.
  await until('the dead host\'s subscribers gone', async () => ((await send(remote, ch, 'get')).data?.subscribers.length === 2 ? true : undefined), 30000, 500);
  t.pass('two subscribers left');
});
