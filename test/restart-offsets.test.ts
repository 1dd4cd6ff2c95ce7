// Offsets stay monotonic for subscribers that never noticed their channel's owner die (docs/protocol.md):
// the replacement shard learns where each stream was from the subscribers the other threads replay to
// it. A publish reaching the new owner before those replays must wait for them; before, it started a
// fresh stream at offset 1 and the surviving subscribers saw offsets go back (5, 2, 3, …).
import t from 'tap';
import { startServer, api } from './helpers/server.js';
import { channelOwnedBy, clientOnShard, until } from './helpers/faults.js';

t.test('publishes racing an owner restart keep the surviving subscribers\' offsets increasing', async (t) => {
  const s = await startServer(t, { workers: 2 });
  const channels = [0, 1, 2, 3].map((i) => channelOwnedBy(`restart-${i}-`, 0, 2));
  const survivor = await clientOnShard(`${s.url}/ws`, 1, t);
  for (const ch of channels) {
    const r = await survivor.request({ op: 'subscribe', channel: ch });
    t.equal(r.ok, true, `subscribed to ${ch} (owned by shard 0)`);
  }
  for (let i = 0; i < 5; i++) for (const ch of channels) await api(s.http, '/api/publish', { channel: ch, event: 'before', data: i });
  for (const ch of channels) await survivor.waitForMessages(ch, 5);

  // Publishers keep going through the crash and the replacement: the first publish the new owner sees
  // may come before the surviving shard has re-subscribed its client.
  let publishing = true;
  const publishers = [0, 1, 2, 3].map(async (k) => {
    let n = 0;
    while (publishing) {
      await api(s.http, '/api/publish', { channel: channels[k]!, event: 'during', data: n++ }).catch(() => undefined);
    }
  });
  s.crashShard(0);
  await until(async () => (await api(s.http, '/health', undefined, { key: null })).body.workers?.alive === 2, 'shard replaced', 15_000);
  // Some publishes after the replacement, then stop.
  const after = Date.now();
  await until(() => Date.now() - after > 300 || undefined, 'publishing after the restart', 5000);
  publishing = false;
  await Promise.all(publishers);
  for (const ch of channels) {
    const r = await api(s.http, '/api/publish', { channel: ch, event: 'sentinel', data: null });
    t.equal(r.status, 200, `sentinel on ${ch}`);
  }
  for (const ch of channels) {
    await survivor.next((f) => f.channel === ch && f.event === 'sentinel', 10000);
    const offsets = survivor.messages(ch).map((f) => f.offset as number);
    const back = offsets.findIndex((o, i) => i > 0 && o <= offsets[i - 1]!);
    t.equal(back, -1, `${ch}: offsets only increase (${back === -1 ? offsets.length + ' messages' : offsets.slice(Math.max(0, back - 3), back + 3).join(', ')})`);
  }
});
