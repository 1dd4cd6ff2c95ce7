import t from 'tap';
import WebSocket from 'ws';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

const token = (sub: string, extra: Record<string, unknown> = {}) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, ...extra }, { secret: JWT_SECRET });

t.test('hundreds of clients on channels owned by different shards receive every message in order', async (t) => {
  const s = await startServer(t);
  const channels = Array.from({ length: 8 }, (_, i) => `room-${i}`);
  const clients: TestClient[] = [];
  for (let i = 0; i < 200; i++) clients.push(await TestClient.connect(s.url + '/ws'));
  t.teardown(() => clients.forEach((c) => c.close()));
  // Consecutive connections alternate between the two shards (round-robin hand-off).
  const shardsSeen = new Set(clients.map((c) => c.welcome.socket_id.split('.')[0]));
  t.same([...shardsSeen].sort(), ['0', '1'], 'connections landed on both shards');
  await Promise.all(clients.map((c, i) => c.request({ op: 'subscribe', channel: channels[i % channels.length] }).then((r) => t.equal(r.ok, true))));
  const N = 40;
  const messages = [];
  for (let i = 0; i < N; i++) for (const ch of channels) messages.push({ channel: ch, event: 'tick', data: { i } });
  const r = await api(s.http, '/api/batch', { messages });
  t.equal(r.status, 200);
  for (const [i, c] of clients.entries()) {
    const ch = channels[i % channels.length]!;
    const got = await c.waitForMessages(ch, N);
    const seq = got.map((f) => f.data.i);
    if (JSON.stringify(seq) !== JSON.stringify([...Array(N).keys()])) t.fail(`client ${i} got ${seq}`);
    const offsets = got.map((f) => f.offset);
    if (!offsets.every((o, k) => k === 0 || o === offsets[k - 1] + 1)) t.fail(`client ${i} offsets not contiguous`);
  }
  t.pass('all 200 clients got 40 ordered messages');
});

t.test('publish, unsubscribe, client publish policy and msgpack', async (t) => {
  const s = await startServer(t);
  const a = await TestClient.connect(s.url + '/ws?token=' + token('1', { channels: ['private-*'] }));
  const b = await TestClient.connect(s.url + '/ws?format=msgpack&token=' + token('2', { channels: ['private-chat'] }), { msgpack: true });
  t.teardown(() => (a.close(), b.close()));
  t.equal(a.welcome.user, '1');
  t.equal(b.welcome.user, '2', 'msgpack welcome decoded');
  t.equal((await a.request({ op: 'subscribe', channel: 'private-chat' })).ok, true);
  t.equal((await b.request({ op: 'subscribe', channel: 'private-chat' })).ok, true);
  const pub = await a.request({ op: 'publish', channel: 'private-chat', event: 'say', data: { text: 'hi' } });
  t.equal(pub.ok, true);
  t.equal(pub.offset, 1);
  const got = await b.next((f) => f.op === 'message');
  t.same([got.channel, got.event, got.data, got.offset], ['private-chat', 'say', { text: 'hi' }, 1], 'msgpack client received the JSON client publish');
  await a.next((f) => f.op === 'message', 2000);

  // exclude_self: the sender does not get its own message
  await a.request({ op: 'publish', channel: 'private-chat', event: 'whisper', data: 1, exclude_self: true });
  await b.next((f) => f.op === 'message' && f.event === 'whisper');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(a.messages().filter((f) => f.event === 'whisper').length, 0, 'sender excluded');

  // public channel: clients may not publish by default
  await a.request({ op: 'subscribe', channel: 'news' });
  const refused = await a.request({ op: 'publish', channel: 'news', event: 'x', data: 1 });
  t.equal(refused.ok, false);
  t.equal(refused.error.code, 'publish_refused');
  const notSub = await a.request({ op: 'publish', channel: 'private-other', event: 'x', data: 1 });
  t.equal(notSub.error.code, 'not_subscribed');

  // unsubscribe stops delivery
  t.equal((await b.request({ op: 'unsubscribe', channel: 'private-chat' })).ok, true);
  await api(s.http, '/api/publish', { channel: 'private-chat', event: 'after', data: null });
  await a.next((f) => f.event === 'after');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(b.messages().filter((f) => f.event === 'after').length, 0, 'unsubscribed client gets nothing');
  t.equal((await b.request({ op: 'unsubscribe', channel: 'private-chat' })).error.code, 'not_subscribed');
  t.equal((await b.request({ op: 'ping' })).pong, true);
});

t.test('private and presence channels need a token that grants them', async (t) => {
  const s = await startServer(t);
  const anon = await TestClient.connect(s.url + '/ws');
  const limited = await TestClient.connect(s.url + '/ws?token=' + token('7', { channels: ['private-a.*'] }));
  t.teardown(() => (anon.close(), limited.close()));
  const r1 = await anon.request({ op: 'subscribe', channel: 'private-a.1' });
  t.equal(r1.error.code, 'unauthorized');
  t.match(r1.error.message, /token/);
  const r2 = await limited.request({ op: 'subscribe', channel: 'private-b' });
  t.equal(r2.error.code, 'forbidden');
  t.match(r2.error.message, /does not grant/);
  t.equal((await limited.request({ op: 'subscribe', channel: 'private-a.1' })).ok, true);
  const r3 = await anon.request({ op: 'subscribe', channel: 'presence-room' });
  t.equal(r3.error.code, 'unauthorized');
  // auth after connecting
  t.equal((await anon.request({ op: 'auth', token: token('8', { channels: ['presence-*'] }) })).user, '8');
  t.equal((await anon.request({ op: 'subscribe', channel: 'presence-room' })).ok, true);
  const bad = await anon.request({ op: 'auth', token: 'not.a.token' });
  t.equal(bad.ok, false);
  t.match(bad.error.code, /^token_/);
  const other = await anon.request({ op: 'auth', token: token('9') });
  t.equal(other.error.code, 'forbidden', 'cannot switch user on a connection');
  // expired and forged tokens are refused at the upgrade with HTTP 401
  const expired = signJwt({ sub: '1', exp: Math.floor(Date.now() / 1000) - 3600 }, { secret: JWT_SECRET });
  await t.rejects(TestClient.connect(s.url + '/ws?token=' + expired), /401/);
  const forged = signJwt({ sub: '1' }, { secret: 'wrong-secret' });
  await t.rejects(TestClient.connect(s.url + '/ws?token=' + forged), /401/);
});

t.test('presence across shards: one join and one leave per user', async (t) => {
  const s = await startServer(t);
  const tok = (u: string) => token(u, { channels: ['presence-*'], user_info: { name: 'user ' + u } });
  const watcher = await TestClient.connect(s.url + '/ws?token=' + tok('w'));
  t.teardown(() => watcher.close());
  const sub = await watcher.request({ op: 'subscribe', channel: 'presence-lobby' });
  t.same(sub.members, [{ user_id: 'w', user_info: { name: 'user w' } }]);
  const tabs: TestClient[] = [];
  for (let i = 0; i < 4; i++) tabs.push(await TestClient.connect(s.url + '/ws?token=' + tok('42')));
  t.same(new Set(tabs.map((c) => c.welcome.socket_id.split('.')[0])).size, 2, 'user 42 has tabs on both shards');
  for (const c of tabs) t.equal((await c.request({ op: 'subscribe', channel: 'presence-lobby' })).ok, true);
  const join = await watcher.next((f) => f.op === 'join');
  t.same(join.member, { user_id: '42', user_info: { name: 'user 42' } });
  const members = await watcher.request({ op: 'presence', channel: 'presence-lobby' });
  t.same(members.members.map((m: any) => m.user_id).sort(), ['42', 'w']);
  const users = await api(s.http, '/api/channels/presence-lobby/users');
  t.same(users.body.users.map((u: any) => u.user_id).sort(), ['42', 'w']);
  const info = await api(s.http, '/api/channels/presence-lobby');
  t.equal(info.body.subscribers, 5);
  t.equal(info.body.presence, 2);
  for (const c of tabs.slice(0, 3)) c.close();
  await new Promise((r) => setTimeout(r, 200));
  t.equal(watcher.frames.filter((f) => f.op === 'leave').length, 0, 'no leave while a tab remains');
  tabs[3]!.close();
  const leave = await watcher.next((f) => f.op === 'leave');
  t.equal(leave.member.user_id, '42');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(watcher.frames.filter((f) => f.op === 'join').length, 0, 'exactly one join');
  t.equal(watcher.frames.filter((f) => f.op === 'leave').length, 0, 'exactly one leave');
});

t.test('resume after reconnect from the last offset', async (t) => {
  const s = await startServer(t);
  const c1 = await TestClient.connect(s.url + '/ws');
  const sub = await c1.request({ op: 'subscribe', channel: 'feed' });
  for (let i = 1; i <= 3; i++) await api(s.http, '/api/publish', { channel: 'feed', event: 'e', data: i });
  const seen = await c1.waitForMessages('feed', 3);
  const last = { offset: seen[2]!.offset, epoch: sub.epoch };
  c1.close();
  for (let i = 4; i <= 7; i++) await api(s.http, '/api/publish', { channel: 'feed', event: 'e', data: i });
  const c2 = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c2.close());
  const resumed = await c2.request({ op: 'subscribe', channel: 'feed', since: last });
  t.equal(resumed.recovered, true);
  t.same(resumed.publications.map((p: any) => p.data), [4, 5, 6, 7], 'missed messages come back in the reply');
  await api(s.http, '/api/publish', { channel: 'feed', event: 'e', data: 8 });
  const live = await c2.next((f) => f.op === 'message');
  t.equal(live.data, 8);
  t.equal(live.offset, 8);
  // an unknown epoch cannot be recovered: the client is told so
  const c3 = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c3.close());
  const lost = await c3.request({ op: 'subscribe', channel: 'feed', since: { offset: 2, epoch: 'other' } });
  t.equal(lost.recovered, false);
  const hist = await c3.request({ op: 'history', channel: 'feed', limit: 2 });
  t.same(hist.publications.map((p: any) => p.data), [7, 8]);
  // A position past the stream's end (a client that saw what a crashed owner never got to deliver
  // elsewhere): nothing can vouch for it, so the client reloads rather than skips what comes next.
  const c4 = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c4.close());
  const past = await c4.request({ op: 'subscribe', channel: 'feed', since: { offset: 20, epoch: sub.epoch } });
  t.equal(past.ok, true);
  t.equal(past.recovered, false, 'a position past the last offset is not recovered');
  t.equal(past.offset, 8, 'the reply gives where the stream is');
  const here = await c4.request({ op: 'history', channel: 'feed', since: { offset: 8, epoch: sub.epoch } });
  t.equal(here.recovered, true, 'the last offset itself is recovered, with nothing missed');
  t.same(here.publications, []);
});

t.test('publish to a user reaches all of its connections on every shard', async (t) => {
  const s = await startServer(t);
  const a = await TestClient.connect(s.url + '/ws?token=' + token('42'));
  const b = await TestClient.connect(s.url + '/ws?token=' + token('42'));
  const other = await TestClient.connect(s.url + '/ws?token=' + token('43'));
  t.teardown(() => (a.close(), b.close(), other.close()));
  t.not(a.welcome.socket_id.split('.')[0], b.welcome.socket_id.split('.')[0], 'two shards');
  const r = await api(s.http, '/api/publish', { user: '42', event: 'notify', data: { n: 1 }, socket_id: undefined });
  t.equal(r.status, 200);
  const ga = await a.next((f) => f.event === 'notify');
  const gb = await b.next((f) => f.event === 'notify');
  t.same([ga.data, gb.data], [{ n: 1 }, { n: 1 }]);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(other.messages().length, 0);
  // socket_id excludes the sender's own connection
  await api(s.http, '/api/publish', { user: '42', event: 'n2', data: 2, socket_id: a.welcome.socket_id });
  await b.next((f) => f.event === 'n2');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(a.messages().filter((f) => f.event === 'n2').length, 0);
  // disconnect a user through the API
  const d = await api(s.http, '/api/users/42/disconnect', {});
  t.equal(d.status, 200);
  t.equal((await a.waitClose()).code, 4011);
  t.equal((await b.waitClose()).code, 4011);
});

t.test('SO_REUSEPORT acceptor mode serves the same way, and refuses a port in use', async (t) => {
  const s = await startServer(t, { acceptor: 'reuseport' });
  t.equal(s.acceptMode, 'reuseport');
  const a = await TestClient.connect(s.url + '/ws');
  t.teardown(() => a.close());
  await a.request({ op: 'subscribe', channel: 'rp' });
  t.equal((await api(s.http, '/api/publish', { channel: 'rp', event: 'e', data: 1 })).status, 200);
  t.equal((await a.next((f) => f.op === 'message')).data, 1);
  await t.rejects(startServer(t, { acceptor: 'reuseport', port: s.port }), /port is in use/);
  await t.rejects(startServer(t, { acceptor: 'descriptor', port: s.port }), /cannot listen/);
});

t.test('descriptor acceptor: a closed server\'s port is free again at once in the same process', async (t) => {
  // The port 0 → server.port pattern of tests and hot-reloading dev servers. The old connections, closed
  // by the server, linger in TIME_WAIT; a listener bound without SO_REUSEADDR (uSockets at port 0) left
  // them holding the port for a minute.
  const a = await startServer(t);
  t.equal(a.acceptMode, 'descriptor');
  const port = a.port;
  const clients = await Promise.all([1, 2, 3].map(() => TestClient.connect(a.url + '/ws')));
  for (const c of clients) await c.request({ op: 'subscribe', channel: 'again' });
  await a.close();
  await Promise.all(clients.map((c) => c.waitClose()));
  const b = await startServer(t, { port });
  t.equal(b.port, port, 'the same port');
  const c = await TestClient.connect(b.url + '/ws');
  t.teardown(() => c.close());
  await c.request({ op: 'subscribe', channel: 'again' });
  t.equal((await api(b.http, '/api/publish', { channel: 'again', event: 'e', data: 2 })).status, 200);
  t.equal((await c.next((f) => f.op === 'message')).data, 2, 'the new server serves');
});

t.test('RS256/ES256 tokens, verified on the piscina compute pool', async (t) => {
  const { generateKeyPairSync } = await import('node:crypto');
  const kp = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pub = kp.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const priv = kp.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const s = await startServer(t, { jwtSecret: '', jwtPublicKey: pub });
  const es = (sub: string, extra: Record<string, unknown> = {}) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, ...extra }, { privateKey: priv, algorithm: 'ES256' });
  const c = await TestClient.connect(s.url + '/ws?token=' + es('9', { channels: ['private-*'] }));
  t.teardown(() => c.close());
  t.equal(c.welcome.user, '9');
  t.equal((await c.request({ op: 'subscribe', channel: 'private-x' })).ok, true);
  const other = signJwt({ sub: '9' }, { privateKey: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), algorithm: 'ES256' });
  // Checked off-thread, so refused just after the upgrade (error frame, close 4001) rather than with HTTP 401.
  await t.rejects(TestClient.connect(s.url + '/ws?token=' + other), /refused after the upgrade: token_bad_signature/, 'signature by another key refused');
  const hs = signJwt({ sub: '9' }, { secret: JWT_SECRET });
  await t.rejects(TestClient.connect(s.url + '/ws?token=' + hs), /401/, 'HS256 refused at the upgrade when only a public key is configured');
  const anon = await TestClient.connect(s.url + '/ws');
  t.teardown(() => anon.close());
  t.equal((await anon.request({ op: 'auth', token: es('10') })).user, '10', 'auth op verified off-thread');
  const bad = await anon.request({ op: 'auth', token: other });
  t.equal(bad.error.code, 'token_bad_signature', 'the pool answers with the verifier\'s own error code');
});

// ?format=msgpack with the subprotocol rt-actors.json confirmed rt-actors.json, then sent msgpack frames.
t.test('the subprotocol the upgrade confirms is the encoding the socket speaks', async (t) => {
  const s = await startServer(t);
  const open = (query: string, protocols: string[]) =>
    new Promise<{ protocol: string; binary: boolean }>((resolve, reject) => {
      const ws = new WebSocket(`${s.url}/ws${query}`, protocols);
      ws.once('message', (_d, binary) => {
        resolve({ protocol: ws.protocol, binary });
        ws.close();
      });
      ws.once('error', reject);
    });
  t.same(await open('', ['rt-actors.msgpack']), { protocol: 'rt-actors.msgpack', binary: true }, 'rt-actors.msgpack: msgpack');
  t.same(await open('', ['rt-actors.json']), { protocol: 'rt-actors.json', binary: false }, 'rt-actors.json: JSON');
  t.same(await open('?format=json', ['rt-actors.json', 'rt-actors.msgpack']), { protocol: 'rt-actors.json', binary: false }, '?format=json picks JSON of both offered');
  const conflict = await new Promise<{ protocol?: string; binary?: boolean; error?: string }>((resolve) => {
    const ws = new WebSocket(`${s.url}/ws?format=msgpack`, ['rt-actors.json']);
    ws.once('message', (_d, binary) => {
      resolve({ protocol: ws.protocol, binary });
      ws.close();
    });
    ws.once('error', (err) => resolve({ error: err.message }));
  });
  // ws refuses an answer without the subprotocol it asked for; a browser would open with protocol ''.
  t.same(conflict, { error: 'Server sent no subprotocol' }, 'rt-actors.json is not confirmed for a msgpack socket');
});
