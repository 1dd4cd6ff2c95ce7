/**
 * The hot mesh frames (frames.ts) in their binary form vs the same envelopes as generic msgpack maps,
 * through one ring: CPU per frame of encode + copy into the ring + drain + decode, in one thread,
 * synchronous, so neither scheduling nor wake-ups are in the figure. Reps of the two forms alternate;
 * medians. A `join!` notice (not a hot frame, msgpack either way) is the control.
 *
 *   node dist/bench/hot-frames.js [--quick]     prints one JSON line per frame kind
 */
import { pathToFileURL } from 'node:url';
import { allocDoorbell, allocRing, RingConsumer, RingProducer } from '../src/runtime/ring.js';
import { encodeHot } from '../src/runtime/frames.js';
import { JsonData, JsonPublication } from '../src/protocol/json-data.js';
import type { Envelope } from '../src/runtime/messages.js';

function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

export async function benchHotFrames(opts: { quick: boolean }): Promise<Array<Record<string, unknown>>> {
  const data = { seq: 1, t: 1764111111111.5, text: 'x'.repeat(40) };
  const dataText = JSON.stringify(data);
  const kinds: Array<[string, (i: number) => Envelope]> = [
    ['pub! notice', (i) => ({ k: 'n', b: { t: 'pub!', pub: { channel: 'bench-room', event: 'message', data, offset: i }, at: 1234.5 } })],
    // The payload kept as JSON text (json-data.ts): a fresh JsonData per frame, as per publication.
    ['pub! notice, JSON text', (i) => ({ k: 'n', b: { t: 'pub!', pub: new JsonPublication('bench-room', 'message', i, new JsonData(dataText)), at: 1234.5 } })],
    ['pub request', (i) => ({ k: 'q', id: i, b: { t: 'pub', ch: 'bench-room', ev: 'message', data, src: 'api', at: 1234.5 } })],
    ['reply', (i) => ({ k: 'r', id: i, ok: true, v: { offset: i } })],
    ['join! (control)', () => ({ k: 'n', b: { t: 'join!', ch: 'presence-room', m: { user_id: '42', user_info: { name: 'x'.repeat(30) } } } })],
  ];
  const batch = 2000;
  const rounds = opts.quick ? 5 : 20;
  const reps = opts.quick ? 7 : 15;
  const out: Array<Record<string, unknown>> = [];
  for (const [name, make] of kinds) {
    const ring = allocRing(1 << 22);
    const prod = new RingProducer(ring, allocDoorbell());
    const cons = new RingConsumer(ring, allocDoorbell());
    let got = 0;
    const onMsg = (): void => {
      got++;
    };
    const run = (binary: boolean): number => {
      const c0 = cpuNs();
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < batch; i++) {
          const env = make(i + 1);
          const h = binary ? encodeHot(env) : null;
          if (h !== null) prod.sendEncoded(h.buf, h.start, h.end - h.start);
          else prod.send(env);
        }
        prod.flush();
        cons.drain(onMsg);
      }
      return (cpuNs() - c0) / (rounds * batch);
    };
    for (let i = 0; i < 3; i++) (run(false), run(true));
    const m: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < reps; i++) (m.push(run(false)), b.push(run(true)));
    if (got !== (6 + 2 * reps) * rounds * batch) throw new Error(`${name}: ${got} frames drained`);
    const med = (xs: number[]): number => [...xs].sort((x, y) => x - y)[xs.length >> 1]!;
    out.push({
      bench: 'hot-frames',
      frame: name,
      msgpack_ns_per_frame: Math.round(med(m)),
      binary_ns_per_frame: Math.round(med(b)),
      ratio: Math.round((med(m) / med(b)) * 100) / 100,
    });
  }
  return out;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  for (const rec of await benchHotFrames({ quick })) console.log(JSON.stringify(rec));
}
