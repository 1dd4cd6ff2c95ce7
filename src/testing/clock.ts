/** A clock that moves only when a test says so (rt-actors/testing). */
import type { Clock } from '../actors/clock.js';

interface Due {
  at: number;
  seq: number;
  fn: () => void;
}

export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly due = new Map<number, Due>();

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const d: Due = { at: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.due.set(d.seq, d);
    return d.seq;
  }

  clearTimeout(handle: unknown): void {
    this.due.delete(handle as number);
  }

  /** Timers waiting to fire. */
  get pending(): number {
    return this.due.size;
  }

  /** The earliest timer due at or before `limit`, in firing order (time, then creation). */
  nextDue(limit: number): Due | undefined {
    let best: Due | undefined;
    for (const d of this.due.values()) {
      if (d.at > limit) continue;
      if (!best || d.at < best.at || (d.at === best.at && d.seq < best.seq)) best = d;
    }
    return best;
  }

  /** Moves to `at` and fires `d` (used by ActorTest.advance, which settles the actor between timers). */
  fire(d: Due): void {
    this.due.delete(d.seq);
    this.t = Math.max(this.t, d.at);
    d.fn();
  }

  set(at: number): void {
    this.t = Math.max(this.t, at);
  }
}
