/**
 * What a thread's clients were told about presence: per presence channel the thread has subscribers
 * of, the members in their subscribe replies and the joins and leaves delivered since. A replaced
 * owner rebuilds its members from re-subscriptions only; this record is what lets it tell who is
 * missing (Hub.replay sends it, src/actors/replay-collector.ts reads it). It holds no more than what
 * the thread already delivered, and a channel's entry goes with the thread's last subscriber of it.
 */
import type { Member } from '../protocol/native.js';
import type { SeenPresence } from './messages.js';

export class PresenceLedger {
  private readonly byChannel = new Map<string, Map<string, Member>>();

  /** A subscribe reply's member list: starts (or refreshes) the channel's entry. */
  merge(ch: string, members: readonly Member[]): void {
    let known = this.byChannel.get(ch);
    if (!known) this.byChannel.set(ch, (known = new Map()));
    for (const m of members) known.set(m.user_id, m);
  }

  /** A delivered join; ignored for channels without an entry (no subscriber here was told the list). */
  joined(ch: string, m: Member): void {
    this.byChannel.get(ch)?.set(m.user_id, m);
  }

  left(ch: string, m: Member): void {
    this.byChannel.get(ch)?.delete(m.user_id);
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
