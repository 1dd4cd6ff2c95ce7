// Pusher protocol edge cases found by probing the server with raw sockets: the order a connection's
// subscribe/unsubscribe frames take effect in, the status of a full presence channel whichever shard
// owns it, user-controlled names that are also Object.prototype's (`__proto__`), and the exact size
// limit of a client event's data.
import t from 'tap';
import { startServer } from './helpers/server.js';
import { channelOwnedBy } from './helpers/faults.js';
import { APP, connected, pusherClient, pusherOptions, RawPusher, sdk, subscribed } from './helpers/pusher.js';

t.setTimeout(300_000);

const ACTORS = new URL('./fixtures/pusher-actors', import.meta.url).pathname;
const shared = await startServer(t, pusherOptions({ actors: ACTORS }));

async function rawSocket(t: Parameters<typeof RawPusher.open>[0], url: string): Promise<{ raw: RawPusher; socketId: string }> {
  const raw = await RawPusher.open(t, `${url}/app/${APP.key}?protocol=7`);
  const socketId = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id as string;
  return { raw, socketId };
}

const succeeded = (channel: string) => (f: any) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === channel;

t.test('subscribe, unsubscribe, subscribe sent back to back take effect in order: the connection ends subscribed', async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const { raw } = await rawSocket(t, s.url);
  // Its actor's authorize takes 200 ms: the unsubscribe and the second subscribe arrive while the first waits.
  const channel = 'private-slow-door-1';
  const sub = { event: 'pusher:subscribe', data: { channel, auth: 'open sesame' } };
  raw.send(sub);
  raw.send({ event: 'pusher:unsubscribe', data: { channel } });
  raw.send(sub);
  await raw.next(succeeded(channel));
  await raw.next(succeeded(channel));
  t.pass('each subscribe is answered subscription_succeeded');

  const info = await (await backend.get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } })).json();
  t.same(info, { occupied: true, subscription_count: 1 }, 'the channel counts the connection once');
  await backend.trigger(channel, 'after', { n: 1 });
  t.same(JSON.parse((await raw.event('after')).data), { n: 1 }, 'a later trigger is delivered');
  t.notOk(raw.frames.some((f) => f.event === 'pusher:subscription_error'), 'no subscription_error');
});

t.test('a full presence channel answers 403 whichever shard owns it and whichever the subscriber is on', async (t) => {
  const s = await startServer(t, pusherOptions({ workers: 2, maxPresenceMembers: 1 }));
  const backend = sdk(s.port);
  for (const owner of [0, 1]) {
    const channel = channelOwnedBy('presence-full-', owner, 2);
    const first = await rawSocket(t, s.url);
    first.raw.send({ event: 'pusher:subscribe', data: { channel, ...backend.authorizeChannel(first.socketId, channel, { user_id: 'first' }) } });
    await first.raw.next(succeeded(channel));
    // Connections are handed to the shards in turn: two in a row cover both.
    for (const user of ['second', 'third']) {
      const { raw, socketId } = await rawSocket(t, s.url);
      raw.send({ event: 'pusher:subscribe', data: { channel, ...backend.authorizeChannel(socketId, channel, { user_id: user }) } });
      const e = await raw.event('pusher:subscription_error');
      t.equal(e.channel, channel);
      t.equal(e.data.status, 403, `${user} on ${channel} (owned by shard ${owner}): 403`);
      t.match(e.data.error, /is full/);
    }
  }
});

t.test('"__proto__" as a presence user_id and as a channel name is listed like any other', async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const channel = 'presence-protos';
  const proto = await rawSocket(t, s.url);
  proto.raw.send({ event: 'pusher:subscribe', data: { channel, ...backend.authorizeChannel(proto.socketId, channel, { user_id: '__proto__', user_info: { name: 'P' } }) } });
  await proto.raw.next(succeeded(channel));

  const other = await rawSocket(t, s.url);
  other.raw.send({ event: 'pusher:subscribe', data: { channel, ...backend.authorizeChannel(other.socketId, channel, { user_id: 'u2' }) } });
  const { presence } = JSON.parse((await other.raw.next(succeeded(channel))).data);
  t.same(presence.ids.slice().sort(), ['__proto__', 'u2']);
  t.equal(presence.count, 2);
  t.same(Object.keys(presence.hash).sort(), ['__proto__', 'u2'], 'the hash has one key per member');
  t.same(presence.hash['__proto__'], { name: 'P' }, "the member's user_info");

  const p = pusherClient(t, s.port, { member: { user_id: 'u3' } });
  await connected(p);
  const { channel: ch } = await subscribed(p, channel);
  t.same(ch.members.get('__proto__')?.info, { name: 'P' }, 'pusher-js finds the member');
  let each = 0;
  ch.members.each(() => each++);
  t.equal(each, 3, 'pusher-js iterates every member');

  // pusher-js keeps its channels in a plain object, so a raw socket subscribes to this one.
  proto.raw.send({ event: 'pusher:subscribe', data: { channel: '__proto__' } });
  await proto.raw.next(succeeded('__proto__'));
  const listed = await (await backend.get({ path: '/channels', params: {} })).json();
  t.ok(Object.prototype.hasOwnProperty.call(listed.channels, '__proto__'), 'GET /channels lists the channel "__proto__"');
  const triggered = await (await backend.trigger(['__proto__', 'plain'], 'e', {}, { info: 'subscription_count' })).json();
  t.same(triggered.channels['__proto__'], { subscription_count: 1 }, "a trigger's info names the channel \"__proto__\"");
});

t.test('client events: at most maxEventPayload bytes of data, counted exactly, the rest of the frame not counted', async (t) => {
  const s = shared;
  const backend = sdk(s.port);
  const channel = 'private-sizes';
  const sender = await rawSocket(t, s.url);
  const peer = await rawSocket(t, s.url);
  for (const c of [sender, peer]) {
    c.raw.send({ event: 'pusher:subscribe', data: { channel, ...backend.authorizeChannel(c.socketId, channel) } });
    await c.raw.next(succeeded(channel));
  }
  const limit = 10240;
  const send = (event: string, data: unknown) => sender.raw.send({ event, channel, data });
  const refused: [string, unknown][] = [
    ['a string one byte over', 'x'.repeat(limit + 1)],
    ['a string of two-byte characters, 2 bytes over', '\u00e9'.repeat(limit / 2 + 1)],
    ['an object whose JSON is one byte over', { a: 'x'.repeat(limit - 8 + 1) }],
  ];
  for (const [what, data] of refused) {
    send('client-refused', data);
    const e = await sender.raw.event('pusher:error');
    t.match(e.data.message, new RegExp(`larger than ${limit} bytes`), `${what}: refused`);
  }
  // Each `"` is escaped in the frame: the frame is twice the limit, the data exactly at it.
  send('client-string', '"'.repeat(limit));
  t.equal((await peer.raw.event('client-string')).data, '"'.repeat(limit), 'a string of exactly the limit is relayed');
  send('client-object', { a: 'x'.repeat(limit - 8) });
  // Pusher's data is a string on the wire: an object arrives as its JSON text.
  t.equal((await peer.raw.event('client-object')).data.length, limit, 'an object whose JSON is exactly the limit is relayed');
  t.notOk(peer.raw.frames.some((f) => f.event === 'client-refused'), 'nothing refused reached the peer');
});

t.test('a signature as long as a real one in characters but not in bytes is refused, and the shard carries on', async (t) => {
  const s = await startServer(t, pusherOptions({ workers: 1 }));
  const backend = sdk(s.port);
  // A bystander on the same (only) shard: it must keep its connection through all of this.
  const bystander = await rawSocket(t, s.url);
  bystander.raw.send({ event: 'pusher:subscribe', data: { channel: 'news' } });
  await bystander.raw.next(succeeded('news'));
  const wide = `${APP.key}:${'é'.repeat(64)}`; // 64 characters, 128 bytes: a SHA-256 hex digest is 64 bytes

  const sub = await rawSocket(t, s.url);
  sub.raw.send({ event: 'pusher:subscribe', data: { channel: 'private-wide', auth: wide } });
  const err = await sub.raw.event('pusher:subscription_error');
  t.equal(err.data.status, 401, 'subscribe: 401 subscription_error');
  t.match(err.data.error, /Invalid signature/);

  const api = await fetch(`${s.http}/apps/${APP.id}/channels?auth_key=${APP.key}&auth_timestamp=${Math.floor(Date.now() / 1000)}&auth_version=1.0&auth_signature=${encodeURIComponent('é'.repeat(64))}`);
  t.equal(api.status, 401, 'HTTP API: 401');
  t.match(await api.text(), /Invalid signature/);

  const signin = await rawSocket(t, s.url);
  signin.raw.send({ event: 'pusher:signin', data: { user_data: '{"id":"x"}', auth: wide } });
  t.equal((await signin.raw.waitClose()).code, 4009, 'sign-in: closed with 4009');

  // The sentinel: a publication reaches the bystander, which was never told to reconnect.
  await backend.trigger('news', 'still-here', { n: 1 });
  t.same(JSON.parse((await bystander.raw.event('still-here')).data), { n: 1 }, 'the bystander is still connected and served');
  t.notOk(bystander.raw.frames.some((f) => f.event === 'pusher:error'), 'and was sent no error');
});

t.test('an auth that is not a string is refused as an invalid signature, not as an internal error', async (t) => {
  const { raw, socketId } = await rawSocket(t, shared.url);
  // String() of an object whose toString is not a function throws: this was answered 500 "Internal error".
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-auth-object', auth: { toString: 1 } } });
  const err = await raw.next((f) => f.event === 'pusher:subscription_error' && f.channel === 'private-auth-object');
  t.same(err.data, { type: 'AuthError', error: `Invalid signature: Expected HMAC SHA256 hex digest of ${socketId}:private-auth-object, but got a value of type object`, status: 401 });
  raw.send({ event: 'pusher:subscribe', data: { channel: 'presence-auth-array', auth: [{ toString: 1 }], channel_data: '{"user_id":"1"}' } });
  const err2 = await raw.next((f) => f.event === 'pusher:subscription_error' && f.channel === 'presence-auth-array');
  t.equal(err2.data.status, 401, 'presence: 401');
  t.match(err2.data.error, /but got a value of type array$/);
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-auth-number', auth: 12 } });
  t.match((await raw.next((f) => f.event === 'pusher:subscription_error' && f.channel === 'private-auth-number')).data.error, /but got a value of type number$/);
});

t.test('a client event whose name holds a control character is refused, as a native or Socket.IO whisper is', async (t) => {
  const backend = sdk(shared.port);
  const join = async () => {
    const { raw, socketId } = await rawSocket(t, shared.url);
    raw.send({ event: 'pusher:subscribe', data: { channel: 'private-ctl', auth: backend.authorizeChannel(socketId, 'private-ctl').auth } });
    await raw.next(succeeded('private-ctl'));
    return raw;
  };
  const sender = await join();
  const other = await join();
  // It was delivered: as it came to native and Socket.IO subscribers, with "\n" made a space over SSE.
  sender.send({ event: 'client-a\ndata: forged', channel: 'private-ctl', data: { n: 1 } });
  const err = await sender.event('pusher:error');
  t.equal(err.data.message, 'Client event rejected: the event name holds a control character');
  sender.send({ event: 'client-\u0000\u001b[31m', channel: 'private-ctl', data: { n: 2 } });
  t.match((await sender.event('pusher:error')).data.message, /control character/, 'NUL and ESC too');
  // The sentinel: a valid client event after them is the first the other subscriber gets.
  sender.send({ event: 'client-ok', channel: 'private-ctl', data: { n: 3 } });
  const first = await other.next((f) => typeof f.event === 'string' && f.event.startsWith('client-'));
  t.equal(first.event, 'client-ok', 'neither refused event reached the other subscriber');
});

t.test('the HTTP API refuses an event name holding a control character, as POST /api/publish does', async (t) => {
  const backend = sdk(shared.port);
  for (const name of ['a\nb', 'x\u0000', 'y\u009b']) {
    const err = await backend.trigger('news', name, { n: 1 }).then(() => undefined, (e: { status?: number; body?: string }) => e);
    t.equal(err?.status, 400, `${JSON.stringify(name)}: 400`);
    t.equal(JSON.parse(err?.body ?? '{}').error?.message, 'body: "name" must not hold control characters');
  }
  const batch = await backend.triggerBatch([{ channel: 'news', name: 'ok', data: '1' }, { channel: 'news', name: 'b\rc', data: '2' }]).then(() => undefined, (e: { status?: number; body?: string }) => e);
  t.equal(batch?.status, 400, 'batch: 400');
  t.match(JSON.parse(batch?.body ?? '{}').error?.message, /^batch\[1\].*"name" must not hold control characters$/);
  t.equal((await backend.trigger('news', 'fine', { n: 1 })).status, 200, 'a plain name is still taken');
});
