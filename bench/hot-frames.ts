/**
 * The hot mesh frames (frames.ts) in their binary form vs the same envelopes as generic msgpack maps,
 * through one ring: CPU per frame of encode + copy into the ring + drain + decode, in one thread,
 * synchronous, so neither scheduling nor wake-ups are in the figure. Reps of the two forms alternate;
 * medians. A `join!` notice (not a hot frame, msgpack either way) is the control.
 *
 * Then an owner's hand-on of a publication whose payload is msgpack (a msgpack client's, an
 * in-process value): decode the `pub` request, build the publication, encode the `pub!` notice —
 * with the payload decoded and packed again (how it was until 2026-11-26) and as the bytes it came in.
 *
 *   node dist/bench/hot-frames.js [--quick]     prints one JSON line per frame kind
 */
import { pathToFileURL } from 'node:url';
import { median } from './lib.js';
import { allocDoorbell, allocRing, RingConsumer, RingProducer } from '../src/runtime/ring.js';
import { Unpackr } from 'msgpackr';
import { decodeHot, encodeHot } from '../src/runtime/frames.js';
import { JsonData, EncodedPublication, payloadOf } from '../src/protocol/encoded-payload.js';
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
    // The payload kept as JSON text (encoded-payload.ts): a fresh JsonData per frame, as per publication.
    ['pub! notice, JSON text', (i) => ({ k: 'n', b: { t: 'pub!', pub: new EncodedPublication('bench-room', 'message', i, new JsonData(dataText)), at: 1234.5 } })],
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
    out.push({
      bench: 'hot-frames',
      frame: name,
      msgpack_ns_per_frame: Math.round(median(m)),
      binary_ns_per_frame: Math.round(median(b)),
      ratio: Math.round((median(m) / median(b)) * 100) / 100,
    });
  }
  out.push(handOn(rounds * batch, reps));
  return out;
}

/** CPU per publication of an owner's hand-on (request frame in → notice frame out), two ways. */
function handOn(n: number, reps: number): Record<string, unknown> {
  const data = { seq: 1, t: 1764111111111.5, text: 'x'.repeat(40), tags: ['a', 'b'], n: { deep: true } };
  const h = encodeHot({ k: 'q', id: 1, b: { t: 'pub', ch: 'bench-room', ev: 'message', data, src: 'client', from: { id: '0.42', user: '7' }, at: 1234.5 } })!;
  const frame = Buffer.allocUnsafeSlow(h.end - h.start);
  h.buf.copy(frame, 0, h.start, h.end);
  const unpackr = new Unpackr({ useRecords: false, copyBuffers: true });
  let bytes = 0;
  const run = (decode: boolean): number => {
    const c0 = cpuNs();
    for (let i = 0; i < n; i++) {
      const req = (decodeHot(frame, frame.length, unpackr) as { b: { ch: string; ev: string; data: unknown } }).b;
      const raw = decode ? undefined : payloadOf(req);
      const pub = raw ? new EncodedPublication(req.ch, req.ev, i, raw) : { channel: req.ch, event: req.ev, data: req.data, offset: i };
      const out = encodeHot({ k: 'n', b: { t: 'pub!', pub, at: 1234.5 } })!;
      bytes += out.end - out.start;
    }
    return (cpuNs() - c0) / n;
  };
  for (let i = 0; i < 3; i++) (run(true), run(false));
  const d: number[] = [];
  const o: number[] = [];
  for (let i = 0; i < reps; i++) (d.push(run(true)), o.push(run(false)));
  if (bytes === 0) throw new Error('nothing encoded');
  return {
    bench: 'hot-frames',
    frame: 'owner hand-on, msgpack payload (pub request in, pub! out)',
    decoded_ns_per_publication: Math.round(median(d)),
    as_bytes_ns_per_publication: Math.round(median(o)),
    ratio: Math.round((median(d) / median(o)) * 100) / 100,
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  for (const rec of await benchHotFrames({ quick })) console.log(JSON.stringify(rec));
}
