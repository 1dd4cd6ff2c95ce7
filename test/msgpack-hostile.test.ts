// Client msgpack must decode to JSON-compatible values only: a frame carrying any msgpack extension
// (Date, RegExp, Set, Error, typed arrays, undefined, …; a Map is a plain msgpack map and decodes to an object) is a bad_frame, and nothing of it reaches
// subscribers. Exercised against a running server with hand-picked hostile frames and fast-check.
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

// The encoder a hostile client would use: msgpackr with every extension it knows turned on.
const hostile = new Packr({ moreTypes: true, structuredClone: true, useRecords: false });
const RUNS = Number(process.env.FUZZ_RUNS ?? 150);

/** A server, a msgpack publisher and a JSON subscriber, both subscribed to `channel`. */
async function msgpackPublisher(t: Test, channel: string): Promise<{ pub: TestClient; sub: TestClient }> {
  const s = await startServer(t, { clientPublish: 'all', rateLimit: 0 });
  const pub = await TestClient.connect(s.url + '/ws?format=msgpack', { msgpack: true });
  const sub = await TestClient.connect(s.url + '/ws');
  t.teardown(() => (pub.close(), sub.close()));
  t.equal((await sub.request({ op: 'subscribe', channel })).ok, true);
  t.equal((await pub.request({ op: 'subscribe', channel })).ok, true);
  return { pub, sub };
}

/** A msgpack fixstr (under 32 bytes), for frames written byte by byte. */
function str(text: string): Buffer {
  return Buffer.concat([Buffer.from([0xa0 | text.length]), Buffer.from(text)]);
}

function isPlain(v: unknown): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') return true;
  if (Array.isArray(v)) return v.every(isPlain);
  if (v instanceof Uint8Array) return v.constructor === Uint8Array || v.constructor === Buffer;
  if (typeof v === 'object' && [Object.prototype, null].includes(Object.getPrototypeOf(v))) return Object.values(v as object).every(isPlain);
  return false;
}

t.test('extension types in a /ws?format=msgpack frame are refused as bad_frame', async (t) => {
  const { pub, sub } = await msgpackPublisher(t, 'mp');

  const samples: [string, unknown][] = [
    ['Date', new Date(0)],
    ['RegExp', /a+/g],
    ['Set', new Set([1, 2])],
    ['Error', new Error('boom')],
    ['undefined', undefined],
    ['Float64Array', new Float64Array([1.5])],
    ['nested Date', { a: [{ b: new Date(1) }] }],
  ];
  let ref = 1000;
  for (const [name, value] of samples) {
    const r = ++ref;
    pub.sendRaw(hostile.pack({ op: 'publish', ref: r, channel: 'mp', event: 'e', data: value }));
    // The reply echoes the ref, so a client library can fail the right request.
    const reply = await pub.next((f) => f.op === 'reply' && f.ref === r);
    t.equal(reply.ok, false, `${name} refused`);
    t.equal(reply.error.code, 'bad_frame', `${name}: bad_frame`);
    t.match(reply.error.message, /extension types/, `${name}: the message says why`);
  }
  // 0xC1 is the one byte msgpack never uses (msgpackr decodes it to an object of its own).
  const c1 = hostile.pack({ op: 'publish', ref: 2000, channel: 'mp', event: 'e', data: null });
  t.equal(c1[c1.length - 1], 0xc0, 'data (last) is nil');
  c1[c1.length - 1] = 0xc1;
  pub.sendRaw(c1);
  const c1Reply = await pub.next((f) => f.op === 'reply' && f.ref === 2000);
  t.match(c1Reply.error, { code: 'bad_frame', message: /the byte 0xC1 \(never used in msgpack\)/ }, '0xC1 refused, named as what it is');
  // An extension at the top level (not an object) is refused too, without a ref to echo.
  pub.sendRaw(hostile.pack(new Set([{ op: 'ping' }])));
  const err = await pub.next((f) => f.op === 'error');
  t.equal(err.error.code, 'bad_frame');

  // Nesting deeper than any honest frame is refused rather than walked.
  let deep: unknown = 1;
  for (let i = 0; i < 200; i++) deep = [deep];
  const r = ++ref;
  pub.sendRaw(hostile.pack({ op: 'publish', ref: r, channel: 'mp', event: 'e', data: deep }));
  t.equal((await pub.next((f) => f.op === 'reply' && f.ref === r)).error.code, 'bad_frame');

  // Nothing refused reached the subscriber: the sentinel published after them is the first message.
  t.equal((await pub.request({ op: 'publish', channel: 'mp', event: 'sentinel', data: { bin: Buffer.from([1, 2]) } })).ok, true);
  const first = await sub.next((f) => f.op === 'message');
  t.equal(first.event, 'sentinel');
  t.equal(sub.messages('mp').length, 0);
});

t.test('fuzz: any value with an extension type is refused, plain values are delivered', async (t) => {
  const s = await startServer(t, { clientPublish: 'all', rateLimit: 0, maxChannelsPerConnection: 10 });
  const open = async () => {
    const c = await TestClient.connect(s.url + '/ws?format=msgpack', { msgpack: true });
    t.equal((await c.request({ op: 'subscribe', channel: 'fz' })).ok, true);
    return c;
  };
  let pub = await open();
  t.teardown(() => pub.close());
  const leaf = fc.oneof(
    fc.jsonValue({ maxDepth: 1 }),
    fc.date({ noInvalidDate: true }),
    fc.constant(undefined),
    fc.string().map((x) => new RegExp(x.replace(/[\\^$.*+?()[\]{}|]/g, ''))),
    fc.array(fc.integer()).map((a) => new Set(a)),
    fc.string().map((m) => new Error(m)),
    fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)),
    fc.float32Array({ maxLength: 4 }),
  );
  const value = fc.letrec((tie) => ({
    v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), tie('v'), { maxKeys: 3 })),
  })).v;
  let ref = 0;
  let refused = 0;
  let accepted = 0;
  await fc.assert(
    fc.asyncProperty(value, async (data) => {
      const r = ++ref;
      pub.sendRaw(hostile.pack({ op: 'publish', ref: r, channel: 'fz', event: 'e', data }));
      const reply = await pub.next((f) => f.op === 'reply' && f.ref === r);
      if (isPlain(data)) {
        accepted++;
        return reply.ok === true;
      }
      // The server closes a connection after 20 malformed frames; start afresh before that.
      if (++refused % 15 === 0) {
        pub.close();
        pub = await open();
      }
      return reply.ok === false && reply.error.code === 'bad_frame';
    }),
    { numRuns: RUNS },
  );
  t.ok(refused > 0 && accepted > 0, `both kinds were generated (${refused} refused, ${accepted} accepted)`);
  t.equal((await pub.request({ op: 'ping' })).pong, true, 'the connection still serves');
});

t.test('a msgpack frame msgpackr refuses as a whole still answers its request by ref', async (t) => {
  const { pub, sub } = await msgpackPublisher(t, 'whole');

  const publish = (r: number, ...extra: Buffer[]) =>
    Buffer.concat([Buffer.from([0x85]), str('op'), str('publish'), str('channel'), str('whole'), str('event'), str('e'), str('ref'), Buffer.from([0xcd, r >> 8, r & 0xff]), ...extra]);
  const cases: [string, Buffer, RegExp][] = [
    // ext type 42 (fixext 1), which msgpackr has no decoder for
    ['unknown extension type', publish(301, str('data'), Buffer.from([0xd4, 42, 0])), /extension type 42/],
    ['binary map key', publish(302, Buffer.from([0xc4, 1, 0x41, 1])), /map key/],
    ['array map key', publish(303, Buffer.from([0x91, 1, 1])), /map key/],
    ['cut short', publish(304, str('data'), Buffer.from([0xa5, 0x61])), /not valid msgpack/],
  ];
  // The ref may come after what msgpackr refuses: it is read past it.
  const refLast = Buffer.concat([Buffer.from([0x82]), Buffer.from([0xc4, 1, 0x41, 1]), str('ref'), Buffer.from([0xcd, 0x01, 0x31])]);
  cases.push(['ref after a binary key', refLast, /map key/]);
  for (const [name, bytes, message] of cases) {
    const r = bytes === refLast ? 305 : 301 + cases.findIndex(([n]) => n === name);
    pub.sendRaw(bytes);
    // The next frame is the reply to that request, not an unsolicited error the client cannot match.
    const reply = await pub.next((f) => f.op === 'reply' || f.op === 'error');
    t.match(reply, { op: 'reply', ref: r, ok: false, error: { code: 'bad_frame', message } }, `${name}: answered by ref`);
  }
  // A frame that is no map still gets an unsolicited error: there is no request to answer.
  pub.sendRaw(Buffer.from([0x92, 0xd4, 42, 0]));
  t.match(await pub.next((f) => f.op === 'reply' || f.op === 'error'), { op: 'error', error: { code: 'bad_frame' } });

  // None of them was published: the sentinel after them is the subscriber's first message.
  t.equal((await pub.request({ op: 'publish', channel: 'whole', event: 'sentinel', data: 1 })).ok, true);
  t.equal((await sub.next((f) => f.op === 'message')).event, 'sentinel');
});

t.test('a msgpack "__proto__" map key is refused by ref, not delivered renamed', async (t) => {
  const { pub, sub } = await msgpackPublisher(t, 'proto');

  // msgpackr decodes this key as "__proto_": the subscriber got { "__proto_": 1, "a": 2 }.
  const data = Buffer.concat([Buffer.from([0x82]), str('__proto__'), Buffer.from([1]), str('a'), Buffer.from([2])]);
  pub.sendRaw(Buffer.concat([Buffer.from([0x85]), str('op'), str('publish'), str('ref'), Buffer.from([7]), str('channel'), str('proto'), str('event'), str('e'), str('data'), data]));
  t.match(await pub.next((f) => f.op === 'reply' && f.ref === 7), { ok: false, error: { code: 'bad_frame', message: /"__proto__"/ } });
  // The same text as a value (not a key) is carried as it is.
  t.equal((await pub.request({ op: 'publish', channel: 'proto', event: 'value', data: { a: '__proto__' } })).ok, true);
  const first = await sub.next((f) => f.op === 'message');
  t.match(first, { event: 'value', data: { a: '__proto__' } }, 'the refused publish reached nobody; a "__proto__" value passes');
});
