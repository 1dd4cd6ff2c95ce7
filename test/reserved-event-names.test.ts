// A publication reaches every protocol's clients under its event name, so a publisher could forge the
// server's own events: SSE's rt:disconnect (the docs' own listener closes the stream when `reconnect` is
// absent), pusher-js's pusher_internal:member_removed / member_added (a presence member publishing from
// /ws, allowed by the default --client-publish=private, struck members from every pusher-js client's
// list and added fake ones), the Socket.IO gateway's presence:joining. Such names are now refused, with a
// clear error, where publications come in: client publishes, the HTTP API, Pusher's HTTP API (and a
// Laravel broadcast through Redis, which goes through the same check).
import t from 'tap';
import { startServer, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { SseStream } from './helpers/http-stream.js';
import { pusherOptions, sdk } from './helpers/pusher.js';

const s = await startServer(t, { ...pusherOptions(), clientPublish: 'all' });

t.test("publishers cannot use the names of the server's own events", async (t) => {
  const sse = await SseStream.open(`${s.http}/sse?channels=feed`);
  t.teardown(() => sse.close());
  await sse.until((ev) => ev.some((e) => e.event === 'rt:subscribed'), 8000, 'rt:subscribed');

  const viaApi = await api(s.http, '/api/publish', { channel: 'feed', event: 'rt:disconnect', data: { code: 4001 } });
  t.equal(viaApi.status, 400, 'HTTP API: 400');
  t.equal(viaApi.body.error.code, 'bad_request');
  t.match(viaApi.body.error.message, /rt:/, 'the message names the reserved prefix');

  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  await c.request({ op: 'subscribe', channel: 'feed' });
  const viaClient = await c.request({ op: 'publish', channel: 'feed', event: 'rt:resync', data: {} });
  t.equal(viaClient.ok, false, 'client publish: refused');
  t.equal(viaClient.error.code, 'bad_frame');

  for (const event of ['pusher_internal:member_removed', 'pusher:error', 'presence:joining', 'disconnect']) {
    const r = await c.request({ op: 'publish', channel: 'feed', event, data: { user_id: 'someone' } });
    t.equal(r.error?.code, 'bad_frame', `client publish of ${event}: refused`);
  }
  const viaPusher = await sdk(s.port).trigger('feed', 'rt:disconnect', { code: 4001 }).then((r) => r.status, (e: { status: number }) => e.status);
  t.equal(viaPusher, 400, "Pusher's HTTP API: 400");

  // A name that merely contains rt: is an ordinary event.
  t.equal((await api(s.http, '/api/publish', { channel: 'feed', event: 'cart:rt:update', data: 1 })).status, 200);
  t.equal((await api(s.http, '/api/publish', { channel: 'feed', event: 'done', data: 1 })).status, 200);
  const events = await sse.until((ev) => (ev.some((e) => e.event === 'done') ? ev : false), 8000, 'done');
  t.same(events.filter((e) => e.event.startsWith('rt:')).map((e) => e.event), ['rt:welcome', 'rt:subscribed'], 'the SSE subscriber saw only real control events');
  t.ok(events.some((e) => e.event === 'cart:rt:update'));
});

t.test("an actor's broadcast cannot use them either", async (t) => {
  const { defineActor } = await import('rt-actors');
  const { testActor } = await import('rt-actors/testing');
  const def = defineActor({
    match: 'room',
    onMessage(ctx, msg) {
      ctx.broadcast(msg.data as string, {});
      return { reply: 'sent' };
    },
  });
  const a = testActor(def);
  const s = await a.join();
  for (const event of ['pusher_internal:member_added', 'rt:resync', 'presence:leaving']) {
    const err = await a.send(s, 'broadcast', event).then(() => undefined, (e: { code?: string; message?: string }) => e);
    t.ok(err, `broadcast of ${event}: refused`);
    t.match(a.logs.join('\n') + String(err?.message), /reserved/, `${event}: the reason says reserved`);
  }
  t.same((await a.send(s, 'broadcast', 'fine')).data, 'sent', 'an ordinary name is published');
});
