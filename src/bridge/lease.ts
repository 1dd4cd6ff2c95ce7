/**
 * Leases with fencing: who holds the one activation of a placed channel's actor (docs/scaling.md,
 * placement). A lease lives in Redis with a ttl; its holder renews it every third of the ttl. A new
 * holder gets a larger fencing epoch than every holder before it, and every write a holder makes is
 * checked against (holder, epoch) inside the same Lua call that performs it (scripts.ts), so a holder
 * that lost its lease — paused past the ttl, cut off from Redis — fails its writes instead of racing
 * the new owner.
 *
 * The holder also stops trusting a lease on its own clock: once a ttl has passed since the last renewal
 * it sent that succeeded, it reports the lease lost even before Redis can tell it so.
 */
import { RtError } from '../errors.js';
import type { Keys } from './keys.js';
import type { Commander } from './redis-conn.js';
import * as lua from './scripts.js';

/** Proof of holding a lease, passed with every fenced write. */
export interface Fence {
  holder: string;
  epoch: number;
  /** With a publish: the actor state to persist in the same atomic step. */
  state?: Buffer;
  stateTtlMs?: number;
}

export type LeaseAnswer =
  | { held: true; epoch: number }
  | { held: false; holder: string; epoch: number; ttlMs: number };

export interface LeaseOptions {
  /** This holder's id: host id, shard and incarnation (see setup.ts). */
  holder: string;
  ttlMs: number;
  /** A lease this holder had is gone (taken over, expired, renewal refused): stop acting on it. */
  onLost(channel: string, fence: Fence): void;
}

type ScriptFn = (...args: (string | number | Buffer)[]) => Promise<any>;
interface Scripts {
  rtLeaseAcquire: ScriptFn;
  rtLeaseRenew: ScriptFn;
  rtLeaseRelease: ScriptFn;
  rtStateSave: ScriptFn;
  rtFencedPublish: ScriptFn;
  rtFencedPublishState: ScriptFn;
  rtTimersUnindex: ScriptFn;
}

/** Fencing counters outlive any lease by far; a week untouched and the channel starts again at 1. */
const FENCE_TTL_MS = 7 * 86_400_000;

export function defineLeaseScripts(cmd: Commander): Scripts {
  cmd.defineCommand('rtLeaseAcquire', { numberOfKeys: 2, lua: lua.LEASE_ACQUIRE });
  cmd.defineCommand('rtLeaseRenew', { numberOfKeys: 1, lua: lua.LEASE_RENEW });
  cmd.defineCommand('rtLeaseRelease', { numberOfKeys: 1, lua: lua.LEASE_RELEASE });
  cmd.defineCommand('rtStateSave', { numberOfKeys: 2, lua: lua.STATE_SAVE });
  cmd.defineCommand('rtFencedPublish', { numberOfKeys: 3, lua: lua.FENCED_PUBLISH });
  cmd.defineCommand('rtFencedPublishState', { numberOfKeys: 4, lua: lua.FENCED_PUBLISH_STATE });
  cmd.defineCommand('rtTimersUnindex', { numberOfKeys: 1, lua: lua.TIMERS_UNINDEX });
  return cmd as unknown as Scripts;
}

/** The error a fenced write fails with when its lease is gone. */
export function leaseLost(channel: string): RtError {
  return new RtError('moved', `the actor of ${channel} moved to another host (lease lost); retry`, 503);
}

export function isFenced(err: unknown): boolean {
  return /^FENCED\b/.test(String((err as Error)?.message ?? ''));
}

interface Held {
  fence: Fence;
  /** Local deadline: past it, the lease is treated as lost whatever Redis says. */
  validUntil: number;
}

export class Leases {
  private readonly held = new Map<string, Held>();
  private readonly scripts: Scripts;
  private timer?: NodeJS.Timeout;
  private renewing = false;

  constructor(private readonly cmd: Commander, private readonly keys: Keys, private readonly opts: LeaseOptions) {
    this.scripts = defineLeaseScripts(cmd);
    this.timer = setInterval(() => void this.renewAll(), Math.max(50, Math.floor(opts.ttlMs / 3)));
    this.timer.unref();
  }

  get holder(): string {
    return this.opts.holder;
  }

  get ttlMs(): number {
    return this.opts.ttlMs;
  }

  /** The fence of a lease this holder has and still trusts, or undefined. */
  fence(channel: string): Fence | undefined {
    const h = this.held.get(channel);
    if (!h) return undefined;
    if (Date.now() >= h.validUntil) {
      this.lost(channel, h);
      return undefined;
    }
    return h.fence;
  }

  /** Channels this holder holds. */
  channels(): string[] {
    return [...this.held.keys()];
  }

  /** Takes the lease when free (or renews it when ours); otherwise names its holder. */
  async acquire(channel: string): Promise<LeaseAnswer> {
    const sent = Date.now();
    const [ok, epoch, holder, ttl] = (await this.scripts.rtLeaseAcquire(this.keys.lease(channel), this.keys.fence(channel), this.opts.holder, this.opts.ttlMs, FENCE_TTL_MS)) as [number, number, string, number];
    if (Number(ok) === 1) {
      const fence = { holder: this.opts.holder, epoch: Number(epoch) };
      const prev = this.held.get(channel);
      if (prev && prev.fence.epoch !== fence.epoch) this.lost(channel, prev);
      this.held.set(channel, { fence, validUntil: sent + this.opts.ttlMs });
      return { held: true, epoch: fence.epoch };
    }
    const mine = this.held.get(channel);
    if (mine) this.lost(channel, mine);
    return { held: false, holder: String(holder), epoch: Number(epoch), ttlMs: Math.max(0, Number(ttl)) };
  }

  /** Who holds the lease now (read only), or null when nobody does. */
  async owner(channel: string): Promise<{ holder: string; epoch: number; ttlMs: number } | null> {
    const key = this.keys.lease(channel);
    const [[, v], [, ttl]] = (await this.cmd.multi().hmget(key, 'h', 'e').pttl(key).exec()) as [[null, (string | null)[]], [null, number]];
    if (!v[0]) return null;
    return { holder: v[0], epoch: Number(v[1]), ttlMs: Math.max(0, Number(ttl)) };
  }

  /** Gives the lease up at once (hand-over on shutdown, or the actor went idle). */
  async release(channel: string): Promise<void> {
    const h = this.held.get(channel);
    if (!h) return;
    this.held.delete(channel);
    await this.scripts.rtLeaseRelease(this.keys.lease(channel), h.fence.holder, h.fence.epoch);
  }

  async releaseAll(): Promise<void> {
    await Promise.allSettled(this.channels().map((ch) => this.release(ch)));
  }

  /** Persists a placed actor's state: refused (lease_lost) unless the lease is still ours. */
  async saveState(channel: string, state: Buffer, ttlMs: number): Promise<void> {
    const f = this.fence(channel);
    if (!f) throw leaseLost(channel);
    try {
      await this.scripts.rtStateSave(this.keys.lease(channel), this.keys.state(channel), state, Math.max(1000, Math.round(ttlMs)), f.holder, f.epoch);
    } catch (err) {
      if (isFenced(err)) {
        this.dropIfSame(channel, f);
        throw leaseLost(channel);
      }
      throw err;
    }
  }

  async loadState(channel: string): Promise<Buffer | null> {
    return this.cmd.getBuffer(this.keys.state(channel));
  }

  /**
   * The index of channels with persisted timers (keys.timers) is one key for the whole cluster, so it
   * cannot join a channel's fenced scripts on a Redis Cluster (another slot). It is kept a superset
   * instead: an entry is written before the state that holds the timers, and removed after the state
   * without them (see Activation.persist). An entry without timers behind it costs one activation.
   */
  async indexTimers(channel: string, due: number): Promise<void> {
    await this.cmd.zadd(this.keys.timers, due, channel);
  }

  /** Drops the channel's entry if its score is still `due` (the one written or read by the caller). */
  async unindexTimers(channel: string, due: number): Promise<void> {
    await this.scripts.rtTimersUnindex(this.keys.timers, channel, due);
  }

  /** Drops the entries due before `before` (see Placement.sweep). */
  async dropTimersBefore(before: number): Promise<void> {
    await this.cmd.zremrangebyscore(this.keys.timers, '-inf', `(${before}`);
  }

  /** Channels whose earliest timer is due by `until`, soonest first, with that due time. */
  async dueTimers(until: number, limit: number): Promise<[string, number][]> {
    const flat = await this.cmd.zrangebyscore(this.keys.timers, '-inf', until, 'WITHSCORES', 'LIMIT', 0, limit);
    const out: [string, number][] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, Number(flat[i + 1])]);
    return out;
  }

  /** A fenced publish's script, for the broker (same fence rules as saveState). */
  fencedPublish(channel: string, args: (string | number | Buffer)[], fence: Fence): Promise<any> {
    const lease = this.keys.lease(channel);
    if (fence.state) {
      return this.scripts.rtFencedPublishState(lease, this.keys.meta(channel), this.keys.stream(channel), this.keys.state(channel), ...args, fence.state, Math.max(1000, Math.round(fence.stateTtlMs ?? 86_400_000)), fence.holder, fence.epoch);
    }
    return this.scripts.rtFencedPublish(lease, this.keys.meta(channel), this.keys.stream(channel), ...args, fence.holder, fence.epoch);
  }

  /** A fenced write was refused: the lease is gone, whatever this holder believed. */
  dropIfSame(channel: string, fence: Fence): void {
    const h = this.held.get(channel);
    if (h && h.fence.epoch === fence.epoch) this.lost(channel, h);
  }

  private lost(channel: string, h: Held): void {
    if (this.held.get(channel) !== h) return;
    this.held.delete(channel);
    this.opts.onLost(channel, h.fence);
  }

  private async renewAll(): Promise<void> {
    if (this.renewing || this.held.size === 0) return;
    this.renewing = true;
    try {
      const entries = [...this.held];
      const sent = Date.now();
      const results = await Promise.allSettled(entries.map(([ch, h]) => this.scripts.rtLeaseRenew(this.keys.lease(ch), this.opts.ttlMs, h.fence.holder, h.fence.epoch)));
      results.forEach((r, i) => {
        const [ch, h] = entries[i]!;
        if (r.status === 'fulfilled') {
          if (this.held.get(ch) === h) h.validUntil = sent + this.opts.ttlMs;
        } else if (isFenced(r.reason)) {
          this.lost(ch, h);
        } else if (Date.now() >= h.validUntil) {
          // Redis unreachable for a whole ttl: another host may hold it by now.
          this.lost(ch, h);
        }
      });
    } finally {
      this.renewing = false;
    }
  }

  /** Stops renewing; with `release`, hands every lease over at once. */
  async close(release: boolean): Promise<void> {
    clearInterval(this.timer);
    if (release) await this.releaseAll();
    this.held.clear();
  }
}
