/**
 * One message at a time, in arrival order. Synchronous tasks run inline (the common case: no custom
 * hook, or a hook that does not await); a task that returns a promise holds the queue until it settles.
 */
type Task = () => unknown;

interface Waiting {
  task: Task;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

function isThenable(v: unknown): v is Promise<unknown> {
  return !!v && typeof (v as { then?: unknown }).then === 'function';
}

export class Mailbox {
  private busy = false;
  private readonly queue: Waiting[] = [];

  /** Runs `task` now if idle (returning its value, or its promise), otherwise queues it. */
  run<T>(task: () => T | Promise<T>): T | Promise<T> {
    if (this.busy || this.queue.length > 0) {
      return new Promise<T>((resolve, reject) => this.queue.push({ task, resolve: resolve as (v: unknown) => void, reject }));
    }
    const r = task();
    if (isThenable(r)) {
      this.busy = true;
      return (r as Promise<T>).finally(() => {
        this.busy = false;
        this.next();
      });
    }
    return r;
  }

  get idle(): boolean {
    return !this.busy && this.queue.length === 0;
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
