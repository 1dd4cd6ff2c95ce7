/**
 * The ring mesh: one SPSC ring per ordered pair of threads (shards 0…N-1 plus the main thread, index N),
 * one doorbell per thread. A MeshEndpoint is one thread's view: send to a peer, request/reply with
 * correlation ids, and a single wake loop that drains every inbound ring and retries full outbound ones.
 *
 * Backpressure: when a peer's ring is full its frames wait in a local queue. Above the high water mark
 * new requests to that peer are refused (`overloaded`) until the queue is back under the low mark;
 * notices and replies — the deliveries and answers of work already accepted — are never refused.
 */
import { allocDoorbell, allocRing, Doorbell, encodeFrame, RingConsumer, RingProducer } from './ring.js';
import { encodeHot } from './frames.js';
import { PeerDeadlines, type PendingRequest } from './deadlines.js';
import { RtError, toErrorBody } from '../errors.js';
import type { Envelope, Notice, Request } from './messages.js';
import { threadLogger, logInternal } from '../log.js';

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

export interface MeshOptions {
  /** Default time a request waits for its answer (ms). */
  requestTimeoutMs?: number;
  /** Bytes queued for one peer above which new requests to it are refused. */
  queueHigh?: number;
  /** Bytes queued below which a refusing peer accepts requests again. */
  queueLow?: number;
}

const DEFAULTS: Required<MeshOptions> = { requestTimeoutMs: 15_000, queueHigh: 4 * 1024 * 1024, queueLow: 1024 * 1024 };

export function meshOptions(config: { requestTimeout: number; ringQueueHigh: number; ringQueueLow: number }): MeshOptions {
  return { requestTimeoutMs: config.requestTimeout * 1000, queueHigh: config.ringQueueHigh, queueLow: config.ringQueueLow };
}

export class MeshEndpoint {
  readonly self: number;
  readonly shards: number;
  private readonly out: (RingProducer | null)[];
  private readonly in: (RingConsumer | null)[];
  private readonly bell: Doorbell;
  /** Reply callbacks run synchronously inside the drain loop, so a caller can act on a reply before
   *  the next frame from the same peer is handled (subscribe relies on this for ordering). */
  private readonly pending = new Map<number, PendingRequest>();
  /** Per peer: the requests waiting on it, in deadline order, with one timer. */
  private readonly deadlines: PeerDeadlines[];
  /**
   * A replaced thread's peers may still answer what its predecessor asked (a peer that was busy when it
   * died): started at a random point, a new thread's ids do not repeat its predecessor's, which would
   * take such an answer for its own (a subscribe answered with another request's result).
   */
  private nextId = 1 + Math.floor(Math.random() * 0x7fffffff);
  private readonly opts: Required<MeshOptions>;
  /** Per peer: refusing new requests (between crossing the high mark and falling under the low one). */
  private readonly refusing: boolean[];
  /** Requests refused as overloaded, for /metrics. */
  refused = 0;
  /** Messages to ourselves skip the rings but keep the same asynchronous, FIFO semantics. */
  private selfQueue: Envelope[] = [];
  private selfScheduled = false;
  private onRequest: RequestHandler = () => { throw new RtError('unavailable', 'thread not ready', 503); };
  private onNotice: NoticeHandler = () => {};
  private closed = false;

  constructor(layout: MeshLayout, self: number, opts: MeshOptions = {}) {
    this.self = self;
    this.shards = layout.shards;
    this.opts = { ...DEFAULTS, ...opts };
    const threads = layout.shards + 1;
    this.refusing = new Array(threads).fill(false);
    this.deadlines = Array.from({ length: threads }, () => new PeerDeadlines((p) => this.expire(p)));
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
      if (!c) continue;
      // dispatch() catches what handlers throw, so a throw here is a frame that could not be decoded:
      // the consumer has already stepped past it, so log it and go on with the next one.
      for (;;) {
        try {
          c.drain((msg) => this.dispatch(peer, msg as Envelope));
          break;
        } catch (err) {
          threadLogger().error(`undecodable frame from thread ${peer}, skipped`, err, { event: 'mesh.error', from: peer });
        }
      }
    }
    for (const p of this.out) if (p && p.queuedBytes > 0) p.flush();
  }

  private dispatch(from: number, env: Envelope): void {
    try {
      if (env.k === 'n') this.onNotice(from, env.b);
      else if (env.k === 'q') this.handleRequest(from, env.id, env.b);
      else this.settle(from, env);
    } catch (err) {
      // One bad message must not stop the drain loop (and with it every later message from that peer).
      threadLogger().error(`error handling a message from thread ${from}`, err, { event: 'mesh.error', from });
    }
  }

  private handleRequest(from: number, id: number, body: Request): void {
    let result: unknown;
    try {
      result = this.onRequest(from, body);
    } catch (err) {
      this.post(from, { k: 'r', id, ok: false, e: wireError(err) });
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (v) => this.post(from, { k: 'r', id, ok: true, v: v ?? null }),
        (err) => this.post(from, { k: 'r', id, ok: false, e: wireError(err) }),
      );
    } else {
      this.post(from, { k: 'r', id, ok: true, v: result ?? null });
    }
  }

  private settle(from: number, env: Extract<Envelope, { k: 'r' }>): void {
    const p = this.pending.get(env.id);
    // Timed out already; or a late answer to the thread this one replaced, whose ids ours may repeat.
    if (!p || p.peer !== from) return;
    this.pending.delete(env.id);
    const cb = p.cb!;
    p.cb = null;
    this.deadlines[p.peer]!.answered(p);
    if (env.ok) cb(null, env.v);
    else cb(new RtError(env.e.code, env.e.message, env.e.status));
  }

  private expire(p: PendingRequest): void {
    this.pending.delete(p.id);
    const cb = p.cb!;
    p.cb = null;
    cb(new RtError('timeout', `thread ${p.peer} did not answer within ${p.timeoutMs} ms`, 504));
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
    // The hot frames (pub! notices, pub requests, successful replies) go in their binary form.
    const hot = encodeHot(env);
    if (hot !== null) this.out[to]!.sendEncoded(hot.buf, hot.start, hot.end - hot.start);
    else this.out[to]!.send(env);
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

  /**
   * The same notice to several threads, encoded once: the frame's bytes are copied into each peer's
   * ring (a publication fanned out to K threads costs one encode, not K). Per-peer order is the same
   * as K notify() calls in that order.
   */
  notifyMany(to: readonly number[], notice: Notice): void {
    if (this.closed) return;
    const env: Envelope = { k: 'n', b: notice };
    let peers = 0;
    for (const t of to) if (t !== this.self) peers++;
    if (peers < 2) {
      for (const t of to) this.post(t, env);
      return;
    }
    let buf: Uint8Array;
    let start = 0;
    let len: number;
    const hot = encodeHot(env);
    if (hot !== null) {
      buf = hot.buf;
      start = hot.start;
      len = hot.end - start;
    } else {
      const packed = encodeFrame(env);
      buf = packed;
      start = packed.start;
      len = packed.end - start;
    }
    for (const t of to) {
      if (t === this.self) this.post(t, env);
      else this.out[t]!.sendEncoded(buf, start, len);
    }
  }

  /** Sends to every thread (shards and main), optionally including this one. */
  broadcast(notice: Notice, includeSelf = true): void {
    for (let t = 0; t <= this.shards; t++) if (includeSelf || t !== this.self) this.notify(t, notice);
  }

  /**
   * Sends a request; `cb` runs synchronously when the reply is drained (or on timeout). A request to a
   * peer that is overloaded (see `overloaded`) or after close() fails at once, asynchronously.
   */
  call<T = unknown>(to: number, body: Request, cb: (err: RtError | null, v?: T) => void, timeoutMs = this.opts.requestTimeoutMs): void {
    if (this.closed || this.overloaded(to)) {
      const err = this.closed ? new RtError('unavailable', 'thread shutting down', 503) : this.refusal(to);
      queueMicrotask(() => cb(err));
      return;
    }
    const id = this.nextId++;
    const p: PendingRequest = { id, peer: to, deadline: performance.now() + timeoutMs, timeoutMs, cb: cb as PendingRequest['cb'] };
    this.pending.set(id, p);
    this.deadlines[to]!.add(p);
    this.post(to, { k: 'q', id, b: body });
  }

  /**
   * Whether new requests to `peer` are refused: from when its local queue passes the high water mark
   * until it drains below the low one (hysteresis, so a peer at the edge does not flap).
   */
  overloaded(peer: number): boolean {
    const p = this.out[peer];
    if (!p) return false;
    const q = p.queuedBytes;
    if (this.refusing[peer]) {
      if (q < this.opts.queueLow) this.refusing[peer] = false;
    } else if (q > this.opts.queueHigh) this.refusing[peer] = true;
    return this.refusing[peer]!;
  }

  /** A peer among `peers` that is overloaded, or -1. */
  firstOverloaded(peers: Iterable<number>): number {
    for (const t of peers) if (this.overloaded(t)) return t;
    return -1;
  }

  /** The error for new work refused because `peer` is overloaded; counted for /metrics. */
  refusal(peer: number): RtError {
    this.refused++;
    return new RtError('overloaded', `thread ${peer} is overloaded (${this.out[peer]?.queuedBytes ?? 0} bytes queued for it); retry shortly`, 503);
  }

  /** Peers currently refusing new requests: a gauge for /metrics. */
  overloadedPeers(): number {
    let n = 0;
    for (let t = 0; t < this.out.length; t++) if (this.overloaded(t)) n++;
    return n;
  }

  /** Requests waiting for an answer, all peers. */
  get waiting(): number {
    return this.pending.size;
  }

  request<T = unknown>(to: number, body: Request, timeoutMs = this.opts.requestTimeoutMs): Promise<T> {
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
    this.pending.clear();
    for (const d of this.deadlines) {
      for (const p of d.clear()) {
        const cb = p.cb!;
        p.cb = null;
        // Sent, unanswered: the peer may have done it (a publish stored and delivered). The caller
        // must not take this for a refusal that a retry can safely repeat.
        cb(new RtError('unavailable', 'thread shutting down before the answer came, so the outcome is unknown: a publish may still be delivered (a retry can deliver it twice)', 503));
      }
    }
  }
}

/**
 * An error as it crosses to the requesting thread. An RtError keeps the status it was made with (a full
 * presence channel's 403, actor_failed's 500, an ActorError's 403): the code alone cannot give it, as
 * codes are open-ended. Anything else thrown with a code (a hook's own object) gets its code's usual status.
 */
function wireError(err: unknown): { code: string; message: string; status: number } {
  // The requesting thread gets only the code: the stack is logged here or lost.
  logInternal(err, 'a request from another thread');
  const body = toErrorBody(err);
  return { code: body.code, message: body.message, status: err instanceof RtError ? err.status : statusFor(body.code) };
}

function statusFor(code: string): number {
  switch (code) {
    case 'unauthorized': return 401;
    case 'forbidden': case 'publish_refused': case 'refused': return 403;
    case 'not_found': return 404;
    case 'payload_too_large': return 413;
    case 'rate_limited': return 429;
    case 'timeout': return 504;
    case 'unavailable': case 'overloaded': return 503;
    case 'internal': return 500;
    default: return 400;
  }
}
