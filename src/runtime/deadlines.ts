/**
 * The requests one thread is waiting on from one peer, and their deadlines: one timer per peer instead
 * of one setTimeout per request. Requests are kept in one FIFO lane per timeout value (there are only a
 * few: the default --request-timeout and a handful of fixed ones), so each lane is in deadline order by
 * construction and adding is O(1). A peer answers mostly in request order, so answered entries reach a
 * lane's head soon and are dropped there, or in one compaction pass once they are its majority.
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

/** Answered entries tolerated in a lane before a compaction pass (when they are also its majority). */
const COMPACT_AFTER = 1024;

class Lane {
  q: (PendingRequest | undefined)[] = [];
  head = 0;
  /** Entries between head and the end that were already answered. */
  done = 0;

  get empty(): boolean {
    return this.head === this.q.length;
  }

  answered(): void {
    if (++this.done > COMPACT_AFTER && this.done * 2 > this.q.length - this.head) {
      this.q = this.q.slice(this.head).filter((p) => p!.cb !== null);
      this.head = 0;
      this.done = 0;
    }
  }

  /** Takes answered entries and those due by `now` off the head; returns the due ones. */
  takeDue(now: number, out: PendingRequest[]): void {
    while (this.head < this.q.length) {
      const p = this.q[this.head]!;
      if (p.cb !== null && p.deadline > now) break;
      this.q[this.head++] = undefined;
      if (p.cb === null) this.done--;
      else out.push(p);
    }
    if (this.head === this.q.length) {
      this.q = [];
      this.head = 0;
    } else if (this.head > COMPACT_AFTER && this.head * 2 > this.q.length) {
      this.q = this.q.slice(this.head);
      this.head = 0;
    }
  }

  /** Deadline of the first entry still waiting at the head (answered ones there are skipped lazily). */
  nextDeadline(): number {
    return this.empty ? Infinity : this.q[this.head]!.deadline;
  }
}

export class PeerDeadlines {
  private readonly lanes = new Map<number, Lane>();
  private waiting = 0;
  private timer: NodeJS.Timeout | null = null;
  private armedFor = Infinity;

  /** `expire` is called once for each request still unanswered at its deadline, earliest first. */
  constructor(private readonly expire: (p: PendingRequest) => void) {}

  /** Requests still waiting. */
  get size(): number {
    return this.waiting;
  }

  add(p: PendingRequest): void {
    let lane = this.lanes.get(p.timeoutMs);
    if (!lane) this.lanes.set(p.timeoutMs, (lane = new Lane()));
    lane.q.push(p);
    this.waiting++;
    if (p.deadline < this.armedFor) this.arm(p.deadline);
  }

  /** An entry was answered (its cb set to null by the caller); it leaves its lane lazily. */
  answered(p: PendingRequest): void {
    this.waiting--;
    this.lanes.get(p.timeoutMs)?.answered();
  }

  /** Empties every lane and stops the timer; returns the requests that were still waiting. */
  clear(): PendingRequest[] {
    const live: PendingRequest[] = [];
    for (const lane of this.lanes.values()) for (let i = lane.head; i < lane.q.length; i++) if (lane.q[i]!.cb !== null) live.push(lane.q[i]!);
    this.lanes.clear();
    this.waiting = 0;
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
    const due: PendingRequest[] = [];
    const now = performance.now();
    for (const [timeout, lane] of this.lanes) {
      lane.takeDue(now, due);
      if (lane.empty) this.lanes.delete(timeout);
    }
    if (due.length > 1) due.sort((a, b) => a.deadline - b.deadline);
    this.waiting -= due.length;
    // An expire callback may add requests (and arm the timer) re-entrantly.
    for (const p of due) this.expire(p);
    let next = Infinity;
    for (const lane of this.lanes.values()) next = Math.min(next, lane.nextDeadline());
    if (next < this.armedFor) this.arm(next);
  };
}
