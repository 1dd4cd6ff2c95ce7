/**
 * Per-connection message rate limit: a token bucket refilled continuously at `rate` per second up to
 * `burst`. Cheap enough to run on every inbound frame (no timers, two numbers per connection).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  /** Consecutive refusals; transports disconnect after too many. */
  strikes = 0;

  constructor(private readonly rate: number, private readonly burst: number, now = performance.now()) {
    this.tokens = burst;
    this.last = now;
  }

  take(n = 1, now = performance.now()): boolean {
    if (this.rate <= 0) return true;
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens >= n) {
      this.tokens -= n;
      this.strikes = 0;
      return true;
    }
    this.strikes++;
    return false;
  }

  /** Gives back `n` taken tokens (up to `burst`): for a message taken from the budget and then refused. */
  give(n = 1): void {
    this.tokens = Math.min(this.burst, this.tokens + n);
  }
}

/**
 * Takes one message from a connection's budget (--rate-limit, --rate-burst): undefined when it may
 * pass, else the bucket, whose strikes decide whether to close. The bucket is made on the connection's
 * first message, so idle connections, most of them, hold none (80 B of heap each; bench/memory.ts).
 */
export function rateRefusal(holder: { bucket?: TokenBucket }, limits: { rateLimit: number; rateBurst: number }): TokenBucket | undefined {
  if (limits.rateLimit <= 0) return undefined;
  const bucket = (holder.bucket ??= new TokenBucket(limits.rateLimit, limits.rateBurst));
  return bucket.take() ? undefined : bucket;
}

/** Refusals in a row after which a connection is closed with 4029. */
export const MAX_RATE_STRIKES = 50;
