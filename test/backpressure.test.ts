// Backpressure between threads, with a deliberately stalled shard: the probe actor
// (test/fixtures/fault-actors/probe.ts) blocks shard 1's thread until the test creates a release file.
// Memory stays bounded (per-peer queues stop at the high water mark), nothing accepted is lost, and
// everything refused was told so (HTTP 503 + Retry-After, `overloaded` error replies and rejections).
import t from 'tap';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, api, API_KEY } from './helpers/server.js';
import { FAULT_ACTORS, channelOwnedBy, clientOnShard, listenProbe, until } from './helpers/faults.js';
import type { TestClient } from './helpers/ws-client.js';
import type { RtError } from 'rt-actors';

const HIGH = 64 * 1024;
const LOW = 16 * 1024;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
}

/** One request, on a fresh connection unless an agent is given (the acceptor hands connections to shards in turn). */
function request(base: string, path: string, body?: unknown, agent: http.Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request(
      base + path,
      { method: payload ? 'POST' : 'GET', agent, headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* metrics are text */
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** A keep-alive connection that landed on `shard` (its /health says which shard answers). */
async function agentOnShard(base: string, shard: number, t: { teardown(fn: () => unknown): void }): Promise<http.Agent> {
  for (let i = 0; i < 20; i++) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const health = await request(base, '/health', undefined, agent);
    if (health.body.shard === shard) {
      t.teardown(() => agent.destroy());
      return agent;
    }
    agent.destroy();
  }
  throw new Error(`no connection landed on shard ${shard}`);
}

/** Tracks promises as they settle, so a test can look at the refusals without waiting for the rest. */
function track<T>(ps: Promise<T>[]): { done: (PromiseSettledResult<T> | undefined)[] } {
  const done: (PromiseSettledResult<T> | undefined)[] = ps.map(() => undefined);
  ps.forEach((p, i) => p.then((value) => (done[i] = { status: 'fulfilled', value }), (reason: unknown) => (done[i] = { status: 'rejected', reason })));
  return { done };
}

/** Stalls shard `shard` through the probe actor; resolves once its thread is blocked. */
async function stallShard(s: { http: string }, probe: ReturnType<typeof listenProbe>, shard: number, t: { teardown(fn: () => unknown): void }): Promise<{ release(): void; answered: Promise<Answer> }> {
  const file = join(tmpdir(), `rt-stall-${randomBytes(6).toString('hex')}`);
  const release = () => writeFileSync(file, '');
  t.teardown(() => {
    release();
    rmSync(file, { force: true });
  });
  const seen = probe.signals.length;
  const answered = request(s.http, '/api/publish', { channel: channelOwnedBy('probe-', shard, 2), event: 'stall', data: { release: file } });
  await probe.next((x) => x.stalled !== undefined && probe.signals.indexOf(x) >= seen);
  return { release, answered };
}

/** A metric's value (for one thread, or the host's total), read from whichever shard answers (the stalled one cannot). */
async function metric(s: { http: string }, name: string, thread?: string): Promise<number> {
  const res = await fetch(s.http + '/metrics', { signal: AbortSignal.timeout(1000) });
  const text = await res.text();
  const m = new RegExp(`^${name}${thread === undefined ? '' : `\\{thread="${thread}"\\}`} (\\S+)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name}${thread === undefined ? '' : ` for thread ${thread}`}`);
  return Number(m[1]);
}

function received(c: TestClient, channel: string): number[] {
  return c.messages(channel).filter((m) => m.event === 'load').map((m) => m.data.n as number);
}

t.test('a stalled shard: queues stay bounded, refusals are explicit, nothing accepted is lost', async (t) => {
  const s = await startServer(t, { actors: FAULT_ACTORS, ringSize: 4096, ringQueueHigh: HIGH, ringQueueLow: LOW, requestTimeout: 120 });
  const probe = listenProbe(t);
  const hot = channelOwnedBy('hot-', 1, 2); // owned by the shard that stalls
  const cool = channelOwnedBy('cool-', 0, 2); // owned by the healthy shard, with a subscriber on the stalled one
  const onA = await clientOnShard(s.url + '/ws', 0, t);
  const onB = await clientOnShard(s.url + '/ws', 1, t);
  const ops = await clientOnShard(s.url + '/ws', 0, t);
  for (const c of [onA, onB]) for (const ch of [hot, cool]) t.equal((await c.request({ op: 'subscribe', channel: ch })).ok, true);

  const stall = await stallShard(s, probe, 1, t);
  const pad = 'x'.repeat(2000);

  // 1. HTTP publishes to the healthy shard's channel: its fan-out to the stalled shard queues up until
  //    the high water mark, then new publishes are refused. (Those handed to the stalled shard wait.)
  const http1: Promise<Answer>[] = [];
  for (let n = 0; n < 200; n++) http1.push(request(s.http, '/api/publish', { channel: cool, event: 'load', data: { n, pad } }));
  // 2. server.publish (main thread) to the stalled shard's channel: main's queue for it fills, then refuses.
  const directP = Array.from({ length: 100 }, (_, n) => s.publish(hot, 'load', { n, pad }));
  const direct = track(directP);
  const directRefused = await until(() => {
    const r = direct.done.filter((d) => d?.status === 'rejected');
    return r.length > 0 ? r : null;
  }, 'server.publish refusals');
  t.ok(directRefused.length > 0 && directRefused.length < 100, `server.publish refused once the queue was full (${directRefused.length} of 100)`);
  t.same(new Set(directRefused.map((r) => ((r as PromiseRejectedResult).reason as { code: string }).code)), new Set(['overloaded']), 'each refused as overloaded');

  // 3. A client op towards the stalled shard, from a connection on the healthy one: an error reply.
  //    Shard 0's queue for shard 1 is over the mark (fan-out of step 1), so this is refused at once.
  await until(() => metric(s, 'rt_overloaded_peers', '0').then((v) => v === 1), 'shard 0 refusing new work for shard 1');
  const sub = await ops.request({ op: 'subscribe', channel: hot });
  t.match(sub, { op: 'reply', ok: false, error: { code: 'overloaded' } }, 'subscribe gets an overloaded error reply');

  // A message to a user goes to every thread, so it is refused while any of them is overloaded.
  const toUser = track(Array.from({ length: 4 }, () => request(s.http, '/api/publish', { user: 'u1', event: 'load', data: null })));
  const userRefused = await until(() => toUser.done.find((d) => d?.status === 'fulfilled' && d.value.status === 503), 'a refused user message');
  t.match(userRefused, { value: { body: { error: { code: 'overloaded' } }, headers: { 'retry-after': '1' } } }, 'user message refused while a thread is overloaded');

  // Memory stays bounded while the shard is stuck.
  const queued0 = await until(() => metric(s, 'rt_ring_queued_bytes', '0'), 'shard 0 gauge');
  const queuedMain = await until(() => metric(s, 'rt_ring_queued_bytes', 'main'), 'main thread gauge');
  t.ok(queued0 <= HIGH + 8 * 1024, `shard 0 queue bounded (${queued0} bytes, high mark ${HIGH})`);
  t.ok(queuedMain <= HIGH + 8 * 1024, `main thread queue bounded (${queuedMain} bytes, high mark ${HIGH})`);
  t.ok((await until(() => metric(s, 'rt_overloaded_refusals_total'), 'refusal counter')) > 0, 'refusals counted in /metrics');

  // The requests that reached the healthy shard are all answered while the other is still stuck.
  const early = track(http1);
  const refusedEarly = await until(() => {
    const r = early.done.flatMap((d) => (d?.status === 'fulfilled' && d.value.status === 503 ? [d.value] : []));
    return r.length >= 20 ? r : null;
  }, 'HTTP refusals');
  t.same(new Set(refusedEarly.map((a) => `${a.body.error.code} retry-after=${a.headers['retry-after']}`)), new Set(['overloaded retry-after=1']), '503s say overloaded and carry Retry-After');

  stall.release();
  t.equal((await stall.answered).status, 200, 'the stalling publish itself completes');
  const answers = await Promise.all(http1);
  const accepted = new Set<number>();
  const refusals = new Set<string>();
  answers.forEach((a, n) => {
    if (a.status === 200) accepted.add(n);
    else refusals.add(`${a.status} ${a.body?.error?.code} retry-after=${a.headers['retry-after']}`);
  });
  t.same(refusals, new Set(['503 overloaded retry-after=1']), 'every publish not accepted was refused explicitly');
  const acceptedDirect = new Set((await Promise.allSettled(directP)).flatMap((r, n) => (r.status === 'fulfilled' ? [n] : [])));
  t.ok(accepted.size > 0 && accepted.size < 200, `some HTTP publishes accepted, some refused (${accepted.size}/200)`);

  // Below the low mark work resumes: a sentinel on each channel (retried while queues drain).
  for (const ch of [cool, hot]) {
    await until(async () => (await api(s.http, '/api/publish', { channel: ch, event: 'sentinel', data: null })).status === 200, `publish to ${ch} accepted again`);
  }
  for (const c of [onA, onB]) {
    for (const ch of [cool, hot]) await c.next((f) => f.op === 'message' && f.channel === ch && f.event === 'sentinel', 20_000);
    t.same(received(c, cool).filter((n) => !accepted.has(n)), [], 'no refused publish was delivered');
    t.equal(received(c, cool).length, accepted.size, 'each accepted publish delivered once');
    t.same(new Set(received(c, cool)), accepted, `every accepted publish on ${cool} delivered (${c === onA ? 'healthy' : 'stalled'} shard)`);
    t.same(new Set(received(c, hot)), acceptedDirect, `every accepted server.publish on ${hot} delivered`);
    t.same(received(c, hot), [...received(c, hot)].sort((a, b) => a - b), `in order on ${hot}`);
  }
});

t.test('a request whose peer never answers fails with a clear timeout; waiting requests share one timer per peer', async (t) => {
  const s = await startServer(t, { actors: FAULT_ACTORS, requestTimeout: '1s' });
  const probe = listenProbe(t);
  const hot = channelOwnedBy('hot-', 1, 2);
  const stall = await stallShard(s, probe, 1, t);
  // Count the timers the main thread creates while it sends 300 requests to the stuck shard.
  const realSetTimeout = globalThis.setTimeout;
  let timers = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => (timers++, realSetTimeout(...args))) as typeof setTimeout;
  let pending: Promise<unknown>[];
  try {
    pending = Array.from({ length: 300 }, (_, n) => s.publish(hot, 'late', { n }));
  } finally {
    globalThis.setTimeout = realSetTimeout;
  }
  t.ok(timers <= 1, `300 waiting requests to one peer armed ${timers} timer(s)`);
  const results = await Promise.allSettled(pending);
  const outcomes = new Set(results.map((r) => (r.status === 'rejected' ? `${(r.reason as RtError).code}: ${(r.reason as RtError).message}` : 'answered')));
  t.same(outcomes, new Set(['timeout: thread 1 did not answer within 1000 ms']), 'every request failed with a clear timeout');
  stall.release();
  await stall.answered;
});

t.test('/api/batch sends its messages together and keeps their order per channel', async (t) => {
  const s = await startServer(t, { actors: FAULT_ACTORS, requestTimeout: 120 });
  const probe = listenProbe(t);
  const slow = channelOwnedBy('hot-', 1, 2);
  const fast = channelOwnedBy('cool-', 0, 2);
  const watcher = await clientOnShard(s.url + '/ws', 0, t);
  for (const ch of [slow, fast]) await watcher.request({ op: 'subscribe', channel: ch });
  const agent = await agentOnShard(s.http, 0, t);
  const stall = await stallShard(s, probe, 1, t);
  // The first message waits for the stuck shard; the others must not wait behind it.
  const messages = [{ channel: slow, event: 'load', data: { n: 0 } }];
  for (let n = 1; n <= 50; n++) messages.push({ channel: n % 2 ? fast : slow, event: 'load', data: { n } });
  const batch = request(s.http, '/api/batch', { messages }, agent);
  await until(() => received(watcher, fast).length === 25, 'the fast channel delivered while the slow owner is stuck', 30_000);
  t.same(received(watcher, fast), messages.filter((m) => m.channel === fast).map((m) => m.data.n), 'in batch order');
  t.same(received(watcher, slow), [], 'nothing from the stuck owner yet');
  stall.release();
  const answer = await batch;
  t.same(answer.body, { ok: true, count: 51, offsets: { [slow]: 26, [fast]: 25 } }, "each channel's offset is its last message's, in batch order");
  await until(() => received(watcher, slow).length === 26, 'the slow channel delivered after the stall');
  t.same(received(watcher, slow), messages.filter((m) => m.channel === slow).map((m) => m.data.n), 'in batch order');
  await stall.answered;
});
