// A push a placed actor (--redis) makes outside a turn — from a timer or a promise of its own that
// outlives the hook — is delivered, as on one host. The activation held it for the end of "the turn",
// and none was running: it returned true but reached no one until some later event's turn ended.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, startHost } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/placed-late', import.meta.url));

t.test('a push made after the hook returned reaches its subscriber without waiting for another event', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const h = await startHost(t, redis.url, ns, { args: ['--actors', actors] });
  const c = await TestClient.connect(`${h.url}/ws`);
  t.teardown(() => c.close());
  const ch = `late-${randomBytes(3).toString('hex')}`;
  t.equal((await c.request({ op: 'subscribe', channel: ch }, 15_000)).ok, true);
  t.equal((await api(h.http, '/api/publish', { channel: ch, event: 'later', data: { id: c.welcome.socket_id } })).status, 200);
  const f = await c.next((f) => f.op === 'message' && f.event === 'late', 10_000);
  t.same(f.data, { pushed: true });
});
