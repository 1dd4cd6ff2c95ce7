/**
 * A replaced shard's wait for the other threads' `replayed` notices (src/runtime/messages.ts). Every
 * thread — each shard, this one included, and the main thread — re-subscribes its connections to the
 * channels this shard owns, then reports the presence members its clients know here. Once all have
 * reported (or the request timeout passes: a thread may have died meanwhile), the union goes to the
 * actors, which announce the members nobody re-registered. A thread is replaced by a new one, so one
 * collection per thread lifetime: a notice after it is ignored, never announced twice.
 */
import type { Member } from '../protocol/native.js';
import type { SeenPresence } from '../runtime/messages.js';

export interface ReplayCollectorOptions {
  /** Threads of the mesh (shards + the main thread). */
  threads: number;
  timeoutMs: number;
  /** Whether this shard owns `ch`: a report about anything else is not ours to act on. */
  owns(ch: string): boolean;
  /** The collection started (once). */
  begun(): void;
  /** Per channel, every member some thread's clients knew. */
  done(seen: ReadonlyMap<string, Member[]>): void;
  warn(msg: string): void;
}

export class ReplayCollector {
  private readonly heard = new Set<number>();
  private readonly seen = new Map<string, Map<string, Member>>();
  private timer?: NodeJS.Timeout;
  private finished = false;

  constructor(private readonly opts: ReplayCollectorOptions) {}

  /** This shard's restart was announced; a report may have come first (rings are drained in any order). */
  begin(): void {
    if (this.finished || this.timer) return;
    this.timer = setTimeout(() => this.finish(), this.opts.timeoutMs);
    this.timer.unref();
    this.opts.begun();
  }

  /** A thread's `replayed` notice, as received: checked here, since a bad one must not stop the shard. */
  report(from: number, notice: unknown): void {
    if (this.finished) return;
    const seen = seenOf(notice);
    if (!seen) return this.opts.warn(`ignoring a malformed replay report from thread ${from}`);
    this.begin();
    for (const { ch, m } of seen) {
      if (!this.opts.owns(ch)) continue;
      let known = this.seen.get(ch);
      if (!known) this.seen.set(ch, (known = new Map()));
      for (const member of m) if (!known.has(member.user_id)) known.set(member.user_id, member);
    }
    this.heard.add(from);
    if (this.heard.size >= this.opts.threads) this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    if (this.heard.size < this.opts.threads) this.opts.warn(`replay reports from ${this.heard.size} of ${this.opts.threads} threads before the timeout; reconciling presence with those`);
    const out = new Map<string, Member[]>();
    for (const [ch, known] of this.seen) out.set(ch, [...known.values()]);
    this.seen.clear();
    this.opts.done(out);
  }

  close(): void {
    clearTimeout(this.timer);
  }
}

/** The notice's entries, or undefined when anything in it is not the documented shape. */
function seenOf(notice: unknown): SeenPresence[] | undefined {
  const seen = (notice as { seen?: unknown } | null)?.seen;
  if (!Array.isArray(seen)) return undefined;
  for (const e of seen) {
    if (!e || typeof e !== 'object' || typeof (e as SeenPresence).ch !== 'string' || !Array.isArray((e as SeenPresence).m)) return undefined;
    for (const m of (e as SeenPresence).m) if (!m || typeof m !== 'object' || typeof (m as Member).user_id !== 'string') return undefined;
  }
  return seen as SeenPresence[];
}
