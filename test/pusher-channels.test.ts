// Encrypted channels (pusher-js decrypts what the server only relays), cache channels (last event
// replayed, or pusher:cache_miss), and a custom actor's authorize in place of the signature check.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { until } from './helpers/redis.js';
import { TestClient } from './helpers/ws-client.js';
import { APP, connected, nextOn, pusherClient, pusherOptions, RawPusher, sdk, subscribed } from './helpers/pusher.js';

// Every subtest starts a real server: on a loaded machine that alone can take tens of seconds.
t.setTimeout(600_000);

const ACTORS = new URL('./fixtures/pusher-actors', import.meta.url).pathname;

/** A server, the SDK and a connected pusher-js client sharing one encryption master key. */
async function encryptedApp(t: Parameters<typeof startServer>[0]) {
  const s = await startServer(t, pusherOptions());
  const masterKey = randomBytes(32).toString('base64');
  const backend = sdk(s.port, APP, { encryptionMasterKeyBase64: masterKey });
  const p = pusherClient(t, s.port, { encryptionMasterKeyBase64: masterKey });
  await connected(p);
  return { s, backend, p, masterKey };
}

t.test('private-encrypted-: the server relays ciphertext that pusher-js decrypts', async (t) => {
  const { s, backend, p } = await encryptedApp(t);
  const { channel } = await subscribed(p, 'private-encrypted-vault');
  // A native subscriber of the same channel sees what the server sees: ciphertext only.
  const jwt = signJwt({ sub: 'n', channels: ['private-*'], exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });
  const nat = await TestClient.connect(`${s.url}/ws?token=${jwt}`);
  t.teardown(() => nat.close());
  await nat.request({ op: 'subscribe', channel: 'private-encrypted-vault' });
  const plain = nextOn(channel, 'secret');
  const seen = nat.next((f) => f.op === 'message' && f.event === 'secret');
  await backend.trigger('private-encrypted-vault', 'secret', { code: 1234 });
  t.same(await plain, { code: 1234 }, 'pusher-js decrypts the event');
  const wire = (await seen).data;
  t.type(wire.ciphertext, 'string', 'the server only ever had ciphertext');
  t.type(wire.nonce, 'string');
  t.notOk(JSON.stringify(wire).includes('1234'), 'no plaintext on the server');

  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  const est = JSON.parse((await raw.event('pusher:connection_established')).data);
  const auth = backend.authorizeChannel(est.socket_id, 'private-encrypted-vault');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-encrypted-vault', auth: auth.auth } });
  await raw.event('pusher_internal:subscription_succeeded');
  raw.send({ event: 'client-x', channel: 'private-encrypted-vault', data: {} });
  t.match((await raw.event('pusher:error')).data.message, /encrypted/, 'client events are refused on encrypted channels');
});

t.test('cache channels: the last event is replayed on subscribe, else pusher:cache_miss', async (t) => {
  const s = await startServer(t, pusherOptions());
  const backend = sdk(s.port);
  const p = pusherClient(t, s.port);
  await connected(p);
  const ch = p.subscribe('cache-price');
  const miss = nextOn(ch, 'pusher:cache_miss');
  await miss;
  t.pass('an empty cache channel answers pusher:cache_miss');
  await backend.trigger('cache-price', 'tick', { v: 1 });
  await backend.trigger('cache-price', 'tick', { v: 2 });
  const q = pusherClient(t, s.port);
  await connected(q);
  const qc = q.subscribe('cache-price');
  t.same(await nextOn(qc, 'tick'), { v: 2 }, 'a late subscriber gets the last event');
  // also on private-cache-
  await backend.trigger('private-cache-x', 'state', 'on');
  const pc = q.subscribe('private-cache-x');
  t.equal(await nextOn(pc, 'state'), 'on', 'private-cache- replays too');
});

t.test('private-encrypted-cache-: the last ciphertext is replayed and decrypted, else pusher:cache_miss', async (t) => {
  const { s, backend, p, masterKey } = await encryptedApp(t);
  await nextOn(p.subscribe('private-encrypted-cache-vault'), 'pusher:cache_miss');
  t.pass('an empty encrypted cache channel answers pusher:cache_miss');
  await backend.trigger('private-encrypted-cache-vault', 'state', { v: 1 });
  await backend.trigger('private-encrypted-cache-vault', 'state', { v: 2 });
  const q = pusherClient(t, s.port, { encryptionMasterKeyBase64: masterKey });
  await connected(q);
  t.same(await nextOn(q.subscribe('private-encrypted-cache-vault'), 'state'), { v: 2 }, 'a late subscriber gets the last event, decrypted');
});

t.test('cache channels: the replayed event never arrives after a newer live one', async (t) => {
  const s = await startServer(t, pusherOptions());
  const backend = sdk(s.port);
  // The backend keeps the channel busy while clients subscribe on both shards: the last event is
  // read from history after the subscribe, and events published meanwhile reach the client live.
  let seq = 0;
  let stop = false;
  const publishing = (async () => {
    while (!stop) await backend.trigger('cache-busy', 'tick', String(++seq));
  })();
  t.teardown(() => {
    stop = true;
    return publishing;
  });
  await until('the first events', () => seq >= 5, 10000);
  const orders: number[][] = [];
  for (let i = 0; i < 24; i++) {
    const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
    raw.send({ event: 'pusher:subscribe', data: { channel: 'cache-busy' } });
    await raw.event('pusher_internal:subscription_succeeded');
    const got: number[] = [];
    for (let n = 0; n < 6; n++) got.push(Number((await raw.event('tick')).data));
    orders.push(got);
    raw.ws.close();
  }
  stop = true;
  await publishing;
  const late = orders.filter((o) => o.some((v, j) => j > 0 && v <= o[j - 1]!));
  t.same(late, [], 'every subscriber got its events in publication order, the replay first or not at all');
});

t.test("a custom actor's authorize replaces the signature check", async (t) => {
  const s = await startServer(t, pusherOptions({ actors: ACTORS }));
  const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  await raw.event('pusher:connection_established');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-door-1', auth: 'open sesame' } });
  t.equal((await raw.event('pusher_internal:subscription_succeeded')).channel, 'private-door-1', 'the actor let it in');
  raw.send({ event: 'pusher:subscribe', data: { channel: 'private-door-2', auth: 'wrong' } });
  const e = await raw.event('pusher:subscription_error');
  t.equal(e.data.status, 403, 'the actor refused: 403');
  const got = raw.next((f) => f.event === 'knock');
  await api(s.http, '/api/publish', { channel: 'private-door-1', event: 'knock', data: {} });
  t.equal((await got).channel, 'private-door-1');
});

t.test("client events on a public channel go to its actor's onMessage; without one, Pusher's rule holds", async (t) => {
  const s = await startServer(t, pusherOptions({ actors: ACTORS }));
  const open = async () => {
    const raw = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
    await raw.event('pusher:connection_established');
    return raw;
  };
  const [a, b] = [await open(), await open()];
  for (const r of [a, b]) {
    r.send({ event: 'pusher:subscribe', data: { channel: 'room-1' } });
    await r.event('pusher_internal:subscription_succeeded');
  }
  const heard = b.next((f) => f.event === 'shout');
  a.send({ event: 'client-shout', channel: 'room-1', data: { text: 'hi' } });
  t.same(JSON.parse((await heard).data), { text: 'hi' }, "the actor accepted the client event and broadcast its own event");
  a.send({ event: 'client-shout', channel: 'room-1', data: { text: 'no' } });
  t.match((await a.event('pusher:error')).data.message, /the room refuses "no"/, "the actor's refusal reaches the sender");
  // a public channel without onMessage: Pusher's rule, answered by the channel's owner
  a.send({ event: 'pusher:subscribe', data: { channel: 'public-plain' } });
  await a.event('pusher_internal:subscription_succeeded');
  a.send({ event: 'client-x', channel: 'public-plain', data: {} });
  t.match((await a.event('pusher:error')).data.message, /only allowed on private and presence/);
});
