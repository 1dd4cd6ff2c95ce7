// With --redis a custom actor is placed (one activation in the cluster): what its onJoin broadcasts is
// before the joiner's reply offset, as on one host (actors-e2e), so the offsets a client sees continue
// from its subscribe reply without a gap. The relay read the reply's offset before the join ran, and
// the joiner's own broadcast, delivered to it by nobody, left a hole right after its reply.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { TestClient } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, startHost } from './helpers/redis.js';

const examples = fileURLToPath(new URL('../actors', import.meta.url));

t.test('placed chat-room: the first message after a subscribe reply is the next offset', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const h = await startHost(t, redis.url, ns, { workers: 2, args: ['--actors', examples] });
  const a = await TestClient.connect(`${h.url}/ws`);
  const b = await TestClient.connect(`${h.url}/ws`);
  t.teardown(() => (a.close(), b.close()));
  const ch = 'chat-placed-gap';
  const ra = await a.request({ op: 'subscribe', channel: ch }, 15_000);
  t.equal(ra.offset, 1, "the reply's offset is after the joiner's own 'joined' broadcast");
  const rb = await b.request({ op: 'subscribe', channel: ch }, 15_000);
  t.equal(rb.offset, 2);
  const seenByA = await a.next((f) => f.op === 'message' && f.event === 'system', 15_000);
  t.equal(seenByA.offset, ra.offset + 1, "a: b's join is the next offset after its reply");
  t.equal((await a.request({ op: 'publish', channel: ch, event: 'message', data: { text: 'hi' } }, 15_000)).ok, true);
  const firstOfB = await b.next((f) => f.op === 'message', 15_000);
  t.equal(firstOfB.offset, rb.offset + 1, 'b: no gap between its reply and its first message');
  await a.next((f) => f.op === 'message' && f.offset === 3, 15_000);
  t.same(a.messages(ch).filter((f) => f.offset <= ra.offset), [], 'a never got its own join');

  // A resume across the join: what the others' onJoin broadcast is in the reply's publications.
  const c = await TestClient.connect(`${h.url}/ws`);
  t.teardown(() => c.close());
  const rc = await c.request({ op: 'subscribe', channel: ch, since: { offset: 1, epoch: ra.epoch } }, 15_000);
  t.equal(rc.recovered, true);
  t.equal(rc.offset, 4, "after c's own join");
  t.same(rc.publications.map((p: { offset: number }) => p.offset), [2, 3, 4], 'every publication since the position, up to the reply offset');
});
