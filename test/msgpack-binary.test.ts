// Binary values a msgpack client publishes, end to end: what later readers of the channel get of them
// (history, resume), and what subscribers of the other encodings get.
import t from 'tap';
import { pack } from 'msgpackr';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { SseStream } from './helpers/http-stream.js';
import { pusherClient, pusherOptions, subscribed, nextOn } from './helpers/pusher.js';

t.test('a binary published by a msgpack client stays readable in history on the thread that decoded it', async (t) => {
  // One shard: the channel's owner is the thread that decoded the frame, so history keeps the very
  // value decoded from the WebSocket message (with two, a ring frame may copy it first).
  const s = await startServer(t, { clientPublish: 'all', workers: 1 });
  const c = await TestClient.connect(s.url + '/ws?format=msgpack', { msgpack: true });
  t.teardown(() => c.close());
  t.equal((await c.request({ op: 'subscribe', channel: 'bin' })).ok, true);
  const bytes = Buffer.alloc(300, 7);
  bytes[0] = 1;
  const pub = await c.request({ op: 'publish', channel: 'bin', event: 'blob', data: { b: bytes } });
  t.equal(pub.ok, true);
  const live = await c.next((f) => f.op === 'message' && f.channel === 'bin');
  t.same(Buffer.from(live.data.b), bytes, 'live delivery carries the bytes');

  const h = await c.request({ op: 'history', channel: 'bin' });
  t.equal(h.ok, true, `history answers (got ${JSON.stringify(h.error)})`);
  t.same(Buffer.from(h.publications[0].data.b), bytes, 'history carries the same bytes');
  const resumed = await TestClient.connect(s.url + '/ws?format=msgpack', { msgpack: true });
  t.teardown(() => resumed.close());
  const r = await resumed.request({ op: 'subscribe', channel: 'bin', since: { offset: 0, epoch: h.epoch } });
  t.equal(r.ok, true, `resume answers (got ${JSON.stringify(r.error)})`);
  t.equal(r.recovered, true);
  t.same(Buffer.from(r.publications[0].data.b), bytes, 'a resume replays the same bytes');
});

t.test('JSON and SSE subscribers get a msgpack binary as {"type":"Buffer","data":[…]}', async (t) => {
  // One shard: the subscribers' codecs encode the very value decoded from the publisher's frame.
  const s = await startServer(t, { clientPublish: 'all', workers: 1 });
  const pub = await TestClient.connect(s.url + '/ws?format=msgpack', { msgpack: true });
  const json = await TestClient.connect(s.url + '/ws');
  const sse = await SseStream.open(s.http + '/sse?channels=bin');
  t.teardown(() => (pub.close(), json.close(), sse.close()));
  t.equal((await pub.request({ op: 'subscribe', channel: 'bin' })).ok, true);
  t.equal((await json.request({ op: 'subscribe', channel: 'bin' })).ok, true);
  await sse.until((evs) => evs.some((e) => e.event === 'rt:subscribed'), 8000, 'the SSE subscription');
  t.equal((await pub.request({ op: 'publish', channel: 'bin', event: 'blob', data: { b: Buffer.from([1, 2, 3]) } })).ok, true);
  const expected = { b: { type: 'Buffer', data: [1, 2, 3] } };
  const live = await json.next((f) => f.op === 'message' && f.channel === 'bin');
  t.same(live.data, expected, 'the JSON subscriber');
  const ev = await sse.until((evs) => evs.find((e) => e.event === 'blob'), 8000, 'the publication over SSE');
  t.same(JSON.parse(ev.data).data, expected, 'the SSE subscriber');
  const h = await json.request({ op: 'history', channel: 'bin' });
  t.same(h.publications[0].data, expected, 'history read by a JSON client');
});

t.test('a Pusher subscriber gets a binary as {"type":"Buffer","data":[…]}, top-level or nested', async (t) => {
  const s = await startServer(t, { clientPublish: 'all', ...pusherOptions() });
  const pub = await TestClient.connect(s.url + '/ws?format=msgpack', { msgpack: true });
  t.teardown(() => pub.close());
  const p = pusherClient(t, s.port);
  const { channel } = await subscribed(p, 'bin');
  t.equal((await pub.request({ op: 'subscribe', channel: 'bin' })).ok, true);
  const top = nextOn<unknown>(channel, 'top');
  const nested = nextOn<unknown>(channel, 'nested');
  t.equal((await pub.request({ op: 'publish', channel: 'bin', event: 'top', data: Buffer.from([1, 2, 3]) })).ok, true);
  t.equal((await pub.request({ op: 'publish', channel: 'bin', event: 'nested', data: { b: Buffer.from([1, 2, 3]) } })).ok, true);
  t.same(await top, { type: 'Buffer', data: [1, 2, 3] }, 'top-level binary');
  t.same(await nested, { b: { type: 'Buffer', data: [1, 2, 3] } }, 'nested binary');
});

/** A publish frame whose `data` is the msgpack bytes given (as a client of another language may write). */
function publishWithData(ref: number, channel: string, event: string, data: Buffer): Buffer {
  const head = pack({ op: 'publish', ref, channel, event });
  const out = Buffer.concat([head, pack('data'), data]);
  // msgpackr writes the 4-field map as map16 (0xde, count in bytes 1-2): one field more.
  if (out[0] === 0xde) out[2] = 5;
  else out[0] = 0x85;
  return out;
}

t.test('what msgpack carries and JSON does not, as docs/protocol.md says; valid msgpack refused is named', async (t) => {
  const s = await startServer(t, { clientPublish: 'all' });
  const pub = await TestClient.connect(s.url + '/ws?format=msgpack', { msgpack: true });
  const json = await TestClient.connect(s.url + '/ws');
  t.teardown(() => (pub.close(), json.close()));
  t.equal((await pub.request({ op: 'subscribe', channel: 'conv' })).ok, true);
  t.equal((await json.request({ op: 'subscribe', channel: 'conv' })).ok, true);
  const cases: [string, string, unknown, unknown][] = [
    ['nan', 'cb7ff8000000000000', NaN, null],
    ['inf', 'cb7ff0000000000000', Infinity, null],
    ['u64', 'cf1000000000000001', 2 ** 60, 2 ** 60],
    ['keys', '8301a161c3a162c0a163', { 1: 'a', true: 'b', null: 'c' }, { 1: 'a', true: 'b', null: 'c' }],
  ];
  let ref = 100;
  for (const [event, hex, forMsgpack, forJson] of cases) {
    pub.sendRaw(publishWithData(++ref, 'conv', event, Buffer.from(hex, 'hex')));
    const r = ref;
    t.equal((await pub.next((f) => f.op === 'reply' && f.ref === r)).ok, true, `${event} published`);
    t.same((await pub.next((f) => f.op === 'message' && f.event === event)).data, forMsgpack, `${event}: msgpack subscriber`);
    t.same((await json.next((f) => f.op === 'message' && f.event === event)).data, forJson, `${event}: JSON subscriber`);
  }
  const refused: [string, RegExp][] = [
    ['d40501', /extension type 5 is not accepted/],
    ['c7030501', /extension type 5 is not accepted/],
    ['81c4016101', /map key must be a string, number, boolean or nil/],
    ['819101a178', /map key must be a string, number, boolean or nil/],
  ];
  for (const [hex, message] of refused) {
    pub.sendRaw(publishWithData(++ref, 'conv', 'bad', Buffer.from(hex, 'hex')));
    // Refused as a whole, yet answered as the request's reply: its ref is read past what msgpackr refuses.
    const r = ref;
    const err = await pub.next((f) => f.op === 'reply' && f.ref === r);
    t.match(err.error, { code: 'bad_frame', message }, `${hex}: says why`);
  }
  // Nothing refused reached the subscriber: a sentinel published after comes next.
  t.equal((await pub.request({ op: 'publish', channel: 'conv', event: 'sentinel', data: 1 })).ok, true);
  await json.next((f) => f.event === 'sentinel');
  t.notOk(json.messages('conv').some((f) => f.event === 'bad'), 'no refused frame was published');
});
