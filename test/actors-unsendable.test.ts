// What a channel actor sends must be sendable: a reply, broadcast, push or returned message that JSON
// cannot carry (a BigInt, a cycle) or that uses one of the server's own event names fails the hook
// (`actor_failed`, or `bad_data` thrown at the ctx call) and publishes nothing; the shard carries on.
// Before, a BigInt reply crashed the shard serving the connection, a BigInt broadcast took an offset
// nobody received, and a Map reached subscribers differently by shard.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { signJwt } from 'rt-actors';
import { api, JWT_SECRET, startServer } from './helpers/server.js';
import { clientOnShard } from './helpers/faults.js';
import { TestClient } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, startHost } from './helpers/redis.js';
import { randomBytes } from 'node:crypto';

const actors = fileURLToPath(new URL('./fixtures/unsendable', import.meta.url));
const token = (sub: string) => signJwt({ sub, channels: ['*'], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });

t.test('unsendable replies, broadcasts, pushes and returned messages fail the hook, not the shard', async (t) => {
  const s = await startServer(t, { actors, clientPublish: 'all' });
  const ch = 'lab-one';
  const a = await clientOnShard(`${s.url}/ws?token=${token('a')}`, 0, t);
  const b = await clientOnShard(`${s.url}/ws?token=${token('b')}`, 1, t);
  for (const c of [a, b]) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true, 'subscribed');
  const send = (event: string) => a.request({ op: 'publish', channel: ch, event, data: null });

  t.match(await send('reply-bigint'), { ok: false, error: { code: 'actor_failed', message: /cannot be sent as JSON/ } }, 'a BigInt reply: actor_failed');
  t.match(await send('reply-cycle'), { ok: false, error: { code: 'actor_failed' } }, 'a cyclic reply: actor_failed');
  t.match(await send('broadcast-bigint'), { ok: false, error: { code: 'bad_data', message: /broadcast b's data cannot be sent as JSON/ } }, 'a BigInt broadcast: the ctx call throws bad_data');
  t.match(await send('push-bigint'), { ok: false, error: { code: 'bad_data' } }, 'a BigInt push: bad_data');
  t.match(await send('return-reserved'), { ok: false, error: { code: 'actor_failed', message: /reserved/ } }, 'a returned message named rt:x: actor_failed');
  t.match(await b.request({ op: 'subscribe', channel: 'lab-join', data: { big: true } }), { ok: false, error: { code: 'actor_failed' } }, 'an onJoin reply with a BigInt: the subscribe fails');

  const map = await send('return-map');
  t.equal(map.ok, true, 'a returned Map is sent');
  t.equal((await send('sentinel')).ok, true);
  for (const c of [a, b]) await c.next((f) => f.op === 'message' && f.event === 'sentinel');
  for (const [name, c] of [['shard 0', a], ['shard 1', b]] as const) {
    const got = c.messages(ch);
    t.same(got.map((f) => [f.event, f.offset]), [['map', 1]], `${name}: nothing refused was published, no offset was taken (the Map is offset 1)`);
    t.same(got[0]!.data, {}, `${name}: the Map as JSON has it, {}, on every shard`);
  }
  t.same((await api(s.http, '/health', undefined, { key: null })).body.workers, { total: 2, alive: 2, stuck: 0 }, 'no shard crashed');
});

t.test('the same with --redis, where the actor is placed: its activation checks what it sends', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-test-${randomBytes(4).toString('hex')}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  const h = await startHost(t, redis.url, ns, { workers: 2, args: ['--actors', actors, '--client-publish', 'all'] });
  const ch = 'lab-placed';
  const a = await TestClient.connect(`${h.url}/ws?token=${token('a')}`);
  t.teardown(() => a.close());
  t.equal((await a.request({ op: 'subscribe', channel: ch }, 15_000)).ok, true, 'subscribed');
  const send = (event: string) => a.request({ op: 'publish', channel: ch, event, data: null }, 15_000);
  t.match(await send('reply-bigint'), { ok: false, error: { code: 'actor_failed' } }, 'a BigInt reply: actor_failed');
  t.match(await send('broadcast-bigint'), { ok: false, error: { code: 'bad_data' } }, 'a BigInt broadcast: bad_data');
  t.match(await send('push-bigint'), { ok: false, error: { code: 'bad_data' } }, 'a BigInt push: bad_data');
  t.match(await send('return-reserved'), { ok: false, error: { code: 'actor_failed' } }, 'a returned rt:x: actor_failed');
  t.match(await a.request({ op: 'subscribe', channel: 'lab-placed-join', data: { big: true } }, 15_000), { ok: false, error: { code: 'actor_failed' } }, 'an onJoin reply with a BigInt: the subscribe fails');
  t.equal((await send('sentinel')).ok, true);
  const sentinel = await a.next((f) => f.op === 'message' && f.event === 'sentinel', 15_000);
  t.equal(sentinel.offset, 1, 'nothing refused took an offset: the sentinel is the first publication');
  t.same(a.messages(ch), [], 'and nothing else was delivered');
  t.equal((await api(h.http, '/health', undefined, { key: null })).body.workers.alive, 2, 'no shard crashed');
});
