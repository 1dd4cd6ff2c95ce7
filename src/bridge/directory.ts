/**
 * Cluster-wide answers read straight from Redis — channel list, one channel's counts, presence
 * members — and the cluster-wide user messages. No host is asked anything, so a dead or slow host
 * cannot make the HTTP API wait; counts of a dead host disappear when the sweeper removes it.
 */
import { redisUnavailable } from './redis-errors.js';
import type { Member } from '../protocol/native.js';
import type { ChannelInfo, Notice } from '../runtime/messages.js';
import { isHiddenChannel } from '../runtime/hidden-channels.js';
import type { HubBridge } from './broker.js';
import type { Keys } from './keys.js';
import type { Commander } from './redis-conn.js';

/** See redis-errors.ts: our words, not the driver's. */
export const unavailable = redisUnavailable;

/** Parses one presence entry's info; a corrupt entry counts as a member without info. */
function parseInfo(json: string): unknown {
  try {
    return JSON.parse(json);
  } catch {
    return null;
  }
}

export class RedisDirectory implements HubBridge {
  /**
   * Whether a custom actor serves a channel (set on a shard once its actors are placed): such a channel
   * is `leased` even before its first activation has written anything to Redis.
   */
  servedByActor: (channel: string) => boolean = () => false;

  constructor(
    private readonly cmd: Commander,
    private readonly keys: Keys,
    /** Index entries not refreshed for this long belong to channels no live host has. */
    private readonly staleMs: number,
    /** Counts a failed read or user message: a failed Redis operation (rt_redis_errors_total). */
    private readonly failed: () => void,
  ) {}

  private async guard<T>(p: Promise<T>, read = true): Promise<T> {
    try {
      return await p;
    } catch (err) {
      this.failed();
      throw unavailable(err, read);
    }
  }

  async channel(name: string): Promise<ChannelInfo> {
    const presence = name.startsWith('presence-');
    const [counts, offset, users, lease, placed] = await this.guard(
      Promise.all([
        this.cmd.hvals(this.keys.counts(name)),
        this.cmd.hget(this.keys.meta(name), 'o'),
        presence ? this.cmd.hlen(this.keys.users(name)) : Promise.resolve(0),
        this.cmd.hmget(this.keys.lease(name), 'h', 'e'),
        this.cmd.exists(this.keys.state(name)),
      ]),
    );
    const info: ChannelInfo = { name, subscribers: counts.reduce((n, c) => n + (Number(c) || 0), 0), offset: Number(offset ?? 0) };
    // A custom actor's one activation: the lease holder's node id is `<host id>:<shard>:<random>`.
    if (lease[0]) {
      const parts = lease[0].split(':');
      info.owner = { host: parts.slice(0, -2).join(':'), shard: Number(parts[parts.length - 2]), placement: 'leased', epoch: Number(lease[1]) };
    } else if (placed || this.servedByActor(name)) {
      // Placed, with no activation right now (or never one yet): the next event activates it wherever it arrives.
      info.owner = { host: null, shard: null, placement: 'leased' };
    }
    if (presence) info.presence = users;
    return info;
  }

  async channels(prefix?: string): Promise<ChannelInfo[]> {
    const names = await this.guard(this.cmd.zrangebyscore(this.keys.index, Date.now() - this.staleMs, '+inf'));
    const visible = names.filter((n) => !isHiddenChannel(n));
    const wanted = prefix ? visible.filter((n) => n.startsWith(prefix)) : visible;
    const infos = await Promise.all(wanted.map((n) => this.channel(n)));
    return infos.filter((i) => i.subscribers > 0).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  async members(name: string): Promise<Member[]> {
    const all = await this.guard(this.cmd.hgetall(this.keys.members(name)));
    const seen = new Map<string, Member>();
    for (const [field, json] of Object.entries(all)) {
      const user = field.slice(field.indexOf('|') + 1);
      if (seen.has(user)) continue;
      const info = parseInfo(json);
      seen.set(user, info === null || info === undefined ? { user_id: user } : { user_id: user, user_info: info });
    }
    return [...seen.values()];
  }

  async presence(name: string): Promise<{ members: Member[] }> {
    return { members: await this.members(name) };
  }

  async publishToUser(user: string, event: string, data: unknown, exclude?: string, js?: string): Promise<void> {
    const n: Notice = { t: 'user!', user, ev: event, data };
    if (exclude) n.ex = exclude;
    if (js !== undefined) n.js = js;
    await this.guard(this.cmd.publish(this.keys.control, JSON.stringify(n)), false);
  }

  async stayed(m: [string, string][]): Promise<void> {
    await this.guard(this.cmd.publish(this.keys.control, JSON.stringify({ t: 'stayed', m } satisfies Notice)), false);
  }

  async kick(user: string): Promise<void> {
    const n: Notice = { t: 'kick', user, at: Math.floor(Date.now() / 1000) };
    // Kept, not only announced: hosts that start later, or were cut off from Redis, read it at connect.
    await this.guard(this.cmd.hset(this.keys.revoked, user, String(n.at)), false);
    await this.guard(this.cmd.publish(this.keys.control, JSON.stringify(n)), false);
  }
}

/** Validates a control message from Redis: anything else on the channel is dropped and counted. */
export function parseControl(raw: Buffer): Notice | null {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    return null;
  }
  const n = v as Record<string, unknown>;
  if (n && typeof n === 'object' && n.t === 'stayed') {
    const ok = Array.isArray(n.m) && n.m.length <= 1000 && n.m.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string');
    return ok ? { t: 'stayed', m: n.m as [string, string][] } : null;
  }
  if (!n || typeof n !== 'object' || typeof n.user !== 'string') return null;
  if (n.t === 'kick') return typeof n.at === 'number' ? { t: 'kick', user: n.user, at: n.at } : { t: 'kick', user: n.user };
  if (n.t === 'user!' && typeof n.ev === 'string') {
    const out: Notice = { t: 'user!', user: n.user, ev: n.ev, data: n.data };
    if (typeof n.ex === 'string') out.ex = n.ex;
    if (typeof n.js === 'string') out.js = n.js;
    return out;
  }
  return null;
}
