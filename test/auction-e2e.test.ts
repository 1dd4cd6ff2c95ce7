// The shipped auction (actors/auction.ts) served by a real server, from the native protocol (ws),
// socket.io-client (emit with ack, and a laravel-echo whisper-style client event) and the memory client.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { signJwt } from 'rt-actors';
import { startServer, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { nextEvent, sioConnect } from './helpers/sio.js';

const examples = fileURLToPath(new URL('../actors', import.meta.url));
const token = (sub: string) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });

t.test('native protocol: state on subscribe, coded refusals, replies, outbid, closed once', async (t) => {
  const s = await startServer(t, { actors: examples });
  const alice = await TestClient.connect(s.url + '/ws?token=' + token('alice'));
  const bob = await TestClient.connect(s.url + '/ws?token=' + token('bob'));
  const watcher = await TestClient.connect(s.url + '/ws');
  t.teardown(() => (alice.close(), bob.close(), watcher.close()));
  const ch = 'auction-ws';
  const rw = await watcher.request({ op: 'subscribe', channel: ch });
  t.same(rw.data, { highest: 0, bidder: null, closesAt: null, closed: false });
  await alice.request({ op: 'subscribe', channel: ch });
  await bob.request({ op: 'subscribe', channel: ch });
  const bid = (c: TestClient, data: unknown) => c.request({ op: 'publish', channel: ch, event: 'bid', data });

  t.equal((await bid(alice, { amount: 0 })).error.code, 'bad_bid');
  t.equal((await bid(alice, { amount: 'x' })).error.code, 'bad_bid');
  t.equal((await bid(alice, { amount: 5, closeAfterMs: 5 })).error.code, 'bad_bid');
  const first = await bid(alice, { amount: 5, closeAfterMs: 1000 });
  t.same(first.data, { accepted: true, amount: 5 });
  t.equal((await bid(bob, { amount: 5 })).error.code, 'bid_too_low');
  t.same((await bid(bob, { amount: 6 })).data, { accepted: true, amount: 6 });
  const outbid = await alice.next((f) => f.event === 'outbid');
  t.same(outbid, { op: 'message', channel: ch, event: 'outbid', data: { amount: 6 } }, 'private, no offset');

  const closed = await watcher.next((f) => f.event === 'closed', 10_000);
  t.same(closed.data, { winner: 'bob', amount: 6 });
  t.equal((await bid(alice, { amount: 100 })).error.code, 'auction_closed');
  const seen = watcher.frames.filter((f) => f.op === 'message');
  t.same(seen.map((f) => [f.event, f.offset]), [['bid', 1], ['bid', 2]], 'bids in order, with offsets');
  t.equal(closed.offset, 3);
  t.equal(watcher.frames.filter((f) => f.event === 'outbid').length, 0, 'nobody else saw the outbid');
  // a sentinel after the close: had a second `closed` been sent, it would precede it
  const late = await TestClient.connect(s.url + '/ws');
  t.teardown(() => late.close());
  const rl = await late.request({ op: 'subscribe', channel: ch });
  t.match(rl.data, { highest: 6, bidder: 'bob', closed: true });
  t.equal(rl.offset, 3);
});

t.test('Socket.IO: subscribe ack with the state, emit with ack, whisper-style client-bid, same codes', async (t) => {
  const s = await startServer(t, { actors: examples });
  const ch = 'auction-sio';
  const a = await sioConnect(t, s.http);
  const b = await sioConnect(t, s.http);
  const native = await TestClient.connect(s.url + '/ws');
  t.teardown(() => native.close());
  const sub = await a.timeout(5000).emitWithAck('subscribe', { channel: ch });
  t.same(sub, { ok: true, data: { highest: 0, bidder: null, closesAt: null, closed: false } });
  t.equal((await b.timeout(5000).emitWithAck('subscribe', { channel: ch })).ok, true);
  await native.request({ op: 'subscribe', channel: ch });
  const bid = (c: typeof a, data: unknown, event = 'bid') => c.timeout(5000).emitWithAck('client event', { channel: ch, event, data });

  t.same(await bid(a, { amount: -3 }), { ok: false, error: { code: 'bad_bid', message: 'amount must be a positive number' } });
  t.same(await bid(a, { amount: 10, closeAfterMs: 1000 }), { ok: true, data: { accepted: true, amount: 10 } });
  t.equal((await bid(b, { amount: 9 })).error.code, 'bid_too_low');
  const outbid = nextEvent(a, 'outbid');
  const bidSeen = nextEvent(a, 'bid', (_c, d) => d.amount === 11);
  // Laravel Echo's whisper('bid', …) sends this, without an ack.
  b.emit('client event', { channel: ch, event: 'client-bid', data: { amount: 11 } });
  t.same(await outbid, [ch, { amount: 11 }], 'outbid privately, as (event, channel, data)');
  // With connection state recovery on (the default) a delivery carries its offset as a last argument.
  const seen = await bidSeen;
  t.same(seen.slice(0, 2), [ch, { amount: 11, bidder: b.id }], 'the whisper-style bid was accepted and broadcast');
  t.equal(typeof seen[2], 'string', 'with its recovery offset');
  const nb = await native.next((f) => f.event === 'bid' && f.data.amount === 11);
  t.equal(nb.offset, 2, 'native subscribers see it with its offset');
  const [, closed] = await nextEvent(b, 'closed', () => true, 10_000);
  t.same(closed, { winner: b.id, amount: 11 });
  t.equal((await bid(a, { amount: 50 })).error.code, 'auction_closed');
});

t.test('memory client: subscribe data, publish reply, coded refusals', async (t) => {
  const s = await startServer(t, { actors: examples });
  const ch = 'auction-mem';
  const m1 = s.connect({ user: 'm1' });
  const m2 = s.connect({ user: 'm2' });
  t.teardown(() => (m1.close(), m2.close()));
  const r = await m1.subscribe(ch);
  t.same(r.data, { highest: 0, bidder: null, closesAt: null, closed: false });
  await m2.subscribe(ch);
  const outbid = new Promise((resolve) => m1.on('message', (m) => m.event === 'outbid' && resolve(m)));
  t.same((await m1.publish(ch, 'bid', { amount: 1 })).data, { accepted: true, amount: 1 });
  await t.rejects(m2.publish(ch, 'bid', { amount: 1 }), { code: 'bid_too_low' });
  t.same((await m2.publish(ch, 'bid', { amount: 2 })).data, { accepted: true, amount: 2 });
  t.same(await outbid, { channel: ch, event: 'outbid', data: { amount: 2 }, offset: undefined });
});
