// A BigInt in a placed actor's state (--redis) came back at the next owner as a number: rounded past
// 2^53, and `state.total += 1n` then threw (a BigInt cannot be mixed with a number), failing every turn
// after the takeover. The saved record keeps it an int64, and it is read back as a BigInt.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { placedHostPair } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/placed-state', import.meta.url));

t.test('a BigInt in a placed actor\'s state is a BigInt, exactly, at the next owner', async (t) => {
  const [h1, h2] = await placedHostPair(t, actors);
  const ch = `big-${randomBytes(3).toString('hex')}`;
  const c1 = await TestClient.connect(`${h1.url}/ws`);
  t.teardown(() => c1.close());
  t.equal((await c1.request({ op: 'subscribe', channel: ch }, 15_000)).ok, true);
  const c2 = await TestClient.connect(`${h2.url}/ws`);
  t.teardown(() => c2.close());
  t.equal((await c2.request({ op: 'subscribe', channel: ch }, 15_000)).ok, true);
  t.equal((await api(h1.http, '/api/publish', { channel: ch, event: 'add', data: '9007199254740993' })).status, 200);
  t.same((await c1.next((f) => f.op === 'message' && f.event === 'add', 15_000)).data, { type: 'bigint', total: '9007199254740993' });

  await h1.crash();
  let status = 0;
  for (let i = 0; i < 100 && status !== 200; i++) status = (await api(h2.http, '/api/publish', { channel: ch, event: 'add', data: '1' })).status;
  t.equal(status, 200, 'the next owner adds to the total');
  t.same((await c2.next((f) => f.op === 'message' && f.event === 'add' && f.offset === 2, 15_000)).data, { type: 'bigint', total: '9007199254740994' });
});
