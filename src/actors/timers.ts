/**
 * Named timers of one actor (ctx.timers). A timer does not run the actor's code itself: it asks the
 * actor to queue `onTimer` in its mailbox, so timers are ordered with every other message.
 */
import { RtError } from '../errors.js';
import type { ActorTimers } from './define.js';
import type { Clock } from './clock.js';

/** setTimeout's ceiling (about 24.8 days). */
const MAX_MS = 2_147_483_647;

/**
 * The arguments every actor's timers take, on one host and placed alike (bridge/activation.ts): a delay
 * past setTimeout's ceiling would fire at once, and a repeat of 0 would not repeat.
 */
export function checkTimer(name: unknown, ms: unknown, repeat: boolean): void {
  if (typeof name !== 'string' || name.length === 0) throw new RtError('bad_timer', 'a timer needs a non-empty name');
  const min = repeat ? 1 : 0;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < min || ms > MAX_MS) {
    throw new RtError('bad_timer', `timer ${name}: ms must be a number from ${min} to ${MAX_MS}`);
  }
}

interface Entry {
  handle: unknown;
  every?: number;
  data: unknown;
  /** A repeating tick is waiting in the mailbox: the next one is skipped rather than queued twice. */
  queued: boolean;
}

export class TimerSet implements ActorTimers {
  private readonly entries = new Map<string, Entry>();
  private stopped = false;

  /** `fire(name, data, done)`: queue onTimer; call `done()` once it has run (repeating timers). */
  constructor(private readonly clock: Clock, private readonly fire: (name: string, data: unknown, done: () => void) => void) {}

  get size(): number {
    return this.entries.size;
  }

  after(name: string, ms: number, data?: unknown): void {
    this.set(name, ms, data, false);
  }

  every(name: string, ms: number, data?: unknown): void {
    this.set(name, ms, data, true);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  cancel(name: string): boolean {
    const e = this.entries.get(name);
    if (!e) return false;
    this.clock.clearTimeout(e.handle);
    this.entries.delete(name);
    return true;
  }

  /** Cancels everything; with `forever`, later calls are ignored (the actor stopped). */
  clear(forever = false): void {
    for (const e of this.entries.values()) this.clock.clearTimeout(e.handle);
    this.entries.clear();
    if (forever) this.stopped = true;
  }

  private set(name: string, ms: number, data: unknown, repeat: boolean): void {
    checkTimer(name, ms, repeat);
    if (this.stopped) return;
    this.cancel(name);
    const e: Entry = { handle: undefined, data, queued: false };
    if (repeat) e.every = ms;
    this.entries.set(name, e);
    this.arm(name, e, ms);
  }

  private arm(name: string, e: Entry, ms: number): void {
    e.handle = this.clock.setTimeout(() => this.tick(name, e), ms);
  }

  private tick(name: string, e: Entry): void {
    if (this.entries.get(name) !== e) return;
    if (e.every === undefined) this.entries.delete(name);
    else this.arm(name, e, e.every);
    if (e.queued) return;
    e.queued = true;
    this.fire(name, e.data, () => (e.queued = false));
  }
}
