/**
 * One presence channel's side of the reconcile after its owner was replaced (docs/architecture.md,
 * "Failure and shutdown"). The new actor registers re-subscribed members silently; members the other
 * threads' clients still know but nobody re-registered had their connections on the dead thread, and
 * are announced as gone — once: a member whose leave was already announced during the wait is skipped.
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
    this.left = undefined;
    const out = new Map<string, Member>();
    for (const m of seen) if (!registered(m.user_id) && !announced?.has(m.user_id) && !out.has(m.user_id)) out.set(m.user_id, m);
    return [...out.values()];
  }
}
