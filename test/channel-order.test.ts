// A connection's frames for one channel take effect in the order sent: a `history` or `presence` sent
// right behind the channel's `subscribe` waits for it, on every native transport and whichever shard
// owns the channel. Before, they answered `not_subscribed` while the subscribe was on its way to the
// owner (SSE and long-polling always, a WebSocket when another shard owned the channel).
import t from 'tap';
import { signJwt } from 'rt-actors';
import { JWT_SECRET, startServer } from './helpers/server.js';
import { channelOwnedBy, clientOnShard } from './helpers/faults.js';
import { request } from './helpers/http-stream.js';

const token = signJwt({ sub: 'u1', channels: ['presence-*'], exp: Math.floor(Date.now() / 1000) + 3600 }, { secret: JWT_SECRET });
const s = await startServer(t);

t.test('WebSocket: subscribe, history and presence back to back, the channel on the other shard', async (t) => {
  const c = await clientOnShard(`${s.url}/ws?token=${token}`, 0, t);
  const ch = channelOwnedBy('presence-order-', 1, 2);
  const [sub, history, presence] = await Promise.all([
    c.request({ op: 'subscribe', channel: ch }),
    c.request({ op: 'history', channel: ch }),
    c.request({ op: 'presence', channel: ch }),
  ]);
  t.equal(sub.ok, true, 'subscribed');
  t.match(history, { ok: true, channel: ch, publications: [] }, 'history read the channel');
  t.match(presence, { ok: true, channel: ch, members: [{ user_id: 'u1' }] }, 'presence too');
});

for (const path of ['/poll', '/sse'] as const) {
  t.test(`${path}: subscribe and history in one POST`, async (t) => {
    const ch = `presence-order-${path.slice(1)}`;
    let sid: string;
    let frames: () => Promise<Record<string, any>[]>;
    if (path === '/poll') {
      const open = await request('GET', `${s.http}/poll?token=${token}`);
      sid = open.json.frames[0].session;
      let ack = 0;
      const got: Record<string, any>[] = [];
      frames = async () => {
        const r = await request('GET', `${s.http}/poll?sid=${sid}&ack=${ack}`);
        ack = r.json.seq;
        got.push(...r.json.frames);
        return got;
      };
    } else {
      const ac = new AbortController();
      t.teardown(() => ac.abort());
      const res = await fetch(`${s.http}/sse?token=${token}`, { signal: ac.signal });
      const reader = res.body!.getReader();
      let text = '';
      const got: Record<string, any>[] = [];
      const pump = async () => {
        const { value } = await reader.read();
        text += new TextDecoder().decode(value);
        for (;;) {
          const end = text.indexOf('\n\n');
          if (end < 0) break;
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n');
          if (data) got.push(JSON.parse(data));
        }
        return got;
      };
      while (!(await pump()).some((f) => f.session)) {}
      sid = got.find((f) => f.session)!.session;
      frames = pump;
    }
    const post = await request('POST', `${s.http}${path}?sid=${sid}`, JSON.stringify([{ op: 'subscribe', ref: 1, channel: ch }, { op: 'history', ref: 2, channel: ch }, { op: 'presence', ref: 3, channel: ch }]), { 'content-type': 'text/plain' });
    t.equal(post.status, 200, 'posted');
    let all: Record<string, any>[] = [];
    for (const deadline = Date.now() + 10_000; ![1, 2, 3].every((r) => all.some((f) => f.ref === r)); ) {
      if (Date.now() > deadline) throw new Error(`no replies: ${JSON.stringify(all)}`);
      all = await frames();
    }
    const replies = all.filter((f) => f.op === 'reply');
    t.same(replies.map((f) => f.ref), [1, 2, 3], 'answered in the order sent');
    t.ok(replies.every((f) => f.ok), `all ok: ${JSON.stringify(replies.map((f) => f.error?.code ?? 'ok'))}`);
  });
}
