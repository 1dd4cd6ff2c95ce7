// Native frames, field by field: `--max-whisper-size` counts a client publish's payload (`data`), not
// the frame around it, the same on every transport; a field of the wrong type or one the op does not
// have is refused with `bad_frame` naming it, rather than read as its default — a misspelt or mistyped
// `exclude_self` used to echo the publication to its sender. Nothing refused is published.
import t from 'tap';
import { signJwt } from 'rt-actors';
import { JWT_SECRET, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { request } from './helpers/http-stream.js';

const token = signJwt({ sub: 'u1', channels: ['private-*'], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
const LIMIT = 16;
const s = await startServer(t, { maxWhisperSize: LIMIT });

for (const format of ['json', 'msgpack'] as const) {
  t.test(`/ws (${format}): the whisper limit is the payload's, and bad fields are refused by name`, async (t) => {
    const msgpack = format === 'msgpack';
    const c = await TestClient.connect(`${s.url}/ws?token=${token}${msgpack ? '&format=msgpack' : ''}`, { msgpack });
    t.teardown(() => c.close());
    const ch = `private-fields-${format}`;
    t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true, 'subscribed');
    const publish = (extra: Record<string, unknown>) => c.request({ op: 'publish', channel: ch, event: 'e', ...extra });

    // The frame is well over 16 bytes; its payload is not.
    t.equal((await publish({ data: 1 })).ok, true, 'a 1-byte payload in a frame over the limit is accepted');
    t.equal((await publish({ data: 'x'.repeat(LIMIT - 2) })).ok, true, 'a payload of exactly the limit is accepted');
    const over = await publish({ data: 'x'.repeat(LIMIT - 1) });
    t.match(over, { ok: false, error: { code: 'payload_too_large', message: /limited to 16 bytes/ } }, 'one byte over is refused');

    for (const [extra, why] of [
      [{ data: 2, exclude_self: 'yes' }, /"exclude_self" must be true or false/],
      [{ data: 2, exclude_self: 1 }, /"exclude_self" must be true or false/],
      [{ data: 2, excludeSelf: true }, /unknown field "excludeSelf" \(did you mean exclude_self\?\)/],
      [{ data: 2, bogus: true }, /publish: unknown field "bogus"/],
    ] as const) {
      t.match(await publish(extra), { ok: false, error: { code: 'bad_frame', message: why } }, `${JSON.stringify(extra)} is refused, naming the field`);
    }
    t.match(await c.request({ op: 'subscribe', channel: 'private-other', sinse: { offset: 0, epoch: 'x' } }), { ok: false, error: { code: 'bad_frame', message: /subscribe: unknown field "sinse" \(did you mean since\?\)/ } }, 'other ops too');
    t.match(await c.request({ op: 'ping', extra: 1 }), { ok: false, error: { code: 'bad_frame', message: /ping: unknown field "extra"; it has no fields/ } }, 'an op without fields');
    for (const ev of ['a\u007fb', 'a\u0085b', 'a\u009fb']) {
      t.match(await c.request({ op: 'publish', channel: ch, event: ev, data: 1 }), { ok: false, error: { code: 'bad_frame', message: /without control characters/ } }, `an event with ${JSON.stringify(ev)} (DEL or a C1 control) is refused`);
    }

    // The sentinel: a publication excluding its sender; the publications before it are all the sender saw.
    t.equal((await publish({ data: 'last', exclude_self: true })).ok, true, 'a boolean exclude_self is accepted');
    t.equal((await publish({ data: 'sentinel' })).ok, true);
    await c.next((f) => f.op === 'message' && f.channel === ch && f.data === 'sentinel');
    // (next() took the sentinel out of the frames seen.)
    t.same(c.messages(ch).map((f) => f.data), [1, 'x'.repeat(LIMIT - 2)], 'only what was accepted was published; nothing refused was');
  });
}

t.test('long-polling: the same limit and the same refusals', async (t) => {
  const open = await request('GET', `${s.http}/poll?token=${token}`);
  const sid = open.json.frames[0].session as string;
  const post = (frame: unknown) => request('POST', `${s.http}/poll?sid=${sid}`, JSON.stringify(frame), { 'content-type': 'text/plain' });
  t.equal((await post({ op: 'subscribe', ref: 1, channel: 'private-poll' })).status, 200, 'subscribe sent');
  t.equal((await post({ op: 'publish', ref: 2, channel: 'private-poll', event: 'e', data: 1 })).status, 200, 'a small payload is accepted');
  t.equal((await post({ op: 'publish', ref: 3, channel: 'private-poll', event: 'e', data: 'x'.repeat(LIMIT - 1) })).status, 200, 'an oversized one is answered in the session');
  const bad = await post({ op: 'publish', ref: 4, channel: 'private-poll', event: 'e', data: 1, exclude_self: 'yes' });
  t.equal(bad.status, 400, 'a mistyped exclude_self refuses the POST');
  t.match(bad.json.error, { code: 'bad_frame', message: /"exclude_self" must be true or false/ });
  t.equal((await post({ op: 'publish', ref: 5, channel: 'private-poll', event: 'e', data: 'sentinel' })).status, 200, 'the sentinel');
  const frames: Record<string, any>[] = [];
  let ack = 0;
  for (const deadline = Date.now() + 10_000; !frames.some((f) => f.op === 'message' && f.data === 'sentinel');) {
    if (Date.now() > deadline) throw new Error(`no sentinel; got ${JSON.stringify(frames)}`);
    const got = await request('GET', `${s.http}/poll?sid=${sid}&ack=${ack}`);
    ack = got.json.seq;
    frames.push(...got.json.frames);
  }
  t.same(frames.filter((f) => f.op === 'message').map((f) => f.data), [1, 'sentinel'], 'published: the small one, then the sentinel');
  t.match(frames.find((f) => f.ref === 3), { ok: false, error: { code: 'payload_too_large' } }, 'the oversized one refused');
});
