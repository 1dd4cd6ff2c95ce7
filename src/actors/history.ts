/**
 * A channel's recent publications, bounded by count and age, for resume. Offsets are contiguous, so
 * "is the gap recoverable" is a comparison, not a search.
 */
import type { Publication } from '../protocol/native.js';

export class History {
  private readonly items: Publication[] = [];
  private readonly times: number[] = [];
  private head = 0;

  constructor(readonly size: number, readonly ttlMs: number) {}

  push(p: Publication, now = Date.now()): void {
    if (this.size === 0) return;
    this.items.push(p);
    this.times.push(now);
    if (this.items.length - this.head > this.size) this.head++;
    this.compact();
  }

  private prune(now: number): void {
    while (this.head < this.items.length && now - this.times[this.head]! > this.ttlMs) this.head++;
    this.compact();
  }

  /** Amortised O(1): the dead prefix is cut once it is as long as the live part. */
  private compact(): void {
    if (this.head > 32 && this.head * 2 >= this.items.length) {
      this.items.splice(0, this.head);
      this.times.splice(0, this.head);
      this.head = 0;
    }
  }

  get length(): number {
    return this.items.length - this.head;
  }

  /** Offset of the oldest kept publication, or undefined when empty. */
  oldestOffset(now = Date.now()): number | undefined {
    this.prune(now);
    return this.length > 0 ? this.items[this.head]!.offset : undefined;
  }

  /** When the publication at `offset` was kept (epoch ms), or 0 when it no longer is. */
  timeOf(offset: number): number {
    if (this.length === 0) return 0;
    const i = this.head + (offset - this.items[this.head]!.offset);
    return i >= this.head && i < this.items.length ? this.times[i]! : 0;
  }

  newestTime(): number {
    return this.length > 0 ? this.times[this.times.length - 1]! : 0;
  }

  /**
   * Publications after `offset`, or null when some of them are no longer kept or `offset` is past `current`.
   * `current` is the channel's latest offset.
   */
  since(offset: number, current: number, limit = Infinity, now = Date.now()): Publication[] | null {
    if (offset === current) return [];
    // Past the stream's end: seen by nobody this stream knows (a crashed owner's last deliveries).
    if (offset > current) return null;
    this.prune(now);
    const oldest = this.length > 0 ? this.items[this.head]!.offset : current + 1;
    if (oldest > offset + 1) return null;
    const start = this.head + (offset + 1 - oldest);
    return this.items.slice(start, Math.min(this.items.length, start + limit));
  }

  /** The last `limit` publications. */
  latest(limit: number, now = Date.now()): Publication[] {
    this.prune(now);
    return this.items.slice(Math.max(this.head, this.items.length - limit));
  }

  expired(now = Date.now()): boolean {
    this.prune(now);
    return this.length === 0;
  }
}
