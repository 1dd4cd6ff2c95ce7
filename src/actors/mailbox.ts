/**
 * One message at a time, in arrival order. Synchronous tasks run inline (the common case: no custom
 * hook, or a hook that does not await); a task that returns a promise holds the queue until it settles.
 * The queue is bounded: beyond `limit` waiting tasks, `run` refuses with `overloaded` rather than
 * growing memory. Internal tasks (Redis relays, timers, leaves) pass `bounded = false`: refusing them
 * would lose something already accepted.
 */
import { RtError } from '../errors.js';

type Task = () => unknown;

interface Waiting {
  task: Task;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export function isThenable(v: unknown): v is Promise<unknown> {
  return !!v && typeof (v as { then?: unknown }).then === 'function';
}

export class Mailbox {
  private busy = false;
  private readonly queue: Waiting[] = [];

  constructor(readonly limit = Infinity) {}

  /** Runs `task` now if idle (returning its value, or its promise), otherwise queues it. */
  run<T>(task: () => T | Promise<T>, bounded = true): T | Promise<T> {
    if (this.busy || this.queue.length > 0) {
      if (bounded && this.queue.length >= this.limit) {
        throw new RtError('overloaded', `the channel is busy (${this.limit} operations waiting); try again later`, 503);
      }
      return new Promise<T>((resolve, reject) => this.queue.push({ task, resolve: resolve as (v: unknown) => void, reject }));
    }
    const r = task();
    if (isThenable(r)) {
      this.busy = true;
      // The caller hears the outcome before the next task starts, as for a queued task (next): a
      // subscribe's reply must leave before the deliveries queued behind it, or its thread, where the
      // subscriber is not in the channel yet, drops them.
      return new Promise<T>((resolve, reject) => {
        (r as Promise<T>).then(resolve, reject).finally(() => {
          this.busy = false;
          this.next();
        });
      });
    }
    return r;
  }

  get idle(): boolean {
    return !this.busy && this.queue.length === 0;
  }

  get length(): number {
    return this.queue.length + (this.busy ? 1 : 0);
  }

  private next(): void {
    while (!this.busy && this.queue.length > 0) {
      const w = this.queue.shift()!;
      let r: unknown;
      try {
        r = w.task();
      } catch (err) {
        w.reject(err);
        continue;
      }
      if (isThenable(r)) {
        this.busy = true;
        r.then(w.resolve, w.reject).finally(() => {
          this.busy = false;
          this.next();
        });
        return;
      }
      w.resolve(r);
    }
  }
}
