/**
 * What a thread's clients were told about presence: per presence channel the thread has subscribers
 * of, the members in their subscribe replies and the joins and leaves delivered since. A replaced
 * owner rebuilds its members from re-subscriptions only; this record is what lets it tell who is
 * missing (Hub.replay sends it, src/actors/replay-collector.ts reads it). It holds no more than what
 * the thread already delivered, and a channel's entry goes with the thread's last subscriber of it.
 *
 * Every client of the channel on the thread knows the same members: a reply listing members the
 * others were not told of (or missing some they were) comes with those joins and leaves for the
 * others (Hub.addLocal, from `reply`), and a join of a member already known, or a leave of one not
 * known, is not delivered (`joined`, `left`). With Redis, events in flight when an owner crashed, or
 * published while the host had none, never reach the thread; the lists and the reconcile bring it
 * back in line, and the late or repeated events that follow are dropped here instead of telling a
 * client of a second join or of the leave of a member it never saw.
 */
import type { Member } from '../protocol/native.js';
import type { SeenPresence } from './messages.js';

export class PresenceLedger {
  private readonly byChannel = new Map<string, Map<string, Member>>();

  /**
   * A subscribe reply's member list, the newest the thread has (the owner answers after what it sent
   * before): it becomes the channel's entry. Returns what the thread's other clients of the channel
   * must be told for them to know the same: none when the entry is new.
   */
  reply(ch: string, members: readonly Member[]): { joins: Member[]; leaves: Member[] } {
    const before = this.byChannel.get(ch);
    const now = new Map(members.map((m) => [m.user_id, m]));
    this.byChannel.set(ch, now);
    if (!before) return { joins: [], leaves: [] };
    return { joins: members.filter((m) => !before.has(m.user_id)), leaves: [...before.values()].filter((m) => !now.has(m.user_id)) };
  }

  /** A join for the thread: false when its clients already know the member (it is not delivered). */
  joined(ch: string, m: Member): boolean {
    const known = this.byChannel.get(ch);
    if (!known) return true;
    if (known.has(m.user_id)) return false;
    known.set(m.user_id, m);
    return true;
  }

  /** A leave for the thread: false when its clients do not know the member (it is not delivered). */
  left(ch: string, m: Member): boolean {
    const known = this.byChannel.get(ch);
    if (!known) return true;
    return known.delete(m.user_id);
  }

  /** The thread has no subscriber of `ch` any more. */
  drop(ch: string): void {
    this.byChannel.delete(ch);
  }

  /** The entries of the channels `pick` selects, for a `replayed` notice. */
  seen(pick: (ch: string) => boolean): SeenPresence[] {
    const out: SeenPresence[] = [];
    for (const [ch, known] of this.byChannel) if (pick(ch)) out.push({ ch, m: [...known.values()] });
    return out;
  }
}
