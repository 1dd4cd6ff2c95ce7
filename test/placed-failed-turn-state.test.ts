// docs/actors.md: what a failing hook did to `ctx.state` before it failed stays done, as does a
// broadcast it made; so does what a hook refusing a publish (returning null) did. A placed actor
// (--redis) kept such changes in memory only: neither turn saved the state, so after a kill -9 of the
// owner the next owner resumed without them — behind the publications those turns had made with
// those counts, which then came again.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { placedHostPair } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/placed-failed-turn', import.meta.url));

t.test('the state a failed hook changed is saved: the next owner resumes from it', async (t) => {
  const [h1, h2] = await placedHostPair(t, actors);
  const ch = `counter-${randomBytes(3).toString('hex')}`;
  const c1 = await TestClient.connect(`${h1.url}/ws`);
  t.teardown(() => c1.close());
  t.equal((await c1.request({ op: 'subscribe', channel: ch }, 15_000)).ok, true);
  // Subscribed before the failing turn: its join is a turn that saves the whole state too.
  const c2 = await TestClient.connect(`${h2.url}/ws`);
  t.teardown(() => c2.close());
  t.equal((await c2.request({ op: 'subscribe', channel: ch }, 15_000)).ok, true);
  t.equal((await api(h1.http, '/api/publish', { channel: ch, event: 'bump', data: null })).status, 200);
  const refused = await api(h1.http, '/api/publish', { channel: ch, event: 'bump', data: { refuse: true } });
  t.equal(refused.body?.error?.code, 'publish_refused', JSON.stringify(refused.body));
  const failed = await api(h1.http, '/api/publish', { channel: ch, event: 'bump', data: { fail: true } });
  t.equal(failed.body?.error?.code, 'actor_failed', JSON.stringify(failed.body));
  t.same((await c1.next((f) => f.op === 'message' && f.event === 'bumped' && f.data.n === 3, 15_000)).data, { n: 3 }, 'the failed turn broadcast its count');

  await h1.crash();
  let status = 0;
  for (let i = 0; i < 100 && status !== 200; i++) status = (await api(h2.http, '/api/publish', { channel: ch, event: 'read', data: null })).status;
  t.equal(status, 200);
  t.same((await c2.next((f) => f.op === 'message' && f.event === 'read', 15_000)).data, { n: 3 }, 'the next owner counts from the failed turn\'s change');
});
