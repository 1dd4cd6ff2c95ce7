/**
 * The requests one thread is waiting on from one peer, and their deadlines: one timer per peer instead
 * of one setTimeout per request. Most requests use the default timeout, so the queue stays in deadline
 * order by appending (a shorter timeout is inserted from the tail); a peer answers mostly in request
 * order, so answered entries reach the head soon and are dropped there, or in one compaction pass once
 * they are the majority of the queue.
 */
import type { RtError } from '../errors.js';

export interface PendingRequest {
  readonly id: number;
  readonly peer: number;
  /** performance.now() time after which the request fails. */
  readonly deadline: number;
  readonly timeoutMs: number;
  /** Null once answered or expired. */
  cb: ((err: RtError | null, v?: any) => void) | null;
}

/** Answered entries tolerated in the queue before a compaction pass (when they are also the majority). */
const COMPACT_AFTER = 1024;

export class PeerDeadlines {
  private q: (PendingRequest | undefined)[] = [];
  private head = 0;
  /** Entries between head and the end that were already answered. */
  private done = 0;
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;

  /** `expire` is called once for each request still unanswered at its deadline. */
  constructor(private readonly expire: (p: PendingRequest) => void) {}

  /** Requests still waiting. */
  get size(): number {
    return this.q.length - this.head - this.done;
  }

  add(p: PendingRequest): void {
    const q = this.q;
    let i = q.length;
    while (i > this.head && q[i - 1]!.deadline > p.deadline) i--;
    if (i === q.length) q.push(p);
    else q.splice(i, 0, p);
    if (p.deadline < this.armedFor) this.arm(p.deadline);
  }

  /** An entry was answered (its cb set to null by the caller); it leaves the queue lazily. */
  answered(): void {
    if (++this.done > COMPACT_AFTER && this.done * 2 > this.q.length - this.head) {
      this.q = this.q.slice(this.head).filter((p) => p!.cb !== null);
      this.head = 0;
      this.done = 0;
    }
  }

  /** Empties the queue and stops the timer; returns the requests that were still waiting. */
  clear(): PendingRequest[] {
    const live = this.q.slice(this.head).filter((p) => p!.cb !== null) as PendingRequest[];
    this.q = [];
    this.head = 0;
    this.done = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.armedFor = Infinity;
    return live;
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = at;
    this.timer = setTimeout(this.sweep, Math.max(1, Math.ceil(at - performance.now())));
    // Like the per-request timers it replaces, it must not keep a thread alive on its own.
    this.timer.unref();
  }

  private readonly sweep = (): void => {
    this.timer = null;
    this.armedFor = Infinity;
    const now = performance.now();
    // Fields, not locals: an expire callback may add (or compact) re-entrantly.
    while (this.head < this.q.length) {
      const p = this.q[this.head]!;
      if (p.cb !== null && p.deadline > now) break;
      this.q[this.head++] = undefined;
      if (p.cb === null) this.done--;
      else this.expire(p);
    }
    if (this.head === this.q.length) {
      this.q = [];
      this.head = 0;
    } else {
      if (this.head > COMPACT_AFTER && this.head * 2 > this.q.length) {
        this.q = this.q.slice(this.head);
        this.head = 0;
      }
      const next = this.q[this.head]!.deadline;
      if (next < this.armedFor) this.arm(next);
    }
  };
}
