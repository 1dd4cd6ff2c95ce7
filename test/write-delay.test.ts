// --write-delay: a shard holds publications that come closer together than the window and writes them
// together. Holding may change how many socket writes carry them, never what a client sees: every
// publication arrives once, in order; a resume or a presence event while some are held does not reorder
// or repeat them; a graceful stop delivers what is held before the close frame.
import t from 'tap';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

const token = (sub: string) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, channels: ['presence-*'] }, { secret: JWT_SECRET });

t.test('bursts through a write window: every publication once, in order, on both shards', async (t) => {
  const s = await startServer(t, { writeDelay: 20 });
  const clients: TestClient[] = [];
  for (let i = 0; i < 20; i++) clients.push(await TestClient.connect(s.url + '/ws'));
  t.teardown(() => clients.forEach((c) => c.close()));
  t.same(new Set(clients.map((c) => c.welcome.socket_id.split('.')[0])).size, 2, 'clients on both shards');
  for (const c of clients) t.equal((await c.request({ op: 'subscribe', channel: 'burst' })).ok, true);
  const N = 200;
  // Unawaited: the publishes overlap, so most of them land inside a window.
  await Promise.all(Array.from({ length: 4 }, (_, lane) => (async () => {
    for (let i = lane; i < N; i += 4) await api(s.http, '/api/publish', { channel: 'burst', event: 'e', data: i });
  })()));
  for (const [k, c] of clients.entries()) {
    const got = await c.waitForMessages('burst', N);
    const offsets = got.map((f) => f.offset);
    if (!offsets.every((o, i) => o === i + 1)) t.fail(`client ${k}: offsets ${offsets.join(',')}`);
    if (new Set(got.map((f) => f.data)).size !== N) t.fail(`client ${k}: a publication repeated or missing`);
  }
  t.pass(`${clients.length} clients got ${N} publications each, offsets 1..${N}`);
});

t.test('a resume answered while publications are held gets each of them once', async (t) => {
  // One shard and a long window, so the publications after the first are still held when the
  // second client's subscription is answered.
  const s = await startServer(t, { workers: 1, writeDelay: 1000 });
  const a = await TestClient.connect(s.url + '/ws');
  const b = await TestClient.connect(s.url + '/ws');
  t.teardown(() => (a.close(), b.close()));
  const sub = await a.request({ op: 'subscribe', channel: 'feed' });
  await api(s.http, '/api/publish', { channel: 'feed', event: 'e', data: 1 });
  const first = await a.next((f) => f.op === 'message' && f.data === 1);
  for (let i = 2; i <= 5; i++) await api(s.http, '/api/publish', { channel: 'feed', event: 'e', data: i });
  const resumed = await b.request({ op: 'subscribe', channel: 'feed', since: { offset: first.offset, epoch: sub.epoch } });
  t.equal(resumed.recovered, true);
  t.same(resumed.publications.map((p: any) => p.data), [2, 3, 4, 5], 'the held publications come in the reply');
  await api(s.http, '/api/publish', { channel: 'feed', event: 'e', data: 'sentinel' });
  await b.next((f) => f.op === 'message' && f.data === 'sentinel');
  t.same(b.messages('feed').map((f) => f.data), [], 'nothing before the sentinel came twice');
  t.same((await a.waitForMessages('feed', 5)).map((f) => f.data), [2, 3, 4, 5, 'sentinel'], 'the first subscriber got them all, in order');
});

t.test('a presence event does not overtake held publications', async (t) => {
  const s = await startServer(t, { workers: 1, writeDelay: 1000 });
  const watcher = await TestClient.connect(s.url + '/ws?token=' + token('1'));
  t.teardown(() => watcher.close());
  const log: string[] = [];
  watcher.ws.on('message', (raw) => {
    const f = JSON.parse(raw.toString());
    log.push(f.op === 'message' ? `message ${f.data}` : f.op === 'join' ? `join ${f.member.user_id}` : f.op);
  });
  t.equal((await watcher.request({ op: 'subscribe', channel: 'presence-room' })).ok, true);
  await api(s.http, '/api/publish', { channel: 'presence-room', event: 'e', data: 1 });
  await watcher.next((f) => f.op === 'message' && f.data === 1);
  await api(s.http, '/api/publish', { channel: 'presence-room', event: 'e', data: 2 });
  const joiner = await TestClient.connect(s.url + '/ws?token=' + token('2'));
  t.teardown(() => joiner.close());
  t.equal((await joiner.request({ op: 'subscribe', channel: 'presence-room' })).ok, true);
  await watcher.next((f) => f.op === 'join' && f.member.user_id === '2');
  t.same(log.filter((l) => l !== 'reply'), ['message 1', 'message 2', 'join 2'], 'the held publication came before the join');
});

t.test('a graceful stop delivers held publications before closing', async (t) => {
  const s = await startServer(t, { workers: 1, writeDelay: 1000 });
  const c = await TestClient.connect(s.url + '/ws');
  t.equal((await c.request({ op: 'subscribe', channel: 'last-words' })).ok, true);
  await api(s.http, '/api/publish', { channel: 'last-words', event: 'e', data: 1 });
  await c.next((f) => f.op === 'message' && f.data === 1);
  await api(s.http, '/api/publish', { channel: 'last-words', event: 'e', data: 2 });
  await s.close();
  const closed = await c.waitClose();
  t.equal(closed.code, 1012, 'closed for the shutdown (service restart)');
  t.same(c.messages('last-words').map((f) => f.data), [2], 'the held publication arrived before the close');
});
