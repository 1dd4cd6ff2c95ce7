import t from 'tap';
import { startServer, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

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
  s.crashShard(0);
  const closed = await onZero.waitClose(10000);
  t.equal(closed.code, 1011, 'client of the crashed shard is told to reconnect');
  t.match(onZero.frames.find((f) => f.op === 'disconnect'), { reconnect: true });
  // wait until the shard is back
  const deadline = Date.now() + 15000;
  for (;;) {
    const h = await api(s.http, '/health', undefined, { key: null });
    if (h.body.workers?.alive === 2) break;
    if (Date.now() > deadline) throw new Error('shard not replaced');
    await new Promise((r) => setTimeout(r, 100));
  }
  t.pass('shard replaced');
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
