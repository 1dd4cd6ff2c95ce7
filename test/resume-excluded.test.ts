// A resume leaves out what live delivery left out: publications excluding the connection (its own
// whisper, a backend publish naming its socket_id) and, with `as`, those excluding the client's earlier
// connections — so a whisper whose reply a reconnect lost does not come back to its sender.
import t from 'tap';
import WebSocket from 'ws';
import { signJwt } from 'rt-actors';
import { RtClient } from 'rt-actors/client';
import { api, JWT_SECRET, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { balancer } from './helpers/balancer.js';
import { eventually } from './helpers/http-stream.js';

const token = (sub: string) => signJwt({ sub, channels: ['private-*'], exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });
const s = await startServer(t);

t.test('/ws: a subscribe with since and as skips what excluded this or an earlier connection', async (t) => {
  const ch = 'private-resume-as';
  const first = await TestClient.connect(`${s.url}/ws?token=${token('ann')}`);
  const { offset: start, epoch } = await first.request({ op: 'subscribe', channel: ch });
  const whisper = await first.request({ op: 'publish', channel: ch, event: 'client-typing', data: 1, exclude_self: true });
  const named = await api(s.http, '/api/publish', { channel: ch, event: 'toOthers', data: 2, socket_id: first.welcome.socket_id });
  t.equal(named.status, 200, 'a backend publish naming its socket_id');
  await api(s.http, '/api/publish', { channel: ch, event: 'for-all', data: 3 });
  const oldId = first.welcome.socket_id as string;
  first.close();

  const events = (r: { publications: { event: string }[] }) => r.publications.map((p) => p.event);
  const second = await TestClient.connect(`${s.url}/ws?token=${token('ann')}`);
  t.teardown(() => second.close());
  const as = await second.request({ op: 'subscribe', channel: ch, since: { offset: start, epoch }, as: [oldId] });
  t.equal(as.recovered, true);
  t.same(events(as), ['for-all'], 'what excluded the earlier connection is left out');
  t.equal(as.offset, whisper.offset + 2, 'the position is past all of them');

  const other = await TestClient.connect(`${s.url}/ws?token=${token('bob')}`);
  t.teardown(() => other.close());
  const plain = await other.request({ op: 'subscribe', channel: ch, since: { offset: start, epoch } });
  t.same(events(plain), ['client-typing', 'toOthers', 'for-all'], 'another client resumes them all');

  // Its own whisper, on this connection, and a resubscribe from before it.
  const mine = await other.request({ op: 'publish', channel: ch, event: 'client-mine', data: 4, exclude_self: true });
  await other.request({ op: 'unsubscribe', channel: ch });
  const again = await other.request({ op: 'subscribe', channel: ch, since: { offset: mine.offset - 1, epoch } });
  t.same(events(again), [], 'its own whisper is not resumed to it');

  for (const [bad, why] of [['x', 'a string'], [[1], 'a number'], [[''], 'an empty id'], [['x'.repeat(65)], 'an id too long'], [Array(17).fill('a'), '17 ids']] as const) {
    const r = await second.request({ op: 'subscribe', channel: 'private-other', since: { offset: 0, epoch }, as: bad }).catch((e) => e);
    t.match(r, { ok: false, error: { code: 'bad_frame', message: /as must be an array of at most 16 socket ids/ } }, `as: ${why} is refused`);
  }
});

t.test('client library: a whisper whose reply was lost in a reconnect does not come back to its sender', async (t) => {
  const lb = await balancer(t, s.port);
  const c = new RtClient(`http://127.0.0.1:${lb.port}`, { WebSocket, transports: ['websocket'], token: token('ann'), reconnectDelay: 50, maxReconnectDelay: 200, rememberTransport: false });
  t.teardown(() => c.disconnect());
  const heard: unknown[] = [];
  const after: unknown[] = [];
  const ch = c.private('resume-lost-reply').listenForWhisper('typing', (d) => heard.push(d)).listen('after', (d) => after.push(d));
  await new Promise((r) => ch.subscribed(r));
  const observer = await TestClient.connect(`${s.url}/ws?token=${token('bob')}`);
  t.teardown(() => observer.close());
  await observer.request({ op: 'subscribe', channel: 'private-resume-lost-reply' });

  lb.hold();
  const sent = ch.whisper('typing', { who: 'ann' }).then(
    () => 'answered',
    (e: { code: string }) => e.code,
  );
  const seen = await observer.next((f) => f.op === 'message' && f.event === 'client-typing');
  t.same(seen.data, { who: 'ann' }, 'the server published the whisper');
  const firstId = c.socketId;
  lb.cut();
  t.equal(await sent, 'disconnected', 'its reply was lost');
  await eventually(() => c.state === 'connected' && c.socketId !== firstId, 'reconnected');
  await api(s.http, '/api/publish', { channel: 'private-resume-lost-reply', event: 'after', data: 'sentinel' });
  await eventually(() => after.length === 1, 'the sentinel after the resume');
  t.same(heard, [], 'the whisper did not come back to its sender');
});
