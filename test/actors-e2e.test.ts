// Actor features from real clients against a real server: contiguous offsets on join, join/publish
// replies, private pushes, kicks, deadlines and failures over the native protocol and Socket.IO, and
// the same client-message policy on both.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { signJwt } from 'rt-actors';
import { JWT_SECRET, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { nextEvent, sioConnect } from './helpers/sio.js';

const fixtures = fileURLToPath(new URL('./fixtures/actors', import.meta.url));
const examples = fileURLToPath(new URL('../actors', import.meta.url));

t.test('offsets a client sees continue from its subscribe reply when onJoin broadcasts (chat-room)', async (t) => {
  const s = await startServer(t, { actors: examples });
  const a = await TestClient.connect(s.url + '/ws');
  const b = await TestClient.connect(s.url + '/ws');
  t.teardown(() => (a.close(), b.close()));
  const ra = await a.request({ op: 'subscribe', channel: 'chat-gap' });
  const rb = await b.request({ op: 'subscribe', channel: 'chat-gap' });
  t.equal(ra.offset, 1, "the reply's offset is after the joiner's own 'joined' broadcast");
  t.equal(rb.offset, 2);
  const seenByA = await a.next((f) => f.op === 'message' && f.event === 'system');
  t.equal(seenByA.offset, ra.offset + 1, 'a: next offset after its reply');
  t.equal((await a.request({ op: 'publish', channel: 'chat-gap', event: 'message', data: { text: 'hi' } })).ok, true);
  const firstOfB = await b.next((f) => f.op === 'message');
  t.equal(firstOfB.offset, rb.offset + 1, 'b: no gap between its reply and its first message');
});

t.test('a Socket.IO client event on a public channel whose actor has onMessage is decided by the actor, like a native publish', async (t) => {
  const s = await startServer(t, { actors: fixtures });
  const native = await TestClient.connect(s.url + '/ws');
  t.teardown(() => native.close());
  t.equal((await native.request({ op: 'subscribe', channel: 'vault-b', data: { pin: '7' } })).ok, true);
  const sio = await sioConnect(t, s.http);
  const sub = await sio.timeout(5000).emitWithAck('subscribe', { channel: 'vault-b', data: { pin: '7' } });
  t.same(sub, { ok: true });
  const ack = await sio.timeout(5000).emitWithAck('client event', { channel: 'vault-b', event: 'shout', data: 'hey' });
  t.same(ack, { ok: true }, 'accepted: the actor decides, not the whisper rule');
  const got = await native.next((f) => f.op === 'message' && f.event === 'SHOUT');
  t.equal(got.data, 'hey', 'transformed by onMessage');
  // Without an actor's onMessage the whisper policy still applies on public channels.
  t.same(await sio.timeout(5000).emitWithAck('subscribe', { channel: 'plain-public' }), { ok: true });
  const refused = await sio.timeout(5000).emitWithAck('client event', { channel: 'plain-public', event: 'client-x', data: 1 });
  t.equal(refused.ok, false);
  t.equal(refused.error.code, 'forbidden');
});

t.test('join replies, private pushes and kicks over the native protocol and Socket.IO', async (t) => {
  const s = await startServer(t, { actors: fixtures, actorHookTimeout: 0.3 });
  const mod = await TestClient.connect(s.url + '/ws');
  const victim = await TestClient.connect(s.url + '/ws');
  t.teardown(() => (mod.close(), victim.close()));
  const rm = await mod.request({ op: 'subscribe', channel: 'mod-1' });
  t.same(rm.data, { you: mod.welcome.socket_id }, 'join reply in the subscribe reply');
  const rv = await victim.request({ op: 'subscribe', channel: 'mod-1' });
  t.equal(rv.ok, true);
  const sio = await sioConnect(t, s.http);
  const sub = await sio.timeout(5000).emitWithAck('subscribe', { channel: 'mod-1' });
  t.equal(sub.ok, true);
  t.match(sub.data, { you: String }, 'join reply in the Socket.IO ack');
  const sioId = sub.data.you as string;

  // private push: only the target receives it, with no offset
  const dm = await mod.request({ op: 'publish', channel: 'mod-1', event: 'dm', data: { to: victim.welcome.socket_id } });
  t.same(dm.data, { sent: true }, 'publish reply data');
  t.equal(dm.offset, undefined, 'nothing was published');
  const got = await victim.next((f) => f.op === 'message' && f.event === 'dm');
  t.same(got, { op: 'message', channel: 'mod-1', event: 'dm', data: { from: mod.welcome.socket_id } });
  const sioDm = nextEvent(sio, 'dm');
  await mod.request({ op: 'publish', channel: 'mod-1', event: 'dm', data: { to: sioId } });
  t.same(await sioDm, ['mod-1', { from: mod.welcome.socket_id }], 'Socket.IO: (event, channel, data)');
  // a later broadcast reaches the others, not the pushes' target twice
  await mod.request({ op: 'publish', channel: 'mod-1', event: 'note', data: 1 });
  await victim.next((f) => f.event === 'note');
  t.equal(victim.frames.filter((f) => f.event === 'dm').length, 0, 'one push, delivered once');

  // kick: the client is told, stops receiving, and may not publish
  const kicked = await mod.request({ op: 'publish', channel: 'mod-1', event: 'kick', data: { to: victim.welcome.socket_id } });
  t.same(kicked.data, { kicked: true });
  t.same(await victim.next((f) => f.op === 'kicked'), { op: 'kicked', channel: 'mod-1', reason: 'kicked by a moderator' });
  const after = await victim.request({ op: 'publish', channel: 'mod-1', event: 'note', data: 2 });
  t.equal(after.error.code, 'not_subscribed');
  const sioKicked = nextEvent(sio, 'kicked');
  await mod.request({ op: 'publish', channel: 'mod-1', event: 'kick', data: { to: sioId } });
  t.same(await sioKicked, ['mod-1', { reason: 'kicked by a moderator' }]);
  t.equal((await victim.request({ op: 'subscribe', channel: 'mod-1' })).ok, true, 'a kicked client may subscribe again');

  t.equal((await sio.timeout(5000).emitWithAck('subscribe', { channel: 'mod-1' })).ok, true, 'a kicked Socket.IO client may subscribe again');
  // failures: a clear code, and the channel keeps working
  const hang = await mod.request({ op: 'publish', channel: 'mod-1', event: 'hang', data: {} });
  t.equal(hang.error.code, 'actor_timeout');
  const crash = await mod.request({ op: 'publish', channel: 'mod-1', event: 'crash', data: {} });
  t.equal(crash.error.code, 'actor_failed');
  const sioCrash = await sio.timeout(5000).emitWithAck('client event', { channel: 'mod-1', event: 'crash', data: {} });
  t.same(sioCrash, { ok: false, error: { code: 'actor_failed', message: 'the channel actor failed in onMessage; see the server log' } }, "the actor's code in the ack");
  const fine = await mod.request({ op: 'publish', channel: 'mod-1', event: 'note', data: 3 });
  t.equal(fine.ok, true, 'the channel still works');
  // Three failures in a row: the actor restarted with fresh state. /metrics gauges are refreshed every 250 ms.
  t.equal(await metricTotal(s.http, 'rt_actor_hook_failures_total', 3), 3, 'failures counted in /metrics');
  t.equal(await metricTotal(s.http, 'rt_actor_restarts_total', 1), 1, 'the restart counted in /metrics');
});

t.test('a kicked presence member is told it was kicked, not sent its own leave, when another member shares its thread', async (t) => {
  // One shard: the moderator and the victim are on the same thread, the one the leave is sent to.
  const s = await startServer(t, { actors: fixtures, workers: 1 });
  const token = (sub: string) => signJwt({ sub, channels: ['presence-mod-*'], exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });
  const mod = await TestClient.connect(`${s.url}/ws?token=${token('mod')}`);
  const victim = await TestClient.connect(`${s.url}/ws?token=${token('victim')}`);
  t.teardown(() => (mod.close(), victim.close()));
  for (const c of [mod, victim]) {
    t.equal((await c.request({ op: 'subscribe', channel: 'presence-mod-1' })).ok, true);
    t.equal((await c.request({ op: 'subscribe', channel: 'mod-after' })).ok, true);
  }
  const kicked = await mod.request({ op: 'publish', channel: 'presence-mod-1', event: 'kick', data: { to: victim.welcome.socket_id } });
  t.same(kicked.data, { kicked: true });
  t.same(await victim.next((f) => f.op === 'kicked'), { op: 'kicked', channel: 'presence-mod-1', reason: 'kicked by a moderator' });
  t.same((await mod.next((f) => f.op === 'leave')).member, { user_id: 'victim' }, 'the others see the member leave');
  // A publication after it all, from the same thread: once the victim has it, anything the kick caused has arrived.
  await mod.request({ op: 'publish', channel: 'mod-after', event: 'sentinel', data: 1 });
  await victim.next((f) => f.event === 'sentinel');
  t.same(victim.frames.filter((f) => f.op === 'leave'), [], 'the kicked client got no leave of its own');
});

/** Sum of a metric over threads, polled until it reaches `want` (or a deadline passes). */
async function metricTotal(base: string, name: string, want: number): Promise<number> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const text = await (await fetch(base + '/metrics')).text();
    const n = text.split('\n').filter((l) => l.startsWith(name + '{') || l.startsWith(name + ' ')).reduce((sum, l) => sum + Number(l.split(' ')[1]), 0);
    if (n >= want || Date.now() > deadline) return n;
    await new Promise((r) => setTimeout(r, 50));
  }
}
