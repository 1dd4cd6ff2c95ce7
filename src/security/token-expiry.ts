/**
 * Token expiry after connect. At a connection's token `exp` the server asks for a fresh token
 * (Client.tokenExpiring: native `refresh` frame, Socket.IO `token:expiring` event); if none arrives
 * within the grace period (--token-grace), the connection is closed with 4010. One timer per thread
 * walks a wheel of one-second buckets, so a million connections cost no timers of their own.
 * A re-authenticated connection is re-bucketed by Client.authenticate; a stale bucket entry is
 * recognised on its tick by comparing the client's own deadline.
 */
import type { Client } from '../runtime/client.js';
import { CloseCode } from '../runtime/client.js';

export class TokenExpiry {
  private readonly buckets = new Map<number, Set<Client>>();
  private readonly timer: NodeJS.Timeout;
  private last: number;

  constructor(
    /** Seconds a connection has to send a fresh token once its own expired. */
    readonly graceSeconds: number,
    private readonly now: () => number = () => Date.now() / 1000,
  ) {
    this.last = Math.floor(this.now());
    this.timer = setInterval(() => this.tick(), 250);
    this.timer.unref();
  }

  /** When the client must next be looked at: its token's exp, or the end of its grace period once asked. */
  private dueOf(c: Client): number | undefined {
    if (c.expiresAt === undefined) return undefined;
    return c.refreshAskedFor === c.expiresAt ? c.expiresAt + this.graceSeconds : c.expiresAt;
  }

  /** (Re)schedules a client after it joined or authenticated again; a client without exp is dropped. */
  schedule(c: Client): void {
    this.unschedule(c);
    const due = this.dueOf(c);
    if (due === undefined || c.closed) return;
    // Never in a bucket already walked: the next tick handles an already-due client.
    const second = Math.max(Math.ceil(due), this.last + 1);
    let set = this.buckets.get(second);
    if (!set) this.buckets.set(second, (set = new Set()));
    set.add(c);
    c.expiryBucket = second;
  }

  unschedule(c: Client): void {
    if (c.expiryBucket === undefined) return;
    const set = this.buckets.get(c.expiryBucket);
    if (set) {
      set.delete(c);
      if (set.size === 0) this.buckets.delete(c.expiryBucket);
    }
    c.expiryBucket = undefined;
  }

  private tick(): void {
    const now = this.now();
    const upTo = Math.floor(now);
    for (let s = this.last + 1; s <= upTo; s++) {
      const set = this.buckets.get(s);
      if (!set) continue;
      this.buckets.delete(s);
      for (const c of set) {
        c.expiryBucket = undefined;
        if (!c.closed) this.visit(c, now);
      }
    }
    this.last = Math.max(this.last, upTo);
  }

  private visit(c: Client, now: number): void {
    const due = this.dueOf(c);
    if (due === undefined) return;
    if (due > now) return this.schedule(c); // authenticated again since it was bucketed
    if (c.refreshAskedFor !== c.expiresAt) {
      c.refreshAskedFor = c.expiresAt;
      c.tokenExpiring(c.expiresAt! + this.graceSeconds);
      return this.schedule(c);
    }
    c.tokenExpired(CloseCode.TOKEN_EXPIRED, `token expired: no fresh token within ${this.graceSeconds} s; reconnect with a new one`);
  }

  stop(): void {
    clearInterval(this.timer);
    this.buckets.clear();
  }
}
