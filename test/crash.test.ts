import t from 'tap';
import { startServer, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { request } from './helpers/http-stream.js';
import { FAULT_ACTORS, channelOwnedBy, clientOnShard, listenProbe, until } from './helpers/faults.js';

t.test('a crashed shard is replaced; its clients reconnect and resume; others keep their channels', async (t) => {
  const s = await startServer(t);
  const a = await TestClient.connect(s.url + '/ws'); // shard 0 or 1
  const b = await TestClient.connect(s.url + '/ws');
  const [onZero, onOne] = a.welcome.socket_id.startsWith('0.') ? [a, b] : [b, a];
  t.teardown(() => (a.close(), b.close()));
  // channels owned by each shard (found through the API's owner-routed info)
  const channels = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'];
  for (const c of [onZero, onOne]) for (const ch of channels) await c.request({ op: 'subscribe', channel: ch });
  for (const ch of channels) await api(s.http, '/api/publish', { channel: ch, event: 'before', data: 1 });
  await onOne.waitForMessages('zeta', 1);
  for (const ch of channels) await onZero.waitForMessages(ch, 1);
  const lastSeen = Object.fromEntries(channels.map((ch) => [ch, onZero.messages(ch).at(-1)?.offset ?? 0]));
  const epochs: Record<string, string> = {};
  // The server's uptime, not a thread's: it must not start again with the replaced shard.
  // One connection per request (the acceptor hands them to the shards in turn): fetch would keep one.
  const uptime = async () => (await request('GET', `${s.http}/health`)).json.uptime as number;
  const before = await until(async () => ((await uptime()) >= 2 ? await uptime() : undefined), 'uptime of 2 s', 15_000);
  s.crashShard(0);
  const closed = await onZero.waitClose(10000);
  t.equal(closed.code, 1011, 'client of the crashed shard is told to reconnect');
  t.match(onZero.frames.find((f) => f.op === 'disconnect'), { reconnect: true });
  // wait until the shard is back
  await until(async () => (await api(s.http, '/health', undefined, { key: null })).body.workers?.alive === 2, 'shard replaced', 15_000);
  t.pass('shard replaced');
  // Four requests on four connections cover the new shard.
  for (let i = 0; i < 4; i++) t.ok((await uptime()) >= before, '/health uptime did not go back with the new shard');
  // the surviving shard's client still receives on every channel, including those the dead shard owned
  for (const ch of channels) {
    const r = await api(s.http, '/api/publish', { channel: ch, event: 'after', data: 2 });
    t.equal(r.status, 200, `publish to ${ch} after restart`);
  }
  for (const ch of channels) {
    const got = await onOne.waitForMessages(ch, 2);
    t.equal(got.at(-1)!.event, 'after', `survivor got ${ch}`);
    t.ok(got.at(-1)!.offset > got.at(-2)!.offset, `offsets on ${ch} keep increasing across the owner restart`);
  }
  // the crashed shard's client reconnects and resumes from what it last saw
  const again = await TestClient.connect(s.url + '/ws');
  t.teardown(() => again.close());
  let recovered = 0;
  for (const ch of channels) {
    const sub = await onOne.request({ op: 'history', channel: ch, limit: 1 });
    epochs[ch] = sub.epoch;
    const r = await again.request({ op: 'subscribe', channel: ch, since: { offset: lastSeen[ch], epoch: sub.epoch } });
    t.equal(r.ok, true);
    if (r.recovered) {
      recovered++;
      t.same(r.publications.map((p: any) => p.event), ['after'], `${ch}: missed message resumed`);
    }
  }
  t.ok(recovered >= channels.length / 2, `channels whose history survived were recovered (${recovered}/${channels.length})`);
});

t.test('a replaced shard starts in a fresh thread: no module state or timer of the dead shard survives', async (t) => {
  const s = await startServer(t, { actors: FAULT_ACTORS });
  const probe = listenProbe(t);
  const channel = channelOwnedBy('probe-', 0, 2);
  // The watcher lives on the shard that does not crash; after the restart it is re-subscribed.
  const watcher = await clientOnShard(s.url + '/ws', 1, t);
  await watcher.request({ op: 'subscribe', channel });
  const report = async (tag: string) => {
    const reply = watcher.next((f) => f.op === 'message' && f.event === 'report' && f.data?.tag === tag, 10_000);
    t.equal((await api(s.http, '/api/publish', { channel, event: 'report', data: { tag } })).status, 200);
    return (await reply).data as { threadId: number; registry: string[] };
  };
  await api(s.http, '/api/publish', { channel, event: 'remember', data: { tag: 'before-crash' } });
  const before = await report('before');
  t.same(before.registry, ['before-crash'], 'the probe keeps module-level state while its shard lives');
  // A timer nobody clears, due shortly after the crash.
  const ghostDue = Date.now() + 1000;
  await api(s.http, '/api/publish', { channel, event: 'arm', data: { tag: 'ghost', ms: 1000 } });

  s.crashShard(0);
  await until(async () => (await api(s.http, '/health', undefined, { key: null })).body.workers?.alive === 2 && /^rt_shard_restarts_total(\{[^}]*\})? 1$/m.test((await api(s.http, '/metrics', undefined, { key: null })).body), 'shard 0 replaced');
  await until(async () => (await api(s.http, '/api/channels/' + channel)).body.subscribers === 1, 'watcher re-subscribed with the new owner');

  const after = await report('after');
  t.not(after.threadId, before.threadId, 'the new shard runs in another thread');
  t.same(after.registry, [], "the dead shard's module-level registry is gone");
  // Sentinel: a timer the new shard arms to fire after the ghost was due. Once it fired, the ghost
  // would have fired too, had the dead shard's timers survived.
  await api(s.http, '/api/publish', { channel, event: 'arm', data: { tag: 'sentinel', ms: Math.max(0, ghostDue - Date.now()) + 300 } });
  const sentinel = await probe.next((x) => x.fired === 'sentinel');
  t.equal(sentinel.threadId, after.threadId, 'the sentinel fired in the new thread');
  t.same(probe.signals.filter((x) => x.fired === 'ghost'), [], "the dead shard's timer never fired");
});
