/**
 * One presence channel's side of the reconcile after its owner was replaced (docs/architecture.md,
 * "Failure and shutdown"). The new actor registers re-subscribed members silently; members the other
 * threads' clients still know but nobody re-registered had their connections on the dead thread, and
 * are announced as gone — once: a member whose leave was already announced during the wait is skipped.
 *
 * With the Redis bridge the members live in Redis, but the joins and leaves Redis published while this
 * host had no owner for the channel reached none of its threads (the leaves of the dead thread's own
 * members first of all). There the reconcile announces the difference between what the threads'
 * clients know and the list in Redis (settleAgainst). Each thread drops a join of a member its clients
 * know and a leave of one they do not (src/runtime/presence-ledger.ts), so the owner need not know
 * which thread knew what, nor which of Redis's events reached a thread before.
 */
import type { Member } from '../protocol/native.js';

export class ReplayGhosts {
  /** Users whose leave was announced since the reconcile became due; set only while waiting. */
  private left?: Set<string>;

  /** The reconcile is due (the shard's replacement was announced, or a replayed subscription came). */
  due(): void {
    this.left ??= new Set();
  }

  /** Whether the reconcile is due and has not run yet. */
  get waiting(): boolean {
    return this.left !== undefined;
  }

  memberLeft(user: string): void {
    this.left?.add(user);
  }

  /**
   * The members of `seen` to announce as gone: not registered now and not already announced. Ends
   * the wait, so later leaves are not recorded.
   */
  settle(seen: readonly Member[], registered: (user: string) => boolean): Member[] {
    const announced = this.left;
    this.end();
    const out = new Map<string, Member>();
    for (const m of seen) if (!registered(m.user_id) && !announced?.has(m.user_id) && !out.has(m.user_id)) out.set(m.user_id, m);
    return [...out.values()];
  }

  /**
   * With the bridge: `seen` (what some thread's clients know) against `current` (the members in Redis).
   * Every current member is announced as joined: `seen` is the threads' union, and a thread that did
   * not know one (its join was published while the host had no owner) learns it; the others drop it.
   * Ends the wait.
   */
  settleAgainst(seen: readonly Member[], current: readonly Member[]): { leaves: Member[]; joins: Member[] } {
    this.end();
    const now = new Set(current.map((m) => m.user_id));
    const leaves = new Map<string, Member>();
    for (const m of seen) if (!now.has(m.user_id)) leaves.set(m.user_id, m);
    return { leaves: [...leaves.values()], joins: [...current] };
  }

  /** Ends the wait without announcing anything (nobody on this host to tell, or Redis did not answer). */
  end(): void {
    this.left = undefined;
  }
}
