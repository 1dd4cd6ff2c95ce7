// Pusher protocol edge cases found by probing the server with raw sockets: the order a connection's
// subscribe/unsubscribe frames take effect in, the status of a full presence channel whichever shard
// owns it, user-controlled names that are also Object.prototype's (`__proto__`), and the exact size
// limit of a client event's data.
import t from 'tap';
import { startServer } from './helpers/server.js';
import { APP, pusherOptions, RawPusher, sdk } from './helpers/pusher.js';

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
