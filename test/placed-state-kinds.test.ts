// A placed actor's state (--redis) is saved in Redis after each turn that changed it, and the next owner
// resumes from it; docs/scaling.md lists `Map` among what it may hold. The saved record was decoded with
// maps as plain objects, so after the owner died the next one found `{ a: 1, '2': 'two' }` where the
// actor had left a Map: `state.m.get` was gone, and keys that were not strings had become strings.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { placedHostPair } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/placed-state', import.meta.url));

t.test('a Map, a Set and a Date in a placed actor\'s state come back as such at the next owner', async (t) => {
  const [h1, h2] = await placedHostPair(t, actors);
  const ch = `kinds-${randomBytes(3).toString('hex')}`;
  // The first event comes through h1: it takes the lease and runs the activation.
  const c1 = await TestClient.connect(`${h1.url}/ws`);
  t.teardown(() => c1.close());
  t.equal((await c1.request({ op: 'subscribe', channel: ch }, 15_000)).ok, true);
  t.equal((await api(h1.http, '/api/publish', { channel: ch, event: 'set', data: null })).status, 200);
  t.equal((await api(h1.http, '/api/publish', { channel: ch, event: 'read', data: null })).status, 200);
  const expected = { map: [['a', 1], [2, 'two']], set: [1, 'b'], date: 1000 };
  t.same((await c1.next((f) => f.op === 'message' && f.event === 'read', 15_000)).data, expected, 'as set, on the first owner');

  const c2 = await TestClient.connect(`${h2.url}/ws`);
  t.teardown(() => c2.close());
  t.equal((await c2.request({ op: 'subscribe', channel: ch }, 15_000)).ok, true);
  await h1.crash();
  // Retried by the caller until h1's lease has run out and h2 activates the actor from the saved state.
  let status = 0;
  for (let i = 0; i < 100 && status !== 200; i++) status = (await api(h2.http, '/api/publish', { channel: ch, event: 'read', data: null })).status;
  t.equal(status, 200);
  t.same((await c2.next((f) => f.op === 'message' && f.event === 'read', 15_000)).data, expected, 'the same, on the next owner');
});
