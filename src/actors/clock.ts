/**
 * The time source of actors: the real one on shards, a manual one in rt-actors/testing. Actor timers,
 * hook deadlines and `ctx.now()` all read it, so a test can move time and see exactly what happens.
 */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const h = setTimeout(fn, ms);
    // Timers of actors never keep a process alive by themselves.
    h.unref?.();
    return h;
  },
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * `p`'s outcome, or the error `late()` makes once `ms` passed on `clock` without one. `p` itself runs on
 * (user code cannot be stopped); what it gives later is dropped.
 */
export function within<T>(p: PromiseLike<T>, ms: number, late: () => Error, clock: Clock = systemClock): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const h = clock.setTimeout(() => reject(late()), ms);
    p.then(
      (v) => {
        clock.clearTimeout(h);
        resolve(v);
      },
      (err) => {
        clock.clearTimeout(h);
        reject(err);
      },
    );
  });
}
