// Placement of custom actors across hosts: three real rt-actors processes on one Redis run an auction
// actor (test/fixtures/cluster-actors/auction.ts) with ONE activation cluster-wide. Bids from clients on
// every host form one sequence; the owner killed (-9), stopped (SIGSTOP past its lease) or terminated
// (SIGTERM) hands the auction over with every accepted bid kept, and it closes once.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET } from './helpers/server.js';
import { TestClient, type Frame } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, metric, sleep, startHost, until, type Host } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/cluster-actors', import.meta.url));
const token = (sub: string) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });
const LEASE = '1.5s';

const root = t;
const redis = await machineRedis(t);
const ns = `rt-test-${randomBytes(4).toString('hex')}`;
t.teardown(() => dropNamespace(redis.port, ns));
const hostArgs = (id: string) => ['--actors', actors, '--lease-ttl', LEASE, '--host-id', id];
const hosts: Host[] = [];
for (const id of ['h1', 'h2', 'h3']) hosts.push(await startHost(t, redis.url, ns, { args: hostArgs(id) }));
if (process.env.DEBUG_HOSTS) t.teardown(() => { for (const h of hosts) console.error('--- host', h.output()); });
const ids = new Map(hosts.map((h, i) => [h, `h${i + 1}`]));

interface Bidder {
  c: TestClient;
  host: Host;
  user: string;
}

async function bidders(channel: string, on: Host[], perHost = 2): Promise<Bidder[]> {
  const out: Bidder[] = [];
  for (const [i, host] of on.entries()) {
    for (let k = 0; k < perHost; k++) {
      const user = `${ids.get(host)}-u${k}`;
      const c = await TestClient.connect(`${host.url}/ws?token=${token(user)}`);
      t.teardown(() => c.close());
      const r = await c.request({ op: 'subscribe', channel }, 60000);
      if (!r.ok) throw new Error(`subscribe on host ${i}: ${JSON.stringify(r)}`);
      out.push({ c, host, user });
    }
  }
  return out;
}

const bid = (b: Bidder, channel: string, amount: number) => b.c.request({ op: 'publish', channel, event: 'bid', data: { amount } }, 60000);
const accepted = (b: Bidder, channel: string) => b.c.messages(channel).filter((f) => f.event === 'bid').map((f: Frame) => [f.offset, f.data.amount, f.data.bidder]);
const owner = async (channel: string, via: Host) => (await api(via.http, `/api/channels/${channel}`)).body.owner;

/** A backend publish after everything else, so "nothing more arrived" is checked by waiting for it. */
async function settle(channel: string, all: Bidder[], via: Host, tag: string): Promise<void> {
  const r = await api(via.http, '/api/publish', { channel, event: 'marker', data: tag });
  if (r.status !== 200) throw new Error(`marker: ${r.status} ${JSON.stringify(r.body)}`);
  for (const b of all) await until(`marker ${tag} at ${b.user}`, () => b.c.messages(channel).some((f) => f.event === 'marker' && f.data === tag), 60000);
}

t.test('bids from clients on three hosts: one activation, one sequence, one close', async (t) => {
  const ch = 'auction-one';
  const all = await bidders(ch, hosts);
  const o = await owner(ch, hosts[0]!);
  t.equal(o.placement, 'leased', 'the channel is placed');
  t.ok(['h1', 'h2', 'h3'].includes(o.host), `owned by host ${o.host}`);
  for (const h of hosts) t.same(await owner(ch, h), o, `host ${ids.get(h)} reports the same owner`);

  // Every client bids at once, amounts interleaved across clients: the actor accepts a rising sequence.
  const replies = await Promise.all(all.map(async (b, i) => {
    const out: { amount: number; r: Frame }[] = [];
    for (let k = 0; k < 5; k++) {
      const amount = 10 + k * all.length + i;
      out.push({ amount, r: await bid(b, ch, amount) });
    }
    return out;
  }));
  const flat = replies.flat();
  for (const { r } of flat) t.ok(r.ok || r.error?.code === 'bid_too_low', `bid answered with ok or bid_too_low (${JSON.stringify(r.error ?? r.offset)})`);
  const okAmounts = flat.filter((x) => x.r.ok).map((x) => x.amount).sort((a, b) => a - b);
  await settle(ch, all, hosts[1]!, 'after-bids');
  const reference = accepted(all[0]!, ch);
  t.ok(reference.length >= 1, `${reference.length} accepted bids`);
  t.same(reference.map((x) => x[1]), okAmounts, 'the sequence is exactly the bids that were answered ok');
  t.ok(reference.every((x, i) => i === 0 || (x[1] as number) > (reference[i - 1]![1] as number)), 'accepted bids strictly rise');
  for (const b of all) t.same(accepted(b, ch), reference, `${b.user} saw the same sequence with the same offsets`);

  // Three hosts ask to close at once: one close, one `closed` per client.
  const closes = await Promise.all(hosts.map((h) => api(h.http, '/api/publish', { channel: ch, event: 'close', data: null })));
  t.same(closes.map((r) => r.status).sort(), [200, 403, 403], 'one close accepted, the others refused by the actor');
  const late = await bid(all[3]!, ch, 10_000);
  t.equal(late.error?.code, 'auction_closed', 'a bid after the close is refused');
  await settle(ch, all, hosts[2]!, 'after-close');
  const top = reference[reference.length - 1]!;
  for (const b of all) {
    const closed = b.c.messages(ch).filter((f) => f.event === 'closed');
    t.equal(closed.length, 1, `${b.user}: one closed`);
    t.same(closed[0]?.data, { winner: top[2], amount: top[1] }, `${b.user}: the winner is the last accepted bid`);
  }
  // The context is cluster-wide: the activation counts every host's subscribers.
  await api(hosts[0]!.http, '/api/publish', { channel: ch, event: 'stats', data: null });
  const stats = await until('stats', () => all[5]!.c.messages(ch).find((f) => f.event === 'stats'));
  t.same(stats.data, { subscribers: all.length, joins: all.length }, 'subscriberCount and onJoin see all three hosts');
});

t.test("a Laravel broadcast to a placed actor's channel: published once, its `socket` left out on every host, no warning", async (t) => {
  const ch = 'auction-laravel';
  const all = await bidders(ch, hosts, 1);
  const { Redis } = await import('ioredis');
  const r = new Redis({ port: redis.port, host: '127.0.0.1' });
  t.teardown(() => r.disconnect());
  // Laravel's broadcaster: PUBLISH <prefix><channel> {"event","data","socket"}; every host receives it.
  for (const [i, b] of all.entries()) await r.publish(ch, JSON.stringify({ event: 'news', data: { excl: i }, socket: b.c.welcome.socket_id }));
  // PUBLISH returns once Redis has it, not once a host has sequenced it: the marker below, published over
  // HTTP, could otherwise be sequenced before the last broadcast (seen once: the marker at offset 3).
  for (const b of all) await until(`${b.user}: the two broadcasts not naming its socket`, () => b.c.messages(ch).filter((f) => f.event === 'news').length >= 2 || undefined);
  await settle(ch, all, hosts[0]!, 'after-laravel');
  for (const [i, b] of all.entries()) {
    const got = b.c.messages(ch).filter((f) => f.event === 'news').map((f) => f.data.excl);
    t.same(got, [0, 1, 2].filter((x) => x !== i), `${b.user}: every broadcast but the one naming its socket`);
  }
  const offsets = new Set(all.flatMap((b) => b.c.messages(ch).filter((f) => f.event === 'marker').map((f) => f.offset)));
  t.equal(offsets.size, 1, 'the marker after them has one offset everywhere');
  t.equal([...offsets][0], 4, 'three broadcasts, each sequenced once, then the marker');
  for (const h of hosts) t.notMatch(h.output(), /refused by its actor/, `host ${ids.get(h)}: no "refused" warning for the copies another host sequenced`);
});

t.test('kill -9 the owner mid-auction: accepted bids survive, the auction goes on elsewhere and closes once', async (t) => {
  const ch = 'auction-kill';
  const all = await bidders(ch, hosts, 1);
  t.equal((await bid(all[0]!, ch, 100)).ok, true);
  t.equal((await bid(all[1]!, ch, 150)).ok, true);
  const before = await owner(ch, hosts[0]!);
  const victim = hosts.find((h) => ids.get(h) === before.host)!;
  const survivors = all.filter((b) => b.host !== victim);
  await victim.crash();
  hosts.splice(hosts.indexOf(victim), 1);

  // The next bid waits for the dead owner's lease to run out, then runs on a survivor from the saved state.
  const low = await bid(survivors[0]!, ch, 120);
  t.equal(low.error?.code, 'bid_too_low', 'a lower bid is still too low: the accepted bids were not lost');
  const after = await owner(ch, survivors[0]!.host);
  t.not(after.host, before.host, `now owned by ${after.host}`);
  t.ok(after.epoch > before.epoch, `fencing epoch grew (${before.epoch} → ${after.epoch})`);
  t.equal((await bid(survivors[1]!, ch, 200)).ok, true, 'bidding goes on');
  const closes = await Promise.all(hosts.map((h) => api(h.http, '/api/publish', { channel: ch, event: 'close', data: null })));
  t.same(closes.map((r) => r.status).sort(), [200, 403]);
  await settle(ch, survivors, hosts[0]!, 'after-kill');
  for (const b of survivors) {
    t.same(b.c.messages(ch).filter((f) => f.event === 'bid').map((f) => f.data.amount), [100, 150, 200], `${b.user}: every accepted bid once, in order`);
    t.same(b.c.messages(ch).filter((f) => f.event === 'closed').map((f) => f.data.amount), [200], `${b.user}: closed once`);
  }
  // A replacement host for the next tests (owned by the file, not this subtest).
  hosts.push(await startHost(root, redis.url, ns, { args: hostArgs('h4') }));
  ids.set(hosts[hosts.length - 1]!, 'h4');
});

t.test("kill -9 the owner: a client's bids sent in a row while its lease runs out reach the new owner in their order", async (t) => {
  const ch = 'auction-failover-order';
  const all = await bidders(ch, hosts, 1);
  t.equal((await bid(all[0]!, ch, 10)).ok, true);
  const before = await owner(ch, hosts[0]!);
  const victim = hosts.find((h) => ids.get(h) === before.host)!;
  const survivors = all.filter((b) => b.host !== victim);
  const sender = survivors[0]!;
  await victim.crash();
  hosts.splice(hosts.indexOf(victim), 1);

  // Rising bids, not waiting for answers, spread over the wait for the dead owner's lease: each one
  // failed and was retried at a different point of its backoff. Taken in any other order than sent,
  // a later (higher) bid would make the earlier ones bid_too_low.
  const sent: Promise<Frame>[] = [];
  for (let k = 1; k <= 8; k++) {
    sent.push(bid(sender, ch, 10 + k));
    await sleep(100);   // pacing the sender, not waiting for an outcome
  }
  const replies = await Promise.all(sent);
  t.same(replies.map((r) => (r.ok ? 'ok' : r.error?.code)), Array(8).fill('ok'), 'every bid accepted');
  await settle(ch, survivors, hosts[0]!, 'after-order');
  for (const b of survivors) {
    t.same(b.c.messages(ch).filter((f) => f.event === 'bid').map((f) => f.data.amount), [10, 11, 12, 13, 14, 15, 16, 17, 18], `${b.user}: the bids in the order sent`);
  }
  hosts.push(await startHost(root, redis.url, ns, { args: hostArgs('h9') }));
  ids.set(hosts[hosts.length - 1]!, 'h9');
});

t.test("kill -9 the owner, taken over only after its heartbeat expired: its own subscribers still leave, with onLeave", async (t) => {
  const ch = 'auction-late-takeover';
  const all = await bidders(ch, hosts, 1);
  t.equal((await bid(all[0]!, ch, 10)).ok, true, 'a bid: the state (and its subscribers) is saved');
  const before = await owner(ch, hosts[0]!);
  const victim = hosts.find((h) => ids.get(h) === before.host)!;
  const gone = all.find((b) => b.host === victim)!.c.welcome.socket_id as string;
  const survivors = all.filter((b) => b.host !== victim);
  const { Redis } = await import('ioredis');
  const r = new Redis({ port: redis.port, host: '127.0.0.1' });
  t.teardown(() => r.disconnect());
  const liveNodes = async () => (await Promise.all((await r.smembers(`${ns}:nodes`)).map(async (n) => ((await r.exists(`${ns}:node:${n}`)) ? n : null)))).filter((n) => n !== null);
  const nodesBefore = await liveNodes();
  await victim.crash();
  hosts.splice(hosts.indexOf(victim), 1);
  // Nothing happens on the channel until the dead host's heartbeat has expired.
  await until('the dead host heartbeat expires', async () => (await liveNodes()).length < nodesBefore.length, 30_000);
  // The next event activates the auction on a survivor, from the saved record, which still lists the
  // dead host's subscriber; the sweep makes it leave there.
  let leaves: string[] = [];
  await until('onLeave ran for the dead host subscriber', async () => {
    const n = survivors[0]!.c.messages(ch).length;
    const res = await api(survivors[0]!.host.http, '/api/publish', { channel: ch, event: 'leaves', data: null });
    if (res.status !== 200) return false;
    const f = await until('the leaves answer', () => survivors[0]!.c.messages(ch).slice(n).find((x) => x.event === 'leaves'), 30_000);
    leaves = f.data as string[];
    return leaves.includes(gone);
  }, 60_000, 500);
  t.ok(leaves.includes(gone), `onLeave ran for ${gone}`);
  t.equal(leaves.filter((s) => s === gone).length, 1, 'once');
  hosts.push(await startHost(root, redis.url, ns, { args: hostArgs('h5') }));
  ids.set(hosts[hosts.length - 1]!, 'h5');
});

t.test('a timer survives its owner: kill -9 before the close, the auction closes once, on time, elsewhere', async (t) => {
  const ch = 'auction-timer';
  const all = await bidders(ch, hosts, 1);
  const closeAfterMs = 6000;
  const start = Date.now();
  t.equal((await all[0]!.c.request({ op: 'publish', channel: ch, event: 'bid', data: { amount: 50, closeAfterMs } }, 60000)).ok, true);
  const before = await owner(ch, hosts[0]!);
  const victim = hosts.find((h) => ids.get(h) === before.host)!;
  const survivors = all.filter((b) => b.host !== victim);
  await victim.crash();
  hosts.splice(hosts.indexOf(victim), 1);
  // Nobody sends anything: a survivor with subscribers takes the lease over and re-arms the timer.
  for (const b of survivors) {
    const closed = await until(`closed at ${b.user}`, () => b.c.messages(ch).find((f) => f.event === 'closed'), 60000);
    t.same(closed.data, { winner: all[0]!.user, amount: 50 }, `${b.user}: closed with the bid accepted before the kill`);
  }
  t.ok(Date.now() - start >= closeAfterMs - 50, 'not before its time');
  t.equal((await bid(survivors[0]!, ch, 60)).error?.code, 'auction_closed');
  await settle(ch, survivors, hosts[0]!, 'after-timer');
  for (const b of survivors) t.equal(b.c.messages(ch).filter((f) => f.event === 'closed').length, 1, `${b.user}: closed once`);
  // An id of its own: the owner of a later test is found by it.
  hosts.push(await startHost(root, redis.url, ns, { args: hostArgs('h8') }));
  ids.set(hosts[hosts.length - 1]!, 'h8');
});

t.test('a timer set by a backend publish, with no subscriber anywhere, fires once on another host after kill -9 of its owner', async (t) => {
  const ch = 'auction-lonely';
  const ms = 3000;
  const r = await api(hosts[0]!.http, '/api/publish', { channel: ch, event: 'remind', data: { ms } });
  t.equal(r.status, 200);
  const start = Date.now();
  const before = await owner(ch, hosts[0]!);
  const victim = hosts.find((h) => ids.get(h) === before.host)!;
  await victim.crash();
  hosts.splice(hosts.indexOf(victim), 1);
  try {
    // No host has subscribers of the channel: only the index of pending timers can bring it back.
    const fired = await until('the timer\'s publication', async () => {
      const info = (await api(hosts[0]!.http, `/api/channels/${ch}`)).body;
      return info.offset >= 2 ? info : undefined;
    }, 1500 + ms + 10000);
    t.ok(Date.now() - start >= ms - 50, 'not before its time');
    t.ok(fired.owner.host !== null && fired.owner.host !== before.host && fired.owner.epoch > before.epoch, `fired on ${fired.owner.host}`);
    const c = await TestClient.connect(`${hosts[1]!.url}/ws?token=${token('late')}`);
    t.teardown(() => c.close());
    t.equal((await c.request({ op: 'subscribe', channel: ch }, 60000)).ok, true);
    const hist = await c.request({ op: 'history', channel: ch }, 60000);
    // Set without data: it fires with undefined on the new owner as it would have on the old one.
    t.same(hist.publications.map((p: Frame) => [p.event, p.data]), [['remind', { ms }], ['reminded', { data: '(undefined)' }]], 'the timer published once, with its data');
    const marker = await api(hosts[0]!.http, '/api/publish', { channel: ch, event: 'marker', data: 'after' });
    t.equal(marker.body.offsets[ch], 3, 'nothing else was published before the marker');
  } finally {
    // Three hosts for the tests after this one, whatever happened here.
    hosts.push(await startHost(root, redis.url, ns, { args: hostArgs('h6') }));
    ids.set(hosts[hosts.length - 1]!, 'h6');
  }
});

/** Whether every thread of process `pid` is stopped (state T in /proc/<pid>/task/<tid>/stat). */
function allThreadsStopped(pid: number): boolean {
  return readdirSync(`/proc/${pid}/task`).every((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] === 'T';
  });
}

t.test('an owner paused past its lease (SIGSTOP … SIGCONT) cannot act on it; its clients reach the new owner', async (t) => {
  const ch = 'auction-stop';
  const all = await bidders(ch, hosts, 1);
  t.equal((await bid(all[0]!, ch, 10)).ok, true);
  const before = await owner(ch, hosts[0]!);
  const paused = hosts.find((h) => ids.get(h) === before.host)!;
  const others = all.filter((b) => b.host !== paused);
  const stale = all.find((b) => b.host === paused)!;
  paused.proc.kill('SIGSTOP');
  // kill() returns before every thread has stopped: a shard still running for a moment could take the
  // bid below as the rightful owner. Wait until the kernel shows every thread stopped.
  await until('every thread of the paused host stopped', () => allThreadsStopped(paused.proc.pid!));
  try {
    // Sent while its host is frozen: the frame waits in the socket buffer.
    var pending = bid(stale, ch, 20);
    // Forwarded to the frozen owner, which is still subscribed to its inbox: unanswered within the
    // lease time, and not sent again (the owner might still run it when it wakes: docs/scaling.md).
    const first = await bid(others[0]!, ch, 30);
    t.equal(first.error?.code, 'timeout', `the bid forwarded to the frozen owner is answered timeout (${JSON.stringify(first.error ?? first)})`);
    // The client tries again: once the lease ran out a survivor takes the auction over.
    const r = await until('a survivor accepts the bid', async () => {
      const x = await bid(others[0]!, ch, 30);
      return x.ok ? x : x.error?.code === 'timeout' ? undefined : Promise.reject(new Error(JSON.stringify(x)));
    }, 30000, 10);
    t.equal(r.ok, true, 'a survivor took the auction over once the lease ran out');
    const now = await owner(ch, others[0]!.host);
    t.not(now.host, before.host, `owned by ${now.host}`);
    t.ok(now.epoch > before.epoch, 'with a larger fencing epoch');
  } finally {
    paused.proc.kill('SIGCONT');
  }
  const r20 = await pending!;
  t.equal(r20.error?.code, 'bid_too_low', "the frozen host's bid was judged by the new owner (30 was accepted meanwhile), not by its stale copy");
  t.equal((await bid(stale, ch, 40)).ok, true, 'its clients keep bidding through the new owner');
  await settle(ch, all, others[0]!.host, 'after-stop');
  for (const b of all) t.same(b.c.messages(ch).filter((f) => f.event === 'bid').map((f) => f.data.amount), [10, 30, 40], `${b.user}: one sequence`);
});

t.test('a host taken for dead (paused past --presence-ttl) and back registers its subscribers with the actor again', async (t) => {
  const ch = 'auction-swept';
  const all = await bidders(ch, hosts, 1);
  t.equal((await bid(all[0]!, ch, 10)).ok, true);
  const o = await owner(ch, hosts[0]!);
  const paused = hosts.find((h) => ids.get(h) !== o.host)!;
  const back = all.find((b) => b.host === paused)!;
  const sid = back.c.welcome.socket_id as string;
  const watcher = all.find((b) => ids.get(b.host) === o.host)!;
  /** A backend event answered by the actor with a broadcast; its data, as the owner host's client got it. */
  const ask = async (event: string, data: unknown = null): Promise<any> => {
    const n = watcher.c.messages(ch).length;
    const r = await api(watcher.host.http, '/api/publish', { channel: ch, event, data });
    if (r.status !== 200) throw new Error(`${event}: ${r.status} ${JSON.stringify(r.body)}`);
    const answer = event === 'push' ? 'pushed' : event;
    return (await until(answer, () => watcher.c.messages(ch).slice(n).find((f) => f.event === answer), 30_000)).data;
  };
  paused.proc.kill('SIGSTOP');
  await until('every thread of the paused host stopped', () => allThreadsStopped(paused.proc.pid!));
  try {
    // Its heartbeat expires and the owner's sweep makes its subscriber leave (onLeave runs).
    await until('the paused host subscriber left the actor', async () => ((await ask('leaves')) as string[]).includes(sid), 60_000, 500);
  } finally {
    paused.proc.kill('SIGCONT');
  }
  // Its connection lived on: once the host finds itself swept, it registers that subscriber again.
  await until('the actor counts it again', async () => (await ask('stats')).subscribers === all.length, 60_000, 500);
  t.same(await ask('push', { to: sid }), { to: sid, ok: true }, 'a private push reaches it again');
  await until('the pushed note', () => back.c.messages(ch).some((f) => f.event === 'note'), 30_000);
  t.pass('it got the note');
});

t.test('SIGTERM hands the actor over at once, with its state', async (t) => {
  const ch = 'auction-term';
  const all = await bidders(ch, hosts, 1);
  t.equal((await bid(all[0]!, ch, 70)).ok, true);
  const before = await owner(ch, hosts[0]!);
  const leaving = hosts.find((h) => ids.get(h) === before.host)!;
  await leaving.stop();
  hosts.splice(hosts.indexOf(leaving), 1);
  // Released, not left to expire: right after the stop the lease no longer names the stopped host.
  // (Another host may already hold it: the stopped host's subscribers leaving are events too.)
  const right = await owner(ch, hosts[0]!);
  t.ok(right.host === null || (right.host !== before.host && right.epoch > before.epoch), `the lease was released on shutdown (owner now ${right.host})`);
  const stay = all.filter((b) => b.host !== leaving);
  t.equal((await bid(stay[0]!, ch, 60)).error?.code, 'bid_too_low', 'state carried over');
  t.equal((await bid(stay[1]!, ch, 80)).ok, true);
  const now = await owner(ch, hosts[0]!);
  t.ok(now.epoch > before.epoch && now.host !== before.host, `taken over by ${now.host}`);
});

t.test('hostile frames in a node inbox are counted and ignored; no lease is taken for them', async (t) => {
  const { Redis } = await import('ioredis');
  const { pack } = await import('msgpackr');
  const r = new Redis({ port: redis.port, host: '127.0.0.1' });
  t.teardown(() => r.disconnect());
  const nodes = await r.smembers(`${ns}:nodes`);
  const alive = (await Promise.all(nodes.map(async (n) => ((await r.exists(`${ns}:node:${n}`)) ? n : null)))).filter((n): n is string => !!n);
  t.ok(alive.length >= 2, `${alive.length} live nodes`);
  const before = await Promise.all(hosts.map((h) => metric(h, 'rt_redis_invalid_messages_total')));
  const junk = [
    Buffer.from('not msgpack at all'),
    pack([1, 2, 3]),
    pack({ k: 'q', id: 'x' }),
    pack({ k: 'q', id: 1, from: 5, ch: 'auction-evil', op: 'msg', a: [] }),
    Buffer.alloc(70_000, 0xc1),
  ];
  const refused = [
    pack({ k: 'q', id: 2, from: 'nobody', ch: 'auction-evil', op: 'drop-all', a: [] }),
    pack({ k: 'q', id: 3, from: 'nobody', ch: 'no-actor-here', op: 'join', a: [{ socketId: '0.x', node: 'n' }] }),
    pack({ k: 'q', id: 4, from: 'nobody', ch: 'auction-evil2', op: 'msg', a: [null, null] }),
    pack({ k: 'r', id: 999999, v: 1 }),
    // Pushes and kicks for the subscribers a node relays: malformed, or for a channel without an actor.
    pack({ k: 'q', id: 5, from: 'nobody', ch: 'auction-evil', op: 'push', a: [null, 5] }),
    pack({ k: 'q', id: 6, from: 'nobody', ch: 'auction-evil', op: 'kick', a: [1] }),
    pack({ k: 'q', id: 7, from: 'nobody', ch: 'no-actor-here', op: 'push', a: [['0.x'], 'ev', 1] }),
  ];
  // One-way notices (how an activation sends its pushes and kicks): refused ones are counted too.
  const notices = [
    pack({ k: 'n', id: 0, ch: 'auction-evil', op: 'msg', a: [{ event: 'bid', data: { amount: 1 } }, { socketId: '0.x', node: 'n' }] }),
    pack({ k: 'n', id: 0, ch: 'auction-evil', op: 'push', a: ['not ids', 'ev', 1] }),
    pack({ k: 'n', id: 0, ch: 5, op: 'kick', a: [] }),
  ];
  for (const n of alive) for (const f of [...junk, ...refused, ...notices]) await r.publish(`${ns}:{${n}}:in`, f);
  for (const [i, h] of hosts.entries()) {
    await until(`host ${i} to count the malformed frames`, async () => (await metric(h, 'rt_redis_invalid_messages_total')) >= before[i]! + 4 + 3);
    t.equal((await api(h.http, '/health', undefined, { key: null })).body.status, 'ok', `host ${i} healthy`);
  }
  t.equal(await r.exists(`${ns}:{no-actor-here}:l`), 0, 'no lease for a channel without an actor');
  t.equal(await r.exists(`${ns}:{auction-evil}:l`), 0, 'no lease for an unknown operation');
  // Still serving.
  const [b] = await bidders('auction-after-junk', hosts.slice(0, 1), 1);
  t.equal((await bid(b!, 'auction-after-junk', 5)).ok, true, 'placement still works');
});
