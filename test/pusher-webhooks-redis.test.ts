// Pusher lifecycle webhooks across hosts bridged by Redis: channel_occupied / channel_vacated and
// member_added / member_removed are decided on the cluster-wide counts in Redis, so a channel occupied
// on two hosts is occupied once, vacated once when its last subscriber anywhere leaves — also when that
// subscriber's host dies (a surviving host sweeps it) — and a user on two hosts is added and removed once.
// Every batch is checked with the official SDK's webhook() (X-Pusher-Key, X-Pusher-Signature).
//
// "No second webhook" is shown without sleeping: after the step that must not fire, a sentinel channel
// is occupied on every live host and the test waits for those sentinel webhooks. Each host runs one
// shard, so its webhooks leave in the order its Redis writes were answered: anything the earlier step
// fired is in the receiver by the time the sentinels are.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Pusher from 'pusher-js';
import { dropNamespace, machineRedis, redisClient, startHost, startRedis, until, type Host } from './helpers/redis.js';
import { APP, connected, pusherClient, sdk, subscribed } from './helpers/pusher.js';

// Every subtest starts real servers: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

type Hook = { name: string; channel: string; user_id?: string };

async function receiver(t: { teardown(fn: () => unknown): void }) {
  const events: Hook[] = [];
  let invalid = 0;
  const srv = createServer(async (req: IncomingMessage, res) => {
    let body = '';
    for await (const c of req) body += c;
    const hook = sdk(1).webhook({ headers: req.headers as Record<string, string>, rawBody: body });
    if (!hook.isValid()) invalid++;
    else events.push(...(hook.getData() as { events: Hook[] }).events);
    res.writeHead(200).end();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/hook`, events, invalid: () => invalid };
}

const ns = `rt-test-${randomBytes(4).toString('hex')}`;
const redis = await machineRedis(t);
t.teardown(() => dropNamespace(redis.port, ns));
const rx = await receiver(t);
const args = ['--pusher-apps', JSON.stringify([{ ...APP, webhooks: [{ url: rx.url }] }])];
const A = await startHost(t, redis.url, ns, { workers: 1, args });
const B = await startHost(t, redis.url, ns, { workers: 1, args });

const count = (name: string, channel: string, user?: string) =>
  rx.events.filter((e) => e.name === name && e.channel === channel && (user === undefined || e.user_id === user)).length;
const arrived = (what: string, name: string, channel: string, user?: string) => until(what, () => count(name, channel, user) > 0, 20000);

/** Pusher clients (one per live host) that occupy a fresh sentinel channel each round. */
const watchers = new Map<Host, Pusher>();
let round = 0;
async function sentinel(hosts: Host[]): Promise<void> {
  round++;
  const names: string[] = [];
  for (const h of hosts) {
    let p = watchers.get(h);
    if (!p) {
      watchers.set(h, (p = pusherClient(t, h.port)));
      await connected(p);
    }
    const name = `sentinel-${round}-${h.port}`;
    names.push(name);
    await subscribed(p, name);
  }
  for (const n of names) await arrived(`sentinel ${n} occupied`, 'channel_occupied', n);
}

/** Waits until the HTTP API (any host: it reads Redis) reports `n` subscribers of `channel`. */
const subscribers = (host: Host, channel: string, n: number) =>
  until(`${n} subscriber(s) of ${channel}`, async () => {
    const r = await (await sdk(host.port).get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } })).json();
    return (r.subscription_count ?? 0) === n;
  });

t.test('a public channel on two hosts is occupied once and vacated once', async (t) => {
  const ch = 'hooks-public';
  const c1 = pusherClient(t, A.port);
  const c2 = pusherClient(t, B.port);
  await Promise.all([connected(c1), connected(c2)]);

  await subscribed(c1, ch);
  await arrived('channel_occupied from host A', 'channel_occupied', ch);
  await subscribed(c2, ch);
  await subscribers(A, ch, 2);
  await sentinel([A, B]);
  t.equal(count('channel_occupied', ch), 1, 'second host subscribing does not occupy again');

  c1.unsubscribe(ch);
  await subscribers(B, ch, 1);
  await sentinel([A, B]);
  t.equal(count('channel_vacated', ch), 0, 'host A emptying while host B has a subscriber: not vacated');

  c2.unsubscribe(ch);
  await arrived('channel_vacated', 'channel_vacated', ch);
  await sentinel([A, B]);
  t.equal(count('channel_vacated', ch), 1, 'vacated exactly once');
  t.equal(count('channel_occupied', ch), 1, 'still occupied exactly once');

  // And again from the top: the cluster-wide count went back to zero.
  await subscribed(c2, ch);
  await until('occupied again', () => count('channel_occupied', ch) === 2, 20000).catch((e) => { console.error(JSON.stringify(rx.events.filter((x) => x.channel === ch)), F.output()); throw e; });
  c2.unsubscribe(ch);
  await until('vacated again', () => count('channel_vacated', ch) === 2, 20000);
  t.equal(rx.invalid(), 0, 'every batch had a valid X-Pusher-Signature');
});

t.test('one user on two hosts is added once and removed once', async (t) => {
  const ch = 'presence-hooks';
  const on1 = pusherClient(t, A.port, { member: { user_id: '7', user_info: { name: 'Ann' } } });
  const on2 = pusherClient(t, B.port, { member: { user_id: '7', user_info: { name: 'Ann' } } });
  await Promise.all([connected(on1), connected(on2)]);

  await subscribed(on1, ch);
  await arrived('member_added', 'member_added', ch, '7');
  await arrived('channel_occupied', 'channel_occupied', ch);
  // In the order one host sends them (and Pusher does): a receiver that starts a channel's member list
  // on channel_occupied must not get its first member before it.
  const occupiedAt = rx.events.findIndex((e) => e.name === 'channel_occupied' && e.channel === ch);
  const addedAt = rx.events.findIndex((e) => e.name === 'member_added' && e.channel === ch);
  t.ok(occupiedAt < addedAt, 'channel_occupied before member_added');
  const second = await subscribed(on2, ch);
  t.equal(second.data.count, 1, 'one member across the two hosts');
  await sentinel([A, B]);
  t.equal(count('member_added', ch, '7'), 1, 'her second connection, on host B, adds nobody');
  t.equal(count('channel_occupied', ch), 1, 'occupied once');
  const added = rx.events.find((e) => e.name === 'member_added' && e.channel === ch)!;
  t.same({ ...added }, { name: 'member_added', channel: ch, user_id: '7' }, 'member_added as Pusher sends it');

  on1.unsubscribe(ch);
  await subscribers(B, ch, 1);
  await sentinel([A, B]);
  t.equal(count('member_removed', ch, '7'), 0, 'she is still on host B: not removed');
  t.equal(count('channel_vacated', ch), 0, 'not vacated');

  on2.unsubscribe(ch);
  await arrived('member_removed', 'member_removed', ch, '7');
  await arrived('channel_vacated', 'channel_vacated', ch);
  await sentinel([A, B]);
  t.equal(count('member_removed', ch, '7'), 1, 'removed exactly once');
  t.equal(count('channel_vacated', ch), 1, 'vacated exactly once');
  const i = rx.events.findIndex((e) => e.name === 'member_removed' && e.channel === ch);
  const j = rx.events.findIndex((e) => e.name === 'channel_vacated' && e.channel === ch);
  t.ok(i < j, 'member_removed before channel_vacated');
  t.equal(rx.invalid(), 0, 'every batch had a valid X-Pusher-Signature');
});

t.test('a host that dies: its members leave and the channel is vacated once, by a surviving host', async (t) => {
  const C = await startHost(t, redis.url, ns, { workers: 1, args });
  const ch = 'presence-hooks-crash';
  const ann = pusherClient(t, A.port, { member: { user_id: 'ann' } });
  const cid = pusherClient(t, C.port, { member: { user_id: 'cid' } });
  const cid2 = pusherClient(t, C.port, { member: { user_id: 'ann' } });
  await Promise.all([connected(ann), connected(cid), connected(cid2)]);
  await subscribed(ann, ch);
  await subscribed(cid, ch);
  await subscribed(cid2, ch);
  await subscribers(A, ch, 3);
  await sentinel([A, B, C]);
  t.equal(count('channel_occupied', ch), 1, 'occupied once across hosts A and C');
  t.equal(count('member_added', ch, 'ann'), 1, 'ann (on A and C) added once');
  t.equal(count('member_added', ch, 'cid'), 1, 'cid added once');

  ann.unsubscribe(ch);
  await subscribers(B, ch, 2);
  await sentinel([A, B, C]);
  t.equal(count('member_removed', ch, 'ann'), 0, 'ann still has a connection on host C');

  await C.crash();
  await arrived('member_removed of cid after the sweep', 'member_removed', ch, 'cid');
  await arrived('member_removed of ann after the sweep', 'member_removed', ch, 'ann');
  await arrived('channel_vacated after the sweep', 'channel_vacated', ch);
  await sentinel([A, B]);
  t.equal(count('member_removed', ch, 'cid'), 1, 'cid removed once');
  t.equal(count('member_removed', ch, 'ann'), 1, 'ann removed once');
  t.equal(count('channel_vacated', ch), 1, 'vacated once, though A and B both sweep');
  await subscribers(A, ch, 0);
  t.equal(rx.invalid(), 0, 'every batch had a valid X-Pusher-Signature');
});

t.test('a host that stops gracefully: its last subscribers leave and the channel is vacated once', async (t) => {
  const D = await startHost(t, redis.url, ns, { workers: 1, args });
  const ch = 'presence-hooks-stop';
  const dan = pusherClient(t, D.port, { member: { user_id: 'dan' } });
  await connected(dan);
  await subscribed(dan, ch);
  await arrived('channel_occupied', 'channel_occupied', ch);
  await arrived('member_added', 'member_added', ch, 'dan');
  // Stopped with dan still connected: the host drops him on the way out.
  await D.stop();
  await arrived('member_removed when host D stopped', 'member_removed', ch, 'dan');
  await arrived('channel_vacated when host D stopped', 'channel_vacated', ch);
  await sentinel([A, B]);
  t.equal(count('member_removed', ch, 'dan'), 1, 'dan removed once');
  t.equal(count('channel_vacated', ch), 1, 'vacated once');
});

t.test('a host alone in its cluster that dies and restarts: the new run sweeps the old one and sends what it ended', async (t) => {
  // A namespace of its own: no other host may sweep first.
  const ns2 = `${ns}-solo`;
  t.teardown(() => dropNamespace(redis.port, ns2));
  const r = redisClient(t, redis.port);
  const ch = 'presence-hooks-restart';
  const E = await startHost(t, redis.url, ns2, { workers: 1, args });
  const eve = pusherClient(t, E.port, { member: { user_id: 'eve' } });
  await connected(eve);
  await subscribed(eve, ch);
  await arrived('channel_occupied', 'channel_occupied', ch);
  await E.crash();
  eve.disconnect();
  // Its heartbeat expired: the restarted host's very first heartbeat, during its start, sweeps it.
  await until('the dead run stopped heartbeating', async () => (await r.keys(`${ns2}:node:*`)).every((k) => k.endsWith(':ch')), 20000);
  const E2 = await startHost(t, redis.url, ns2, { workers: 1, args });
  await arrived('member_removed after the restart', 'member_removed', ch, 'eve');
  await arrived('channel_vacated after the restart', 'channel_vacated', ch);
  await sentinel([A, B, E2]);
  t.equal(count('member_removed', ch, 'eve'), 1, 'eve removed once');
  t.equal(count('channel_vacated', ch), 1, 'vacated once');
});

t.test('Redis restarted without its data: the channel is occupied again before its member is added again', async (t) => {
  // A Redis of our own, to restart empty.
  const own = await startRedis(t);
  const ch = 'presence-hooks-redis-restart';
  const F = await startHost(t, own.url, `${ns}-lost`, { workers: 1, args });
  const fay = pusherClient(t, F.port, { member: { user_id: 'fay' } });
  await connected(fay);
  await subscribed(fay, ch);
  await arrived('member_added', 'member_added', ch, 'fay');
  await own.kill();
  await own.start();
  // The host registers its channel and member again when it reconnects.
  // (Then its subscriber is told to resync, leaves, and pusher-js subscribes again: a third pair.)
  await until('occupied again', () => count('channel_occupied', ch) >= 2, 20000);
  await until('added again', () => count('member_added', ch, 'fay') >= 2, 20000);
  const nth = (name: string, n: number) => rx.events.map((e, i) => (e.name === name && e.channel === ch ? i : -1)).filter((i) => i >= 0)[n]!;
  t.ok(nth('channel_occupied', 1) < nth('member_added', 1), 'channel_occupied before member_added');
});
