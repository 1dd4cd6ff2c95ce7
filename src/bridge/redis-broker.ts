/**
 * The Redis broker of one shard. It holds this shard's ioredis connections (created here, in the
 * shard's thread), the Redis subscriptions of the channels whose actors live on this shard, and this
 * shard's share of cluster-wide state: a heartbeat, presence entries, subscriber counts.
 *
 * A "node" is one shard incarnation (host id, shard index, random part). A crashed and replaced shard
 * is a new node: the connections that survived the crash re-register under it, then it retires the
 * old one (retire), whose heartbeat the main thread kept alive meanwhile (NodeKeeper).
 */
import { createHash, randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import { toPlain, unpackPlain } from '../protocol/plain-msgpack.js';
import { EncodedPublication, JsonData, rawJson } from '../protocol/encoded-payload.js';
import { jsonNestsDeeper, MAX_JSON_DEPTH } from '../protocol/json-depth.js';
import type { Logger } from '../log.js';
import { assertEvent, type Member, type Publication, type StreamPosition } from '../protocol/native.js';
import type { Notice } from '../runtime/messages.js';
import type { ChannelLifecycle } from '../actors/channel-actor.js';
import type { Broker, BrokerMessage, BrokerStats, ChannelSink, HistoryBounds, HistorySlice } from './broker.js';
import { parseControl, RedisDirectory, unavailable } from './directory.js';
import type { Keys } from './keys.js';
import { commandConnection, connectWithin, SubscriberPool, type Commander, type RedisTarget } from './redis-conn.js';
import * as lua from './scripts.js';
import { isFenced, Leases, leaseLost, type Fence } from './lease.js';
import { isHiddenChannel } from '../runtime/hidden-channels.js';

const packr = new Packr({ useRecords: false });

/**
 * How long a backend message's claim lives: hosts receiving the same Laravel message within this
 * window sequence it once. It only has to cover the delivery skew between hosts.
 */
const CLAIM_TTL_MS = 10_000;
/** Channel metadata (offset, epoch) outlives its history, and is refreshed while any host uses it. */
const META_TTL_MIN_MS = 3_600_000;
const META_REFRESH_MS = 300_000;
const BAR = 0x7c; // '|'

type ScriptFn = (...args: (string | number | Buffer)[]) => Promise<any>;

interface Scripts {
  rtPublish: ScriptFn;
  rtIngest: ScriptFn;
  rtPosition: ScriptFn;
  rtHistoryBuffer: ScriptFn;
  rtLatestBuffer: ScriptFn;
  rtJoin: ScriptFn;
  rtLeave: ScriptFn;
  rtSweep: ScriptFn;
  rtCount: ScriptFn;
}

function defineScripts(cmd: Commander): Scripts {
  cmd.defineCommand('rtPublish', { numberOfKeys: 2, lua: lua.PUBLISH });
  cmd.defineCommand('rtIngest', { numberOfKeys: 3, lua: lua.PUBLISH });
  cmd.defineCommand('rtPosition', { numberOfKeys: 1, lua: lua.POSITION });
  cmd.defineCommand('rtHistory', { numberOfKeys: 2, lua: lua.HISTORY });
  cmd.defineCommand('rtLatest', { numberOfKeys: 1, lua: lua.LATEST });
  cmd.defineCommand('rtJoin', { numberOfKeys: 2, lua: lua.JOIN });
  cmd.defineCommand('rtLeave', { numberOfKeys: 2, lua: lua.LEAVE });
  cmd.defineCommand('rtSweep', { numberOfKeys: 3, lua: lua.SWEEP });
  cmd.defineCommand('rtCount', { numberOfKeys: 1, lua: lua.COUNT });
  return cmd as unknown as Scripts;
}

export function newEpoch(): string {
  return randomBytes(6).toString('base64url');
}

function metaTtl(b: HistoryBounds): number {
  return Math.max(b.ttlMs, META_TTL_MIN_MS);
}

export interface RedisBrokerOptions {
  target: RedisTarget;
  keys: Keys;
  node: string;
  presenceTtlMs: number;
  log: Logger;
  /** Largest Laravel broadcast taken from Redis, in bytes (--max-payload, as for the HTTP API); default unbounded. */
  maxPayload?: number;
  /** A cluster-wide control message (user message, user disconnect) for this thread's connections. */
  onControl(n: Notice): void;
  /** Lease time of placed actors (the node id is the lease holder); default 10 s. */
  leaseTtlMs?: number;
  /** A placed actor's lease this node held is gone. */
  onLeaseLost?(channel: string, fence: Fence): void;
  /**
   * A cluster-wide transition this node's write caused, decided atomically in Redis so exactly one
   * node in the cluster reports each: the channel's subscriber count went 0 → more (occupied) or to 0
   * (vacated, also when this node swept a dead one), a user's first connection anywhere joined a
   * presence channel (member_added) or its last one left (member_removed). For Pusher webhooks.
   */
  onLifecycle?(e: ChannelLifecycle): void;
  /**
   * Channels whose cluster-wide subscriber count is announced (Pusher's subscription_count): their
   * count writes publish the new total on the channel, which every host's sink receives (ChannelSink.count).
   */
  countWanted?(channel: string): boolean;
}

interface Route {
  channel: string;
  laravel: boolean;
}

export class RedisBroker implements Broker {
  readonly node: string;
  readonly stats: BrokerStats = { invalid: 0, recovered: 0, resyncs: 0, errors: 0 };
  readonly cmd: Commander;
  readonly directory: RedisDirectory;
  /** Leases of the placed actors this node runs (docs/scaling.md, placement). */
  readonly leases: Leases;
  private readonly scripts: Scripts;
  private readonly subs: SubscriberPool;
  private readonly keys: Keys;
  private readonly pubCmd: 'PUBLISH' | 'SPUBLISH';
  private readonly sinks = new Map<string, { sink: ChannelSink; bounds: HistoryBounds }>();
  private readonly routes = new Map<string, Route>();
  /** Per channel: how many times each Laravel payload was seen lately (see ingestClaim). */
  private readonly seen = new Map<string, Map<string, { n: number; until: number }>>();
  private heartbeat?: NodeJS.Timeout;
  /** Channels no longer relayed here but kept on this node's list for members in their grace (see count). */
  private readonly held = new Set<string>();
  /** When the heartbeat of this node's `~grace` node (members handed over at shutdown) runs out. */
  private graceUntil = 0;
  private retry?: NodeJS.Timeout;
  private dropTimer?: NodeJS.Timeout;
  private readonly intervalMs: number;
  private readonly inboxChannel: string;
  private cmdReadyOnce = false;
  private closed = false;
  /** The shard is crashing (freeze): its presence and counts are left for its replacement to retire. */
  private frozen = false;
  private lastInvalidLog = 0;
  private metaRefreshedAt = 0;
  /** When this node last saw Redis fail (a connection lost, a node error, a heartbeat refused, subscriptions moved): see sweep. */
  private troubleAt = 0;

  constructor(private readonly opts: RedisBrokerOptions) {
    this.node = opts.node;
    this.keys = opts.keys;
    this.pubCmd = opts.target.cluster ? 'SPUBLISH' : 'PUBLISH';
    this.inboxChannel = opts.keys.inbox(opts.node);
    this.cmd = commandConnection(opts.target, `rt-actors:${opts.node}`);
    // State changes are watched through 'ready'/'close' and commands report their own errors; an error
    // here (or a Cluster node's) only tells the sweeper that other nodes' heartbeats may have failed too.
    this.cmd.on('error', () => this.troubled());
    this.cmd.on('node error', () => this.troubled());
    this.cmd.on('-node', () => this.troubled()); // a Cluster node dropped: its slots moved
    this.scripts = defineScripts(this.cmd);
    this.subs = new SubscriberPool(opts.target, `rt-actors-sub:${opts.node}`, this.cmd);
    this.directory = new RedisDirectory(this.cmd, opts.keys, opts.presenceTtlMs * 2, () => this.stats.errors++);
    this.leases = new Leases(this.cmd, opts.keys, { holder: opts.node, ttlMs: opts.leaseTtlMs ?? 10_000, onLost: (ch, f) => opts.onLeaseLost?.(ch, f) });
    // Several rounds per ttl, so one late heartbeat does not make a live node look dead.
    this.intervalMs = Math.max(100, Math.floor(opts.presenceTtlMs / 3));
  }

  get up(): boolean {
    return this.cmd.status === 'ready' && this.subs.up;
  }

  /**
   * Connects. Waits at most `timeoutMs`; past that the shard serves anyway and the broker keeps
   * reconnecting (anything needing Redis fails with `unavailable` until then).
   */
  async start(timeoutMs: number): Promise<void> {
    this.cmd.on('ready', () => {
      if (!this.cmdReadyOnce) {
        this.cmdReadyOnce = true;
        return;
      }
      this.opts.log.info('Redis reconnected: re-registering this shard and checking channels for gaps', { event: 'redis.up' });
      void this.beat();
      void this.reapplyRevocations();
      // A heartbeat later: the leaves it publishes reach only hosts whose subscriptions are back, and
      // every host reconnects around the same time.
      clearTimeout(this.dropTimer);
      this.dropTimer = setTimeout(() => void this.dropUnrelayed(), this.intervalMs);
      this.dropTimer.unref();
      for (const { sink } of this.sinks.values()) sink.recover();
    });
    let wasUp = false;
    this.cmd.on('ready', () => (wasUp = true));
    this.cmd.on('close', () => {
      this.troubled();
      // Once per outage, not once per failed reconnect attempt.
      if (!this.closed && wasUp) this.opts.log.warn('Redis connection lost; reconnecting (publishes fail with 503 meanwhile)', { event: 'redis.down' });
      wasUp = false;
    });
    this.subs.on('message', (ch: string, payload: Buffer) => this.onMessage(ch, payload));
    this.subs.on('down', () => this.troubled());
    this.subs.on('resubscribed', (list: string[]) => {
      this.troubled();
      const channels = new Set<string>();
      for (const r of list) {
        const route = this.routes.get(r);
        if (route) channels.add(route.channel);
      }
      for (const ch of channels) this.sinks.get(ch)?.sink.recover();
      // The command connection may still be down: its own 'ready' reads them then (a read now would
      // only warn, in the driver's words, about a stream that is not writeable).
      if (list.includes(this.keys.control) && this.cmd.status === 'ready') void this.reapplyRevocations();
    });
    const [cmd, sub] = await Promise.allSettled([connectWithin(this.cmd, timeoutMs), this.listen(timeoutMs)]);
    const failed = cmd.status === 'rejected' ? cmd.reason : sub.status === 'rejected' ? sub.reason : undefined;
    // Possible when this shard is replaced during an outage: it serves its connections meanwhile.
    if (failed) this.opts.log.error(`Redis not reachable yet (${(failed as Error).message}); serving local connections and retrying`, { event: 'redis.down' });
    else await this.beat();
    this.heartbeat = setInterval(() => void this.beat(), this.intervalMs);
    this.heartbeat.unref();
  }

  /** Subscriber connections and the control channel, retried every 2 s until they are up. */
  private async listen(timeoutMs: number): Promise<void> {
    try {
      // On a cluster the slot map comes through the command connection.
      if (this.opts.target.cluster) await connectWithin(this.cmd, timeoutMs);
      await this.subs.start(timeoutMs);
      await this.subs.subscribe(this.keys.control, false);
      await this.subs.subscribe(this.keys.inbox(this.node), this.opts.target.cluster);
    } catch (err) {
      if (!this.closed) {
        this.retry = setTimeout(() => void this.listen(timeoutMs).catch(() => {}), 2000);
        this.retry.unref();
      }
      throw err;
    }
  }

  // ——— channel subscriptions ———

  /**
   * The Redis channel a backend publishes to for `channel`, unless it would be one of rt-actors' own
   * (possible with an empty --redis-prefix and a channel named `<namespace>:…`): never listen there.
   * Hidden channels take no backend messages, so they cost no such subscription either.
   */
  private laravelChannel(channel: string): string | undefined {
    if (isHiddenChannel(channel)) return undefined;
    const name = this.keys.laravel(channel);
    return name.startsWith(this.keys.ns + ':') || name.startsWith(this.keys.ns + '@') ? undefined : name;
  }

  async attach(channel: string, sink: ChannelSink, bounds: HistoryBounds): Promise<StreamPosition> {
    const own = this.keys.pubsub(channel);
    const laravel = this.laravelChannel(channel);
    this.sinks.set(channel, { sink, bounds });
    this.routes.set(own, { channel, laravel: false });
    if (laravel) this.routes.set(laravel, { channel, laravel: true });
    try {
      await Promise.all([this.subs.subscribe(own, this.opts.target.cluster), laravel ? this.subs.subscribe(laravel, false) : undefined]);
      // Read after the subscription took: anything published later arrives through it.
      return await this.position(channel, bounds);
    } catch (err) {
      this.detach(channel);
      this.stats.errors++;
      throw unavailable(err);
    }
  }

  detach(channel: string): void {
    if (!this.sinks.delete(channel)) return;
    const own = this.keys.pubsub(channel);
    const laravel = this.laravelChannel(channel);
    this.routes.delete(own);
    // Not `seen`: its counts must outlive the claims they made in Redis (CLAIM_TTL_MS), or the same
    // broadcast after a leave and a join would present a claim already taken and be dropped. The
    // heartbeat drops them once expired.
    this.subs.unsubscribe(own);
    if (laravel) {
      this.routes.delete(laravel);
      this.subs.unsubscribe(laravel);
    }
  }

  /** Messages to this node's inbox (see sendTo); set by the placement layer. */
  onInbox?: (payload: Buffer) => void;

  /**
   * Whether a node still heartbeats (its host and shard are alive). One without a heartbeat counts as
   * alive a while longer after this node saw Redis fail, as in sweep (presumedDead).
   */
  async nodeAlive(node: string): Promise<boolean> {
    if ((await this.cmd.exists(this.keys.node(node))) === 1) return true;
    return !(await this.presumedDead(node, (await this.cmd.hget(this.keys.missing, node)) ?? undefined));
  }

  /** Sends to another node's inbox; resolves to the number of receivers (0: that node is gone). */
  async sendTo(node: string, payload: Buffer): Promise<number> {
    const ch = this.keys.inbox(node);
    try {
      return Number(this.opts.target.cluster ? await this.cmd.spublish(ch, payload) : await this.cmd.publish(ch, payload));
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err);
    }
  }

  private onMessage(redisChannel: string, payload: Buffer): void {
    if (redisChannel === this.inboxChannel) {
      this.onInbox?.(payload);
      return;
    }
    if (redisChannel === this.keys.control) {
      const n = parseControl(payload);
      if (n) this.opts.onControl(n);
      else this.invalid(redisChannel, 'not a control message');
      return;
    }
    const route = this.routes.get(redisChannel);
    if (!route) return; // unsubscribed a moment ago
    const entry = this.sinks.get(route.channel);
    if (!entry) return;
    if (route.laravel) return this.onLaravel(route.channel, entry.sink, payload);
    try {
      const first = payload[0];
      if (first === 0x73 && payload[1] === BAR) {
        const total = Number(payload.toString('latin1', 2));
        if (!Number.isSafeInteger(total) || total < 0) throw new Error('bad subscriber count frame');
        entry.sink.count(total);
        return;
      }
      if ((first === 0x6a || first === 0x6c) && payload[1] === BAR) {
        const p = JSON.parse(payload.toString('utf8', 2)) as { u: unknown; i?: unknown; x?: unknown };
        if (typeof p.u !== 'string') throw new Error('presence frame without user');
        const m: Member = p.i === null || p.i === undefined ? { user_id: p.u } : { user_id: p.u, user_info: p.i };
        entry.sink.presence(first === 0x6a ? 'join!' : 'leave!', m, typeof p.x === 'string' ? p.x : undefined);
        return;
      }
      const a = payload.indexOf(BAR);
      const b = payload.indexOf(BAR, a + 1);
      if (a <= 0 || b < 0) throw new Error('not a publication frame');
      const offset = Number(payload.toString('latin1', 0, a));
      const epoch = payload.toString('latin1', a + 1, b);
      const body = unpackPlain(payload.subarray(b + 1)) as Body;
      if (!Number.isSafeInteger(offset) || offset <= 0 || typeof body?.v !== 'string') throw new Error('bad publication frame');
      entry.sink.publication(withMeta(publicationOf(route.channel, body, offset), body.u), epoch, typeof body.x === 'string' ? body.x : undefined);
    } catch (err) {
      this.invalid(redisChannel, (err as Error).message);
    }
  }

  /**
   * Laravel's RedisBroadcaster sends `{"event", "data", "socket"}` JSON. Every host subscribed to the
   * channel gets it, so each computes the same claim — payload digest plus how many times this exact
   * payload was seen on the channel lately — and the first to present it sequences the message.
   */
  private onLaravel(channel: string, sink: ChannelSink, payload: Buffer): void {
    let msg: BrokerMessage;
    const max = this.opts.maxPayload;
    if (max !== undefined && payload.length > max) {
      this.invalid(this.keys.laravel(channel), `${payload.length} bytes, more than --max-payload (${max}), as the HTTP API refuses`);
      return;
    }
    try {
      const v = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
      if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('payload is not a JSON object');
      const event = assertEvent(v.event);
      msg = { event, data: v.data ?? null };
      if (typeof v.socket === 'string' && v.socket) msg.exclude = v.socket;
    } catch (err) {
      this.invalid(this.keys.laravel(channel), (err as Error).message);
      return;
    }
    sink.ingest(msg, this.ingestClaim(channel, payload));
  }

  private ingestClaim(channel: string, payload: Buffer): string {
    const digest = createHash('sha1').update(payload).digest('base64url').slice(0, 20);
    let perChannel = this.seen.get(channel);
    if (!perChannel) this.seen.set(channel, (perChannel = new Map()));
    const now = Date.now();
    const e = perChannel.get(digest);
    const n = e && e.until > now ? e.n + 1 : 1;
    perChannel.set(digest, { n, until: now + CLAIM_TTL_MS });
    if (perChannel.size > 256) for (const [k, v] of perChannel) if (v.until <= now) perChannel.delete(k);
    return `${digest}:${n}`;
  }

  private invalid(where: string, why: string): void {
    this.stats.invalid++;
    const now = Date.now();
    // One line per second at most: a misbehaving publisher must not flood the log.
    if (now - this.lastInvalidLog > 1000) {
      this.lastInvalidLog = now;
      this.opts.log.warn(`ignored a message on Redis channel ${where}: ${why} (${this.stats.invalid} so far)`);
    }
  }

  // ——— sequence, history ———

  async publish(channel: string, msg: BrokerMessage, bounds: HistoryBounds, claim?: string, fence?: Fence): Promise<StreamPosition | null> {
    // JSON text nobody has read travels as that text (`j`): Pusher's `data` is an opaque string whose
    // bytes (key order, spacing, 1.0, integers past 2^53, \u escapes) its subscribers get unchanged,
    // and a value decoded and encoded again would change them. Anything else as a value (`d`), read
    // back with unpackPlain on every host: an actor's Date or undefined must not make it unreadable.
    const js = rawJson(msg);
    const b: Body = js !== undefined ? { v: msg.event, j: js } : { v: msg.event, d: toPlain(msg.data) };
    if (msg.exclude) b.x = msg.exclude;
    if (msg.user !== undefined) b.u = msg.user;
    const body = packr.pack(b);
    const args: (string | number | Buffer)[] = [this.keys.pubsub(channel), newEpoch(), bounds.size, Math.max(1, Math.round(bounds.ttlMs)), metaTtl(bounds), body, this.pubCmd];
    let r: [number, string] | null;
    try {
      r = fence
        ? await this.leases.fencedPublish(channel, args, fence)
        : claim === undefined
          ? await this.scripts.rtPublish(this.keys.meta(channel), this.keys.stream(channel), ...args)
          : await this.scripts.rtIngest(this.keys.meta(channel), this.keys.stream(channel), this.keys.claim(channel, claim), ...args, CLAIM_TTL_MS);
    } catch (err) {
      if (fence && isFenced(err)) {
        this.leases.dropIfSame(channel, fence);
        throw leaseLost(channel);
      }
      this.stats.errors++;
      throw unavailable(err);
    }
    return r ? { offset: Number(r[0]), epoch: String(r[1]) } : null;
  }

  async position(channel: string, bounds: HistoryBounds, delivered?: StreamPosition): Promise<StreamPosition> {
    try {
      const args: (string | number)[] = [this.keys.meta(channel), newEpoch(), metaTtl(bounds)];
      if (delivered) args.push(delivered.offset, delivered.epoch);
      const [o, e] = (await this.scripts.rtPosition(...args)) as [string, string];
      return { offset: Number(o), epoch: e };
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err, true);
    }
  }

  /** `times`, when given, gets each publication's time: the stream entry id's milliseconds. */
  private parseEntries(channel: string, entries: [Buffer, Buffer[]][], times?: number[]): Publication[] {
    const out: Publication[] = [];
    for (const [id, fields] of entries) {
      try {
        const offset = Number(fields[1]!.toString());
        const body = unpackPlain(fields[3]!) as Body;
        out.push(withMeta(publicationOf(channel, body, offset), body.u, body.x));
        times?.push(Number.parseInt(id.toString('latin1'), 10) || 0);
      } catch {
        this.invalid(this.keys.stream(channel), 'unreadable stream entry');
      }
    }
    return out;
  }

  async history(channel: string, after: number, upTo: number | undefined, limit: number, bounds: HistoryBounds): Promise<HistorySlice> {
    if (upTo !== undefined && after === upTo) return { pubs: [], recovered: true };
    let r: [number, [Buffer, Buffer[]][]] | [number];
    try {
      r = await this.scripts.rtHistoryBuffer(this.keys.stream(channel), this.keys.meta(channel), after, upTo ?? -1, Math.max(1, Math.round(bounds.ttlMs)), bounds.size);
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err, true);
    }
    if (Number(r[0]) !== 1) return { pubs: [], recovered: false };
    const all: number[] = [];
    const parsed = this.parseEntries(channel, (r[1] ?? []).slice().reverse(), all);
    const pubs: Publication[] = [];
    const times: number[] = [];
    for (let i = 0; i < parsed.length; i++) {
      const p = parsed[i]!;
      if (p.offset <= after || (upTo !== undefined && p.offset > upTo)) continue;
      pubs.push(p);
      times.push(all[i]!);
    }
    // Offsets are contiguous in the stream, so anything else means an entry was unreadable.
    const contiguous = pubs.every((p, i) => p.offset === after + 1 + i);
    return { pubs: pubs.slice(0, limit), recovered: contiguous, times: times.slice(0, limit) };
  }

  async latest(channel: string, limit: number, bounds: HistoryBounds): Promise<Publication[]> {
    limit = Math.min(limit, bounds.size);
    if (limit <= 0) return [];
    try {
      const entries = (await this.scripts.rtLatestBuffer(this.keys.stream(channel), limit, Math.max(1, Math.round(bounds.ttlMs)))) as [Buffer, Buffer[]][];
      return this.parseEntries(channel, entries.slice().reverse());
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err, true);
    }
  }

  // ——— presence and counts ———

  /**
   * The shard is crashing: its actors still see its clients go, but what their leaves and counts would
   * decide cluster-wide (a member's last leave, a vacated channel: Pusher webhooks) would be reported
   * in this thread and die with it. Its node keeps them instead, and the replacement's retire decides
   * them, in a thread that lives (or a sweeper does, when no replacement comes).
   */
  freeze(): void {
    this.frozen = true;
  }

  async join(channel: string, user: string, info: unknown, exclude: string | undefined): Promise<void> {
    if (this.frozen) return;
    const i = info === undefined ? null : info;
    const frame = 'j|' + JSON.stringify(exclude ? { u: user, i, x: exclude } : { u: user, i });
    let r: number;
    try {
      await this.cmd.sadd(this.keys.nodeChannels(this.node), channel);
      r = Number(await this.scripts.rtJoin(this.keys.members(channel), this.keys.users(channel), `${this.node}|${user}`, JSON.stringify(i), user, this.keys.pubsub(channel), this.pubCmd, frame));
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err);
    }
    if (r === 2) this.lifecycle({ t: 'member_added', ch: channel, user });
  }

  private lifecycle(e: ChannelLifecycle): void {
    try {
      this.opts.onLifecycle?.(e);
    } catch (err) {
      this.opts.log.warn(`channel lifecycle observer failed: ${(err as Error).message}`);
    }
  }

  async leave(channel: string, user: string): Promise<void> {
    if (this.frozen) return;
    let r: number;
    try {
      r = Number(await this.scripts.rtLeave(this.keys.members(channel), this.keys.users(channel), `${this.node}|${user}`, user, this.keys.pubsub(channel), this.pubCmd));
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err);
    }
    if (r === 2) this.lifecycle({ t: 'member_removed', ch: channel, user });
  }

  /**
   * Moves this node's share of a member in its grace to a node of its own, `<node>~grace`, whose
   * heartbeat lasts as long as the longest grace handed to it and is never renewed: another host's
   * sweep removes it once that has passed, with a leave if nobody else holds the member (never back)
   * and none if the member was recovered elsewhere meanwhile. Joined there before this node's share
   * leaves, so Redis never counts the member at 0 in between: neither step is announced.
   */
  async holdMember(channel: string, user: string, info: unknown, ms: number): Promise<void> {
    const ghost = `${this.node}~grace`;
    const until = Date.now() + ms;
    try {
      await this.cmd.sadd(this.keys.nodes, ghost);
      await this.cmd.sadd(this.keys.nodeChannels(ghost), channel);
      if (until > this.graceUntil) {
        this.graceUntil = until;
        await this.cmd.set(this.keys.node(ghost), String(until), 'PX', Math.max(1, Math.round(ms)));
      }
      const frame = 'j|' + JSON.stringify({ u: user, i: info === undefined ? null : info });
      await this.scripts.rtJoin(this.keys.members(channel), this.keys.users(channel), `${ghost}|${user}`, JSON.stringify(info === undefined ? null : info), user, this.keys.pubsub(channel), this.pubCmd, frame);
      await this.scripts.rtLeave(this.keys.members(channel), this.keys.users(channel), `${this.node}|${user}`, user, this.keys.pubsub(channel), this.pubCmd);
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err);
    }
  }

  members(channel: string): Promise<Member[]> {
    return this.directory.members(channel);
  }

  /**
   * After a reconnect: this node's presence entries of users no longer in `keep`. Their leave failed
   * while Redis was away, and a node that heartbeats is never swept, so they would stay members.
   */
  async prune(channel: string, keep: ReadonlySet<string> | ReadonlyMap<string, unknown>): Promise<void> {
    // A heartbeat later, as dropUnrelayed: the leaves reach only hosts whose subscriptions are back.
    await new Promise((r) => setTimeout(r, this.intervalMs).unref());
    if (this.closed) return;
    const prefix = `${this.node}|`;
    const stale: string[] = [];
    try {
      let cursor = '0';
      do {
        const [next, flat] = await this.cmd.hscan(this.keys.members(channel), cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
        cursor = next;
        for (let i = 0; i < flat.length; i += 2) {
          const user = flat[i]!.slice(prefix.length);
          if (flat[i]!.startsWith(prefix) && !keep.has(user)) stale.push(user);
        }
      } while (cursor !== '0');
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err);
    }
    for (const user of stale) if (!keep.has(user)) await this.leave(channel, user);
  }

  /** Arguments of COUNT and SWEEP after their own: where and whether to announce the new total. */
  private announceArgs(channel: string): string[] {
    return [this.keys.pubsub(channel), this.pubCmd, this.opts.countWanted?.(channel) ? '1' : '0'];
  }

  async count(channel: string, subscribers: number, held = false, again = false): Promise<void> {
    if (this.frozen) return;
    let r: number;
    const announce = this.announceArgs(channel);
    if (again && announce[2] === '1') announce[2] = '2';
    if (subscribers > 0 || !held) this.held.delete(channel);
    try {
      if (subscribers > 0) {
        // The node's channel set first: if this node dies right after, the sweeper still finds the count.
        await this.cmd.sadd(this.keys.nodeChannels(this.node), channel);
        const [n] = await Promise.all([this.scripts.rtCount(this.keys.counts(channel), this.node, subscribers, ...announce), this.cmd.zadd(this.keys.index, Date.now(), channel)]);
        r = Number(n);
      } else {
        r = Number(await this.scripts.rtCount(this.keys.counts(channel), this.node, 0, ...announce));
        // Members in their grace keep the channel on this node's list: taken off, a sweep after this node
        // died missed their entries, and they stayed listed on every host for good.
        if (held) this.held.add(channel);
        else await this.cmd.srem(this.keys.nodeChannels(this.node), channel);
      }
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err);
    }
    if (r === 1) this.lifecycle({ t: 'occupied', ch: channel });
    else if (r === -1) this.lifecycle({ t: 'vacated', ch: channel });
  }

  /**
   * The token revocations kept in Redis (POST /api/users/:id/disconnect on any host, at any time): user →
   * seconds. Empty, with a warning, when Redis cannot answer (the shard serves meanwhile; the next
   * reconnect reads them again).
   */
  async revocations(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    try {
      const all = await this.cmd.hgetall(this.keys.revoked);
      for (const [user, at] of Object.entries(all)) if (Number.isFinite(Number(at))) out.set(user, Number(at));
    } catch (err) {
      this.stats.errors++;
      this.opts.log.warn(`could not read the token revocations from Redis: ${(err as Error).message}`);
    }
    return out;
  }

  /** After a reconnect: revocations made meanwhile, whose notice on the control channel this thread missed. */
  private async reapplyRevocations(): Promise<void> {
    for (const [user, at] of await this.revocations()) this.opts.onControl({ t: 'revoke', user, at });
  }

  // ——— heartbeat and sweeping ———

  /** A heartbeat is running: while Redis is slow they would pile up, and each would re-register every channel. */
  private beating = false;
  /** When the last heartbeat was written (epoch ms): a longer gap than the ttl means others may have taken this node for dead. */
  private lastBeatAt = Date.now();

  private async beat(): Promise<void> {
    if (this.closed || this.cmd.status !== 'ready' || this.beating) return;
    this.beating = true;
    const ttl = this.opts.presenceTtlMs;
    const started = Date.now();
    try {
      const [, added, listed] = await Promise.all([
        this.cmd.set(this.keys.node(this.node), String(Date.now()), 'PX', ttl),
        this.cmd.sadd(this.keys.nodes, this.node),
        this.cmd.exists(this.keys.nodeChannels(this.node)),
      ]);
      // The sweeper's last step is removing the node from the node set: back in it means swept, even
      // when the channel set exists again — a recovery of some channels running beside the sweep (a
      // heartbeat on a Cluster master that failed over) writes it anew, and the rest stayed removed.
      const registered = Number(added) === 0 && Number(listed) === 1;
      // Every relayed channel has a count registered in this set. Gone means a sweeper took this node
      // for dead (an outage longer than the ttl) or Redis lost its data: register everything again.
      // So does a heartbeat gap longer than the ttl (a pause, SIGSTOP): the sweeper may not have come
      // yet, but a placed actor's activation may already have made this node's subscribers leave
      // (its own sweep asks only whether the heartbeat lives). Registering again is idempotent.
      const gap = Date.now() - this.lastBeatAt;
      this.lastBeatAt = Date.now();
      // Redis slow to answer (paused, stalled on disk) or a round missed: the others' heartbeats were late too.
      if (gap > ttl || this.lastBeatAt - started > this.intervalMs) this.troubled();
      if ((!registered || gap > ttl) && this.sinks.size > 0) {
        if (!registered) this.opts.log.warn('this node was removed from Redis (outage longer than --presence-ttl, or Redis lost its data): registering its channels again');
        else this.opts.log.warn(`this node's heartbeat stopped for ${Math.round(gap / 1000)} s (longer than --presence-ttl): registering its channels again`);
        for (const { sink } of this.sinks.values()) sink.recover();
      }
      const now = Date.now();
      const names = [...this.sinks.keys()];
      // Metadata lives at least an hour per touch: refreshing it every few minutes is plenty.
      const refreshMeta = now - this.metaRefreshedAt > META_REFRESH_MS;
      if (refreshMeta) this.metaRefreshedAt = now;
      for (let i = 0; i < names.length; i += 500) {
        const chunk = names.slice(i, i + 500);
        const args: (string | number)[] = [];
        for (const ch of chunk) args.push(now, ch);
        await Promise.all([
          this.cmd.zadd(this.keys.index, ...args),
          // Keeps a quiet channel's epoch alive while anyone listens: its expiry would force a resync.
          ...(refreshMeta ? chunk.map((ch) => this.cmd.pexpire(this.keys.meta(ch), metaTtl(this.sinks.get(ch)?.bounds ?? { size: 0, ttlMs: 0 }))) : []),
        ]);
      }
      for (const [ch, m] of this.seen) {
        for (const [k, v] of m) if (v.until <= now) m.delete(k);
        if (m.size === 0) this.seen.delete(ch);
      }
      await this.sweep();
    } catch (err) {
      this.troubled();
      this.opts.log.debug(`heartbeat failed: ${(err as Error).message}`);
    } finally {
      this.beating = false;
    }
  }

  /**
   * One node per interval looks for nodes whose heartbeat expired and removes them. Within a ttl of
   * this node seeing Redis fail, an expired heartbeat may be Redis's doing: an outage, a pause or a
   * Cluster master's failover kept the other nodes from refreshing theirs, and swept as soon as Redis
   * answered again, before their next round, every member of theirs left and joined again a moment
   * later. Such a node is removed only once its heartbeat has stayed away a further ttl, several of its
   * rounds; without trouble seen here, at once. Bounded either way: trouble that never ends (a Cluster
   * node that stays down) delays a dead node's sweep by a ttl, not forever.
   */
  private async sweep(): Promise<void> {
    const lock = await this.cmd.set(this.keys.sweepLock, this.node, 'PX', this.intervalMs, 'NX');
    if (lock !== 'OK') return;
    const started = Date.now();
    const [nodes, missing] = await Promise.all([this.cmd.smembers(this.keys.nodes), this.cmd.hgetall(this.keys.missing)]);
    const alive = await Promise.all(nodes.map((n) => this.cmd.exists(this.keys.node(n))));
    // Answers slower than a round: Redis stalled while they were asked, and heartbeats with them.
    if (Date.now() - started > this.intervalMs) this.troubled();
    // Sightings of nodes alive again, or gone from the set (removed, retired).
    const stale = Object.keys(missing).filter((n) => !nodes.includes(n) || alive[nodes.indexOf(n)]);
    if (stale.length > 0) await this.cmd.hdel(this.keys.missing, ...stale);
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i]!;
      if (alive[i] || !(await this.presumedDead(node, missing[node]))) continue;
      const gone = await this.removeNode(node);
      if (missing[node]) await this.cmd.hdel(this.keys.missing, node);
      this.opts.log.info(`node ${node} stopped heartbeating: removed it from ${gone} channel(s)`);
    }
    await this.cmd.zremrangebyscore(this.keys.index, '-inf', Date.now() - this.opts.presenceTtlMs * 2);
  }

  /** This node saw Redis fail, or answer late: other nodes' heartbeats may have failed with it (see sweep). */
  private troubled(): void {
    this.troubleAt = Date.now();
  }

  /**
   * Whether a node without a heartbeat is taken for dead now: at once, unless this node saw Redis fail
   * within a ttl; then only once the node has gone without one a further ttl since it was first found
   * so (`seen`, from `<ns>:nodes:missing`; recorded here when there is none).
   */
  private async presumedDead(node: string, seen: string | undefined): Promise<boolean> {
    const now = Date.now();
    const ttl = this.opts.presenceTtlMs;
    if (now - this.troubleAt >= ttl) return true;
    if (seen !== undefined) return now - Number(seen) >= ttl;
    // HSETNX: a sighting another node recorded meanwhile stays the first.
    await this.cmd.hsetnx(this.keys.missing, node, String(now));
    await this.cmd.pexpire(this.keys.missing, ttl * 10);
    return false;
  }

  private async removeNode(node: string): Promise<number> {
    const channels = await this.cmd.smembers(this.keys.nodeChannels(node));
    for (let i = 0; i < channels.length; i += 100) {
      await Promise.all(channels.slice(i, i + 100).map((ch) => this.sweepChannel(node, ch)));
    }
    await this.cmd.del(this.keys.nodeChannels(node));
    await this.cmd.srem(this.keys.nodes, node);
    return channels.length;
  }

  /**
   * The node of the crashed shard this one replaces, once the survivors' subscriptions are registered
   * again under this node: its members and counts are removed now rather than when its heartbeat
   * (kept alive by the main thread meanwhile) would expire. Members still held here or elsewhere do
   * not leave; those that were only there leave once, cluster-wide.
   */
  async retire(node: string): Promise<number> {
    try {
      const gone = await this.removeNode(node);
      await this.cmd.del(this.keys.node(node));
      return gone;
    } catch (err) {
      this.stats.errors++;
      throw unavailable(err);
    }
  }

  /** Removes a node's members and count from one channel, announcing the leaves it causes. */
  private async sweepChannel(node: string, ch: string): Promise<void> {
    const r = (await this.scripts.rtSweep(this.keys.members(ch), this.keys.users(ch), this.keys.counts(ch), `${node}|`, node, ...this.announceArgs(ch))) as [number, number, ...string[]];
    // What this sweep ended cluster-wide (another sweeper racing it sees nothing left to end).
    for (const user of r.slice(2) as string[]) this.lifecycle({ t: 'member_removed', ch, user: String(user) });
    if (Number(r[1]) === 1) this.lifecycle({ t: 'vacated', ch });
  }

  /**
   * After a reconnect: channels this node still has entries in but no longer relays. Their last
   * subscribers left while Redis was away, so neither the leaves nor the zero count were written, and a
   * node that heartbeats is never swept: its members would stay listed and its subscribers counted.
   */
  private async dropUnrelayed(): Promise<void> {
    try {
      if (this.closed || this.cmd.status !== 'ready') return;
      for (const ch of await this.cmd.smembers(this.keys.nodeChannels(this.node))) {
        // Checked right before each write: a channel attached again meanwhile registers itself after it.
        // A held one's members are in their grace: they leave when it ends (or come back), not now.
        if (this.closed || this.sinks.has(ch) || this.held.has(ch)) continue;
        await this.sweepChannel(this.node, ch);
        if (!this.sinks.has(ch)) await this.cmd.srem(this.keys.nodeChannels(this.node), ch);
      }
    } catch (err) {
      this.opts.log.debug(`could not drop the channels this node left during the outage: ${(err as Error).message}`);
    }
  }

  /**
   * Stops; placed actors' leases are released either way. On a graceful stop (`graceful`), this node's
   * presence entries and counts are removed at once — members leave now rather than after the
   * heartbeat expires.
   */
  async close(graceful = true): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.retry);
    clearTimeout(this.dropTimer);
    // Hand placed actors over at once, on a graceful stop and on a crash alike: the next event
    // activates them elsewhere. Left to expire, a crashed shard's leases held every event of their
    // channels for --lease-ttl, longer than a client waits for its re-subscribe. Safe mid-turn: a
    // write this thread still makes fails the fence check once the lease is gone.
    await this.leases.close(this.cmd.status === 'ready').catch(() => {});
    await this.subs.close();
    if (graceful && this.cmd.status === 'ready') {
      try {
        await Promise.race([
          (async () => {
            await this.removeNode(this.node);
            await this.cmd.del(this.keys.node(this.node));
          })(),
          new Promise((r) => setTimeout(r, 2000)),
        ]);
      } catch {
        /* Redis went away: the sweeper of another node cleans up after the heartbeat expires */
      }
    }
    this.cmd.disconnect();
  }
}

/** Publication.user and .ex from a stored body's `u` and `x` (only strings are taken). */
/** A publication's body in Redis (pub/sub and stream): event, data as a value or as JSON text, exclude, user. */
interface Body {
  v: string;
  d?: unknown;
  j?: unknown;
  x?: unknown;
  u?: unknown;
}

/**
 * The publication a body carries. JSON text is checked here, once per host, as a value is by
 * unpackPlain: what the codecs splice into frames must be JSON, however it got into Redis.
 */
function publicationOf(channel: string, body: Body, offset: number): Publication {
  if (typeof body.j !== 'string') return { channel, event: body.v, data: body.d, offset };
  if (jsonNestsDeeper(body.j)) throw new Error(`data nests deeper than ${MAX_JSON_DEPTH} levels`);
  JSON.parse(body.j);
  return new EncodedPublication(channel, body.v, offset, new JsonData(body.j));
}

function withMeta(pub: Publication, u: unknown, x?: unknown): Publication {
  if (typeof u === 'string') pub.user = u;
  if (typeof x === 'string') pub.ex = x;
  return pub;
}
