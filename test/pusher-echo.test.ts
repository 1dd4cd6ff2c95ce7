// Laravel Echo 2 with broadcaster 'pusher' and 'reverb' (pusher-js underneath, as a Laravel app ships
// it), authorized the way Laravel's /broadcasting/auth does it (the Pusher SDK's authorizeChannel):
// listen, private channels, whisper, toOthers, presence here/joining/leaving.
import t, { type Test } from 'tap';
import Echo from 'laravel-echo';
import Pusher from 'pusher-js';
import { startServer } from './helpers/server.js';
import { APP, sdk, pusherOptions } from './helpers/pusher.js';

// Every subtest starts a real server: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

// One server for both broadcasters (each uses channels of its own).
const shared = await startServer(t, pusherOptions());

function once<T = unknown>(register: (cb: (v: T) => void) => void, timeoutMs = 5000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for an Echo callback')), timeoutMs);
    register((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

function echo(t: Test, broadcaster: 'pusher' | 'reverb', port: number, user: { id: string; name: string }): Echo<any> {
  const backend = sdk(port);
  const transport = broadcaster === 'reverb'
    ? { wsHost: '127.0.0.1', wsPort: port, wssPort: port, forceTLS: false }
    : { cluster: 'mt1', wsHost: '127.0.0.1', wsPort: port, forceTLS: false };
  const e = new Echo({
    broadcaster,
    key: APP.key,
    ...transport,
    enabledTransports: ['ws'],
    disableStats: true,
    Pusher,
    // What Laravel's BroadcastController answers, computed with the same SDK.
    channelAuthorization: {
      customHandler: ({ socketId, channelName }: { socketId: string; channelName: string }, cb: (e: Error | null, d: unknown) => void) =>
        cb(null, channelName.startsWith('presence-') ? backend.authorizeChannel(socketId, channelName, { user_id: user.id, user_info: { name: user.name } }) : backend.authorizeChannel(socketId, channelName)),
    },
  } as never) as Echo<any>;
  t.teardown(() => e.disconnect());
  return e;
}

async function connected(e: Echo<any>): Promise<void> {
  const p = (e.connector as any).pusher as Pusher;
  if (p.connection.state === 'connected') return;
  await once((cb) => p.connection.bind('connected', cb));
}

for (const broadcaster of ['pusher', 'reverb'] as const) {
  t.test(`Echo broadcaster '${broadcaster}': listen, private, whisper, toOthers, presence`, async (t) => {
    const s = shared;
    const backend = sdk(s.port);
    const ann = echo(t, broadcaster, s.port, { id: '1', name: 'Ann' });
    const bob = echo(t, broadcaster, s.port, { id: '2', name: 'Bob' });
    await Promise.all([connected(ann), connected(bob)]);

    // public channel with Laravel's event naming (App\Events\…)
    const shipped = once((cb) => ann.channel(`orders-${broadcaster}`).listen('OrderShipped', cb));
    await once((cb) => ann.channel(`orders-${broadcaster}`).subscribed(cb));
    await backend.trigger(`orders-${broadcaster}`, 'App\\Events\\OrderShipped', { id: 5 });
    t.same(await shipped, { id: 5 }, 'listen("OrderShipped")');

    // private channel, whisper, toOthers
    const annChat = ann.private(`chat.${broadcaster}`);
    const bobChat = bob.private(`chat.${broadcaster}`);
    await Promise.all([once((cb) => annChat.subscribed(cb)), once((cb) => bobChat.subscribed(cb))]);
    const typing = once((cb) => bobChat.listenForWhisper('typing', cb));
    annChat.whisper('typing', { name: 'Ann' });
    t.same(await typing, { name: 'Ann' }, 'whisper');
    let annGot = false;
    annChat.listen('.mine', () => (annGot = true));
    const bobGot = once((cb) => bobChat.listen('.mine', cb));
    await backend.trigger(`private-chat.${broadcaster}`, 'mine', 'only others', { socket_id: ann.socketId() });
    t.equal(await bobGot, 'only others');
    const marker = once((cb) => annChat.listen('.marker', cb));
    await backend.trigger(`private-chat.${broadcaster}`, 'marker', 1);
    await marker;
    t.equal(annGot, false, 'toOthers: X-Socket-ID excluded the sender');

    // presence
    const here = once<unknown[]>((cb) => ann.join(`room.${broadcaster}`).here(cb));
    t.same(await here, [{ name: 'Ann' }], 'here()');
    const joining = once((cb) => ann.join(`room.${broadcaster}`).joining(cb));
    const bobHere = once<any[]>((cb) => bob.join(`room.${broadcaster}`).here(cb));
    t.same((await bobHere).map((m) => m.name).sort(), ['Ann', 'Bob']);
    t.same(await joining, { name: 'Bob' }, 'joining(Bob)');
    const leaving = once((cb) => ann.join(`room.${broadcaster}`).leaving(cb));
    bob.leave(`room.${broadcaster}`);
    t.same(await leaving, { name: 'Bob' }, 'leaving(Bob)');
  });
}
