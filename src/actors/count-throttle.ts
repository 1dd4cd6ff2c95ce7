/**
 * Coalesces changes of one channel's subscriber count into announcements (Pusher's
 * `subscription_count`). Announcing every change to every subscriber would cost N² frames while N
 * clients join a large channel; instead the first change after a quiet window goes out at once and the
 * changes within the next window become one announcement, at its end, of the latest value.
 *
 * "At once" is a zero-delay timer, never inline: the subscribe reply leaves first, so the joining
 * connection is already in the channel's topic on its thread when the count arrives there.
 */
import type { Clock } from './clock.js';

/** Shortest time between two announcements of one channel's count (docs/pusher.md). */
export const SUBSCRIPTION_COUNT_WINDOW_MS = 1000;

export class CountThrottle {
  private value = 0;
  private timer: unknown;
  private lastAt = -Infinity;

  constructor(
    private readonly clock: Clock,
    private readonly announce: (n: number) => void,
    private readonly windowMs = SUBSCRIPTION_COUNT_WINDOW_MS,
  ) {}

  /** The count is now `n`. */
  changed(n: number): void {
    this.value = n;
    if (this.timer !== undefined) return;
    this.timer = this.clock.setTimeout(this.fire, Math.max(0, this.lastAt + this.windowMs - this.clock.now()));
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.lastAt = this.clock.now();
    this.announce(this.value);
  };

  stop(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
