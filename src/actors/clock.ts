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
