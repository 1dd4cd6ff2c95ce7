import t from 'tap';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { EventSource } from 'eventsource';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { SseStream, request, eventually, parseEvents, type RawEvent } from './helpers/http-stream.js';
import { RtClient } from 'rt-actors/client';
import { APP, sdk } from './helpers/pusher.js';

const token = (sub: string, extra: Record<string, unknown> = {}) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, ...extra }, { secret: JWT_SECRET });
const named = (evs: RawEvent[], name: string) => evs.filter((e) => e.event === name);
const subscribedAll = (n: number) => (evs: RawEvent[]) => named(evs, 'rt:subscribed').length >= n;

t.test('events on several channels; the id resumes every channel; resync when history cannot', async (t) => {
  const s = await startServer(t, { historySize: 4 });
  const es = await SseStream.open(`${s.http}/sse?channels=alpha,beta`);
  t.equal(es.status, 200);
  t.match(es.headers['content-type'], /^text\/event-stream/);
  t.match(es.headers['cache-control'], /no-cache/);
  t.equal(es.headers['x-accel-buffering'], 'no', 'tells nginx not to buffer');
  await es.until(subscribedAll(2));
  const welcome = named(es.events, 'rt:welcome')[0]!;
  t.match(welcome.json, { socket_id: /^\d+\./, session: /^\d+\./, user: null });
  await api(s.http, '/api/publish', { channel: 'alpha', event: 'created', data: { n: 1 } });
  await api(s.http, '/api/publish', { channel: 'beta', event: 'updated', data: 'two' });
  await api(s.http, '/api/publish', { channel: 'alpha', event: 'created', data: { n: 3 } });
  await es.until((evs) => evs.filter((e) => !e.event.startsWith('rt:')).length >= 3);
  const msgs = es.events.filter((e) => !e.event.startsWith('rt:'));
  t.same(msgs.map((e) => [e.event, e.json]), [
    ['created', { channel: 'alpha', data: { n: 1 }, offset: 1 }],
    ['updated', { channel: 'beta', data: 'two', offset: 1 }],
    ['created', { channel: 'alpha', data: { n: 3 }, offset: 2 }],
  ]);
  const sub = Object.fromEntries(named(es.events, 'rt:subscribed').map((e) => [e.json.channel, e.json.epoch]));
  t.equal(msgs[2]!.id, `2.${sub.alpha},1.${sub.beta}`, 'the id holds both channels: <offset>.<epoch>, in URL order');
  const lastId = msgs[2]!.id!;
  es.close();

  await api(s.http, '/api/publish', { channel: 'beta', event: 'updated', data: 'missed-b' });
  await api(s.http, '/api/publish', { channel: 'alpha', event: 'created', data: 'missed-a' });
  for (const how of ['header', 'query'] as const) {
    const url = `${s.http}/sse?channels=alpha,beta${how === 'query' ? `&lastEventId=${encodeURIComponent(lastId)}` : ''}`;
    const again = await SseStream.open(url, how === 'header' ? { 'last-event-id': lastId } : {});
    await again.until(subscribedAll(2));
    const got = again.events.filter((e) => !e.event.startsWith('rt:'));
    t.same(got.map((e) => e.json.data).sort(), ['missed-a', 'missed-b'], `${how}: exactly the missed messages, once`);
    t.ok(named(again.events, 'rt:subscribed').every((e) => e.json.recovered === true), `${how}: both channels recovered`);
    t.equal(named(again.events, 'rt:resync').length, 0);
    again.close();
  }

  // an epoch the channels do not have (another server, or a restarted one): resync, not silence
  const foreign = await SseStream.open(`${s.http}/sse?channels=alpha,beta`, { 'last-event-id': '2.AAAAAAAA,1.BBBBBBBB' });
  await foreign.until(subscribedAll(2));
  const resyncs = named(foreign.events, 'rt:resync');
  t.same(resyncs.map((e) => [e.json.channel, e.json.reason]).sort(), [['alpha', 'epoch_changed'], ['beta', 'epoch_changed']]);
  t.ok(resyncs.every((e) => e.id && !e.id.includes('AAAA')), 'the resync event moves the id to the current position');
  foreign.close();

  // a gap older than history (4 kept here)
  for (let i = 0; i < 6; i++) await api(s.http, '/api/publish', { channel: 'alpha', event: 'flood', data: i });
  const late = await SseStream.open(`${s.http}/sse?channels=alpha,beta`, { 'last-event-id': lastId });
  await late.until(subscribedAll(2));
  t.same(named(late.events, 'rt:resync').map((e) => [e.json.channel, e.json.reason]), [['alpha', 'history_gap']]);
  t.same(late.events.filter((e) => e.event === 'updated').map((e) => e.json.data), ['missed-b'], 'beta still resumed');
  late.close();
});

t.test('private and presence channels, user messages, keep-alive comments', async (t) => {
  const s = await startServer(t, { sseKeepalive: '100ms' });
  const denied = await request('GET', `${s.http}/sse?channels=private-x`);
  t.equal(denied.status, 401);
  t.equal(denied.json.error.code, 'unauthorized');
  t.match(denied.json.error.message, /private-x/);
  const forbidden = await request('GET', `${s.http}/sse?channels=private-x&token=${token('1', { channels: ['private-y'] })}`);
  t.equal(forbidden.status, 403);
  const expired = await request('GET', `${s.http}/sse?channels=news&token=${signJwt({ sub: '1', exp: 1000 }, { secret: JWT_SECRET })}`);
  t.equal(expired.status, 401);
  t.match(expired.json.error.code, /^token_/);

  const tok = (u: string) => token(u, { channels: ['private-*', 'presence-*'], user_info: { name: u } });
  const a = await SseStream.open(`${s.http}/sse?channels=private-x,presence-room&token=${tok('ann')}`);
  t.teardown(() => a.close());
  await a.until(subscribedAll(2));
  t.equal(named(a.events, 'rt:welcome')[0]!.json.user, 'ann');
  t.same(named(a.events, 'rt:subscribed').find((e) => e.json.channel === 'presence-room')!.json.members, [{ user_id: 'ann', user_info: { name: 'ann' } }]);
  // the token may come as a header too (curl, backends)
  const b = await SseStream.open(`${s.http}/sse?channels=presence-room`, { authorization: `Bearer ${tok('bob')}` });
  await b.until(subscribedAll(1));
  const join = await a.until((evs) => named(evs, 'rt:join')[0]);
  t.same(join.json, { channel: 'presence-room', member: { user_id: 'bob', user_info: { name: 'bob' } } });
  b.close();
  const leave = await a.until((evs) => named(evs, 'rt:leave')[0]);
  t.equal(leave.json.member.user_id, 'bob', 'closing the stream leaves presence');

  await api(s.http, '/api/publish', { user: 'ann', event: 'notice', data: { hello: 'ann' } });
  const notice = await a.until((evs) => named(evs, 'notice')[0]);
  t.same(notice.json, { data: { hello: 'ann' } }, 'a message to the user has no channel');
  await eventually(() => a.comments >= 2, 'keep-alive comments');
  t.match(a.raw, /\n: keep-alive\n\n/);
});

t.test('SSE + POST: a full bidirectional session, in events and native format', async (t) => {
  const s = await startServer(t, { clientPublish: 'all' });
  const ev = await SseStream.open(`${s.http}/sse`);
  t.teardown(() => ev.close());
  const welcome = await ev.until((evs) => named(evs, 'rt:welcome')[0]);
  const sid = welcome.json.session;
  const post = await request('POST', `${s.http}/sse?sid=${sid}`, JSON.stringify([
    { op: 'subscribe', channel: 'talk', ref: 1 },
    { op: 'publish', channel: 'talk', event: 'said', data: 'hi', ref: 2 },
  ]));
  t.same([post.status, post.json], [200, { ok: true, accepted: 2 }]);
  const replies = await ev.until((evs) => (named(evs, 'rt:reply').length >= 2 ? named(evs, 'rt:reply') : undefined));
  t.same(replies.map((r) => [r.json.ref, r.json.ok]), [[1, true], [2, true]], 'replies come down the stream, in order');
  const said = await ev.until((evs) => named(evs, 'said')[0]);
  t.same(said.json, { channel: 'talk', data: 'hi', offset: 1 });
  // the same session is reachable through /poll's POST too
  const viaPoll = await request('POST', `${s.http}/poll?sid=${sid}`, JSON.stringify({ op: 'unsubscribe', channel: 'talk', ref: 3 }));
  t.equal(viaPoll.status, 200);
  await ev.until((evs) => named(evs, 'rt:reply').find((r) => r.json.ref === 3));
  // a stream cannot be polled
  const polled = await request('GET', `${s.http}/poll?sid=${sid}&ack=0`);
  t.equal(polled.status, 400);
  t.match(polled.json.error.message, /SSE/);

  const nat = await SseStream.open(`${s.http}/sse?format=native&channels=talk`);
  t.teardown(() => nat.close());
  const frames = await nat.until((evs) => (evs.length >= 2 ? evs : undefined));
  t.same(frames.map((e) => [e.event, e.json.op]), [['message', 'welcome'], ['message', 'reply']], 'native: unnamed events carrying protocol frames');
  await api(s.http, '/api/publish', { channel: 'talk', event: 'x', data: 7 });
  const m = await nat.until((evs) => evs.find((e) => e.json.op === 'message'));
  t.same(m.json, { op: 'message', channel: 'talk', event: 'x', data: 7, offset: 2 });

  const del = await request('DELETE', `${s.http}/sse?sid=${sid}`);
  t.equal(del.status, 200);
  await ev.waitEnd();
  t.same(named(ev.events, 'rt:disconnect')[0]?.json, { code: 1000, reason: 'closed by the client', reconnect: false }, 'DELETE ends the stream');
});

t.test('the eventsource package: named events, and automatic resume after the stream ends', async (t) => {
  const s = await startServer(t);
  const es = new EventSource(`${s.http}/sse?channels=ticks&token=${token('watcher')}`);
  t.teardown(() => es.close());
  const got: number[] = [];
  const ids: string[] = [];
  let subscribed = 0;
  let session = '';
  es.addEventListener('rt:welcome', (e) => (session = JSON.parse(e.data).session));
  es.addEventListener('tick', (e) => {
    got.push(JSON.parse(e.data).data);
    ids.push(e.lastEventId);
  });
  es.addEventListener('rt:subscribed', () => subscribed++);
  await eventually(() => subscribed === 1, 'first subscription');
  for (let i = 1; i <= 3; i++) await api(s.http, '/api/publish', { channel: 'ticks', event: 'tick', data: i });
  await eventually(() => got.length === 3, 'three ticks');
  // the stream ends (here: its session is closed), and EventSource reconnects with Last-Event-ID
  t.equal((await request('DELETE', `${s.http}/sse?sid=${session}`)).status, 200);
  for (let i = 4; i <= 6; i++) await api(s.http, '/api/publish', { channel: 'ticks', event: 'tick', data: i });
  await eventually(() => subscribed === 2, 'reconnected');
  await eventually(() => got.length >= 6, 'missed ticks');
  await api(s.http, '/api/publish', { channel: 'ticks', event: 'tick', data: 7 });
  await eventually(() => got.length >= 7, 'live tick after resume');
  t.same(got, [1, 2, 3, 4, 5, 6, 7], 'no loss, no duplicate, in order');
  t.match(ids[6], /^7\./, 'lastEventId carries the offset');
});

t.test('curl -N sees the stream as it is written', { skip: spawnSync('curl', ['--version']).status !== 0 ? 'curl not installed' : false }, async (t) => {
  const s = await startServer(t);
  const curl = spawn('curl', ['-sN', `${s.http}/sse?channels=feed`]);
  t.teardown(() => curl.kill());
  let out = '';
  curl.stdout.on('data', (d) => (out += d));
  await eventually(() => out.includes('event: rt:subscribed'), 'curl subscribed');
  await api(s.http, '/api/publish', { channel: 'feed', event: 'hello', data: { x: 1 } });
  await eventually(() => out.includes('event: hello'), 'curl got the event');
  const ev = parseEvents(out).events.find((e) => e.event === 'hello')!;
  t.same(ev.json, { channel: 'feed', data: { x: 1 }, offset: 1 });
  t.match(ev.id, /^1\.[A-Za-z0-9_-]+$/);
});

t.test('a reader that stops reading is told and disconnected, never buffered without bound', async (t) => {
  const s = await startServer(t, { maxBackpressure: '64kb' });
  const sock = net.connect(s.port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  await new Promise((r) => sock.once('connect', r));
  let text = '';
  sock.setEncoding('utf8');
  sock.on('data', (d) => (text += d));
  sock.write('GET /sse?channels=firehose HTTP/1.1\r\nHost: test\r\n\r\n');
  await eventually(() => text.includes('rt:subscribed'), 'subscribed');
  sock.pause(); // stop reading: the kernel buffers fill, then uWS reports backpressure
  const big = 'x'.repeat(32 * 1024);
  let subscribers = 1;
  for (let i = 0; i < 2000 && subscribers > 0; i++) {
    await s.publish('firehose', 'blob', { i, big });
    if (i % 50 === 49) subscribers = (await api(s.http, '/api/channels/firehose')).body.subscribers;
  }
  await eventually(async () => (await api(s.http, '/api/channels/firehose')).body.subscribers === 0, 'the slow reader to be dropped');
  t.pass('the server let go of the reader while it was not reading');
  sock.resume();
  await eventually(() => sock.readableEnded || sock.destroyed || text.includes('rt:disconnect'), 'the end of the stream');
  const tail = text.slice(text.lastIndexOf('event: rt:disconnect'));
  t.match(tail, /"code":4008/, 'the last event says why: slow consumer, reconnect and resume');
  t.match(tail, /"reconnect":true/);
  const health = await api(s.http, '/health', undefined, { key: null });
  t.equal(health.body.workers.alive, 2);
});

t.test('hostile and malformed input gets clear errors; the shard keeps serving', async (t) => {
  const s = await startServer(t, { maxPayload: '4kb', maxChannelsPerConnection: 5, allowedOrigins: 'https://app.example' });
  const get = async (q: string, headers: Record<string, string> = {}) => request('GET', `${s.http}/sse?${q}`, undefined, headers);
  const cases: [string, Record<string, string>, number, string | RegExp][] = [
    [`channels=${'x'.repeat(300)}`, {}, 400, 'invalid_channel'],
    ['channels=a%20b', {}, 400, 'invalid_channel'],
    ['channels=a,a', {}, 400, 'bad_request'],
    ['channels=a,b,c,d,e,f', {}, 400, 'too_many_channels'],
    ['channels=a&format=xml', {}, 400, 'bad_request'],
    ['channels=a&lastEventId=garbage', {}, 400, 'bad_request'],
    ['channels=a&lastEventId=1.abc,2.def', {}, 400, 'bad_request'],
    ['channels=a&lastEventId=99999999999999999.abc', {}, 400, 'bad_request'],
    ['channels=a', { 'last-event-id': '1.a b' }, 400, 'bad_request'],
    ['channels=a&token=not.a.jwt', {}, 401, /^token_/],
    ['channels=a', { origin: 'https://evil.example' }, 403, 'origin_not_allowed'],
  ];
  for (const [q, h, status, code] of cases) {
    const r = await get(q, h);
    t.equal(r.status, status, `${q} ${JSON.stringify(h)} → ${status}`);
    t.match(r.json?.error?.code, code, `${q}: ${r.json?.error?.message}`);
  }
  const allowed = await SseStream.open(`${s.http}/sse?channels=a`, { origin: 'https://app.example' });
  t.equal(allowed.status, 200);
  t.equal(allowed.headers['access-control-allow-origin'], 'https://app.example', 'allowed origin gets CORS headers');
  const sid = (await allowed.until((evs) => named(evs, 'rt:welcome')[0])).json.session;
  const pre = await request('OPTIONS', `${s.http}/sse?sid=${sid}`, undefined, { origin: 'https://app.example', 'access-control-request-method': 'POST' });
  t.equal(pre.status, 204);
  t.match(pre.headers['access-control-allow-methods'], /POST/);
  const preBad = await request('OPTIONS', `${s.http}/sse`, undefined, { origin: 'https://evil.example' });
  t.equal(preBad.status, 403);

  const post = (q: string, body: string | Buffer, headers: Record<string, string> = {}) => request('POST', `${s.http}/sse?${q}`, body, headers);
  const posts: [string, string | Buffer, number, string][] = [
    ['', '{"op":"ping"}', 400, 'bad_request'],
    ['sid=nonsense', '{"op":"ping"}', 404, 'unknown_session'],
    ['sid=9.AAAAAAAAAAAAAAAAAAAAAA', '{"op":"ping"}', 404, 'unknown_session'],
    ['sid=1.AAAAAAAAAAAAAAAAAAAAAA', '{"op":"ping"}', 404, 'unknown_session'],
    [`sid=${sid}`, 'garbage{', 400, 'bad_json'],
    [`sid=${sid}`, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 400, 'bad_frame'],
    [`sid=${sid}`, '[]', 400, 'bad_request'],
    [`sid=${sid}`, JSON.stringify(Array.from({ length: 101 }, () => ({ op: 'ping' }))), 400, 'bad_request'],
    [`sid=${sid}`, '[{"op":"ping"},{"op":"explode"}]', 400, 'unknown_op'],
    [`sid=${sid}`, '{"op":"subscribe","channel":{"$gt":""}}', 400, 'invalid_channel'],
    [`sid=${sid}`, JSON.stringify({ op: 'publish', channel: 'a', event: 'e', data: 'x'.repeat(8000) }), 413, 'payload_too_large'],
  ];
  for (const [q, body, status, code] of posts) {
    const r = await post(q, body);
    t.equal(r.status, status, `POST ${q} ${String(body).slice(0, 30)} → ${status}`);
    t.equal(r.json?.error?.code, code, r.json?.error?.message ?? r.text);
  }
  t.match((await post(`sid=${sid}`, '[{"op":"ping"},{"op":"explode"}]')).json.error.message, /^frame 1: /, 'the bad frame is named');
  const evil = await post(`sid=${sid}`, '{"op":"ping"}', { origin: 'https://evil.example' });
  t.equal(evil.status, 403, 'POST from a foreign origin refused');
  // none of it reached the session; it still works
  const ok = await post(`sid=${sid}`, '{"op":"ping","ref":9}');
  t.equal(ok.status, 200);
  const pong = await allowed.until((evs) => named(evs, 'rt:reply').find((e) => e.json.ref === 9));
  t.equal(pong.json.pong, true);
  t.equal(named(allowed.events, 'rt:reply').length, 1, 'refused POSTs ran nothing');
  allowed.close();
  const health = await api(s.http, '/health', undefined, { key: null });
  t.same(health.body.workers, { total: 2, alive: 2, stuck: 0 }, 'no shard died');
});

t.test('the transports option turns SSE off', async (t) => {
  const s = await startServer(t, { transports: 'ws,polling' });
  const r = await request('GET', `${s.http}/sse?channels=a`);
  t.equal(r.status, 404);
  await t.rejects(startServer(t, { transports: 'ws,carrier-pigeon' }), /transports/, 'an unknown transport fails the start');
});

t.test('a publication the stream was left out of moves its event id: a resume does not deliver it', async (t) => {
  const s = await startServer(t);
  const url = `${s.http}/sse?channels=private-ex&token=${token('ann', { channels: ['private-*'] })}`;
  const es = await SseStream.open(url);
  await es.until(subscribedAll(1));
  const welcome = named(es.events, 'rt:welcome')[0]!.json;
  await api(s.http, '/api/publish', { channel: 'private-ex', event: 'e', data: 'seen' });
  await es.until((evs) => evs.some((e) => e.json?.data === 'seen'));
  // Left out twice: its own whisper, and a backend publish naming its socket (Laravel's toOthers()).
  const post = await request('POST', `${s.http}/sse?sid=${welcome.session}`, JSON.stringify({ op: 'publish', ref: 1, channel: 'private-ex', event: 'e', data: 'own whisper', exclude_self: true }));
  t.equal(post.status, 200);
  t.equal((await api(s.http, '/api/publish', { channel: 'private-ex', event: 'e', data: 'to the others', socket_id: welcome.socket_id })).status, 200);
  // An id-only message (no data: EventSource dispatches nothing) carries the stream past offset 3.
  await es.until(() => /^id: 3\./m.test(es.raw), 10_000, 'the id past the excluded publications');
  const lastId = [...es.raw.matchAll(/^id: (.*)$/gm)].at(-1)![1]!;
  t.match(lastId, /^3\./, `the last event id is past them (${lastId})`);
  t.same(es.events.filter((e) => e.event === 'e').map((e) => e.json.data), ['seen'], 'neither was delivered live');
  es.close();

  await api(s.http, '/api/publish', { channel: 'private-ex', event: 'e', data: 'after' });
  const again = await SseStream.open(url, { 'last-event-id': lastId });
  t.teardown(() => again.close());
  await again.until((evs) => evs.some((e) => e.json?.data === 'after'));
  t.same(again.events.filter((e) => e.event === 'e').map((e) => e.json.data), ['after'], 'the resume gives what came after, not what it was left out of');
});

t.test('JSON data with line breaks between its tokens (a Pusher API data string, kept as it came) reaches SSE readers whole', async (t) => {
  const s = await startServer(t, { pusherApps: [APP] });
  const pretty = '{\n  "text": "a\\nb",\r\n  "n": [1,\r 2]\n}';
  const expected = JSON.parse(pretty);
  // A browser's EventSource (the eventsource package) on the default format.
  const es = new EventSource(`${s.http}/sse?channels=pretty`);
  t.teardown(() => es.close());
  const events: string[] = [];
  let epoch = '';
  es.addEventListener('rt:subscribed', (e) => (epoch = JSON.parse(e.data).epoch));
  es.addEventListener('note', (e) => events.push(e.data));
  // The client library over SSE (format=native, its own parser).
  const client = new RtClient(s.http, { transports: ['sse'], rememberTransport: false });
  t.teardown(() => client.disconnect());
  const got: unknown[] = [];
  const ch = client.channel('pretty').listen('note', (d) => got.push(d));
  await new Promise<void>((resolve) => ch.subscribed(() => resolve()));
  await eventually(() => epoch !== '', 'the EventSource subscribed');

  const backend = sdk(s.port);
  t.equal((await backend.trigger('pretty', 'note', pretty)).status, 200);
  t.equal((await backend.trigger('pretty', 'note', '{"sentinel":true}')).status, 200);
  const sentinel = (d: unknown) => JSON.stringify(d).includes('sentinel');
  await eventually(() => events.some(sentinel) && got.some(sentinel), 'the sentinel, at both readers');
  t.same(events.map((d) => { try { return JSON.parse(d); } catch { return d; } }), [{ channel: 'pretty', data: expected, offset: 1 }, { channel: 'pretty', data: { sentinel: true }, offset: 2 }], 'EventSource: each event is the whole JSON');
  t.same(got, [expected, { sentinel: true }], 'the client library: the publication arrives, not dropped as an unparsable frame');

  // A resume replays it from history in both formats, whole as well.
  const ev = await SseStream.open(`${s.http}/sse?channels=pretty`, { 'last-event-id': `0.${epoch}` });
  t.teardown(() => ev.close());
  await ev.until(subscribedAll(1));
  t.same(ev.events.filter((e) => e.event === 'note').map((e) => e.json), [{ channel: 'pretty', data: expected, offset: 1 }, { channel: 'pretty', data: { sentinel: true }, offset: 2 }], 'resumed (events format)');
});
