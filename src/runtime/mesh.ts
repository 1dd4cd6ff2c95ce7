/**
 * The ring mesh: one SPSC ring per ordered pair of threads (shards 0…N-1 plus the main thread, index N),
 * one doorbell per thread. A MeshEndpoint is one thread's view: send to a peer, request/reply with
 * correlation ids, and a single wake loop that drains every inbound ring and retries full outbound ones.
 */
import { allocDoorbell, allocRing, Doorbell, RingConsumer, RingProducer } from './ring.js';
import { RtError, toErrorBody } from '../errors.js';
import type { Envelope, Notice, Request } from './messages.js';

export interface MeshLayout {
  /** Number of shards; the main thread is index `shards`. */
  shards: number;
  /** rings[from][to]; null on the diagonal. */
  rings: (SharedArrayBuffer | null)[][];
  bells: SharedArrayBuffer[];
}

export function createMeshLayout(shards: number, ringBytes: number): MeshLayout {
  const threads = shards + 1;
  const rings: (SharedArrayBuffer | null)[][] = [];
  for (let from = 0; from < threads; from++) {
    rings.push([]);
    for (let to = 0; to < threads; to++) rings[from]!.push(from === to ? null : allocRing(ringBytes));
  }
  return { shards, rings, bells: Array.from({ length: threads }, () => allocDoorbell()) };
}

export type RequestHandler = (from: number, req: Request) => unknown;
export type NoticeHandler = (from: number, notice: Notice) => void;

const REQUEST_TIMEOUT_MS = 15_000;

export class MeshEndpoint {
  readonly self: number;
  readonly shards: number;
  private readonly out: (RingProducer | null)[];
  private readonly in: (RingConsumer | null)[];
  private readonly bell: Doorbell;
  /** Reply callbacks run synchronously inside the drain loop, so a caller can act on a reply before
   *  the next frame from the same peer is handled (subscribe relies on this for ordering). */
  private readonly pending = new Map<number, { cb: (err: RtError | null, v?: any) => void; timer: NodeJS.Timeout }>();
  private nextId = 1;
  /** Messages to ourselves skip the rings but keep the same asynchronous, FIFO semantics. */
  private selfQueue: Envelope[] = [];
  private selfScheduled = false;
  private onRequest: RequestHandler = () => { throw new RtError('unavailable', 'thread not ready'); };
  private onNotice: NoticeHandler = () => {};
  private closed = false;

  constructor(layout: MeshLayout, self: number) {
    this.self = self;
    this.shards = layout.shards;
    const threads = layout.shards + 1;
    this.out = [];
    this.in = [];
    for (let peer = 0; peer < threads; peer++) {
      this.out.push(peer === self ? null : new RingProducer(layout.rings[self]![peer]!, layout.bells[peer]!));
      this.in.push(peer === self ? null : new RingConsumer(layout.rings[peer]![self]!, layout.bells[peer]!));
    }
    this.bell = new Doorbell(layout.bells[self]!);
  }

  start(onRequest: RequestHandler, onNotice: NoticeHandler): void {
    this.onRequest = onRequest;
    this.onNotice = onNotice;
    this.bell.listen(() => this.wake());
  }

  /** Drains every inbound ring, then retries outbound rings that were full (the consumer rang us). */
  private wake(): void {
    if (this.closed) return;
    for (let peer = 0; peer < this.in.length; peer++) {
      const c = this.in[peer];
      if (c) c.drain((msg) => this.dispatch(peer, msg as Envelope));
    }
    for (const p of this.out) if (p && p.queuedBytes > 0) p.flush();
  }

  private dispatch(from: number, env: Envelope): void {
    try {
      if (env.k === 'n') this.onNotice(from, env.b);
      else if (env.k === 'q') this.handleRequest(from, env.id, env.b);
      else this.settle(env);
    } catch (err) {
      // One bad message must not stop the drain loop (and with it every later message from that peer).
      console.error(`[thread ${this.self}] error handling message from ${from}:`, err);
    }
  }

  private handleRequest(from: number, id: number, body: Request): void {
    let result: unknown;
    try {
      result = this.onRequest(from, body);
    } catch (err) {
      this.post(from, { k: 'r', id, ok: false, e: toErrorBody(err) });
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (v) => this.post(from, { k: 'r', id, ok: true, v: v ?? null }),
        (err) => this.post(from, { k: 'r', id, ok: false, e: toErrorBody(err) }),
      );
    } else {
      this.post(from, { k: 'r', id, ok: true, v: result ?? null });
    }
  }

  private settle(env: Extract<Envelope, { k: 'r' }>): void {
    const p = this.pending.get(env.id);
    if (!p) return; // timed out already
    this.pending.delete(env.id);
    clearTimeout(p.timer);
    if (env.ok) p.cb(null, env.v);
    else p.cb(new RtError(env.e.code, env.e.message, statusFor(env.e.code)));
  }

  private post(to: number, env: Envelope): void {
    if (this.closed) return;
    if (to === this.self) {
      this.selfQueue.push(env);
      if (!this.selfScheduled) {
        this.selfScheduled = true;
        queueMicrotask(() => this.drainSelf());
      }
      return;
    }
    this.out[to]!.send(env);
  }

  private drainSelf(): void {
    this.selfScheduled = false;
    const q = this.selfQueue;
    this.selfQueue = [];
    for (const env of q) this.dispatch(this.self, env);
  }

  notify(to: number, notice: Notice): void {
    this.post(to, { k: 'n', b: notice });
  }

  /** Sends to every thread (shards and main), optionally including this one. */
  broadcast(notice: Notice, includeSelf = true): void {
    for (let t = 0; t <= this.shards; t++) if (includeSelf || t !== this.self) this.notify(t, notice);
  }

  /** Sends a request; `cb` runs synchronously when the reply is drained (or on timeout). */
  call<T = unknown>(to: number, body: Request, cb: (err: RtError | null, v?: T) => void, timeoutMs = REQUEST_TIMEOUT_MS): void {
    const id = this.nextId++;
    const timer = setTimeout(() => {
      this.pending.delete(id);
      cb(new RtError('timeout', `thread ${to} did not answer within ${timeoutMs} ms`, 504));
    }, timeoutMs);
    timer.unref?.();
    this.pending.set(id, { cb, timer });
    this.post(to, { k: 'q', id, b: body });
  }

  request<T = unknown>(to: number, body: Request, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T> {
    return new Promise<T>((resolve, reject) => this.call<T>(to, body, (err, v) => (err ? reject(err) : resolve(v as T)), timeoutMs));
  }

  /** A replaced peer may have died mid-way through a fragmented frame: drop the fragment. */
  peerReplaced(peer: number): void {
    this.in[peer]?.reset();
  }

  /** Bytes queued locally because a ring was full: a gauge for /metrics. */
  queuedBytes(): number {
    let n = 0;
    for (const p of this.out) if (p) n += p.queuedBytes;
    return n;
  }

  /** Resolves once every outbound ring has taken all locally queued frames (or the timeout passes). */
  async flushed(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      let empty = true;
      for (const p of this.out) if (p && !p.flush()) empty = false;
      if (empty) return true;
      await new Promise((r) => setTimeout(r, 5));
    }
    return false;
  }

  close(): void {
    this.closed = true;
    this.bell.close();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.cb(new RtError('unavailable', 'thread shutting down', 503));
    }
    this.pending.clear();
  }
}

function statusFor(code: string): number {
  switch (code) {
    case 'unauthorized': return 401;
    case 'forbidden': case 'publish_refused': case 'refused': return 403;
    case 'not_found': return 404;
    case 'payload_too_large': return 413;
    case 'rate_limited': return 429;
    case 'timeout': return 504;
    case 'unavailable': return 503;
    case 'internal': return 500;
    default: return 400;
  }
}
