import t from 'tap';
import { fileURLToPath } from 'node:url';
import { startServer, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { channelOwnedBy, clientOnShard, until } from './helpers/faults.js';

const fixtures = fileURLToPath(new URL('./fixtures/actors', import.meta.url));
const examples = fileURLToPath(new URL('../actors', import.meta.url));

t.test('a TypeScript actor loaded from --actors authorizes, transforms, refuses and keeps state', async (t) => {
  const s = await startServer(t, { actors: fixtures });
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  const wrong = await c.request({ op: 'subscribe', channel: 'vault-a', data: { pin: '0' } });
  t.same(wrong.error, { code: 'bad_pin', message: 'wrong pin for vault-a' });
  const right = await c.request({ op: 'subscribe', channel: 'vault-a', data: { pin: String('vault-a'.length) } });
  t.equal(right.ok, true);
  const regex = await c.request({ op: 'subscribe', channel: 'strongroom.7', data: { pin: String('strongroom.7'.length) } });
  t.equal(regex.ok, true, 'RegExp match');
  const r = await api(s.http, '/api/publish', { channel: 'vault-a', event: 'gold', data: 5 });
  t.equal(r.status, 200);
  const m = await c.next((f) => f.op === 'message');
  t.same(m.data, { wrapped: 5, source: 'api', opened: 1 }, 'onPublish transformed, state kept');
  const refused = await api(s.http, '/api/publish', { channel: 'vault-a', event: 'forbidden', data: 1 });
  t.equal(refused.status, 403);
  t.equal(refused.body.error.code, 'publish_refused');
  // onMessage decides client publishes even on a public-named channel
  const pub = await c.request({ op: 'publish', channel: 'vault-a', event: 'shout', data: 'hi' });
  t.equal(pub.ok, true);
  const up = await c.next((f) => f.op === 'message' && f.event === 'SHOUT');
  t.equal(up.data, 'hi');
});

t.test('the shipped example actor (actors/chat-room.ts) works as documented', async (t) => {
  const s = await startServer(t, { actors: examples });
  const a = await TestClient.connect(s.url + '/ws');
  const b = await TestClient.connect(s.url + '/ws');
  t.teardown(() => (a.close(), b.close()));
  const root = await a.request({ op: 'subscribe', channel: 'chat-lobby', data: { nickname: 'root' } });
  t.equal(root.error.code, 'nickname_taken');
  t.equal((await a.request({ op: 'subscribe', channel: 'chat-lobby' })).ok, true);
  t.equal((await b.request({ op: 'subscribe', channel: 'chat-lobby' })).ok, true);
  const joined = await a.next((f) => f.event === 'system' && f.data.online === 2);
  t.match(joined.data.text, /joined/);
  const empty = await a.request({ op: 'publish', channel: 'chat-lobby', event: 'message', data: { text: '  ' } });
  t.equal(empty.error.code, 'publish_refused');
  const other = await a.request({ op: 'publish', channel: 'chat-lobby', event: 'dance', data: {} });
  t.equal(other.error.code, 'unknown_event');
  t.equal((await a.request({ op: 'publish', channel: 'chat-lobby', event: 'message', data: { text: 'hello' } })).ok, true);
  const got = await b.next((f) => f.event === 'message');
  t.same(got.data, { text: 'hello', from: a.welcome.socket_id, n: 1 });
  b.close();
  const left = await a.next((f) => f.event === 'system' && /left/.test(f.data.text));
  t.equal(left.data.online, 1);
});

t.test("chat-room's online count stays right after its owner shard crashes (the survivors are re-registered without onJoin)", async (t) => {
  const s = await startServer(t, { actors: examples });
  const channel = channelOwnedBy('chat-crash-', 0, 2);
  const x = await clientOnShard(s.url + '/ws', 1, t);
  t.equal((await x.request({ op: 'subscribe', channel })).ok, true);
  s.crashShard(0);
  await until(async () => (await api(s.http, '/api/channels/' + channel)).body.subscribers === 1, 'x re-subscribed with the new owner');
  const y = await clientOnShard(s.url + '/ws', 1, t);
  t.equal((await y.request({ op: 'subscribe', channel })).ok, true);
  const joined = await x.next((f) => f.event === 'system' && f.data.text.startsWith(`${y.welcome.socket_id} joined`));
  t.equal(joined.data.online, 2, 'x and y are online');
  x.close();
  const left = await y.next((f) => f.event === 'system' && /left/.test(f.data.text));
  t.equal(left.data.online, 1, 'y is online');
});

t.test('a broken actor folder fails the start with a clear error', async (t) => {
  await t.rejects(startServer(t, { actors: '/nonexistent/folder' }), /cannot read folder/);
});

t.test('an actor that changes a published message in place: every subscriber, on every shard and protocol, gets the change', async (t) => {
  const s = await startServer(t, { actors: fixtures });
  const clients = [await TestClient.connect(s.url + '/ws'), await TestClient.connect(s.url + '/ws'), await TestClient.connect(s.url + '/ws', { msgpack: true })];
  t.teardown(() => clients.forEach((c) => c.close()));
  t.same(new Set(clients.slice(0, 2).map((c) => c.welcome.socket_id.split('.')[0])).size, 2, 'subscribers on both shards');
  for (const c of clients) t.equal((await c.request({ op: 'subscribe', channel: 'stamped-1' })).ok, true);
  t.equal((await api(s.http, '/api/publish', { channel: 'stamped-1', event: 'e', data: { n: 1 } })).status, 200);
  clients[0]!.send({ op: 'publish', channel: 'stamped-1', event: 'e', data: { n: 2 } });
  for (const c of clients) t.same((await c.waitForMessages('stamped-1', 2)).map((f) => f.data), [{ n: 1, stamped: 'stamped-1' }, { n: 2, stamped: 'stamped-1' }]);
  const hist = await clients[1]!.request({ op: 'history', channel: 'stamped-1', limit: 2 });
  t.same(hist.publications.map((p: any) => p.data), [{ n: 1, stamped: 'stamped-1' }, { n: 2, stamped: 'stamped-1' }], 'history keeps the changed value');
});
