/**
 * One presence channel's side of the reconcile after its owner was replaced (docs/architecture.md,
 * "Failure and shutdown"). The new actor registers re-subscribed members silently; members the other
 * threads' clients still know but nobody re-registered had their connections on the dead thread, and
 * are announced as gone — once: a member whose leave was already announced during the wait is skipped.
 *
 * With the Redis bridge the members live in Redis, but the joins and leaves Redis published while this
 * host had no owner for the channel reached none of its threads (the leaves of the dead thread's own
 * members first of all). There the reconcile compares what the threads' clients know with the list in
 * Redis and announces the difference both ways (settleAgainst).
 */
import type { Member } from '../protocol/native.js';

type Kind = 'join!' | 'leave!';

export class ReplayGhosts {
  /** Users whose leave was announced since the reconcile became due; set only while waiting. */
  private left?: Set<string>;
  /** With the bridge: users whose join was relayed since the reconcile became due. */
  private joined?: Set<string>;
  /**
   * With the bridge: what the reconcile announced per user. The same event may still come from Redis
   * (published before the list was read, delivered after): Redis alternates a user's joins and leaves,
   * so the next event of the same kind for that user is that echo, and is not announced twice.
   */
  private readonly echoes = new Map<string, Kind>();

  /** The reconcile is due (the shard's replacement was announced, or a replayed subscription came). */
  due(): void {
    this.left ??= new Set();
    this.joined ??= new Set();
  }

  /** Whether the reconcile is due and has not run yet. */
  get waiting(): boolean {
    return this.left !== undefined;
  }

  memberLeft(user: string): void {
    this.left?.add(user);
  }

  /** With the bridge: a join or leave Redis delivered. False when it only repeats what the reconcile announced. */
  relay(kind: Kind, user: string): boolean {
    const echo = this.echoes.get(user);
    if (echo !== undefined) {
      this.echoes.delete(user);
      if (echo === kind) return false;
    }
    (kind === 'join!' ? this.joined : this.left)?.add(user);
    return true;
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
   * With the bridge: `seen` (what the threads' clients know) against `current` (the members in Redis).
   * Users Redis already announced during the wait are skipped: the threads were told. Ends the wait.
   */
  settleAgainst(seen: readonly Member[], current: readonly Member[]): { leaves: Member[]; joins: Member[] } {
    const told = new Set([...(this.left ?? []), ...(this.joined ?? [])]);
    this.end();
    const now = new Set(current.map((m) => m.user_id));
    const known = new Set(seen.map((m) => m.user_id));
    const leaves = new Map<string, Member>();
    for (const m of seen) if (!now.has(m.user_id) && !told.has(m.user_id)) leaves.set(m.user_id, m);
    const joins = current.filter((m) => !known.has(m.user_id) && !told.has(m.user_id));
    for (const m of leaves.values()) this.echoes.set(m.user_id, 'leave!');
    for (const m of joins) this.echoes.set(m.user_id, 'join!');
    return { leaves: [...leaves.values()], joins };
  }

  /** Ends the wait without announcing anything (nobody on this host to tell, or Redis did not answer). */
  end(): void {
    this.left = undefined;
    this.joined = undefined;
  }
}
