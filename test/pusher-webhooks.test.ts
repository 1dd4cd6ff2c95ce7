// Pusher webhooks to a local receiver that checks every batch with the official SDK's webhook()
// (X-Pusher-Key, X-Pusher-Signature): channel_occupied/vacated, member_added/removed, client_event,
// cache_miss; a receiver that fails first gets the batch again.
import t from 'tap';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startServer } from './helpers/server.js';
import { until } from './helpers/redis.js';
import { APP, connected, pusherClient, RawPusher, sdk, subscribed } from './helpers/pusher.js';
import { webhookDestination } from '../src/transports/pusher/webhooks.js';

// Every subtest starts a real server: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

async function receiver(t: { teardown(fn: () => unknown): void }, failFirst: number) {
  const events: any[] = [];
  let invalid = 0;
  let posts = 0;
  const srv = createServer(async (req: IncomingMessage, res) => {
    let body = '';
    for await (const c of req) body += c;
    posts++;
    if (posts <= failFirst) {
      res.writeHead(500).end();
      return;
    }
    const hook = sdk(1).webhook({ headers: req.headers as Record<string, string>, rawBody: body });
    if (!hook.isValid()) invalid++;
    else {
      const data = hook.getData() as { time_ms: number; events: any[] };
      if (typeof data.time_ms === 'number') events.push(...data.events);
    }
    res.writeHead(200).end();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/pusher/webhook`, events, invalid: () => invalid, posts: () => posts };
}

t.test('channel, member, client and cache events reach a signed webhook, retried after a failure', async (t) => {
  const rx = await receiver(t, 1);
  const s = await startServer(t, { pusherApps: [{ ...APP, webhooks: [{ url: rx.url }] }] });
  const ann = pusherClient(t, s.port, { member: { user_id: '1' } });
  const bob = pusherClient(t, s.port, { member: { user_id: '2' } });
  await Promise.all([connected(ann), connected(bob)]);
  const a = await subscribed(ann, 'presence-hooks');
  const b = await subscribed(bob, 'presence-hooks');
  a.channel.trigger('client-ping', { x: 1 });
  ann.subscribe('cache-empty');
  const has = (pred: (e: any) => boolean) => rx.events.some(pred);
  await until('occupied, members, client event and cache miss', () =>
    has((e) => e.name === 'channel_occupied' && e.channel === 'presence-hooks') &&
    has((e) => e.name === 'member_added' && e.user_id === '2') &&
    has((e) => e.name === 'client_event' && e.event === 'client-ping') &&
    has((e) => e.name === 'cache_miss' && e.channel === 'cache-empty'), 20000);
  const ce = rx.events.find((e) => e.name === 'client_event');
  t.same({ ...ce }, { name: 'client_event', channel: 'presence-hooks', event: 'client-ping', data: '{"x":1}', socket_id: ann.connection.socket_id, user_id: '1' }, 'client_event as Pusher sends it');
  t.equal(rx.events.filter((e) => e.name === 'channel_occupied' && e.channel === 'presence-hooks').length, 1, 'occupied once for two subscribers');
  t.ok(rx.posts() >= 2, 'the first (failed) POST was retried');

  bob.unsubscribe('presence-hooks');
  b.channel.unbind_all();
  ann.unsubscribe('presence-hooks');
  await until('member_removed and vacated', () => has((e) => e.name === 'member_removed' && e.user_id === '2') && has((e) => e.name === 'channel_vacated' && e.channel === 'presence-hooks'), 20000);
  t.equal(rx.invalid(), 0, 'every batch had a valid X-Pusher-Signature');
});

t.test('a second subscribe to a presence channel the connection is in changes nothing: its client events still name the member it joined as', async (t) => {
  const rx = await receiver(t, 0);
  const s = await startServer(t, { pusherApps: [{ ...APP, webhooks: [{ url: rx.url }] }] });
  const backend = sdk(s.port);
  const channel = 'presence-twice';
  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  const socketId = JSON.parse((await raw.event('pusher:connection_established')).data).socket_id as string;
  raw.send({ event: 'pusher:subscribe', data: { channel, ...backend.authorizeChannel(socketId, channel, { user_id: 'alice' }) } });
  await raw.event('pusher_internal:subscription_succeeded');
  // The same connection subscribes again, signed for another user, then sends a client event.
  raw.send({ event: 'pusher:subscribe', data: { channel, ...backend.authorizeChannel(socketId, channel, { user_id: 'mallory' }) } });
  raw.send({ event: 'client-hello', channel, data: { n: 1 } });
  await until('the client event webhook', () => rx.events.some((e) => e.name === 'client_event' && e.event === 'client-hello'), 20000);
  const ce = rx.events.find((e) => e.name === 'client_event' && e.event === 'client-hello');
  t.equal(ce.user_id, 'alice', 'the client event is from the member the connection joined as');
  const users = await (await backend.get({ path: `/channels/${channel}/users` })).json();
  t.same(users.users.map((u: { id: string }) => u.id), ['alice'], 'the members are unchanged');
});

// A webhook URL with credentials (basic auth on the app's webhook route) was accepted at start, but
// fetch refuses such a URL: every batch failed, and after 7 attempts the warning quoted the password.
t.test('a webhook URL with credentials POSTs them as basic auth, and the log never shows them', async (t) => {
  const auths: (string | undefined)[] = [];
  const srv = createServer(async (req, res) => {
    for await (const _ of req) void _;
    auths.push(req.headers.authorization);
    res.writeHead(200).end();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => srv.close());
  const port = (srv.address() as AddressInfo).port;
  const s = await startServer(t, { pusherApps: [{ ...APP, webhooks: [{ url: `http://hooks:p%40ss%3Aword@127.0.0.1:${port}/pusher/webhook?token=t0k3n` }] }] });
  const c = pusherClient(t, s.port);
  await connected(c);
  await subscribed(c, 'basic-auth-hooks');
  await until('the webhook is POSTed', () => auths.length > 0, 20000);
  t.equal(auths[0], `Basic ${Buffer.from('hooks:p@ss:word').toString('base64')}`, 'the credentials, decoded, as basic auth');

  const shown = webhookDestination(`http://hooks:p%40ss@127.0.0.1:${port}/pusher/webhook?token=t0k3n`);
  t.equal(shown.shown, `http://127.0.0.1:${port}/pusher/webhook?…`, 'logged without credentials or query');
  t.equal(shown.url, `http://127.0.0.1:${port}/pusher/webhook?token=t0k3n`, 'POSTed to the URL without its credentials');
});
