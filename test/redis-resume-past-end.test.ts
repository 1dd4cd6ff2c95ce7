// With --redis, a channel's stream that went back (a Sentinel failover that lost the old master's last
// writes: clients received them live, the new master reuses their offsets). A resume from a position past
// the stream's end is recovered: false, as on one host; a host relaying the channel tells its subscribers
// to resync. Before, the resume answered recovered: true with nothing missed and the relay kept its
// position, so the next publications at the reused offsets were dropped as duplicates, unseen by anyone.
// A Redis of its own: the test rolls a channel's offset back and kills subscriber connections.
import t from 'tap';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { redisClient, startHost, startRedis } from './helpers/redis.js';

const ns = 'rt';
const redis = await startRedis(t);
const admin = redisClient(t, redis.port);
const [A, B] = await Promise.all([startHost(t, redis.url, ns), startHost(t, redis.url, ns)]);

async function connect(url: string): Promise<TestClient> {
  const c = await TestClient.connect(url + '/ws');
  t.teardown(() => c.close());
  return c;
}

t.test('a position past the end is not recovered, on a host relaying the channel and on one that is not', async (t) => {
  const ch = 'past-end';
  const watcher = await connect(B.url);
  const sub = await watcher.request({ op: 'subscribe', channel: ch });
  for (let i = 1; i <= 3; i++) t.equal((await api(A.http, '/api/publish', { channel: ch, event: 'e', data: i })).status, 200);
  await watcher.waitForMessages(ch, 3);
  const since = { offset: 7, epoch: sub.epoch };

  // B relays the channel already (its watcher), A does not.
  for (const [name, host] of [['relaying', B], ['new to the channel', A]] as const) {
    const c = await connect(host.url);
    const r = await c.request({ op: 'subscribe', channel: ch, since });
    t.equal(r.ok, true, `${name}: subscribed`);
    t.equal(r.recovered, false, `${name}: a position past the last offset is not recovered`);
    t.equal(r.offset, 3, `${name}: the reply says where the stream is`);
    const h = await c.request({ op: 'history', channel: ch, since });
    t.equal(h.recovered, false, `${name}: history from past the end is not recovered either`);
    const here = await c.request({ op: 'history', channel: ch, since: { offset: 3, epoch: sub.epoch } });
    t.equal(here.recovered, true, `${name}: the last offset itself is recovered, with nothing missed`);
    t.same(here.publications, []);
  }

  // A client that is only ahead of this host's relay (it saw offset 4 on another host before this one
  // delivered it) is not sent to reload: Redis vouches for the position.
  const p = await api(A.http, '/api/publish', { channel: ch, event: 'e', data: 4 });
  t.equal(p.body.offsets[ch], 4);
  const ahead = await connect(B.url);
  const r = await ahead.request({ op: 'subscribe', channel: ch, since: { offset: 4, epoch: sub.epoch } });
  t.equal(r.recovered, true, 'a position Redis has reached is recovered');
});

t.test('a relay whose channel went back in Redis tells its subscribers to resync', async (t) => {
  const ch = 'went-back';
  const onB = await connect(B.url);
  const sub = await onB.request({ op: 'subscribe', channel: ch });
  for (let i = 1; i <= 3; i++) t.equal((await api(A.http, '/api/publish', { channel: ch, event: 'e', data: i })).status, 200);
  await onB.waitForMessages(ch, 3);
  // What a failover that lost offsets 2 and 3 leaves: the same epoch, the offset back at 1.
  await admin.xtrim(`${ns}:{${ch}}:s`, 'MAXLEN', 1);
  await admin.hset(`${ns}:{${ch}}:m`, 'o', '1');
  t.ok(Number(await admin.client('KILL', 'TYPE', 'pubsub')) >= 1, 'killed the subscriber connections');
  const closed = await onB.waitClose(10000);
  t.equal(closed.code, 4012, 'told to resync');
  const again = await connect(B.url);
  const r = await again.request({ op: 'subscribe', channel: ch, since: { offset: 3, epoch: sub.epoch } });
  t.equal(r.recovered, false, 'its resume is not recovered');
  t.equal(r.offset, 1);
  t.equal((await api(A.http, '/api/publish', { channel: ch, event: 'e', data: 'new 2' })).body.offsets[ch], 2);
  const [m] = await again.waitForMessages(ch, 1);
  t.same([m!.offset, m!.data], [2, 'new 2'], 'the reused offset is delivered');
});

t.test('a client resyncing only after the reused offsets passed its position is still not recovered', async (t) => {
  // A client that was away when its host noticed the loss (or reconnects after a busy channel moved on)
  // resumes from a lost offset the new master has reached again with other publications. Before, the
  // epoch was unchanged, so the resume answered recovered: true and the reused offsets were lost silently.
  const ch = 'went-back-late';
  const onB = await connect(B.url);
  const sub = await onB.request({ op: 'subscribe', channel: ch });
  for (let i = 1; i <= 3; i++) t.equal((await api(A.http, '/api/publish', { channel: ch, event: 'e', data: i })).status, 200);
  await onB.waitForMessages(ch, 3);
  // What the new master has: offset 1 only (the stream's last two entries, offsets 2 and 3, are lost).
  const entries = await admin.xrange(`${ns}:{${ch}}:s`, '-', '+');
  t.equal(entries.length, 3);
  await admin.xdel(`${ns}:{${ch}}:s`, entries[1]![0], entries[2]![0]);
  await admin.hset(`${ns}:{${ch}}:m`, 'o', '1');
  t.ok(Number(await admin.client('KILL', 'TYPE', 'pubsub')) >= 1, 'killed the subscriber connections');
  t.equal((await onB.waitClose(10000)).code, 4012, 'told to resync');
  // The new master moves on past the client's last offset (3) before the client comes back.
  for (let i = 2; i <= 5; i++) t.equal((await api(A.http, '/api/publish', { channel: ch, event: 'e', data: `new ${i}` })).body.offsets[ch], i);
  for (const host of [B, A]) {
    const late = await connect(host.url);
    const r = await late.request({ op: 'subscribe', channel: ch, since: { offset: 3, epoch: sub.epoch } });
    t.equal(r.ok, true);
    t.equal(r.recovered, false, 'a resume from a lost offset is not recovered, though Redis reached that offset again');
    t.not(r.epoch, sub.epoch, 'the channel has a new epoch');
    // Under the new epoch, history is served as usual.
    const h = await late.request({ op: 'history', channel: ch, since: { offset: 1, epoch: r.epoch } });
    t.equal(h.recovered, true);
    t.same(h.publications.map((p: { data: unknown }) => p.data), ['new 2', 'new 3', 'new 4', 'new 5'], 'the new publications, under the new epoch');
  }
});
