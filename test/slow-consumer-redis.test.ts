// A slow consumer on a host that delivers nothing and hears from no client of its own: the presence of a
// channel changes on another host, and the events reach this one through Redis. They are neither
// deliveries nor answers, so only the idle pass of the slow-consumer sweep (once a second when the host
// is otherwise quiet, src/transports/slow-consumer.ts) can see the buffer grow. It must close the
// connection with the code that says why before uWS's own limit drops an event.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { signJwt } from 'rt-actors';
import { JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { dropNamespace, machineRedis, metric, startHost, until } from './helpers/redis.js';

t.setTimeout(300_000);

const ns = `rt-test-${randomBytes(4).toString('hex')}`;
const redis = await machineRedis(t);
t.teardown(() => dropNamespace(redis.port, ns));

const token = (sub: string, info: unknown) => signJwt({ sub, exp: Math.floor(Date.now() / 1000) + 600, channels: ['presence-*'], user_info: info }, { secret: JWT_SECRET });

t.test('presence events from another host alone fill a buffer: the idle sweep closes it with 4008', async (t) => {
  const quiet = await startHost(t, redis.url, ns, { workers: 1, args: ['--max-backpressure', '64kb'] });
  // --rate-limit 0: one client churns as fast as its answers come (the default allows 100 frames a second).
  const busy = await startHost(t, redis.url, ns, { workers: 1, args: ['--rate-limit', '0'] });
  const ch = 'presence-slow-across';
  const viewer = await TestClient.connect(`${quiet.url}/ws?token=${token('viewer', { name: 'viewer' })}`);
  t.teardown(() => viewer.close());
  t.equal((await viewer.request({ op: 'subscribe', channel: ch })).ok, true);
  const churner = await TestClient.connect(busy.url + '/ws');
  t.teardown(() => churner.close());
  t.equal((await churner.request({ op: 'auth', token: token('churner', { bio: 'x'.repeat(3000) }) })).ok, true);
  // The first join crosses: the viewer sees it before it stops reading.
  await churner.request({ op: 'subscribe', channel: ch });
  await viewer.next((f) => f.op === 'join' && f.member.user_id === 'churner', 10_000);
  await churner.request({ op: 'unsubscribe', channel: ch });
  await viewer.next((f) => f.op === 'leave' && f.member.user_id === 'churner', 10_000);
  (viewer.ws as unknown as { _socket: { pause(): void } })._socket.pause();

  const closed = () => metric(quiet, 'rt_refusals_total', 'reason="slow_consumer"');
  let cycles = 0;
  for (; cycles < 8000; cycles++) {
    await churner.request({ op: 'subscribe', channel: ch });
    await churner.request({ op: 'unsubscribe', channel: ch });
    if (cycles % 25 === 0 && (await closed()) > 0) break;
  }
  t.ok(cycles < 8000, `the quiet host gave up on the viewer after ${cycles} join/leave cycles on the other host`);
  t.equal(await metric(quiet, 'rt_slow_consumer_drops_total'), 0, 'closed by the sweep: uWS never had to drop an event');

  (viewer.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  const c = await viewer.waitClose(20_000);
  t.equal(c.code, 4008, 'closed with the slow-consumer code');
  t.match(c.reason, /slow consumer/);
  const events = viewer.frames.filter((f) => (f.op === 'join' || f.op === 'leave') && f.member.user_id === 'churner');
  t.ok(events.length > 10, `${events.length} presence events were read before the close`);
  t.ok(
    events.every((f, i) => f.op === (i % 2 === 0 ? 'join' : 'leave')),
    'joins and leaves alternate, none missing before the close',
  );
  // The quiet host still serves: a new viewer sees the churner join.
  const next = await TestClient.connect(`${quiet.url}/ws?token=${token('viewer2', { name: 'viewer2' })}`);
  t.teardown(() => next.close());
  t.equal((await next.request({ op: 'subscribe', channel: ch })).ok, true);
  await churner.request({ op: 'subscribe', channel: ch });
  await until('the churner’s join reaches a new viewer on the quiet host', () => next.frames.some((f) => f.op === 'join' && f.member.user_id === 'churner'));
  t.pass('the quiet host relays presence to its other subscribers');
});
