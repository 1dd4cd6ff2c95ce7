// The channel inspector's stream (GET /api/tap) against a real server, with clients that misbehave: an
// inspector that stops reading must be cut off without harming the shard or the channel's subscribers.
import t from 'tap';
import net from 'node:net';
import { api, API_KEY, startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { APP, APP_B, pusherClient } from './helpers/pusher.js';

/** Opens /api/tap on a raw socket that reads the response head and then stops reading. */
function stalledTap(port: number, channel: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    sock.on('error', reject);
    sock.write(`GET /api/tap?channel=${channel} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${API_KEY}\r\n\r\n`);
    sock.once('data', (d) => {
      sock.pause();
      if (!d.toString().startsWith('HTTP/1.1 200')) reject(new Error(`tap refused: ${d.toString().slice(0, 80)}`));
      else resolve(sock);
    });
  });
}

async function tapsOpen(http: string): Promise<number> {
  const s = (await api(http, '/api/stats')).body;
  return s.connections.byKind.filter((k: { transport: string }) => k.transport === 'tap').reduce((n: number, k: { count: number }) => n + k.count, 0);
}

t.test('an inspector that stops reading is cut off; the shard and the subscribers carry on', async (t) => {
  const s = await startServer(t, { dashboard: true, maxBackpressure: 64 * 1024 });
  const sub = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => sub.close());
  t.equal((await sub.request({ op: 'subscribe', channel: 'heavy' })).ok, true);
  const tapSock = await stalledTap(s.port, 'heavy');
  t.teardown(() => tapSock.destroy());
  await waitFor(async () => (await tapsOpen(s.http)) === 1, 'the tap is open');

  // Publish until the server gives up on the stalled inspector (loopback buffers absorb a few MB first).
  const big = 'x'.repeat(30_000);
  let sent = 0;
  const deadline = Date.now() + 30_000;
  while ((await tapsOpen(s.http)) > 0) {
    if (Date.now() > deadline) throw new Error(`the stalled tap was never cut off after ${sent} publishes`);
    // Batch messages over several connections, so that some reach the shard holding the tap: there the
    // delivery runs inside the publish request's handler, while uWS has that request's socket corked.
    const from = sent;
    const answers = await Promise.all(Array.from({ length: 16 }, (_, i) => api(s.http, '/api/publish', { channel: 'heavy', event: 'e', data: { n: from + i, big } })));
    for (const r of answers) if (r.status !== 200) return t.fail(`a publish answered ${r.status}: ${JSON.stringify(r.body)}`);
    sent += answers.length;
  }
  t.pass(`the stalled tap was cut off after ${sent} publishes`);

  t.equal((await api(s.http, '/api/publish', { channel: 'heavy', event: 'sentinel', data: null })).status, 200);
  await sub.next((f) => f.op === 'message' && f.event === 'sentinel', 15_000);
  const got = sub.frames.filter((f) => f.op === 'message' && f.event === 'e').map((f) => f.data.n as number);
  t.same(got.sort((a, b) => a - b), Array.from({ length: sent }, (_, i) => i), 'the subscriber got every publication once');
  t.equal(sub.closed, undefined, 'the subscriber is still connected');
  const health = await (await fetch(s.http + '/health')).json();
  t.same(health.workers, { total: 2, alive: 2, stuck: 0 }, 'every shard is alive');
  const metrics = await (await fetch(s.http + '/metrics')).text();
  t.match(metrics, /^rt_shard_restarts_total 0$/m, 'no shard was replaced');
  t.match(metrics, /^rt_refusals_total\{reason="slow_consumer"\} 1$/m, 'the cut-off inspector counts as a slow consumer');
  t.equal((await api(s.http, '/api/stats')).body.refusals.slow_consumer, 1, 'on the dashboard too');
});

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test("the busiest channels are the default app's, as /api/channels lists them", async (t) => {
  const s = await startServer(t, { dashboard: true, pusherApps: [APP, APP_B] });
  const other = pusherClient(t, s.port, { app: APP_B });
  const ch = other.subscribe('news');
  await new Promise<void>((resolve) => ch.bind('pusher:subscription_succeeded', () => resolve()));
  const mine = await TestClient.connect(`${s.url}/ws`);
  t.teardown(() => mine.close());
  t.equal((await mine.request({ op: 'subscribe', channel: 'mine' })).ok, true);

  const names = (await api(s.http, '/api/stats')).body.topChannels.map((c: { name: string }) => c.name);
  t.same(names, ['mine'], "app B's news is not listed under its inside name (\"news @2002\")");
  t.same((await api(s.http, '/api/channels')).body.channels.map((c: { name: string }) => c.name), names, 'as /api/channels lists them');
});
