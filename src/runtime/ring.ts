/**
 * Single-producer / single-consumer ring queues over SharedArrayBuffer, carrying msgpackr frames
 * between threads, plus the doorbell a thread sleeps on.
 *
 * Wiring contract (one ring per ordered pair of threads, one doorbell per thread):
 *   - Each thread owns exactly one Doorbell and calls `listen(onWake)` once. Its onWake must
 *     (a) `drain()` every RingConsumer of that thread and (b) `flush()` every RingProducer of that
 *     thread that has `queuedBytes > 0`. (b) is how a producer whose ring was full gets going
 *     again: the consumer rings the producer thread's doorbell once it has made room, and nothing
 *     else retries — there is deliberately no polling.
 *   - A RingProducer is given the *consumer* thread's bell (to wake it when data arrives); a
 *     RingConsumer is given the *producer* thread's bell (to wake it when space frees up).
 *   - onWake may be called spuriously (an empty drain is one Atomics.load per ring), so it must be
 *     cheap and idempotent.
 *
 * Ring layout: a 256-byte control header, then a power-of-two data area. Tail (producer-owned) and
 * head (consumer-owned) live on separate cache lines so the two threads do not false-share. Both
 * are free-running 32-bit byte counters: offsets are `counter & mask`, fill is `(tail - head) | 0`,
 * which stays exact across 2^32 overflow because the capacity divides 2^32 and never exceeds 2^30.
 *
 * Frame: int32 header word (payload length | flags), payload, padding to 4 bytes. A payload is a msgpack
 * value, or (first byte 0xc1, which msgpack never uses) one of the binary hot frames of frames.ts. Keeping every
 * frame 4-byte aligned means a header word can never straddle the end of the data area. A header of
 * -1 is a wrap marker: the rest of the data area up to its end is padding, continue at offset 0.
 * Messages whose encoding exceeds a quarter of the ring are split into fragments: frames are at most
 * half the ring, which guarantees they eventually fit contiguously once the consumer empties it.
 */
import { Packr, Unpackr, REUSE_BUFFER_MODE, RESET_BUFFER_MODE } from 'msgpackr';
import { BIN, decodeHot } from './frames.js';

export const DEFAULT_RING_BYTES = 1 << 20;
const MIN_RING_BYTES = 1 << 12;
const MAX_RING_BYTES = 1 << 30;

// Control header, in int32 slots. 16 slots = 64 bytes = one cache line apart.
const HEADER_BYTES = 256;
const TAIL = 0;
const HEAD = 16;
const WANT_SPACE = 32;
const CAPACITY = 48;

// Frame header word.
const WRAP = -1;
const LEN_MASK = 0x1fffffff;
/** Set on every fragment except the first: "continues a message already started". */
const F_MID = 1 << 29;
/** Set on every fragment except the last: "more of this message follows". */
const F_MORE = 1 << 30;

// Doorbell, in int32 slots.
const BELL_SEQ = 0;
const BELL_STATE = 1;
const BELL_BYTES = 64;
/** Listener is inside onWake (or not listening at all): producers need not ring. */
const AWAKE = 0;
/** Listener is about to wait / waiting: the first producer to publish must ring. */
const SLEEPING = 1;
/** Someone already rang during this sleep; later producers can skip the notify. */
const RUNG = 2;

/** The consumer publishes head at least this often within one drain so the producer can refill early. */
const RUN_BYTES = 64 * 1024;
/** A producer publishes tail at least this often within one turn. */
const PUBLISH_BYTES = 4096;
/** Up to this size a byte-copy loop beats a native copy. */
const SMALL_COPY = 96;
/**
 * Up to this size a word-copy loop (both sides 4-byte aligned) beats a native copy, whose call and
 * checks cost more than moving a few hundred bytes (measured: break-even near 400 bytes here).
 */
const WORD_COPY = 384;

type WaitAsyncResult =
  | { async: false; value: 'not-equal' | 'timed-out' }
  | { async: true; value: Promise<'ok' | 'timed-out'> };
// lib is ES2022 (no waitAsync typings) while the runtime (Node >= 20) has it.
const waitAsync = (
  Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): WaitAsyncResult }
).waitAsync.bind(Atomics);

// REUSE: pack() returns msgpackr's own scratch buffer with .start/.end instead of allocating a
// subarray; RESET: the next pack() writes over the same bytes. We copy out immediately, so both hold.
const PACK_MODE = REUSE_BUFFER_MODE | RESET_BUFFER_MODE;
export type PackedBuffer = Buffer & { start: number; end: number };

/** The encoder of frames sent to several rings (mesh.notifyMany); producers keep their own. */
const packr = new Packr({ useRecords: false });

/**
 * Encodes a frame for RingProducer.sendEncoded: bytes start..end of the returned buffer, valid only
 * until the next encodeFrame() or send() in this thread.
 */
export function encodeFrame(msg: unknown): PackedBuffer {
  return packr.pack(msg, PACK_MODE) as PackedBuffer;
}

/** Header + data area; dataBytes is rounded up to a power of two (4 KiB .. 1 GiB). */
export function allocRing(dataBytes: number = DEFAULT_RING_BYTES): SharedArrayBuffer {
  if (!Number.isFinite(dataBytes) || dataBytes <= 0 || dataBytes > MAX_RING_BYTES) {
    throw new RangeError(`ring size must be in (0, ${MAX_RING_BYTES}], got ${dataBytes}`);
  }
  let cap = MIN_RING_BYTES;
  while (cap < dataBytes) cap *= 2;
  const sab = new SharedArrayBuffer(HEADER_BYTES + cap);
  new Int32Array(sab, 0, HEADER_BYTES >> 2)[CAPACITY] = cap;
  return sab;
}

/** One per thread that consumes rings (and per thread that produces into them, for back-pressure). */
export function allocDoorbell(): SharedArrayBuffer {
  return new SharedArrayBuffer(BELL_BYTES);
}

function ringCapacity(ring: SharedArrayBuffer): number {
  const cap = ring.byteLength - HEADER_BYTES;
  if (
    cap < MIN_RING_BYTES ||
    (cap & (cap - 1)) !== 0 ||
    new Int32Array(ring, 0, HEADER_BYTES >> 2)[CAPACITY] !== cap
  ) {
    throw new TypeError('not a ring allocated by allocRing()');
  }
  return cap;
}

function bellView(bell: SharedArrayBuffer): Int32Array {
  if (!(bell instanceof SharedArrayBuffer) || bell.byteLength !== BELL_BYTES) {
    throw new TypeError('not a doorbell allocated by allocDoorbell()');
  }
  return new Int32Array(bell);
}

/**
 * Wake the bell's listener if it is (about to be) asleep. The CAS makes this at most one
 * Atomics.notify per sleep across all producers in all threads; it is safe for a loser of the CAS
 * to skip notifying because the listener reads the sequence number *before* it announces SLEEPING,
 * so the winner's increment always lands after that read and its wait cannot block.
 */
function ringBell(b: Int32Array): void {
  if (Atomics.compareExchange(b, BELL_STATE, SLEEPING, RUNG) === SLEEPING) {
    Atomics.add(b, BELL_SEQ, 1);
    Atomics.notify(b, BELL_SEQ);
  }
}

interface Queued {
  bytes: Uint8Array;
  /** Payload bytes already written to the ring as fragments. */
  sent: number;
}

export class RingProducer {
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  private readonly data32: Int32Array;
  private readonly cap: number;
  private readonly mask: number;
  private readonly maxChunk: number;
  private readonly publishEvery: number;
  private readonly bell: Int32Array;
  private readonly packr = new Packr({ useRecords: false });
  /** Our write position; the consumer sees `published`, which trails it within one turn. */
  private tail: number;
  private published: number;
  /** Last head we saw; only re-read when it looks like there is not enough room. */
  private headCache: number;
  private turnScheduled = false;
  private readonly queue: Queued[] = [];
  private qHead = 0;
  private _queuedBytes = 0;
  private packBuf: Uint8Array | null = null;
  private packBuf32: Int32Array | null = null;

  constructor(ring: SharedArrayBuffer, consumerBell: SharedArrayBuffer) {
    this.cap = ringCapacity(ring);
    this.mask = this.cap - 1;
    this.maxChunk = this.cap >> 2;
    this.publishEvery = Math.min(PUBLISH_BYTES, this.cap >> 2);
    this.ctl = new Int32Array(ring, 0, HEADER_BYTES >> 2);
    this.data = new Uint8Array(ring, HEADER_BYTES, this.cap);
    this.data32 = new Int32Array(ring, HEADER_BYTES, this.cap >> 2);
    this.bell = bellView(consumerBell);
    // Resume from whatever a previous producer on this ring published (thread replacement).
    this.tail = this.published = Atomics.load(this.ctl, TAIL);
    this.headCache = Atomics.load(this.ctl, HEAD);
  }

  /** Encoded bytes waiting in the local queue because the ring had no room. */
  get queuedBytes(): number {
    return this._queuedBytes;
  }

  /**
   * Encodes now (later mutation of msg is not seen) and never drops or blocks: what does not fit
   * waits in the local queue, in order, until flush(). Frames become visible to the consumer at
   * the latest when the current turn ends (or on flush()).
   */
  send(msg: unknown): void {
    const buf = this.packr.pack(msg, PACK_MODE) as PackedBuffer;
    this.sendEncoded(buf, buf.start, buf.end - buf.start);
  }

  /**
   * Sends bytes encoded by encodeFrame() (or anything the consumer's msgpack decoder reads) without
   * encoding again: how one frame goes to several rings. The bytes are copied (into the ring, or into
   * the local queue) before this returns, so the caller may reuse `buf` at once.
   */
  sendEncoded(buf: Uint8Array, start: number, len: number): void {
    if (len <= this.maxChunk && (this.qHead === this.queue.length || this.flush())) {
      if (this.writeFrame(buf, start, len, 0, this.wordView(buf, start, len))) {
        this.wrote();
        return;
      }
    }
    // Slow path (ring full, backlog, or needs fragmenting): the encoder's buffer is about to be
    // reused, so keep a private copy.
    const copy = new Uint8Array(len);
    copy.set(buf.subarray(start, start + len));
    this.queue.push({ bytes: copy, sent: 0 });
    this._queuedBytes += len;
    if (this.queue.length - this.qHead === 1) this.flush();
  }

  /** Moves as much of the local queue into the ring as fits; true when the queue is empty. */
  flush(): boolean {
    const q = this.queue;
    let wrote = false;
    while (this.qHead < q.length) {
      const item = q[this.qHead]!;
      const total = item.bytes.length;
      // Whole messages never carry flags; larger ones go out as a FIRST..MID..LAST chain, which may
      // be interrupted here and resumed on a later flush.
      while (item.sent < total) {
        const n = Math.min(this.maxChunk, total - item.sent);
        const flags =
          total <= this.maxChunk ? 0 : (item.sent > 0 ? F_MID : 0) | (item.sent + n < total ? F_MORE : 0);
        if (!this.writeFrame(item.bytes, item.sent, n, flags, null)) break;
        wrote = true;
        item.sent += n;
        this._queuedBytes -= n;
      }
      if (item.sent < total) break;
      q[this.qHead++] = undefined as unknown as Queued;
    }
    if (this.qHead === q.length) {
      q.length = 0;
      this.qHead = 0;
    } else if (this.qHead > 1024 && this.qHead * 2 > q.length) {
      q.splice(0, this.qHead);
      this.qHead = 0;
    }
    // Flushing is also how a caller makes earlier sends visible before the turn ends.
    this.publish();
    if (wrote) this.wrote();
    return this.qHead === q.length;
  }

  /**
   * Publishing tail is a seq-cst store and ringing needs a look at the bell, ~20 ns each here, so
   * both are batched: tail goes out every PUBLISH_BYTES (so a consumer that is awake can work in
   * parallel) and at the end of the current turn, where the bell is rung too if the consumer sleeps.
   * One microtask per turn per producer, at most one notify per consumer sleep (see ringBell).
   */
  private wrote(): void {
    if (((this.tail - this.published) | 0) >= this.publishEvery) this.publish();
    if (!this.turnScheduled) {
      this.turnScheduled = true;
      queueMicrotask(this.endOfTurn);
    }
  }

  private readonly endOfTurn = (): void => {
    this.turnScheduled = false;
    this.publish();
    // Must come after the publish: a consumer that was AWAKE at this load re-checks the rings
    // after announcing SLEEPING, so it sees what we just published.
    if (Atomics.load(this.bell, BELL_STATE) === SLEEPING) ringBell(this.bell);
  };

  private publish(): void {
    if (this.tail !== this.published) {
      this.published = this.tail;
      // Seq-cst store orders the plain frame writes before the consumer can observe them.
      Atomics.store(this.ctl, TAIL, this.tail);
    }
  }

  /**
   * An Int32Array over msgpackr's encode buffer when the encoded bytes (plus the padding word
   * tail) can be read as whole words; cached, since that buffer only changes when it has to grow.
   */
  private wordView(buf: Uint8Array, start: number, len: number): Int32Array | null {
    if (len > WORD_COPY || (start & 3) !== 0) return null;
    if (buf !== this.packBuf) {
      this.packBuf = buf;
      this.packBuf32 =
        (buf.byteOffset & 3) === 0 ? new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength >> 2) : null;
    }
    const v = this.packBuf32;
    return v !== null && (start + len + 3) >> 2 <= v.length ? v : null;
  }

  /** Writes one frame if it fits now; on failure leaves WANT_SPACE set so the consumer wakes us. */
  private writeFrame(
    src: Uint8Array,
    srcStart: number,
    len: number,
    flags: number,
    src32: Int32Array | null,
  ): boolean {
    const size = 4 + ((len + 3) & ~3);
    let tail = this.tail;
    let off = tail & this.mask;
    const toEnd = this.cap - off;
    const need = size <= toEnd ? size : toEnd + size;
    if (this.cap - ((tail - this.headCache) | 0) < need) {
      this.headCache = Atomics.load(this.ctl, HEAD);
      if (this.cap - ((tail - this.headCache) | 0) < need) {
        // Let the consumer start making room now rather than at the end of our turn.
        this.publish();
        // Announce first, then look again: the consumer checks the flag after publishing head,
        // so either it sees the flag or we see its new head.
        Atomics.store(this.ctl, WANT_SPACE, 1);
        this.headCache = Atomics.load(this.ctl, HEAD);
        if (this.cap - ((tail - this.headCache) | 0) < need) return false;
      }
    }
    if (size > toEnd) {
      this.data32[off >> 2] = WRAP;
      tail = (tail + toEnd) | 0;
      off = 0;
    }
    this.data32[off >> 2] = len | flags;
    const dst = off + 4;
    if (src32 !== null) {
      const d32 = this.data32;
      const from = srcStart >> 2;
      const to = (dst >> 2) - from;
      for (let i = from, e = (srcStart + len + 3) >> 2; i < e; i++) d32[to + i] = src32[i]!;
    } else if (len <= SMALL_COPY) {
      const data = this.data;
      for (let i = 0; i < len; i++) data[dst + i] = src[srcStart + i]!;
    } else {
      this.data.set(src.subarray(srcStart, srcStart + len), dst);
    }
    this.tail = (tail + size) | 0;
    return true;
  }
}

/**
 * With copyBuffers, msgpackr copies binary values via `Uint8Array.prototype.slice.call(source)`,
 * which allocates through the source's species constructor. A fresh ArrayBuffer per value costs
 * ~1.5 µs for 1 KiB here, so decode buffers advertise a species that hands out Buffer.allocUnsafe
 * memory (pooled slabs for small sizes, exactly what Buffer.from() gives). Still a copy: nothing
 * delivered aliases our reused decode buffers.
 */
function PooledBuffer(length: number): Buffer {
  return Buffer.allocUnsafe(length);
}
const pooledSpecies = { [Symbol.species]: PooledBuffer };
function decodeBuffer(size: number): Buffer {
  const b = Buffer.allocUnsafeSlow(size);
  Object.defineProperty(b, 'constructor', { value: pooledSpecies });
  return b;
}

export class RingConsumer {
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  private readonly data32: Int32Array;
  private readonly cap: number;
  private readonly mask: number;
  private readonly producerBell: Int32Array;
  private readonly unpackr = new Unpackr({ useRecords: false, copyBuffers: true });
  private head: number;
  // Each frame is decoded from offset 0 of a private, non-shared buffer: TextDecoder and friends
  // reject SAB-backed views, and msgpackr only uses its key cache when the source ends before byte
  // 180, i.e. when a small message starts at 0 (decoding in place in a big buffer is ~2x slower).
  private frame: Buffer = decodeBuffer(4096);
  private frame32: Int32Array = new Int32Array(this.frame.buffer, 0, 1024);
  // Reassembly of a fragmented message; asmLen < 0 means none in progress.
  private asm: Buffer | null = null;
  private asmLen = -1;

  constructor(ring: SharedArrayBuffer, producerBell: SharedArrayBuffer) {
    this.cap = ringCapacity(ring);
    this.mask = this.cap - 1;
    this.ctl = new Int32Array(ring, 0, HEADER_BYTES >> 2);
    this.data = new Uint8Array(ring, HEADER_BYTES, this.cap);
    this.data32 = new Int32Array(ring, HEADER_BYTES, this.cap >> 2);
    this.producerBell = bellView(producerBell);
    this.head = Atomics.load(this.ctl, HEAD);
  }

  /** Forgets a half-reassembled message, e.g. when the producer thread was replaced. */
  reset(): void {
    this.asmLen = -1;
    this.asm = null;
  }

  /**
   * Delivers the messages available now, in order, up to maxFrames; returns how many. If the
   * handler throws, the exception propagates and the next drain resumes after that message.
   */
  drain(handler: (msg: unknown) => void, maxFrames: number = Number.MAX_SAFE_INTEGER): number {
    // One acquire of tail per drain; frames published meanwhile wait for the next onWake (the
    // producer rings if we are asleep by then, or the doorbell's re-check picks them up).
    const tail = Atomics.load(this.ctl, TAIL);
    let head = this.head;
    if (head === tail) return 0;
    const data32 = this.data32;
    const mask = this.mask;
    let delivered = 0;
    let unpublished = 0;
    try {
      while (head !== tail && delivered < maxFrames) {
        const off = head & mask;
        const hdr = data32[off >> 2]!;
        if (hdr === WRAP) {
          head = (head + this.cap - off) | 0;
          continue;
        }
        const len = hdr & LEN_MASK;
        const size = 4 + ((len + 3) & ~3);
        let msg: unknown;
        if ((hdr & (F_MID | F_MORE)) === 0) {
          this.asmLen = -1; // a whole message interrupts any unfinished fragment chain
          const f = this.copyOut(off + 4, len);
          // Consumed before it is decoded: a malformed frame throws once, it does not block the ring.
          head = (head + size) | 0;
          unpublished += size;
          msg = f[0] === BIN ? decodeHot(f, len, this.unpackr) : this.unpackr.unpack(f, len);
        } else {
          if ((hdr & F_MID) === 0) {
            this.asmLen = 0; // FIRST: discards any unfinished chain
          }
          if (this.asmLen >= 0) this.appendFragment(off + 4, len);
          // else: orphan tail of a chain whose start we never saw (or reset() away)
          if ((hdr & F_MORE) !== 0 || this.asmLen < 0) {
            head = (head + size) | 0;
            if ((unpublished += size) >= RUN_BYTES) {
              this.publishHead(head, false);
              unpublished = 0;
            }
            continue;
          }
          const asm = this.asm!;
          const total = this.asmLen;
          this.asmLen = -1;
          // Don't pin a huge buffer for the lifetime of the ring.
          if (asm.length > 4 * 1024 * 1024) this.asm = null;
          head = (head + size) | 0;
          unpublished += size;
          msg = asm[0] === BIN ? decodeHot(asm, total, this.unpackr) : this.unpackr.unpack(asm, total);
        }
        // Consumed (above) before the handler runs, so a throwing handler neither loses nor repeats frames.
        if (unpublished >= RUN_BYTES) {
          this.publishHead(head, false);
          unpublished = 0;
        }
        delivered++;
        handler(msg);
      }
    } finally {
      this.publishHead(head, true);
    }
    return delivered;
  }

  private publishHead(head: number, final: boolean): void {
    if (head !== this.head) {
      this.head = head;
      Atomics.store(this.ctl, HEAD, head);
    }
    // Waking the producer for every run would ping-pong; wait until half the ring is free, or the
    // drain is over (then the producer must be told, nothing else will tell it).
    if (!final && ((Atomics.load(this.ctl, TAIL) - head) | 0) > this.cap >> 1) return;
    if (Atomics.load(this.ctl, WANT_SPACE) !== 0) {
      Atomics.store(this.ctl, WANT_SPACE, 0);
      ringBell(this.producerBell);
    }
  }

  /** Copies a payload out of the ring to offset 0 of the frame buffer. */
  private copyOut(at: number, len: number): Buffer {
    if (this.frame.length < len) {
      let size = this.frame.length;
      while (size < len) size *= 2;
      this.frame = decodeBuffer(size);
      this.frame32 = new Int32Array(this.frame.buffer, 0, size >> 2);
    }
    if (len <= WORD_COPY) {
      // Word copy: both sides are 4-byte aligned and the frame is padded to a word.
      const f32 = this.frame32;
      const d32 = this.data32;
      const base = at >> 2;
      for (let i = 0, n = (len + 3) >> 2; i < n; i++) f32[i] = d32[base + i]!;
    } else {
      this.frame.set(this.data.subarray(at, at + len));
    }
    return this.frame;
  }

  private appendFragment(at: number, len: number): void {
    const need = this.asmLen + len;
    if (!this.asm || this.asm.length < need) {
      let size = Math.max(65536, this.asm ? this.asm.length : 0);
      while (size < need) size *= 2;
      const grown = decodeBuffer(size);
      if (this.asm && this.asmLen > 0) this.asm.copy(grown, 0, 0, this.asmLen);
      this.asm = grown;
    }
    this.asm.set(this.data.subarray(at, at + len), this.asmLen);
    this.asmLen = need;
  }
}

export class Doorbell {
  private readonly b: Int32Array;
  private listening = false;
  private closed = false;

  constructor(bell: SharedArrayBuffer) {
    this.b = bellView(bell);
  }

  /**
   * Calls onWake right away (synchronously, inside listen), then whenever the bell is rung, until
   * close(). onWake may also run when nothing new arrived. Exceptions from onWake are rethrown
   * asynchronously (uncaught) without stopping the loop.
   */
  listen(onWake: () => void): void {
    if (this.listening) throw new Error('Doorbell.listen() called twice');
    if (this.closed) throw new Error('Doorbell is closed');
    this.listening = true;
    void this.loop(onWake);
  }

  /** Stops the loop; producers stop ringing this bell. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.b, BELL_STATE, AWAKE);
    // Kick our own pending wait so the loop can exit.
    Atomics.add(this.b, BELL_SEQ, 1);
    Atomics.notify(this.b, BELL_SEQ);
  }

  private async loop(onWake: () => void): Promise<void> {
    const b = this.b;
    while (!this.closed) {
      // While AWAKE, producers skip ringing: whatever they publish is seen by this call or the
      // re-check below.
      Atomics.store(b, BELL_STATE, AWAKE);
      this.call(onWake);
      if (this.closed) break;
      // Order matters: read seq, then announce SLEEPING, then re-check. Anything published after
      // the re-check looked at a ring sees SLEEPING (or RUNG) and bumps seq past what we read, so
      // the wait below either returns 'not-equal' or is notified.
      const seq = Atomics.load(b, BELL_SEQ);
      Atomics.store(b, BELL_STATE, SLEEPING);
      this.call(onWake);
      if (this.closed) break;
      const r = waitAsync(b, BELL_SEQ, seq);
      if (r.async) {
        await r.value;
      } else {
        // Rung while re-checking: don't spin synchronously, let the thread's other I/O run first.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
  }

  private call(onWake: () => void): void {
    try {
      onWake();
    } catch (err) {
      // Surface like an exception in any event handler, but keep the thread's wake-ups working.
      process.nextTick(() => {
        throw err;
      });
    }
  }
}
