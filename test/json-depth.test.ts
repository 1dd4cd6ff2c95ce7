// JSON nested deeper than 64 levels of arrays and objects (the msgpack bound) is refused with a 400 at
// every edge that parses native-protocol JSON, and nothing of it is published. Deep JSON used to pass
// JSON.parse, then overflow the stack when the payload was re-encoded, and answer 500 internal.
import t from 'tap';
import { Packr } from 'msgpackr';
import { startServer, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { SseStream, request } from './helpers/http-stream.js';
import { APP, RawPusher, sdk } from './helpers/pusher.js';

const LIMIT = 64;
const nest = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
/** A publish frame whose text nests `total` levels: the frame object is one, `data` the rest. */
const frameText = (total: number, ref: number, channel = 'deep') => `{"op":"publish","ref":${ref},"channel":"${channel}","event":"e","data":${nest(total - 1)}}`;

t.test('JSON nesting past 64 levels gets 400 on the HTTP API, /poll and /sse POST, and a bad_frame reply on /ws; 64 levels pass', async (t) => {
  // Under --max-payload: the 20 000 levels that used to overflow the stack fit in 64 KB.
  const s = await startServer(t, { clientPublish: 'all', maxPayload: '64kb' });
  const sub = await TestClient.connect(s.url + '/ws');
  t.teardown(() => sub.close());
  t.equal((await sub.request({ op: 'subscribe', channel: 'deep' })).ok, true);

  const publishBody = (total: number) => `{"channel":"deep","event":"e","data":${nest(total - 1)}}`;
  for (const total of [LIMIT + 1, 20_000]) {
    const r = await api(s.http, '/api/publish', undefined, { raw: publishBody(total) });
    t.equal(r.status, 400, `publish, ${total} levels: 400`);
    t.equal(r.body?.error?.code, 'bad_request');
    t.match(r.body?.error?.message, /nests deeper than 64 levels/);
  }
  // In a batch the body and the messages array are two levels, the message a third.
  const batch = await api(s.http, '/api/batch', undefined, { raw: `{"messages":[{"channel":"deep","event":"e","data":1},{"channel":"deep","event":"e","data":${nest(LIMIT - 2)}}]}` });
  t.equal(batch.status, 400, 'batch past the limit: 400, and its valid message is not published either');
  t.equal(batch.body?.error?.code, 'bad_request');

  const ws = await TestClient.connect(s.url + '/ws');
  t.teardown(() => ws.close());
  t.equal((await ws.request({ op: 'subscribe', channel: 'deep' })).ok, true);
  for (const [ref, total] of [[1, LIMIT + 1], [2, 32_000]] as const) {
    ws.sendRaw(frameText(total, ref));
    const reply = await ws.next((f) => f.op === 'reply' && f.ref === ref);
    t.equal(reply.ok, false);
    t.equal(reply.error.code, 'bad_frame', `/ws JSON, ${total} levels: bad_frame, with the frame's ref`);
    t.match(reply.error.message, /nests deeper than 64 levels/);
  }
  // msgpack was already bounded at the same depth: the same frame is refused alike.
  const mp = await TestClient.connect(s.url + '/ws?format=msgpack', { msgpack: true });
  t.teardown(() => mp.close());
  t.equal((await mp.request({ op: 'subscribe', channel: 'deep' })).ok, true);
  mp.sendRaw(new Packr({ useRecords: false }).pack(JSON.parse(frameText(LIMIT + 1, 3))));
  t.equal((await mp.next((f) => f.op === 'reply' && f.ref === 3)).error.code, 'bad_frame', '/ws msgpack, 65 levels: bad_frame');

  // /poll and /sse take a session's frames by the same POST, and either path reaches an SSE session,
  // whose replies can be awaited on its stream.
  const sse = await SseStream.open(`${s.http}/sse?channels=deep`);
  t.teardown(() => sse.close());
  const sid = (await sse.until((evs) => evs.find((e) => e.event === 'rt:welcome'))).json.session;
  const posts: [string, string][] = [
    [`/sse?sid=${sid}`, frameText(LIMIT + 1, 4)],
    [`/sse?sid=${sid}`, `[${frameText(LIMIT + 1, 5)}]`],
    [`/poll?sid=${sid}`, frameText(30_000, 6)],
    [`/poll?sid=${sid}`, `[{"op":"ping"},${frameText(LIMIT + 1, 7)}]`],
  ];
  for (const [path, body] of posts) {
    const r = await request('POST', s.http + path, body);
    t.equal(r.status, 400, `POST ${path.slice(0, 5)} ${body.slice(0, 2)}…: 400`);
    t.equal(r.json?.error?.code, 'bad_frame');
    t.match(r.json?.error?.message, /nests deeper than 64 levels/);
  }

  // Exactly 64 levels everywhere is accepted; brackets and escaped quotes inside strings do not count.
  const inString = JSON.stringify('\\"' + '['.repeat(200) + '{"');
  t.equal((await api(s.http, '/api/publish', undefined, { raw: `{"channel":"deep","event":"e","data":[${inString},${nest(LIMIT - 2)}]}` })).status, 200, 'publish at 64 levels');
  t.equal((await api(s.http, '/api/batch', undefined, { raw: `{"messages":[{"channel":"deep","event":"e","data":${nest(LIMIT - 3)}}]}` })).status, 200, 'batch at 64 levels');
  t.equal((await ws.request(JSON.parse(frameText(LIMIT, 0)))).ok, true, '/ws JSON at 64 levels');
  t.equal((await mp.request(JSON.parse(frameText(LIMIT, 0)))).ok, true, '/ws msgpack at 64 levels');
  t.equal((await request('POST', `${s.http}/sse?sid=${sid}`, frameText(LIMIT, 8))).status, 200, '/sse POST at 64 levels');
  t.equal((await request('POST', `${s.http}/poll?sid=${sid}`, `[${frameText(LIMIT, 9)}]`)).status, 200, '/poll POST of frames at 64 levels each');
  const replies = await sse.until((evs) => {
    const r = evs.filter((e) => e.event === 'rt:reply' && (e.json.ref === 8 || e.json.ref === 9));
    return r.length === 2 ? r : undefined;
  });
  t.same(replies.map((r) => r.json.ok), [true, true], 'both published');

  // The six accepted messages, then the sentinel: nothing refused reached the subscriber.
  await api(s.http, '/api/publish', { channel: 'deep', event: 'sentinel', data: null });
  await sub.next((f) => f.op === 'message' && f.event === 'sentinel');
  const got = sub.messages('deep');
  t.same(got.map((f) => f.offset), [1, 2, 3, 4, 5, 6], 'only the accepted messages were published');
  t.same(got[0]!.data[0], JSON.parse(inString), 'the string with brackets arrived whole');

  const health = await api(s.http, '/health', undefined, { key: null });
  t.same(health.body.workers, { total: 2, alive: 2, stuck: 0 }, 'no shard was lost');
});

t.test('Pusher: a client event nested past 64 levels gets pusher:error; HTTP event data that deep stays the string it came as', async (t) => {
  const app = { ...APP, maxEventPayload: 64 * 1024 };
  const s = await startServer(t, { pusherApps: [app], maxPayload: '64kb' });
  const open = async () => {
    const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
    await raw.event('pusher:connection_established');
    raw.send({ event: 'pusher:subscribe', data: { channel: 'deep' } });
    await raw.event('pusher_internal:subscription_succeeded');
    return raw;
  };
  const [a, b] = [await open(), await open()];
  a.send(`{"event":"client-deep","channel":"deep","data":${nest(20_000)}}`);
  t.match((await a.event('pusher:error')).data.message, /nested deeper than 64 levels/, 'the sender is told');

  // The Pusher HTTP API carries data as a string; too deep to parse into a value, it is passed on as is.
  const deepText = nest(20_000);
  const r = await sdk(s.port, app).trigger('deep', 'deep-data', deepText);
  t.equal(r.status, 200);
  t.equal((await b.event('deep-data')).data, deepText, 'the subscriber gets the string unchanged');
  // Nothing of the refused client event reached the other subscriber before it.
  t.equal(b.frames.filter((f) => f.event === 'client-deep').length, 0);
  const health = await api(s.http, '/health', undefined, { key: null });
  t.same(health.body.workers, { total: 2, alive: 2, stuck: 0 }, 'no shard was lost');
});
