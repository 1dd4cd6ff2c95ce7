// With --redis, a channel's first subscriber on a host waits for Redis (SUBSCRIBE, position, count)
// while the channel's publications keep coming through its new Redis subscription; those queue behind
// the subscribe in the channel's mailbox. The mailbox started them as soon as the subscribe's work was
// done, before the reply was posted: the deliveries reached the subscriber's thread ahead of the reply,
// while the subscriber was not in the channel yet, and were dropped there. A client saw offsets jump
// (a resume on another host, a Socket.IO recovery landing there, or a plain subscribe). Now the reply
// leaves first and every publication after the reply's offset arrives.
import t from 'tap';
import { Mailbox } from '../src/actors/mailbox.js';
import { api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { startHost, startRedis } from './helpers/redis.js';

t.test('the caller of an async task hears its outcome before the tasks queued behind it run', async (t) => {
  const box = new Mailbox();
  const order: string[] = [];
  let release!: () => void;
  const first = box.run(() => new Promise<string>((r) => (release = () => r('first'))));
  box.run(() => void order.push('queued task'));
  const done = (first as Promise<string>).then((v) => void order.push(`answer: ${v}`));
  release();
  await done;
  await new Promise((r) => setImmediate(r));
  t.same(order, ['answer: first', 'queued task']);
});

t.test('a host new to a channel delivers everything after its subscribe reply while another host publishes', async (t) => {
  const redis = await startRedis(t);
  const [A, B] = await Promise.all([startHost(t, redis.url, 'gap', { workers: 2 }), startHost(t, redis.url, 'gap', { workers: 2 })]);
  const channels = Array.from({ length: 8 }, (_, i) => `gap-${i}`);
  let stop = false;
  const published = new Map<string, number>(channels.map((c) => [c, 0]));
  // One publisher per channel on host B, each publish waiting for the previous one's answer.
  const publishers = channels.map(async (ch) => {
    while (!stop) {
      const r = await api(B.http, '/api/publish', { channel: ch, event: 'e', data: null });
      if (r.status !== 200) throw new Error(`publish answered ${r.status}`);
      published.set(ch, r.body.offsets[ch]);
    }
  });
  const replies = new Map<string, number>();
  const clients: TestClient[] = [];
  try {
    for (const ch of channels) {
      // Subscribe while the channel is busy: wait for its stream to have started.
      while (published.get(ch)! < 2) await new Promise((r) => setImmediate(r));
      const c = await TestClient.connect(A.url + '/ws');
      clients.push(c);
      const r = await c.request({ op: 'subscribe', channel: ch });
      t.equal(r.ok, true, `${ch}: subscribed on the host new to it`);
      replies.set(ch, r.offset);
    }
    // Until each channel is a few publications past its subscribe.
    for (const ch of channels) while (published.get(ch)! < replies.get(ch)! + 5) await new Promise((r) => setImmediate(r));
  } finally {
    stop = true;
    await Promise.all(publishers);
  }
  for (const [i, ch] of channels.entries()) {
    const last = published.get(ch)!;
    // The wait consumes the last one: the offsets are those before it, then it.
    await clients[i]!.next((f) => f.op === 'message' && f.channel === ch && f.offset === last);
    const got = [...clients[i]!.frames.filter((f) => f.op === 'message' && f.channel === ch).map((f) => f.offset), last];
    const want = Array.from({ length: last - replies.get(ch)! }, (_, k) => replies.get(ch)! + 1 + k);
    t.same(got, want, `${ch}: every offset after the reply's ${replies.get(ch)}, in order, none missing`);
  }
  for (const c of clients) c.close();
});
