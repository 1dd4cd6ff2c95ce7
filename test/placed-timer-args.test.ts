// A placed actor's timers (--redis, one activation in the cluster) take the arguments an actor's timers
// take on one host (docs/actors.md: bad arguments throw `bad_timer`). The placed ones accepted any
// delay: one past setTimeout's ceiling (about 24.8 days) fired at once, `every(name, 0)` fired once as a
// one-shot, and an empty name was taken.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, startHost } from './helpers/redis.js';

const actors = fileURLToPath(new URL('./fixtures/placed-timers', import.meta.url));

t.test('a placed actor refuses the timers an actor on one host refuses, with bad_timer', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const h = await startHost(t, redis.url, ns, { args: ['--actors', actors] });
  const c = await TestClient.connect(`${h.url}/ws`);
  t.teardown(() => c.close());
  const ch = 'timers-args';
  t.equal((await c.request({ op: 'subscribe', channel: ch }, 15_000)).ok, true);
  const cases = [
    { name: 'month', ms: 30 * 86_400_000 },
    { name: 'zero', ms: 0, repeat: true },
    { name: '', ms: 10 },
  ];
  for (const [i, d] of cases.entries()) {
    t.equal((await api(h.http, '/api/publish', { channel: ch, event: 'arm', data: d })).status, 200);
    const f = await c.next((f) => f.op === 'message' && f.offset === i + 1, 15_000);
    t.same([f.event, f.data], ['refused', { name: d.name, code: 'bad_timer' }], `${JSON.stringify(d)} refused`);
  }
  // A valid one still fires, and is the next publication after the refusals: none of them fired.
  t.equal((await api(h.http, '/api/publish', { channel: ch, event: 'arm', data: { name: 'soon', ms: 50 } })).status, 200);
  const fired = await c.next((f) => f.op === 'message' && f.event === 'fired', 15_000);
  t.same(fired.data, { name: 'soon' });
  t.equal(fired.offset, 5, 'right after `armed` (4): no refused timer fired meanwhile');
});
