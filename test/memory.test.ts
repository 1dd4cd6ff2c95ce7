import t from 'tap';
import { createServer } from 'rt-actors';
import { until } from './helpers/faults.js';
import { TestClient } from './helpers/ws-client.js';

t.test('embedding: createServer and the in-memory client', async (t) => {
  const server = await createServer({ port: 0, host: '127.0.0.1', workers: 2, env: {}, logLevel: 'error' });
  t.teardown(() => server.close());
  t.equal(server.apiKeyGenerated, true, 'an API key was generated');
  t.ok(server.apiKey.length >= 24);
  const mem = server.connect({ user: '5', channels: ['presence-*'], info: { name: 'in-process' } });
  const got: any[] = [];
  mem.on('message', (m) => got.push(m));
  const joins: any[] = [];
  mem.on('join', (j) => joins.push(j));
  const sub = await mem.subscribe('updates');
  t.equal(sub.offset, 0);
  const ws = await TestClient.connect(`ws://127.0.0.1:${server.port}/ws`);
  t.teardown(() => ws.close());
  await ws.request({ op: 'subscribe', channel: 'updates' });
  // server-side publish reaches both the socket and the in-memory client
  await server.publish('updates', 'changed', { v: 1 });
  const w = await ws.next((f) => f.op === 'message');
  t.same(w.data, { v: 1 });
  await until(() => got.length > 0, 'the in-memory client to get the publication');
  t.same(got, [{ channel: 'updates', event: 'changed', data: { v: 1 }, offset: 1 }]);
  // presence with an in-memory member
  t.equal((await mem.subscribe('presence-ops')).members?.[0]?.user_id, '5');
  t.same(await server.presence('presence-ops'), [{ user_id: '5', user_info: { name: 'in-process' } }]);
  // resume from memory too
  await server.publish('updates', 'changed', { v: 2 });
  const mem2 = server.connect();
  const resumed: any[] = [];
  mem2.on('message', (m) => resumed.push(m.data));
  const r = await mem2.subscribe('updates', { since: { offset: 0, epoch: sub.epoch } });
  t.equal(r.recovered, true);
  t.same(resumed, [{ v: 1 }, { v: 2 }]);
  const chans = await server.channels();
  t.ok(chans.find((c) => c.name === 'updates' && c.subscribers === 3));
  mem.close();
  mem2.close();
  await new Promise((r) => setTimeout(r, 100));
  t.equal((await server.channels()).find((c) => c.name === 'updates')?.subscribers, 1, 'closing memory clients unsubscribed them');
});

t.test('configuration errors name the key and the accepted values', async (t) => {
  await t.rejects(createServer({ workers: 0, env: {} }), /workers.*expected 'auto' or an integer from 1 to 256/);
  await t.rejects(createServer({ clientPublish: 'sometimes' as never, env: {} }), /clientPublish.*one of none, private, all/);
  await t.rejects(createServer({ bogus: 1 } as never), /unknown option "bogus"/);
  await t.rejects(createServer({ env: { RT_PORT: 'eighty' } }), /RT_PORT.*integer/);
  await t.rejects(createServer({ jwtPublicKey: '/nope/key.pem', env: {} }), /cannot read jwtPublicKey \(createServer option\) file \/nope\/key.pem/);
});

t.test('embedding: an unknown event name on the in-memory client is a clear error, not a TypeError', async (t) => {
  const server = await createServer({ port: 0, host: '127.0.0.1', workers: 1, env: {}, logLevel: 'error' });
  t.teardown(() => server.close());
  const mem = server.connect();
  t.teardown(() => mem.close());
  // As a JavaScript caller would write it: the types do not stop it.
  for (const name of ['push', 'error', '__proto__', 'constructor']) {
    t.throws(() => (mem as any).on(name, () => {}), { code: 'bad_argument', message: /unknown event .*message, join, leave, disconnect, kicked/ }, `on(${name})`);
    t.throws(() => (mem as any).off(name, () => {}), { code: 'bad_argument' }, `off(${name})`);
  }
  // The client still works after the refused calls.
  const got: unknown[] = [];
  mem.on('message', (m) => got.push(m.data));
  await mem.subscribe('after-bad-on');
  await server.publish('after-bad-on', 'e', { ok: true });
  await until(() => got.length > 0, 'the publication after the refused calls');
  t.same(got, [{ ok: true }]);
});
