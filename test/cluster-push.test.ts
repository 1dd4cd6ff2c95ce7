// The context of a placed actor across hosts: two real rt-actors processes on a redis-server of their
// own run the auction of test/fixtures/cluster-actors (one activation cluster-wide). ctx.push,
// ctx.pushUser and ctx.kick reach connections on whichever host they are, ctx.broadcast() returns the
// offset the subscribers see, and ctx.compute runs on the owner's compute pool.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET } from './helpers/server.js';
import { TestClient, type Frame } from './helpers/ws-client.js';
import { startHost, startRedis, until, type Host } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/cluster-actors', import.meta.url));
const token = (sub: string) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

const redis = await startRedis(t);
const ns = `rt-test-${randomBytes(4).toString('hex')}`;
const h1 = await startHost(t, redis.url, ns, { args: ['--actors', actors, '--lease-ttl', '2s', '--host-id', 'h1'] });
const h2 = await startHost(t, redis.url, ns, { args: ['--actors', actors, '--lease-ttl', '2s', '--host-id', 'h2'] });
if (process.env.DEBUG_HOSTS) t.teardown(() => { for (const h of [h1, h2]) console.error('--- host', h.output()); });
const byId = new Map<string, Host>([['h1', h1], ['h2', h2]]);

interface Conn {
  c: TestClient;
  id: string;
  user: string;
  host: Host;
}

async function join(channel: string, host: Host, user: string): Promise<Conn> {
  const c = await TestClient.connect(`${host.url}/ws?token=${token(user)}`);
  t.teardown(() => c.close());
  const r = await c.request({ op: 'subscribe', channel }, 60000);
  if (!r.ok) throw new Error(`subscribe: ${JSON.stringify(r)}`);
  return { c, id: c.welcome.socket_id, user, host };
}

const bid = (b: Conn, channel: string, amount: number) => b.c.request({ op: 'publish', channel, event: 'bid', data: { amount } }, 60000);
const events = (b: Conn, channel: string, event: string) => b.c.messages(channel).filter((f) => f.event === event);
const publish = async (via: Host, channel: string, event: string, data: unknown) => {
  const r = await api(via.http, '/api/publish', { channel, event, data });
  if (r.status !== 200) throw new Error(`${event}: ${r.status} ${JSON.stringify(r.body)}`);
};
/** The one published answer of a backend event (the actor turns each into a broadcast). */
const answer = (b: Conn, channel: string, event: string, pred: (f: Frame) => boolean) => until(`${event} at ${b.user}`, () => events(b, channel, event).find(pred), 60000);

/** A backend publish after everything else: "nothing more arrived" is checked by waiting for it. */
async function settle(channel: string, all: Conn[], tag: string): Promise<void> {
  await publish(h2, channel, 'marker', tag);
  for (const b of all) await until(`marker ${tag} at ${b.user}@${b.id}`, () => b.c.messages(channel).some((f) => f.event === 'marker' && f.data === tag), 60000);
}

async function owner(channel: string): Promise<{ owner: Host; other: Host }> {
  const o = (await api(h1.http, `/api/channels/${channel}`)).body.owner;
  if (o.placement !== 'leased' || !byId.has(o.host)) throw new Error(`not placed: ${JSON.stringify(o)}`);
  const h = byId.get(o.host)!;
  return { owner: h, other: h === h1 ? h2 : h1 };
}

t.test('outbid: the private push reaches the previous bidder on the other host, and nobody else', async (t) => {
  const ch = 'auction-outbid';
  const a = await join(ch, h1, 'alice');
  const b = await join(ch, h2, 'bob');
  const watcher = await join(ch, h1, 'walt');
  t.equal((await bid(a, ch, 10)).ok, true, 'alice bids 10 on h1');
  t.equal((await bid(b, ch, 20)).ok, true, 'bob outbids her on h2');
  const first = await until('outbid at alice', () => events(a, ch, 'outbid')[0], 60000);
  t.same(first.data, { amount: 20 }, 'alice (h1) is told she was outbid');
  t.equal(first.offset, undefined, 'a private push has no offset');
  t.equal((await bid(a, ch, 30)).ok, true, 'alice bids again');
  const second = await until('outbid at bob', () => events(b, ch, 'outbid')[0], 60000);
  t.same(second.data, { amount: 30 }, 'bob (h2) is told he was outbid');
  await settle(ch, [a, b, watcher], 'outbid');
  t.same(events(a, ch, 'outbid').map((f) => f.data.amount), [20], 'alice: one outbid');
  t.same(events(b, ch, 'outbid').map((f) => f.data.amount), [30], 'bob: one outbid, never for his own bid');
  t.same(events(watcher, ch, 'outbid'), [], 'a subscriber who never bid gets no outbid');
  t.same(events(watcher, ch, 'bid').map((f) => f.data.amount), [10, 20, 30], 'the bids were broadcast to everyone');
  // Replies come back from the activation to the client on whichever host it is.
  for (const host of [h1, h2]) {
    const c = await TestClient.connect(`${host.url}/ws?token=${token('late')}`);
    t.teardown(() => c.close());
    const r = await c.request({ op: 'subscribe', channel: ch }, 60000);
    t.same(r.data, { highest: 30 }, `join reply on ${host === h1 ? 'h1' : 'h2'}`);
    const p = await c.request({ op: 'publish', channel: ch, event: 'peek', data: null }, 60000);
    t.same(p.data, { highest: 30, bidder: 'alice' }, `message reply on ${host === h1 ? 'h1' : 'h2'}`);
  }
});

t.test('push and pushUser reach connections on every host', async (t) => {
  const ch = 'auction-push';
  const c1 = await join(ch, h1, 'carol');
  const c2 = await join(ch, h2, 'carol');
  const d = await join(ch, h2, 'dan');
  const e = await join(ch, h1, 'erin');
  const all = [c1, c2, d, e];
  await publish(h1, ch, 'pushUser', { user: 'carol' });
  const pu = await answer(e, ch, 'pushedUser', () => true);
  t.same(pu.data, { user: 'carol', n: 2 }, 'pushUser returns 2: both of carol\'s connections');
  for (const c of [c1, c2]) {
    const note = await until(`note at carol@${c.id}`, () => events(c, ch, 'note')[0], 60000);
    t.same(note.data, { user: 'carol' }, `carol's connection on ${c.host === h1 ? 'h1' : 'h2'} got it`);
  }
  for (const x of [d, e]) {
    await publish(h2, ch, 'push', { to: x.id });
    const ok = await answer(c1, ch, 'pushed', (f) => f.data.to === x.id);
    t.equal(ok.data.ok, true, `push to ${x.user} returns true`);
    const note = await until(`note at ${x.user}`, () => events(x, ch, 'note')[0], 60000);
    t.same(note.data, { to: x.id }, `${x.user} on ${x.host === h1 ? 'h1' : 'h2'} got its push`);
  }
  await publish(h1, ch, 'push', { to: '0.nobody' });
  t.equal((await answer(c1, ch, 'pushed', (f) => f.data.to === '0.nobody')).data.ok, false, 'push to a socket that is not subscribed returns false');
  await settle(ch, all, 'push');
  t.equal(events(c1, ch, 'note').length, 1, 'carol on h1: one note');
  t.equal(events(c2, ch, 'note').length, 1, 'carol on h2: one note');
  t.equal(events(d, ch, 'note').length, 1, 'dan: only his own push');
  t.equal(events(e, ch, 'note').length, 1, 'erin: only her own push');
});

t.test('kick removes a subscriber on the other host: told why, no more messages, onLeave once', async (t) => {
  const ch = 'auction-kick';
  const first = await join(ch, h1, 'fay');
  const { other } = await owner(ch);
  const victim = await join(ch, other, 'vic');
  const stay = await join(ch, other, 'sam');
  await publish(h1, ch, 'kick', { to: victim.id });
  const k = await answer(first, ch, 'kicked', (f) => f.data.to === victim.id);
  t.same(k.data, { to: victim.id, ok: true, subscribers: 2 }, 'kick returns true and the subscriber is gone at once');
  const told = await victim.c.next((f) => f.op === 'kicked' && f.channel === ch, 60000);
  t.equal(told.reason, 'bye', 'the kicked client is told why');
  await settle(ch, [first, stay], 'kick');
  t.notOk(victim.c.messages(ch).some((f) => f.event === 'marker'), 'the kicked client receives nothing more');
  const nope = await bid(victim, ch, 5);
  t.equal(nope.error?.code, 'not_subscribed', 'and may not publish to the channel');
  await publish(h2, ch, 'leaves', null);
  const leaves = await answer(first, ch, 'leaves', () => true);
  t.same(leaves.data, [victim.id], 'onLeave ran once, for the kicked subscriber');
  await until('the channel to count 2 subscribers', async () => (await api(other.http, `/api/channels/${ch}`)).body.subscribers === 2, 60000);
  t.pass('the channel counts 2 subscribers');
  await publish(h2, ch, 'kick', { to: victim.id });
  t.equal((await answer(first, ch, 'kicked', (f) => f.data.to === victim.id && f.data.ok === false)).data.ok, false, 'kicking it again returns false');
});

t.test('broadcast() returns the offset its subscribers receive', async (t) => {
  const ch = 'auction-broadcast';
  const a = await join(ch, h1, 'ann');
  const b = await join(ch, h2, 'ben');
  t.equal((await bid(a, ch, 3)).ok, true);
  for (const n of [1, 2, 3]) await publish(n % 2 ? h1 : h2, ch, 'announce', { n });
  for (const x of [a, b]) {
    for (const n of [1, 2, 3]) {
      const said = await answer(x, ch, 'announced', (f) => f.data.n === n);
      const got = await answer(x, ch, 'announcement', (f) => f.data.n === n);
      t.ok(said.data.offset > 0, `announce ${n}: broadcast() returned ${said.data.offset}`);
      t.equal(said.data.offset, got.offset, `${x.user}: the returned offset is the offset the broadcast arrived with`);
      t.equal(said.offset, got.offset + 1, `${x.user}: the turn's own publication follows it`);
    }
  }
});

t.test('compute runs in the placed activation and its result comes back through onComputed', async (t) => {
  const ch = 'auction-compute';
  const a = await join(ch, h1, 'cid');
  const b = await join(ch, h2, 'cod');
  await publish(h2, ch, 'compute', { n: 21 });
  await publish(h1, ch, 'compute', { n: 5 });
  for (const x of [a, b]) {
    for (const [n, v] of [[21, 42], [5, 10]] as const) {
      const r = await answer(x, ch, 'computed', (f) => f.data.tag === `t${n}`);
      t.match(r.data, { task: 'double', tag: `t${n}`, ok: true, value: { value: v } }, `${x.user}: double(${n}) = ${v}`);
    }
  }
  const { owner: o } = await owner(ch);
  const r = await answer(a, ch, 'computed', () => true);
  t.equal(r.data.value.pid, o.proc.pid, 'the task ran in the owner host\'s process');
});

t.test('after a hand-over (SIGTERM) the new owner returns the right offsets and its pushes arrive', async (t) => {
  const ch = 'auction-handover';
  const a = await join(ch, h1, 'hal');
  const b = await join(ch, h2, 'hub');
  t.equal((await bid(a, ch, 1)).ok, true);
  await publish(h1, ch, 'announce', { n: 1 });
  await answer(b, ch, 'announced', (f) => f.data.n === 1);
  const { owner: leaving, other: staying } = await owner(ch);
  const left = leaving === h1 ? b : a;
  await leaving.stop();
  t.equal((await bid(left, ch, 2)).ok, true, `bidding goes on at ${staying === h1 ? 'h1' : 'h2'}`);
  await publish(staying, ch, 'announce', { n: 2 });
  const said = await answer(left, ch, 'announced', (f) => f.data.n === 2);
  const got = await answer(left, ch, 'announcement', (f) => f.data.n === 2);
  t.equal(said.data.offset, got.offset, `the new owner's broadcast() returned the offset received (${got.offset})`);
  await publish(staying, ch, 'push', { to: left.id });
  t.same((await until('note after hand-over', () => events(left, ch, 'note')[0], 60000)).data, { to: left.id }, 'and its pushes arrive');
});
