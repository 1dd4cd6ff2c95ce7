import t from 'tap';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { RtError } from '../src/errors.js';
import {
  DEFAULT_RING_BYTES,
  Doorbell,
  RingConsumer,
  RingProducer,
  allocDoorbell,
  allocRing,
} from '../src/runtime/ring.js';

// Layout knowledge used only to start the counters next to 2^32 (see ring.ts header comment).
const HEADER_BYTES = 256;
const TAIL_SLOT = 0;
const HEAD_SLOT = 16;

type Msg = { seq: number; data?: Uint8Array; s?: string };

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

function bytes(seq: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (seq * 31 + i * 7) & 0xff;
  return b;
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return !!a && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), b) === 0;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}


/**
 * What a decoded frame holds, as plain values: a publication or request that crossed a ring carries its
 * payload undecoded (src/protocol/encoded-payload.ts), and its toJSON() gives the value a reader sees.
 */
function plain(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return v;
  const o = typeof (v as { toJSON?: unknown }).toJSON === 'function' ? (v as { toJSON(): unknown }).toJSON() : v;
  if (Array.isArray(o)) return o.map(plain);
  return Object.fromEntries(Object.entries(o as object).map(([k, x]) => [k, plain(x)]));
}

t.test('allocation', async (t) => {
  t.equal(allocRing().byteLength - HEADER_BYTES, DEFAULT_RING_BYTES);
  t.equal(DEFAULT_RING_BYTES, 1 << 20);
  t.equal(allocRing(1).byteLength - HEADER_BYTES, 4096, 'minimum 4 KiB');
  t.equal(allocRing(5000).byteLength - HEADER_BYTES, 8192, 'rounded up to a power of two');
  t.throws(() => allocRing(0));
  t.throws(() => new RingProducer(new SharedArrayBuffer(5000), allocDoorbell()), 'foreign buffer rejected');
  t.throws(() => new RingConsumer(allocRing(), new SharedArrayBuffer(8)), 'foreign bell rejected');
});

t.test('wrap-around: varied sizes through a 4 KiB ring, counters crossing 2^32', async (t) => {
  for (const startAt of [0, -1000, -4]) {
    const ring = allocRing(4096);
    // Free-running counters: start them just below 2^32 so they overflow mid-test.
    const ctl = new Int32Array(ring, 0, HEADER_BYTES >> 2);
    ctl[TAIL_SLOT] = startAt;
    ctl[HEAD_SLOT] = startAt;
    const p = new RingProducer(ring, allocDoorbell());
    const c = new RingConsumer(ring, allocDoorbell());
    const rand = rng(1234 + startAt);
    const got: Msg[] = [];
    const lengths: number[] = [];
    let bad = 0;
    const total = 4000;
    for (let rounds = 0; got.length < total && rounds < 10 * total; rounds++) {
      const burst = 1 + Math.floor(rand() * 12);
      for (let i = 0; i < burst && lengths.length < total; i++) {
        // 1..1100 bytes: most are single frames, some exceed the 1 KiB fragment size.
        const n = 1 + Math.floor(rand() * 1100);
        p.send({ seq: lengths.length, data: bytes(lengths.length, n) });
        lengths.push(n);
      }
      p.flush();
      c.drain((m) => got.push(m as Msg), 1 + Math.floor(rand() * 8));
    }
    for (let i = 0; i < got.length; i++) {
      const m = got[i]!;
      if (m.seq !== i || !sameBytes(m.data, bytes(i, lengths[i]!))) bad++;
    }
    t.equal(got.length, total, `all delivered (start ${startAt})`);
    t.equal(bad, 0, `order and content intact (start ${startAt})`);
    t.equal(p.queuedBytes, 0);
    t.not(ctl[TAIL_SLOT], startAt, 'tail moved');
    if (startAt !== 0) t.ok((ctl[TAIL_SLOT]! >>> 0) < (startAt >>> 0), 'tail wrapped past 2^32');
    t.equal(ctl[TAIL_SLOT], ctl[HEAD_SLOT], 'consumer caught up');
  }
});

t.test('full ring: local queue, nothing lost, order kept, flush after drain', async (t) => {
  const ring = allocRing(4096);
  const p = new RingProducer(ring, allocDoorbell());
  const c = new RingConsumer(ring, allocDoorbell());
  const payload = (i: number) => bytes(i, 100);
  for (let i = 0; i < 200; i++) p.send({ seq: i, data: payload(i) });
  t.ok(p.queuedBytes > 10_000, `most of 200 x 100 B waits locally (${p.queuedBytes} B)`);
  t.equal(p.flush(), false, 'flush reports a non-empty queue while the ring is full');
  const got: Msg[] = [];
  let rounds = 0;
  while (got.length < 200 && rounds++ < 100) {
    const before = got.length;
    c.drain((m) => got.push(m as Msg));
    t.ok(got.length > before || rounds > 1, 'drain made progress');
    p.flush();
  }
  t.equal(got.length, 200);
  t.equal(p.queuedBytes, 0);
  t.equal(p.flush(), true);
  t.same(
    got.map((m) => m.seq),
    Array.from({ length: 200 }, (_, i) => i),
  );
  t.ok(got.every((m) => sameBytes(m.data, payload(m.seq))));
  // Sends after a backlog cleared still go straight to the ring.
  p.send({ seq: 200 });
  t.equal(p.queuedBytes, 0);
});

t.test('full ring: the consumer wakes the producer through its doorbell', async (t) => {
  const ring = allocRing(4096);
  const producerBell = allocDoorbell();
  const consumerBell = allocDoorbell();
  const p = new RingProducer(ring, consumerBell);
  const c = new RingConsumer(ring, producerBell);
  const got: number[] = [];
  let producerWakes = 0;
  const pb = new Doorbell(producerBell);
  const cb = new Doorbell(consumerBell);
  t.teardown(() => {
    pb.close();
    cb.close();
  });
  pb.listen(() => {
    producerWakes++;
    p.flush();
  });
  // Consumer drains only a little per wake-up, so it must be rung repeatedly.
  cb.listen(() => void c.drain((m) => got.push((m as Msg).seq), 5));
  await tick();
  const wakesBefore = producerWakes;
  for (let i = 0; i < 500; i++) p.send({ seq: i, data: bytes(i, 200) });
  t.ok(p.queuedBytes > 0, 'ring overflowed into the local queue');
  await until(() => got.length === 500, 10_000, 'all 500 messages');
  t.same(got, Array.from({ length: 500 }, (_, i) => i));
  t.ok(producerWakes > wakesBefore, 'producer thread was rung to flush');
  t.equal(p.queuedBytes, 0);
});

t.test('oversized frames', async (t) => {
  const ring = allocRing(4096);
  const p = new RingProducer(ring, allocDoorbell());
  const c = new RingConsumer(ring, allocDoorbell());
  const got: Msg[] = [];
  const pump = () => {
    for (let i = 0; i < 1000 && (p.queuedBytes > 0 || i === 0); i++) {
      p.flush();
      c.drain((m) => got.push(m as Msg));
    }
  };

  // 25x the ring: fragmented, only a few fragments fit at a time.
  const big = bytes(7, 100_000);
  const s = 'ü€'.repeat(5000);
  p.send({ seq: 0, data: big, s });
  t.ok(p.queuedBytes > 90_000, 'most of it waits locally');
  p.send({ seq: 1, data: bytes(1, 10) });
  pump();
  t.equal(got.length, 2);
  t.equal(got[0]!.seq, 0);
  t.ok(sameBytes(got[0]!.data, big), '100 kB payload reassembled intact');
  t.equal(got[0]!.s, s, 'string after the binary intact');
  t.equal(got[1]!.seq, 1, 'message after the big one delivered after it');

  // Fits the ring, not the free space.
  got.length = 0;
  for (let i = 0; i < 30; i++) p.send({ seq: 10 + i, data: bytes(i, 100) }); // ~3.4 kB used
  t.equal(p.queuedBytes, 0);
  const mid = bytes(99, 900);
  p.send({ seq: 40, data: mid });
  t.ok(p.queuedBytes > 0, '900 B message queued: not enough free space');
  p.send({ seq: 41 });
  pump();
  t.same(
    got.map((m) => m.seq),
    Array.from({ length: 32 }, (_, i) => 10 + i),
  );
  t.ok(sameBytes(got[30]!.data, mid));

  // Several oversized ones back to back, interleaved with drains that stop mid-chain.
  got.length = 0;
  const bigs = [30_000, 4097, 1025, 65_536].map((n, i) => bytes(i, n));
  bigs.forEach((b, i) => p.send({ seq: i, data: b }));
  for (let i = 0; i < 2000 && got.length < bigs.length; i++) {
    p.flush();
    c.drain((m) => got.push(m as Msg), 1);
  }
  t.equal(got.length, bigs.length);
  t.ok(
    got.every((m, i) => m.seq === i && sameBytes(m.data, bigs[i]!)),
    'each reassembled in order',
  );
});

t.test('an interrupted fragment chain is discarded; reset() drops a partial message', async (t) => {
  const big = bytes(3, 20_000);

  await t.test('new producer on the ring (thread replaced): partial discarded', async (t) => {
    const ring = allocRing(4096);
    const c = new RingConsumer(ring, allocDoorbell());
    const old = new RingProducer(ring, allocDoorbell());
    old.send({ seq: 0, data: big }); // only the first fragments fit
    t.ok(old.queuedBytes > 0);
    const got: Msg[] = [];
    c.drain((m) => got.push(m as Msg));
    t.equal(got.length, 0, 'nothing complete yet');
    // The old producer is gone; its replacement resumes at the published tail.
    const p = new RingProducer(ring, allocDoorbell());
    p.send({ seq: 1, data: bytes(4, 9000) }); // a new chain right behind the broken one
    p.send({ seq: 2, s: 'after' });
    for (let i = 0; i < 100 && got.length < 2; i++) {
      p.flush();
      c.drain((m) => got.push(m as Msg));
    }
    t.same(
      got.map((m) => m.seq),
      [1, 2],
    );
    t.ok(sameBytes(got[0]!.data, bytes(4, 9000)), 'the new chain is intact');
  });

  for (const withReset of [false, true]) {
    await t.test(`rest of a chain arriving after ${withReset ? 'reset()' : 'no reset'}`, async (t) => {
      const ring = allocRing(4096);
      const c = new RingConsumer(ring, allocDoorbell());
      const p = new RingProducer(ring, allocDoorbell());
      p.send({ seq: 0, data: big });
      const got: Msg[] = [];
      c.drain((m) => got.push(m as Msg)); // consumer now holds the first fragments
      if (withReset) c.reset();
      for (let i = 0; i < 100 && p.queuedBytes > 0; i++) {
        p.flush();
        c.drain((m) => got.push(m as Msg));
      }
      p.send({ seq: 1 });
      p.flush();
      c.drain((m) => got.push(m as Msg));
      if (withReset) {
        t.same(
          got.map((m) => m.seq),
          [1],
          'orphaned fragments after reset() are dropped, not delivered as a truncated message',
        );
      } else {
        // Control: the same sequence without reset() delivers the message whole.
        t.same(
          got.map((m) => m.seq),
          [0, 1],
        );
        t.ok(sameBytes(got[0]!.data, big));
      }
    });
  }
});

t.test('a throwing handler neither loses nor repeats messages', async (t) => {
  const ring = allocRing(4096);
  const p = new RingProducer(ring, allocDoorbell());
  const c = new RingConsumer(ring, allocDoorbell());
  for (let i = 0; i < 10; i++) p.send({ seq: i });
  p.flush();
  const got: number[] = [];
  t.throws(() =>
    c.drain((m) => {
      got.push((m as Msg).seq);
      if ((m as Msg).seq === 3) throw new Error('boom');
    }),
  );
  c.drain((m) => got.push((m as Msg).seq));
  t.same(got, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

t.test('doorbell: a burst of 10,000 sends costs one notify', async (t) => {
  const ring = allocRing();
  const consumerBell = allocDoorbell();
  const p = new RingProducer(ring, consumerBell);
  const c = new RingConsumer(ring, allocDoorbell());
  let received = 0;
  let wakes = 0;
  const bell = new Doorbell(consumerBell);
  t.teardown(() => bell.close());
  bell.listen(() => {
    wakes++;
    c.drain(() => received++);
  });
  t.ok(wakes >= 1, 'onWake ran right away');
  t.throws(() => bell.listen(() => {}), 'listen twice is an error');
  await tick(); // let it go to sleep

  const realNotify = Atomics.notify;
  let notifies = 0;
  Atomics.notify = ((a: Int32Array, i: number, n?: number) => {
    notifies++;
    return realNotify(a, i, n);
  }) as typeof Atomics.notify;
  try {
    for (let i = 0; i < 10_000; i++) p.send({ seq: i });
    t.equal(received, 0, 'nothing delivered synchronously');
    await until(() => received === 10_000, 5000, '10,000 messages');
    t.equal(notifies, 1, 'exactly one Atomics.notify for the whole burst');

    // A second burst in a later turn wakes it again.
    for (let i = 0; i < 100; i++) p.send({ seq: i });
    await until(() => received === 10_100, 5000, 'second burst');
    t.equal(notifies, 2);
  } finally {
    Atomics.notify = realNotify;
  }

  bell.close();
  const wakesAtClose = wakes;
  p.send({ seq: -1 });
  await tick();
  await tick();
  t.equal(wakes, wakesAtClose, 'closed bell no longer calls onWake');
});

// ---- real threads ------------------------------------------------------------------------------

const fixture = new URL('./fixtures/ring-worker.mjs', import.meta.url);
const distRing = fileURLToPath(new URL('../dist/src/runtime/ring.js', import.meta.url));
const srcRing = fileURLToPath(new URL('../src/runtime/ring.ts', import.meta.url));

function staleDist(): string | null {
  try {
    if (statSync(distRing).mtimeMs + 1000 < statSync(srcRing).mtimeMs) {
      return 'dist/src/runtime/ring.js is older than src/runtime/ring.ts: run `npx tsc -p tsconfig.json`';
    }
    return null;
  } catch {
    return 'dist/src/runtime/ring.js is missing: run `npx tsc -p tsconfig.json`';
  }
}

type Reply = Record<string, unknown> & { done?: boolean };

/**
 * Starts one worker per spec; resolves with the `done` reply of every spec without `silent`.
 * Fails when no worker has sent or received anything for `stallMs` (a lost wake-up looks exactly
 * like that), which stays reliable on a slow or loaded machine where a fixed deadline would not.
 */
async function runWorkers(specs: Array<Record<string, unknown>>, stallMs = 5000): Promise<Reply[]> {
  const progress = new SharedArrayBuffer(4 * specs.length);
  const counters = new Int32Array(progress);
  // execArgv: [] — the fixture is plain JS; inheriting tap's TypeScript loader only slows startup.
  const workers = specs.map(
    (spec, slot) => new Worker(fixture, { workerData: { ...spec, progress, slot }, execArgv: [] }),
  );
  let timer: NodeJS.Timeout | undefined;
  try {
    const replies = workers.map((w, i) =>
      specs[i]!.silent
        ? null
        : new Promise<Reply>((resolve, reject) => {
            w.on('message', (m: Reply) => m.done && resolve(m));
            w.on('error', reject);
            w.on('exit', (code) => reject(new Error(`worker ${i} exited early with ${code}`)));
          }),
    );
    for (const w of workers) w.on('error', () => {}); // reported through the promises above
    const watchdog = new Promise<never>((_, reject) => {
      let last = '';
      let lastChange = Date.now();
      timer = setInterval(() => {
        const now = Array.from(counters).join(',');
        if (now !== last) {
          last = now;
          lastChange = Date.now();
        } else if (Date.now() - lastChange > stallMs) {
          reject(new Error(`stalled for ${stallMs} ms (lost wake-up?); per-worker progress ${now}`));
        }
      }, 100);
    });
    return await Promise.race([Promise.all(replies.filter((r) => r !== null)), watchdog]);
  } finally {
    clearInterval(timer);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

t.test('doorbell race: cross-thread wake-ups are never lost', async (t) => {
  const stale = staleDist();
  if (stale) return t.fail(stale);
  const ab = allocRing(4096);
  const ba = allocRing(4096);
  const bellA = allocDoorbell();
  const bellB = allocDoorbell();
  const rounds = 3000;
  const stream = 20_000;
  // A lost wake-up leaves messages sitting in a ring with nobody coming for them: the run stalls.
  const [ping] = await runWorkers(
    [
      { role: 'ping', outRing: ab, inRing: ba, myBell: bellA, peerBell: bellB, rounds, stream, seed: 7 },
      { role: 'pong', outRing: ba, inRing: ab, myBell: bellB, peerBell: bellA, seed: 8, silent: true },
    ],
  );
  t.equal(ping!.rounds, rounds, `${rounds} lock-step round trips`);
  t.equal(ping!.streamed, stream, `${stream} free-running messages echoed`);
  t.equal(ping!.errors, 0, 'echoes in order');
});

t.test('doorbell: data published while the consumer is awake is found by its re-check', async (t) => {
  const stale = staleDist();
  if (stale) return t.fail(stale);
  const ring = allocRing(4096);
  const consumerBell = allocDoorbell();
  const gate = new SharedArrayBuffer(8);
  const count = 1000;
  const [res] = await runWorkers(
    [
      { role: 'gate-consumer', ring, myBell: consumerBell, gate, count },
      { role: 'gate-producer', ring, consumerBell, gate, count, silent: true },
    ],
  );
  t.equal(res!.received, count, 'every message published in the awake window was delivered');
  t.equal(res!.errors, 0);
});

t.test('stress: 2 producer threads into one consumer thread + a bidirectional pair', async (t) => {
  const stale = staleDist();
  if (stale) return t.fail(stale);
  const seed = Date.now() % 100_000;
  t.comment(`seed ${seed}`);
  // ~200k messages, 1 B - 64 KiB. Ring sizes chosen so that 64 KiB messages are bigger than the
  // whole ring on three of the four rings (fragmentation) and rings fill up (backpressure).
  const counts = { p1: 60_000, p2: 60_000, a: 40_000, b: 40_000 };
  const consumerBell = allocDoorbell();
  const p1 = { ring: allocRing(), bell: allocDoorbell() };
  const p2 = { ring: allocRing(64 * 1024), bell: allocDoorbell() };
  const ab = allocRing(32 * 1024);
  const ba = allocRing(32 * 1024);
  const bellA = allocDoorbell();
  const bellB = allocDoorbell();
  const maxQueued = 256 * 1024;
  const replies = await runWorkers(
    [
      {
        role: 'consumer',
        myBell: consumerBell,
        inputs: [
          { id: 1, ring: p1.ring, producerBell: p1.bell, count: counts.p1 },
          { id: 2, ring: p2.ring, producerBell: p2.bell, count: counts.p2 },
        ],
      },
      { role: 'producer', id: 1, ring: p1.ring, myBell: p1.bell, consumerBell, count: counts.p1, seed: seed + 1, maxQueued },
      { role: 'producer', id: 2, ring: p2.ring, myBell: p2.bell, consumerBell, count: counts.p2, seed: seed + 2, maxQueued },
      {
        role: 'peer', id: 3, outRing: ab, inRing: ba, myBell: bellA, peerBell: bellB,
        count: counts.a, expect: counts.b, seed: seed + 3, maxQueued,
      },
      {
        role: 'peer', id: 4, outRing: ba, inRing: ab, myBell: bellB, peerBell: bellA,
        count: counts.b, expect: counts.a, seed: seed + 4, maxQueued,
      },
    ],
  );
  type Recv = { next: number; sum: number; errors: string[] };
  const [consumer, prod1, prod2, peerA, peerB] = replies as [
    { results: Array<Recv & { id: number }> },
    { sum: number },
    { sum: number },
    { sentSum: number; recv: Recv },
    { sentSum: number; recv: Recv },
  ];
  const r1 = consumer.results.find((r) => r.id === 1)!;
  const r2 = consumer.results.find((r) => r.id === 2)!;
  t.same(r1.errors, [], 'producer 1: no loss, no reorder, labels intact');
  t.same(r2.errors, [], 'producer 2: no loss, no reorder, labels intact');
  t.equal(r1.next, counts.p1, 'producer 1: every message arrived');
  t.equal(r2.next, counts.p2, 'producer 2: every message arrived');
  t.equal(r1.sum, prod1.sum, 'producer 1: checksum matches');
  t.equal(r2.sum, prod2.sum, 'producer 2: checksum matches');
  t.same(peerB.recv.errors, [], 'a -> b: in order');
  t.same(peerA.recv.errors, [], 'b -> a: in order');
  t.equal(peerB.recv.next, counts.a);
  t.equal(peerA.recv.next, counts.b);
  t.equal(peerB.recv.sum, peerA.sentSum, 'a -> b: checksum matches');
  t.equal(peerA.recv.sum, peerB.sentSum, 'b -> a: checksum matches');
  t.not(prod1.sum, prod2.sum, 'streams differ (checksums are not trivially equal)');
});

t.test('mesh backpressure: requests refused above the high mark, notices never, resumed under the low mark', async (t) => {
  const { createMeshLayout, MeshEndpoint } = await import('../src/runtime/mesh.js');
  const layout = createMeshLayout(1, 4096); // threads 0 (a shard) and 1 (main), both in this thread here
  const a = new MeshEndpoint(layout, 1, { queueHigh: 16 * 1024, queueLow: 4 * 1024 });
  const b = new MeshEndpoint(layout, 0);
  const keep = setInterval(() => {}, 1000);
  t.teardown(() => (clearInterval(keep), a.close(), b.close()));
  const handled: number[] = [];
  const notices: number[] = [];
  a.start(() => null, () => {});
  const pad = 'x'.repeat(1000);
  // b is not listening yet: a stalled peer. Requests queue up to the mark, then fail fast.
  const outcomes: (string | number)[] = [];
  const calls: Promise<void>[] = [];
  for (let n = 0; n < 100; n++) {
    calls.push(new Promise((resolve) => a.call(0, { t: 'channels', prefix: `${n}:${pad}` }, (err) => (outcomes[n] = err ? err.code : n, resolve()))));
  }
  await new Promise((r) => setImmediate(r));
  const refused = outcomes.filter((o) => o === 'overloaded').length;
  t.ok(refused > 50 && refused < 100, `refused once over the high mark (${refused} of 100)`);
  t.ok(a.queuedBytes() <= 16 * 1024 + 2048, `queue bounded by the mark (${a.queuedBytes()} bytes)`);
  t.equal(a.refused, refused, 'refusals counted');
  t.equal(a.overloadedPeers(), 1);
  // Notices (deliveries of accepted work) are queued whatever the mark.
  for (let n = 0; n < 50; n++) a.notify(0, { t: 'resync!', ch: `${n}:${pad}` });
  t.ok(a.queuedBytes() > 16 * 1024 + 40_000, 'notices are never refused');
  b.start(
    (_from, req) => (handled.push(Number((req as { prefix: string }).prefix.split(':')[0])), []),
    (_from, n) => notices.push(Number((n as { ch: string }).ch.split(':')[0])),
  );
  await Promise.all(calls);
  const accepted = outcomes.flatMap((o) => (typeof o === 'number' ? [o] : []));
  t.same(handled, accepted, 'every accepted request was handled, in order, and answered');
  await until(() => notices.length === 50, 10_000, 'notices');
  t.same(notices, Array.from({ length: 50 }, (_, n) => n), 'every notice delivered in order');
  await until(() => a.queuedBytes() === 0, 10_000, 'queue drained');
  t.equal(a.overloaded(0), false, 'accepting again under the low mark');
  await new Promise<void>((resolve, reject) => a.call(0, { t: 'channels', prefix: '100:' }, (err) => (err ? reject(err) : resolve())));
});

t.test('mesh deadlines: one queue per peer fails each unanswered request at its own deadline', async (t) => {
  const { createMeshLayout, MeshEndpoint } = await import('../src/runtime/mesh.js');
  const layout = createMeshLayout(1, 1 << 16);
  const a = new MeshEndpoint(layout, 1, { requestTimeoutMs: 250 });
  const b = new MeshEndpoint(layout, 0);
  const keep = setInterval(() => {}, 1000);
  t.teardown(() => (clearInterval(keep), a.close(), b.close()));
  a.start(() => null, () => {});
  // b answers only requests whose prefix is 'answer', and only once released.
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  b.start((_from, req) => ((req as { prefix: string }).prefix === 'answer' ? released.then(() => []) : new Promise(() => {})), () => {});
  const order: string[] = [];
  const ask = (name: string, prefix: string, timeoutMs?: number) =>
    new Promise<void>((resolve) => a.call(0, { t: 'channels', prefix }, (err) => (order.push(`${name}:${err ? err.code : 'ok'}`), resolve()), timeoutMs));
  const all = [ask('default', 'never'), ask('short', 'never', 50), ask('mid', 'never', 120), ask('answered', 'answer', 10_000), ask('long', 'never', 3000)];
  await until(() => order.length === 3, 5000, 'three expiries');
  t.same(order, ['short:timeout', 'mid:timeout', 'default:timeout'], 'each request expires at its own deadline, whatever order they were sent in');
  release();
  await Promise.all(all);
  t.same(order.slice(3), ['answered:ok', 'long:timeout'], 'an answered request is not failed; the last one expires');
  t.equal(a.waiting, 0, 'nothing left waiting');
  // Many answered requests leave the queue (compaction) rather than waiting for the head's deadline.
  await Promise.all(Array.from({ length: 3000 }, (_, i) => ask(`bulk${i}`, 'answer', 60_000)));
  t.equal(a.waiting, 0);
});

t.test('mesh close: a request sent and unanswered fails as of unknown outcome; one asked after close as not sent', async (t) => {
  const { createMeshLayout, MeshEndpoint } = await import('../src/runtime/mesh.js');
  const layout = createMeshLayout(1, 1 << 16);
  const a = new MeshEndpoint(layout, 1);
  const b = new MeshEndpoint(layout, 0);
  const keep = setInterval(() => {}, 1000);
  t.teardown(() => (clearInterval(keep), b.close()));
  a.start(() => null, () => {});
  // b does the work (a publish stored, say) and its answer is still to come when a closes.
  let done = 0;
  b.start(() => (done++, new Promise(() => {})), () => {});
  const sent = new Promise<RtError>((resolve) => a.call(0, { t: 'channels', prefix: '' }, (err) => resolve(err!)));
  await until(() => done === 1, 5000, 'the peer to take the request');
  a.close();
  const err = await sent;
  t.equal(err.code, 'unavailable');
  t.match(err.message, /outcome is unknown/, 'the caller is told the request may have been done');
  const late = await new Promise<RtError>((resolve) => a.call(0, { t: 'channels', prefix: '' }, (e) => resolve(e!)));
  t.equal(late.code, 'unavailable');
  t.notMatch(late.message, /unknown/, 'a request never sent is a plain refusal, safe to retry');
  t.equal(done, 1, 'the late request never reached the peer');
});

t.test('mesh notifyMany: one encode, the same frame to each peer, in order with notify()', async (t) => {
  const { createMeshLayout, MeshEndpoint } = await import('../src/runtime/mesh.js');
  // Three shards and the main thread (3); shard 0 fans out to 1, 2, 3 and itself.
  const layout = createMeshLayout(3, 1 << 12);
  const eps = [0, 1, 2, 3].map((i) => new MeshEndpoint(layout, i));
  const keep = setInterval(() => {}, 1000);
  t.teardown(() => (clearInterval(keep), eps.forEach((e) => e.close())));
  const got: unknown[][] = [[], [], [], []];
  eps.forEach((e, i) => e.start(() => null, (_from, n) => got[i]!.push(n)));
  // Enough frames (with a payload near a quarter of the ring) to fill the rings, so some go through
  // the local queue; plus one frame larger than a quarter of the ring, which is fragmented.
  const count = 400;
  const big = 'x'.repeat(3000);
  for (let i = 0; i < count; i++) {
    const pub = { channel: 'c', event: 'e', data: { i, pad: i === 7 ? big : 'y'.repeat(i % 900) }, offset: i + 1 };
    if (i % 5 === 0) for (const to of [1, 2, 3, 0]) eps[0]!.notify(to, { t: 'pub!', pub });
    else eps[0]!.notifyMany([1, 2, 3, 0], { t: 'pub!', pub, at: i });
  }
  await until(() => got.every((g) => g.length === count), 20_000, 'every peer got every frame');
  for (let p = 0; p < 4; p++) {
    const offsets = got[p]!.map((n) => (n as { pub: { offset: number } }).pub.offset);
    t.same(offsets, Array.from({ length: count }, (_, i) => i + 1), `peer ${p}: all frames, in order`);
  }
  t.same(plain(got[2]![7]), { t: 'pub!', pub: { channel: 'c', event: 'e', data: { i: 7, pad: big }, offset: 8 }, at: 7 }, 'a fragmented frame arrives whole');
  t.same(plain(got[3]), plain(got[1]), 'every peer decodes the same notices');
});

t.test('binary hot frames: pub! notices, pub requests and replies decode to what msgpack would give', async (t) => {
  const { encodeHot, decodeHot, BIN } = await import('../src/runtime/frames.js');
  const { Unpackr } = await import('msgpackr');
  const unpackr = new Unpackr({ useRecords: false, copyBuffers: true });
  type Env = import('../src/runtime/messages.js').Envelope;
  const roundTrip = (env: Env): unknown => {
    const h = encodeHot(env);
    if (h === null) return null;
    t.equal(h.buf[h.start], BIN, 'starts with the binary tag');
    const b = Buffer.allocUnsafeSlow(h.end - h.start + 16);
    h.buf.copy(b, 0, h.start, h.end);
    return decodeHot(b, h.end - h.start, unpackr);
  };
  const from = { id: '1.42', user: 'u', info: { name: 'Zoë' }, grants: ['private-*'], transport: 'ws' };
  const hot: Env[] = [
    { k: 'n', b: { t: 'pub!', pub: { channel: 'c', event: 'e', data: { a: 1, s: 'x' }, offset: 1 } } },
    { k: 'n', b: { t: 'pub!', pub: { channel: 'chat-ünïcødé-🙂', event: 'ëvent', data: [1, 'two', null, true], offset: 2 ** 40 + 1 }, ex: '0.17', at: 1234.5678 } },
    { k: 'n', b: { t: 'pub!', pub: { channel: 'c'.repeat(100), event: 'e', data: Buffer.from([1, 2, 3]), offset: 3 }, at: 0 } },
    { k: 'n', b: { t: 'pub!', pub: { channel: 'c', event: 'e', data: undefined, offset: 4 } } },
    { k: 'n', b: { t: 'pub!', pub: { channel: '', event: '', data: 'x'.repeat(5000), offset: 5 } } },
    { k: 'q', id: 1, b: { t: 'pub', ch: 'room', ev: 'message', data: { hello: 'world' }, src: 'api', at: 99.5 } },
    { k: 'q', id: 0xffffffff, b: { t: 'pub', ch: 'présence-room', ev: 'client-typing', data: null, src: 'client', from, ex: '1.42', w: 1 } },
    { k: 'q', id: 7, b: { t: 'pub', ch: 'r', ev: 'e', data: [from, from], src: 'redis' } },
    { k: 'q', id: 8, b: { t: 'pub', ch: 'r', ev: 'e', data: 3, src: 'server', from } },
    { k: 'r', id: 5, ok: true, v: { offset: 12, data: { reply: 'yes' } } },
    { k: 'r', id: 6, ok: true, v: null },
  ];
  for (const env of hot) t.same(plain(roundTrip(env)), env, `${env.k} ${JSON.stringify(env).slice(0, 60)}`);
  const decodedBuf = roundTrip(hot[2]!) as { b: { pub: { data: Uint8Array } } };
  t.ok(Buffer.isBuffer(decodedBuf.b.pub.data), 'binary data stays binary');

  // Not hot, or not of the declared shape, or too long a header: msgpack (null here).
  const cold: Env[] = [
    { k: 'n', b: { t: 'join!', ch: 'presence-a', m: { user_id: '1', user_info: null } } },
    { k: 'n', b: { t: 'pub!', pub: { channel: 'c'.repeat(300), event: 'e', data: 1, offset: 1 } } },
    { k: 'n', b: { t: 'pub!', pub: { channel: 7 as unknown as string, event: 'e', data: 1, offset: 1 } } },
    { k: 'n', b: { t: 'pub!', pub: { channel: 'c', event: 'e', data: 1, offset: '1' as unknown as number } } },
    // A presence client event's sender (Pusher's user_id) has no place in the binary header.
    { k: 'n', b: { t: 'pub!', pub: { channel: 'presence-c', event: 'client-x', data: 1, offset: 1, user: 'bob' } } },
    { k: 'q', id: 1, b: { t: 'sub', ch: 'c', conn: { id: '0.1' } } },
    { k: 'q', id: 1, b: { t: 'pub', ch: 'c', ev: 'e', data: 1, src: 'nowhere' as 'api' } },
    { k: 'q', id: -1, b: { t: 'pub', ch: 'c', ev: 'e', data: 1, src: 'api' } },
    { k: 'r', id: 1, ok: false, e: { code: 'forbidden', message: 'no', status: 403 } },
  ];
  for (const env of cold) t.equal(encodeHot(env), null, `msgpack: ${JSON.stringify(env).slice(0, 60)}`);

  // Malformed binary frames throw a clear error; they never read outside the frame.
  const good = encodeHot(hot[1]!)!;
  const goodLen = good.end - good.start;
  const g = Buffer.allocUnsafeSlow(goodLen);
  good.buf.copy(g, 0, good.start, good.end);
  for (const len of [0, 1, 7, 8, 23, 24, 30]) {
    t.throws(() => decodeHot(g, len, unpackr), `truncated to ${len} bytes`);
  }
  // The payload is not decoded with the frame (it is passed on as bytes): a payload cut short throws
  // when something reads it, which the mesh's dispatch catches and logs like any failing handler.
  const cut = decodeHot(g, goodLen - 1, unpackr) as { b: { pub: { data: unknown } } };
  t.throws(() => cut.b.pub.data, 'a truncated payload throws when read');
  const wrongKind = Buffer.from(g);
  wrongKind[1] = 99;
  t.throws(() => decodeHot(Buffer.from(wrongKind), goodLen, unpackr), 'unknown kind');
  const hugeLen = Buffer.allocUnsafeSlow(goodLen);
  g.copy(hugeLen);
  hugeLen.writeUInt32LE(0xfffffff0, 24);
  t.throws(() => decodeHot(hugeLen, goodLen, unpackr), 'string length past the end');
});

t.test('a payload kept as JSON text crosses as text: decoded lazily, spliced by the codecs, dropped once read', async (t) => {
  const { encodeHot, decodeHot } = await import('../src/runtime/frames.js');
  const { JsonData, EncodedPublication, EncodedPubRequest, EncodedMessage, payloadOf, rawJson } = await import('../src/protocol/encoded-payload.js');
  const { Unpackr, pack, unpack } = await import('msgpackr');
  const unpackr = new Unpackr({ useRecords: false, copyBuffers: true });
  type Env = import('../src/runtime/messages.js').Envelope;
  const roundTrip = (env: Env): any => {
    const h = encodeHot(env)!;
    const b = Buffer.allocUnsafeSlow(h.end - h.start + 16);
    h.buf.copy(b, 0, h.start, h.end);
    return decodeHot(b, h.end - h.start, unpackr);
  };
  const value = { s: 'é"\\\n\u2028🙂', n: -1.5e-7, a: [null, true, {}], deep: { x: [[1]] } };
  const text = JSON.stringify(value);

  const pub = new EncodedPublication('c', 'e', 9, new JsonData(text));
  const notice = roundTrip({ k: 'n', b: { t: 'pub!', pub: pub as never }, ex: '0.1' } as Env);
  t.equal(rawJson(notice.b.pub), text, 'the pub! notice arrives with the same text, not parsed');
  t.equal(rawJson(pub), text, 'encoding did not read the value');
  t.same(notice.b.pub.data, value, 'the value parses from it on demand');
  t.equal(rawJson(notice.b.pub), undefined, 'once the value was read, the text is no longer used');

  const req = Object.assign(new EncodedPubRequest('room', 'm', 'client', new JsonData(text)), { from: { id: '0.5' }, at: 1.5 });
  const decodedReq = roundTrip({ k: 'q', id: 3, b: req as never });
  t.equal(rawJson(decodedReq.b), text, 'a pub request carries the text too');
  t.same(decodedReq.b.from, { id: '0.5' });
  const msg = new EncodedMessage('m', payloadOf(decodedReq.b)!);
  t.equal(rawJson(msg), text, 'handed on to the actor message without reading it');

  // Generic encodings (msgpack of a whole envelope, JSON) see plain objects with the value.
  const copy = unpack(pack({ pub: new EncodedPublication('c', 'e', 9, new JsonData(text)) })) as Record<string, unknown>;
  t.same(copy, { pub: { channel: 'c', event: 'e', offset: 9, data: value } });
  const reqCopy = unpack(pack(Object.assign(new EncodedPubRequest('r', 'e', 'api', new JsonData('[1,2]')), { ex: '0.2', w: 1 as const })));
  t.same(reqCopy, { t: 'pub', ch: 'r', ev: 'e', data: [1, 2], src: 'api', ex: '0.2', w: 1 });
  t.equal(JSON.stringify(new EncodedMessage('a', new JsonData('"x"'))), '{"event":"a","data":"x"}');
  t.same(unpack(pack(new EncodedMessage('a', new JsonData('{"k":[true]}')))), { event: 'a', data: { k: [true] } });

  // Assigning data replaces the payload.
  const replaced = new EncodedMessage('e', new JsonData('1'));
  replaced.data = 2;
  t.equal(replaced.data, 2);
  t.equal(rawJson(replaced), undefined);
  t.equal(JsonData.of(undefined), undefined, 'undefined has no JSON text');

  // The codecs write the same bytes from the text as from the value.
  const { allCodecs } = await import('../src/protocol/codecs.js');
  await import('../src/transports/sse.js');
  await import('../src/transports/pusher/codec.js');
  const { namespaceCodec } = await import('../src/transports/socketio/codec.js');
  namespaceCodec('/', 'json', () => {});
  namespaceCodec('/admin', 'json', () => {});
  let n = 0;
  namespaceCodec('/r', 'json', () => {}, () => `off-${n++}`);
  for (const data of [value, 'a "string"', 0, null, [], 'x'.repeat(3000)]) {
    for (const codec of allCodecs()) {
      if (codec.binary) continue;
      const fromValue = codec.pub({ channel: 'private-room', event: 'tick', data, offset: 42 });
      n--; // the recovery codec numbers each call: give the spliced one the same offset
      const fromText = codec.pub(new EncodedPublication('private-room', 'tick', 42, JsonData.of(data)!));
      if (fromText !== fromValue) t.fail(`${codec.name}: ${String(fromText).slice(0, 120)} != ${String(fromValue).slice(0, 120)}`);
    }
  }
  t.pass('every text codec writes identical frames from the text');

  // Hostile: a frame flagged as JSON text whose payload cannot be JSON text is refused as malformed.
  const h = encodeHot({ k: 'n', b: { t: 'pub!', pub: { channel: 'c', event: 'e', data: 42, offset: 1 } } } as Env)!;
  const forged = Buffer.allocUnsafeSlow(h.end - h.start + 16);
  h.buf.copy(forged, 0, h.start, h.end);
  forged[2] = forged[2]! | 16; // F_JSON
  t.throws(() => decodeHot(forged, h.end - h.start, unpackr), /malformed binary mesh frame/, 'JSON flag on a payload that is not JSON text');
  // A JSON text payload crosses as its UTF-8 bytes: the frame's tail is the text itself.
  const text2 = '{"k":"é🙂"}';
  const t2 = encodeHot({ k: 'n', b: { t: 'pub!', pub: new EncodedPublication('c', 'e', 1, new JsonData(text2)) as never } } as Env)!;
  t.equal(t2.buf.toString('utf8', t2.end - Buffer.byteLength(text2), t2.end), text2, 'the text, as UTF-8, ends the frame');
  for (const last of ['x', ',']) {
    const cut = Buffer.allocUnsafeSlow(t2.end - t2.start + 16);
    t2.buf.copy(cut, 0, t2.start, t2.end);
    cut[t2.end - t2.start - 1] = last.charCodeAt(0);
    t.throws(() => decodeHot(cut, t2.end - t2.start, unpackr), /malformed binary mesh frame/, `a JSON text ending in ${last} is refused`);
  }
});

t.test('a payload that crossed a ring as msgpack is handed on as the same bytes, decoded only when read', async (t) => {
  const { encodeHot, decodeHot } = await import('../src/runtime/frames.js');
  const { MsgpackData, EncodedPublication, EncodedMessage, payloadOf, rawMsgpack } = await import('../src/protocol/encoded-payload.js');
  const { MSGPACK_CODEC } = await import('../src/protocol/codecs.js');
  const { Unpackr } = await import('msgpackr');
  const unpackr = new Unpackr({ useRecords: false, copyBuffers: true });
  type Env = import('../src/runtime/messages.js').Envelope;
  const bytesOf = (env: Env): Buffer => {
    const h = encodeHot(env)!;
    const b = Buffer.allocUnsafeSlow(h.end - h.start);
    h.buf.copy(b, 0, h.start, h.end);
    return b;
  };
  const value = { s: 'é🙂', n: -1.5e-7, bin: Buffer.from([0, 255]), a: [null, true, {}], big: 2 ** 40 + 1 };
  const from = { id: '1.42', user: 'u', info: { name: 'Zoë', bio: 'b'.repeat(300) }, grants: ['private-*'] };

  // Edge → owner: a client's publish request, its sender (long enough that the header is past 255 bytes) beside it.
  const reqBytes = bytesOf({ k: 'q', id: 3, b: { t: 'pub', ch: 'room', ev: 'm', data: value, src: 'client', from, at: 2.5 } });
  const req = decodeHot(reqBytes, reqBytes.length, unpackr) as any;
  t.same(req.b.from, from, 'the sender decodes');
  const raw = payloadOf(req.b)!;
  t.ok(raw instanceof MsgpackData && rawMsgpack(req.b), 'the payload arrives as msgpack bytes, undecoded');

  // Owner → subscriber shards: the actor's message and the publication carry the same bytes.
  const msg = new EncodedMessage('m', raw);
  const pub = new EncodedPublication('room', 'm', 7, payloadOf(msg)!);
  const noticeBytes = bytesOf({ k: 'n', b: { t: 'pub!', pub: pub as never, at: 2.5 } });
  t.ok(noticeBytes.includes(Buffer.from(rawMsgpack(pub)!)), 'the pub! frame holds the request payload bytes as they came');
  t.ok(rawMsgpack(pub), 'nothing on the way decoded it');
  const notice = decodeHot(noticeBytes, noticeBytes.length, unpackr) as any;
  t.same(Buffer.from(rawMsgpack(notice.b.pub)!), Buffer.from(rawMsgpack(pub)!));

  // The native msgpack codec splices the bytes: the same frame as packing the value.
  const spliced = Buffer.from(MSGPACK_CODEC.pub(notice.b.pub) as Uint8Array);
  t.ok(rawMsgpack(notice.b.pub), 'splicing did not decode the payload');
  t.same(spliced, Buffer.from(MSGPACK_CODEC.pub({ channel: 'room', event: 'm', data: value, offset: 7 }) as Uint8Array), 'byte-identical msgpack frame');
  for (const data of ['x'.repeat(70000), 0, null, [], [1, [2, [3]]], Buffer.alloc(300, 1), { 'ключ': 'значение' }]) {
    for (const offset of [1, 2 ** 33, 2 ** 53 - 1]) {
      const a = Buffer.from(MSGPACK_CODEC.pub(new EncodedPublication('c', 'ëv', offset, MsgpackData.of(data))) as Uint8Array);
      const b = Buffer.from(MSGPACK_CODEC.pub({ channel: 'c', event: 'ëv', data, offset }) as Uint8Array);
      if (!a.equals(b)) t.fail(`msgpack codec: ${JSON.stringify(data).slice(0, 40)} at ${offset}`);
    }
  }
  t.pass('the msgpack codec writes identical frames from the bytes');

  // Readers get the value; once read, the bytes are no longer used (the value may have been changed).
  t.same(notice.b.pub.data, value, 'the value decodes on demand, binaries as Buffers');
  t.ok(Buffer.isBuffer(notice.b.pub.data.bin));
  t.equal(rawMsgpack(notice.b.pub), undefined, 'once read, the bytes are no longer spliced');
  notice.b.pub.data.s = 'changed';
  const after = MSGPACK_CODEC.pub(notice.b.pub) as Uint8Array;
  t.equal((new Unpackr({ useRecords: false }).unpack(after) as any).data.s, 'changed', 'a change made in place reaches the wire');

  // Hostile: a sender length past the end, or a sender that is not an object, is a malformed frame.
  const forged = Buffer.from(reqBytes);
  const fromAt = 16 + (4 + 4) + (4 + 1); // fixed fields, then 'room' and 'm' (u32 length + UTF-8): the sender's length
  t.equal(forged.readUInt32LE(fromAt), reqBytes.length - fromAt - 4 - (rawMsgpack(req.b) ?? []).length, 'that is where the sender length is');
  forged.writeUInt32LE(0xfffff, fromAt);
  t.throws(() => decodeHot(forged, forged.length, unpackr), /malformed binary mesh frame/, 'sender length past the end');
  const notObject = bytesOf({ k: 'q', id: 4, b: { t: 'pub', ch: 'r', ev: 'e', data: 1, src: 'client', from: [1] as never } });
  t.throws(() => decodeHot(notObject, notObject.length, unpackr), /malformed binary mesh frame/, 'sender not an object');
});

t.test('binary and msgpack frames share a ring in order; a malformed frame throws once and is skipped', async (t) => {
  const { encodeHot } = await import('../src/runtime/frames.js');
  const ring = allocRing(1 << 12);
  const pbell = allocDoorbell();
  const cbell = allocDoorbell();
  const prod = new RingProducer(ring, cbell);
  const cons = new RingConsumer(ring, pbell);
  const got: unknown[] = [];
  const sent: unknown[] = [];
  let drained = 0;
  const drainAll = (): void => {
    prod.flush();
    while ((drained = cons.drain((m) => got.push(m))) > 0 || prod.queuedBytes > 0) prod.flush();
  };
  for (let i = 0; i < 300; i++) {
    if (i % 3 === 0) {
      const env = { k: 'n' as const, b: { t: 'pub!' as const, pub: { channel: 'c', event: 'e', data: { i, pad: 'p'.repeat(i * 7) }, offset: i } } };
      const h = encodeHot(env)!;
      prod.sendEncoded(h.buf, h.start, h.end - h.start);
      sent.push(env);
    } else {
      const m = { seq: i, pad: 'q'.repeat(i * 5) };
      prod.send(m);
      sent.push(m);
    }
    if (i % 50 === 49) drainAll();
  }
  drainAll();
  t.same(plain(got), sent, 'every frame, in order, through full-ring queueing and fragmentation');
  t.equal(drained, 0);

  // A hostile frame: the binary tag and garbage.
  got.length = 0;
  prod.sendEncoded(Buffer.from([0xc1, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]), 0, 12);
  prod.send({ after: 1 });
  prod.flush();
  t.throws(() => cons.drain((m) => got.push(m)), /malformed binary mesh frame/);
  t.equal(cons.drain((m) => got.push(m)), 1, 'the next drain goes on after the bad frame');
  t.same(got, [{ after: 1 }]);
});

t.test('mesh: a pub request and its reply go binary and arrive intact', async (t) => {
  const { createMeshLayout, MeshEndpoint } = await import('../src/runtime/mesh.js');
  const layout = createMeshLayout(2, 1 << 12);
  const eps = [0, 1].map((i) => new MeshEndpoint(layout, i));
  const keep = setInterval(() => {}, 1000);
  t.teardown(() => (clearInterval(keep), eps.forEach((e) => e.close())));
  const reqs: unknown[] = [];
  eps[0]!.start(() => null, () => {});
  eps[1]!.start((_from, req) => (reqs.push(req), { offset: reqs.length, data: { echo: (req as { data: unknown }).data } }), () => {});
  const from = { id: '0.9', user: '7', grants: ['private-*'] };
  const a = await eps[0]!.request(1, { t: 'pub', ch: 'room', ev: 'msg', data: { x: 'é' }, src: 'client', from, ex: '0.9', at: 5.5, w: 1 });
  const b = await eps[0]!.request(1, { t: 'pub', ch: 'room', ev: 'msg', data: [1, 2], src: 'api' });
  t.same(a, { offset: 1, data: { echo: { x: 'é' } } });
  t.same(b, { offset: 2, data: { echo: [1, 2] } });
  t.same(plain(reqs), [
    { t: 'pub', ch: 'room', ev: 'msg', data: { x: 'é' }, src: 'client', from, ex: '0.9', at: 5.5, w: 1 },
    { t: 'pub', ch: 'room', ev: 'msg', data: [1, 2], src: 'api' },
  ]);
});

t.test('mesh: an undecodable frame is skipped and the frames after it are delivered', async (t) => {
  const { createMeshLayout, MeshEndpoint } = await import('../src/runtime/mesh.js');
  const { encodeHot } = await import('../src/runtime/frames.js');
  const layout = createMeshLayout(2, 1 << 12);
  // Thread 0's ring to thread 1, written by hand: a malformed binary frame, a malformed msgpack frame,
  // then a good notice.
  const raw = new RingProducer(layout.rings[0]![1]!, layout.bells[1]!);
  raw.sendEncoded(Buffer.from([0xc1, 1, 0, 0, 9, 9, 9, 9]), 0, 8);
  raw.sendEncoded(Buffer.from([0x82, 0xa1]), 0, 2);
  const h = encodeHot({ k: 'n', b: { t: 'pub!', pub: { channel: 'c', event: 'e', data: 1, offset: 1 } } })!;
  raw.sendEncoded(h.buf, h.start, h.end - h.start);
  raw.flush();
  const ep = new MeshEndpoint(layout, 1);
  const keep = setInterval(() => {}, 1000);
  t.teardown(() => (clearInterval(keep), ep.close()));
  const got: unknown[] = [];
  ep.start(() => null, (_from, n) => got.push(n));
  await until(() => got.length === 1, 5000, 'the good notice');
  t.same(plain(got), [{ t: 'pub!', pub: { channel: 'c', event: 'e', data: 1, offset: 1 } }]);
});
