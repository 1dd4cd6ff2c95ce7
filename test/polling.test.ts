import t from 'tap';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { request, eventually, type HttpAnswer } from './helpers/http-stream.js';

const token = (sub: string, extra: Record<string, unknown> = {}) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, ...extra }, { secret: JWT_SECRET });

/** A long-polling session driven by hand, every request on a fresh connection (so on alternating shards). */
class Session {
  ack = 0;
  frames: any[] = [];
  constructor(readonly base: string, readonly sid: string, readonly welcome: any) {}

  static async open(base: string, query = ''): Promise<Session> {
    const r = await request('GET', `${base}/poll${query}`);
    if (r.status !== 200) throw new Error(`open: HTTP ${r.status} ${r.text}`);
    const w = r.json.frames[0];
    const s = new Session(base, w.session, w);
    s.ack = r.json.seq;
    return s;
  }

  post(frames: unknown): Promise<HttpAnswer> {
    return request('POST', `${this.base}/poll?sid=${this.sid}`, JSON.stringify(frames), { 'content-type': 'text/plain' });
  }

  /** One poll; acknowledges what it got. */
  async poll(): Promise<any[]> {
    const r = await request('GET', `${this.base}/poll?sid=${this.sid}&ack=${this.ack}`);
    if (r.status !== 200) throw Object.assign(new Error(`poll: HTTP ${r.status} ${r.text}`), { answer: r });
    this.ack = r.json.seq;
    this.frames.push(...r.json.frames);
    return r.json.frames;
  }

  async until(pred: (frames: any[]) => boolean, what: string): Promise<any[]> {
    const deadline = Date.now() + 10_000;
    while (!pred(this.frames)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.frames).slice(-500)}`);
      await this.poll();
    }
    return this.frames;
  }
}

t.test('a session over requests that land on different shards: subscribe, receive, publish, presence', async (t) => {
  const s = await startServer(t, { pollTimeout: '2s', clientPublish: 'all' });
  const a = await Session.open(s.http, `?token=${token('ann', { channels: ['presence-*'] })}`);
  const b = await Session.open(s.http, `?token=${token('bob', { channels: ['presence-*'] })}`);
  t.equal(a.welcome.op, 'welcome');
  t.equal(a.welcome.user, 'ann');
  t.match(a.sid, /^\d+\.[A-Za-z0-9_-]{22}$/);
  t.not(a.sid, a.welcome.socket_id, 'the session id is a secret, not the public socket id');
  t.not(a.sid.split('.')[0], b.sid.split('.')[0], 'the two sessions live on different shards');

  // Requests alternate between shards, so each session is reached both directly and through the mesh.
  for (const x of [a, b]) {
    const r = await x.post([{ op: 'subscribe', channel: 'presence-lobby', ref: 1 }]);
    t.same([r.status, r.json], [200, { ok: true, accepted: 1 }]);
    await x.until((fs) => fs.some((f) => f.op === 'reply' && f.ref === 1), 'subscribe reply');
  }
  t.same(b.frames.find((f) => f.ref === 1).members.map((m: any) => m.user_id).sort(), ['ann', 'bob']);
  await a.until((fs) => fs.some((f) => f.op === 'join' && f.member.user_id === 'bob'), 'bob joining');

  for (let i = 0; i < 6; i++) {
    const who = i % 2 ? a : b;
    await who.post({ op: 'publish', channel: 'presence-lobby', event: 'say', data: i, ref: 10 + i });
  }
  for (const x of [a, b]) {
    const got = await x.until((fs) => fs.filter((f) => f.op === 'message').length >= 6, 'six messages');
    t.same(got.filter((f) => f.op === 'message').map((f) => f.data), [0, 1, 2, 3, 4, 5], 'every message, in order, on both sessions');
  }
  // A publish's reply may come after its delivery (the owner acknowledges after fanning out): wait for it.
  await a.until((fs) => fs.filter((f) => f.op === 'reply' && f.ref >= 10).length >= 3, 'three publish replies');
  t.same(a.frames.filter((f) => f.op === 'reply' && f.ref >= 10).map((f) => f.ok), [true, true, true], 'publish acks arrive in the poll');

  // user messages and API publishes arrive the same way
  await api(s.http, '/api/publish', { user: 'bob', event: 'note', data: 'for bob' });
  await b.until((fs) => fs.some((f) => f.event === 'note' && f.channel === undefined), 'user message');

  // DELETE closes the session: bob leaves presence, and the session is gone
  t.equal((await request('DELETE', `${s.http}/poll?sid=${b.sid}`)).status, 200);
  await a.until((fs) => fs.some((f) => f.op === 'leave' && f.member.user_id === 'bob'), 'bob leaving');
  const gone = await request('GET', `${s.http}/poll?sid=${b.sid}&ack=${b.ack}`);
  t.equal(gone.status, 404);
  t.equal(gone.json.error.code, 'unknown_session');
});

t.test('POSTed data reaches subscribers as sent, whichever shard the POST lands on (a "__proto__" key included)', async (t) => {
  const s = await startServer(t, { pollTimeout: '2s', clientPublish: 'all' });
  const a = await Session.open(s.http);
  const r = await a.post({ op: 'subscribe', channel: 'keys', ref: 1 });
  t.equal(r.status, 200);
  await a.until((fs) => fs.some((f) => f.op === 'reply' && f.ref === 1), 'subscribe reply');
  // Every request on a fresh connection: the POSTs alternate between the session's shard and the other.
  for (let i = 0; i < 4; i++) {
    const body = `{"op":"publish","ref":${10 + i},"channel":"keys","event":"e","data":{"__proto__":{"k":${i}},"n":${i}}}`;
    t.equal((await request('POST', `${s.http}/poll?sid=${a.sid}`, body, { 'content-type': 'text/plain' })).status, 200);
  }
  const got = (await a.until((fs) => fs.filter((f) => f.op === 'message').length >= 4, 'four messages')).filter((f) => f.op === 'message');
  t.same(got.map((f) => f.data.n), [0, 1, 2, 3], 'all four, in order');
  t.same(got.map((f) => Object.keys(f.data)), Array(4).fill(['__proto__', 'n']), 'the keys as sent, not renamed on the way between shards');
});

t.test('a poll is held until something arrives, answers everything pending at once, and resends what was not acknowledged', async (t) => {
  const s = await startServer(t, { pollTimeout: '300ms' });
  const c = await Session.open(s.http);
  await c.post({ op: 'subscribe', channel: 'feed', ref: 1 });
  await c.until((fs) => fs.some((f) => f.ref === 1), 'subscribed');

  // nothing to send: the poll is held, then answered empty with the same ack
  const before = c.ack;
  t.same(await c.poll(), [], 'an idle poll answers empty after the hold');
  t.equal(c.ack, before);

  // a poll in flight is answered when a message arrives
  const held = c.poll();
  await api(s.http, '/api/publish', { channel: 'feed', event: 'wake', data: 1 });
  await c.until((fs) => fs.some((f) => f.event === 'wake'), 'the held poll to deliver');
  await held;

  // many messages while nobody polls: not acknowledging, the same poll grows until all are pending
  const r = await api(s.http, '/api/batch', { messages: Array.from({ length: 20 }, (_, i) => ({ channel: 'feed', event: 'many', data: i })) });
  t.equal(r.status, 200);
  let answer: HttpAnswer;
  const deadline = Date.now() + 10_000;
  do {
    answer = await request('GET', `${s.http}/poll?sid=${c.sid}&ack=${c.ack}`);
    if (Date.now() > deadline) throw new Error('messages never all pending');
  } while (answer.json.frames.filter((f: any) => f.event === 'many').length < 20);
  const batch = answer.json.frames;
  t.same(batch.map((f: any) => f.data), [...Array(20).keys()], 'one answer carries every pending frame, in order');
  t.same(batch.map((f: any) => f.offset), Array.from({ length: 20 }, (_, i) => i + 2));
  // the same request again (say, its answer was lost): the same frames again
  const again = await request('GET', `${s.http}/poll?sid=${c.sid}&ack=${c.ack}`);
  t.same(again.json, answer.json, 'unacknowledged frames are sent again');
  c.ack = answer.json.seq;
  t.same(await c.poll(), [], 'acknowledged frames are gone');
});

t.test('sessions nobody polls are closed; a session that falls behind is told to resume', async (t) => {
  const s = await startServer(t, { pollTimeout: '200ms', pollSessionTimeout: '300ms', maxBackpressure: '16kb' });
  const idle = await Session.open(s.http);
  await idle.post({ op: 'subscribe', channel: 'quiet', ref: 1 });
  await idle.until((fs) => fs.some((f) => f.ref === 1), 'subscribed');
  t.equal((await api(s.http, '/api/channels/quiet')).body.subscribers, 1);
  // the client vanishes: no more polls
  await eventually(async () => (await api(s.http, '/api/channels/quiet')).body.subscribers === 0, 'the abandoned session to be closed');
  const r = await request('GET', `${s.http}/poll?sid=${idle.sid}&ack=${idle.ack}`);
  t.equal(r.status, 404, 'the abandoned session is gone');

  // A server that keeps an ended session long enough for its poll however loaded the machine is: the
  // session is ended mid-loop, and POSTs to an ended session no longer keep it alive.
  const s2 = await startServer(t, { pollTimeout: '200ms', pollSessionTimeout: '30s', maxBackpressure: '16kb' });
  const slow = await Session.open(s2.http);
  await slow.post({ op: 'subscribe', channel: 'busy', ref: 1 });
  await slow.until((fs) => fs.some((f) => f.ref === 1), 'subscribed');
  // keep the session alive with POSTs but never poll while 64 kB arrive
  for (let i = 0; i < 16; i++) {
    await s2.publish('busy', 'chunk', 'x'.repeat(4000));
    await slow.post({ op: 'ping' });
  }
  await eventually(async () => (await api(s2.http, '/api/channels/busy')).body.subscribers === 0, 'the slow session to be dropped');
  const frames = await slow.poll();
  t.same(frames, [{ op: 'disconnect', code: 4008, reason: 'slow consumer: reconnect and resume', reconnect: true }], 'its backlog is replaced by the reason');
  const after = await request('GET', `${s2.http}/poll?sid=${slow.sid}&ack=${slow.ack}`);
  t.equal(after.status, 404, 'once the reason is acknowledged the session is gone');
});

t.test('the backlog of a session that falls behind is bounded in bytes, not characters', async (t) => {
  const s = await startServer(t, { maxBackpressure: '16kb' });
  const slow = await Session.open(s.http);
  await slow.post({ op: 'subscribe', channel: 'euros', ref: 1 });
  await slow.until((fs) => fs.some((f) => f.ref === 1), 'subscribed');
  // 8 × 1000 '€': 8,000 characters, under 16 kB, but 24,000 bytes past it (3 bytes each in UTF-8).
  for (let i = 0; i < 8; i++) await s.publish('euros', 'chunk', '€'.repeat(1000));
  await slow.post({ op: 'ping', ref: 2 });
  const frames = await slow.poll();
  t.same(frames, [{ op: 'disconnect', code: 4008, reason: 'slow consumer: reconnect and resume', reconnect: true }], 'its backlog is replaced by the reason');
  t.equal((await api(s.http, '/api/channels/euros')).body.subscribers, 0, 'the slow session left the channel');
});

t.test('a session the server ended refuses frames with 404 while a poll takes its disconnect frame', async (t) => {
  const s = await startServer(t, { rateLimit: 1, rateBurst: 1, clientPublish: 'all' });
  const sess = await Session.open(s.http);
  const flood = await sess.post(Array.from({ length: 60 }, (_, i) => ({ op: 'ping', ref: i })));
  t.equal(flood.status, 200, 'the flood was taken');
  await sess.until((fs) => fs.some((f) => f.op === 'disconnect'), 'the disconnect frame');
  t.match(sess.frames.at(-1), { op: 'disconnect', code: 4029 }, 'ended for its rate');
  const late = await sess.post({ op: 'publish', ref: 99, channel: 'after-end', event: 'e', data: 1 });
  t.equal(late.status, 404, 'a POST to the ended session is refused');
  t.equal(late.json.error.code, 'unknown_session');
  t.equal((await api(s.http, '/api/channels/after-end')).body.offset ?? 0, 0, 'nothing was published');
});

t.test('a session the server ended no longer counts against --max-connections-per-ip: the client may open its next one at once', async (t) => {
  // The ended session would idle out only after a minute: the next session must not wait for that.
  const s = await startServer(t, { maxConnectionsPerIp: 1, pollSessionTimeout: '60s', maxBackpressure: '16kb' });
  const first = await Session.open(s.http);
  const refused = await request('GET', `${s.http}/poll`);
  t.equal(refused.status, 429, 'the limit holds while the session lives');
  t.equal(refused.json.error.code, 'too_many_connections_from_ip');
  // The server ends it (a slow consumer), and the client fetches why, as the client library does (no DELETE after it).
  await first.post({ op: 'subscribe', channel: 'ended-slot', ref: 1 });
  await first.until((fs) => fs.some((f) => f.ref === 1), 'subscribed');
  for (let i = 0; i < 4; i++) await s.publish('ended-slot', 'chunk', 'x'.repeat(8000));
  await first.until((fs) => fs.some((f) => f.op === 'disconnect'), 'the disconnect frame');
  t.match(first.frames.at(-1), { op: 'disconnect', code: 4008, reconnect: true });
  const next = await request('GET', `${s.http}/poll`);
  t.equal(next.status, 200, `the reconnect opens a session (${next.status} ${next.text.slice(0, 120)})`);
});

t.test('a subscribe whose reply ends a session that fell behind leaves no subscriber or presence member behind', async (t) => {
  const s = await startServer(t, { maxBackpressure: '16kb' });
  const c = await Session.open(s.http, `?token=${token('ghost', { channels: ['presence-*'] })}`);
  await c.post({ op: 'subscribe', channel: 'backlog', ref: 1 });
  await c.until((fs) => fs.some((f) => f.ref === 1), 'subscribed');
  // Unpolled, the session's backlog passes the limit with one message; the next frame ends it.
  await s.publish('backlog', 'big', 'x'.repeat(20_000));
  await c.post({ op: 'subscribe', channel: 'presence-room', ref: 2 });
  await eventually(async () => (await api(s.http, '/api/channels/backlog')).body.subscribers === 0, 'the session to be dropped');
  const frames = await c.poll();
  t.match(frames.at(-1), { op: 'disconnect', code: 4008 }, 'the session was ended as a slow consumer');
  await eventually(async () => {
    const room = (await api(s.http, '/api/channels/presence-room')).body;
    return room.subscribers === 0 && room.presence === 0;
  }, 'presence-room to have no subscriber and no member');
  t.same((await api(s.http, '/api/channels/presence-room/users')).body.users, [], 'no ghost member');
});

t.test('hostile and malformed input to /poll gets clear errors', async (t) => {
  const s = await startServer(t, { maxPayload: '2kb' });
  const c = await Session.open(s.http);
  const cases: [string, string, string | undefined, number, string][] = [
    ['GET', `/poll?sid=${c.sid}&ack=-1`, undefined, 400, 'bad_request'],
    ['GET', `/poll?sid=${c.sid}&ack=1e9`, undefined, 400, 'bad_request'],
    ['GET', `/poll?sid=${c.sid}&ack=${'9'.repeat(30)}`, undefined, 400, 'bad_request'],
    ['GET', '/poll?sid=garbage', undefined, 404, 'unknown_session'],
    ['GET', '/poll?sid=7.AAAAAAAAAAAAAAAAAAAAAA', undefined, 404, 'unknown_session'],
    ['GET', '/poll?sid=', undefined, 400, 'bad_request'],
    ['GET', '/poll?token=forged.jwt.here', undefined, 401, 'token_'],
    ['POST', `/poll?sid=${c.sid}`, 'x'.repeat(3000), 413, 'payload_too_large'],
    ['POST', `/poll?sid=${c.sid}`, '{"op":"subscribe","channel":"a b"}', 400, 'invalid_channel'],
    ['POST', `/poll?sid=${c.sid}`, '[1,2,3]', 400, 'bad_frame'],
    ['POST', `/poll?sid=${c.sid}`, 'null', 400, 'bad_frame'],
    ['POST', `/poll?sid=${c.sid}`, '{"op":"subscribe","channel":"ok","since":{"offset":-3,"epoch":"x"}}', 400, 'bad_frame'],
    ['POST', '/poll?sid=0.AAAAAAAAAAAAAAAAAAAAAA', '{"op":"ping"}', 404, 'unknown_session'],
    ['DELETE', '/poll?sid=1.AAAAAAAAAAAAAAAAAAAAAA', undefined, 404, 'unknown_session'],
    ['GET', '/poll', undefined, 403, 'origin_not_allowed'],
  ];
  for (const [method, path, body, status, code] of cases) {
    const headers: Record<string, string> = code === 'origin_not_allowed' ? { origin: 'https://elsewhere.example' } : {};
    const r = await request(method, s.http + path, body, headers);
    t.equal(r.status, status, `${method} ${path.slice(0, 60)} → ${status}`);
    t.match(r.json?.error?.code, code, r.json?.error?.message ?? r.text.slice(0, 100));
  }
  // a flood of session openings from one client is bounded by the connection limits
  const limited = await startServer(t, { maxConnectionsPerIp: 3 });
  const opened = await Promise.all(Array.from({ length: 5 }, () => request('GET', `${limited.http}/poll`)));
  t.same(opened.map((r) => r.status).sort(), [200, 200, 200, 429, 429], 'sessions count against --max-connections-per-ip');
  t.equal(opened.find((r) => r.status === 429)!.json.error.code, 'too_many_connections_from_ip');
  // an ack past what any answer carried would drop frames unseen: refused, and the frames stay
  await c.post({ op: 'ping', ref: 4 });
  const ahead = await request('GET', `${s.http}/poll?sid=${c.sid}&ack=${c.ack + 50}`);
  t.equal(ahead.status, 400, 'an ack past the last frame sent → 400');
  t.match(ahead.json?.error?.message, /past the last frame/);
  await c.until((fs) => fs.some((f) => f.ref === 4 && f.pong === true), 'the pong the refused ack would have dropped');
  // the session still works after all that
  await c.post({ op: 'ping', ref: 5 });
  await c.until((fs) => fs.some((f) => f.ref === 5 && f.pong === true), 'pong');
  const health = await api(s.http, '/health', undefined, { key: null });
  t.same(health.body.workers, { total: 2, alive: 2, stuck: 0 });
});
