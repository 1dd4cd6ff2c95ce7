/**
 * Placement of custom actors across hosts (docs/scaling.md, placement). With Redis, a channel served by
 * a custom actor (from --actors) has one activation in the whole cluster: on the node (host shard)
 * holding the channel's lease. Every host keeps relaying the channel to its own subscribers as for any
 * channel (its ChannelActor, bridged); only the user's hooks move: the definition the relay sees is a
 * proxy whose hooks forward to the activation — in this thread when this node holds the lease, through
 * Redis (NodeRpc) otherwise. The first node to see an event for a channel without a live owner takes
 * the lease (virtual-actor style); a node that cannot reach the owner waits for the lease to expire and
 * takes it over from the persisted state.
 *
 * The actor runtime does not know any of this: it gets ActorDefinitions whose hooks are async.
 */
import { createHash } from 'node:crypto';
import type { ActorDefinition, OutgoingMessage, Subscriber } from '../actors/define.js';
import { Published } from '../actors/published.js';
import type { LoadedActor } from '../actors/registry.js';
import type { ActorStats } from '../actors/channel-actor.js';
import { REJOIN, RUN_ELSEWHERE, type Rejoin } from '../actors/hook-runner.js';
import { assertEventName } from '../actors/context-rules.js';
import { RtError } from '../errors.js';
import type { PublishResult } from '../runtime/messages.js';
import { assertChannel } from '../protocol/native.js';
import { jsonNestsDeeper } from '../protocol/json-depth.js';
import { Activation, type RemoteSubscriber } from './activation.js';
import type { HistoryBounds } from './broker.js';
import { unavailable } from './directory.js';
import type { Fence } from './lease.js';
import { NodeRpc } from './node-rpc.js';
import type { RedisBroker } from './redis-broker.js';

export interface PlacementOptions {
  broker: RedisBroker;
  historyFor(channel: string, def: ActorDefinition): HistoryBounds;
  /** `fields` with an `event` make the line one of a kind --log-rate bounds. */
  log(msg: string, err?: unknown, fields?: Record<string, unknown>): void;
  /** An activation with no subscribers and no event for this long gives its lease back. */
  idleMs?: number;
  /** Operations waiting in one activation, and its compute tasks in flight (--actor-mailbox-size). */
  mailboxSize?: number;
  /** Deadline of a hook that returns a promise (--actor-hook-timeout). */
  hookTimeoutMs?: number;
}

/** Text the codecs may splice into frames: JSON, nested no deeper than a value may be. */
function isJsonText(v: unknown): v is string {
  if (typeof v !== 'string' || jsonNestsDeeper(v)) return false;
  try {
    JSON.parse(v);
    return true;
  } catch {
    return false;
  }
}

/**
 * What this node's shard does for the activations (of any node): deliver their pushes and kicks to the
 * subscribers it relays, and run their compute tasks on this host's pool.
 */
export interface LocalRelay {
  /** `js`: the data's JSON text (then `data` is unused). */
  push(channel: string, ids: string[], event: string, data: unknown, js?: string): void;
  kick(channel: string, socketId: string, reason: string): void;
  compute?(task: string, input: unknown): Promise<unknown>;
  /** The shard's actor counters: the activations' hook failures and restarts count there. */
  stats?: ActorStats;
}

/**
 * Errors after which the call is tried again at whoever holds the lease by then: each says the event ran
 * nowhere, or ran without effect (a fenced write of an owner that lost its lease). Not `timeout`: the
 * owner may still run the event (queued behind a slow turn, or a hook stuck in a loop), and sending it
 * again would run its hooks twice — or take a stuck hook to the next host too. Not `unavailable` (Redis
 * away): a write may have happened, and a channel without a custom actor fails at once too.
 */
const RETRY = new Set(['not_owner', 'moved', 'owner_gone']);
const STATE_TTL_MS = 7 * 86_400_000;
const OPS = new Set(['auth', 'join', 'leave', 'msg', 'pub']);
/** What an activation asks of the node relaying some of its subscribers (not of an activation). */
const RELAY_OPS = new Set(['push', 'kick']);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A call waiting in its channel's reroute queue, by the order calls were made. */
interface Reroute {
  seq: number;
  run(): Promise<unknown>;
  resolve(v: unknown): void;
  reject(err: unknown): void;
}

export class Placement {
  private readonly broker: RedisBroker;
  private readonly rpc: NodeRpc;
  private readonly activations = new Map<string, Activation>();
  private readonly starting = new Map<string, Promise<Activation>>();
  /** Calls made, numbered: their order in a reroute queue. */
  private calls = 0;
  /** Per channel: calls waiting to reach an owner that moved or died, oldest first (see reroute). */
  private readonly rerouting = new Map<string, Reroute[]>();
  /** The real definitions, for the activations this node runs. */
  private loaded: LoadedActor[] = [];
  /**
   * Channel → node believed to hold its lease (dropped at the first failed call, and by the sweep once
   * no subscriber here watches the channel: a cache, refilled by one lease lookup).
   */
  private readonly owners = new Map<string, string>();
  /** Per channel: how often each backend message was seen lately, for ingest claims (the sweep drops expired ones). */
  private readonly seen = new Map<string, Map<string, { n: number; until: number }>>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly watcher: NodeJS.Timeout;
  private closing = false;
  /** Channels with subscribers on this node: kept activated somewhere, so their timers fire. */
  private readonly watched = new Map<string, number>();
  /** Set by the shard once its actors exist (attach). */
  private local: LocalRelay | undefined;

  constructor(private readonly opts: PlacementOptions) {
    this.broker = opts.broker;
    this.rpc = new NodeRpc(
      opts.broker,
      (ch, op, a) => this.serve(ch, op, a),
      (why) => {
        // Counted like a malformed Laravel payload: rt_redis_invalid_messages_total.
        opts.broker.stats.invalid++;
        opts.log(why);
      },
      // One way (rpc.notify) only pushes and kicks arrive: every hook event wants its answer.
      async (ch, op, a) => {
        if (!RELAY_OPS.has(op)) throw new RtError('bad_request', `${op.slice(0, 40)} cannot come as a notice`);
        return this.relayed(ch, op, a);
      },
      (msg, err) => opts.log(msg, err),
    );
    this.sweeper = setInterval(() => void this.sweep(), 5000);
    this.sweeper.unref();
    this.watcher = setInterval(() => void this.revive(), Math.max(250, this.broker.leases.ttlMs / 2));
    this.watcher.unref();
  }

  get node(): string {
    return this.broker.node;
  }

  private get ttlMs(): number {
    return this.broker.leases.ttlMs;
  }

  /** The node holding this host's lease was told it lost it: the activation stops at once. */
  leaseLost(channel: string): void {
    const a = this.activations.get(channel);
    if (!a) return;
    a.stop();
    this.activations.delete(channel);
    this.owners.delete(channel);
    // Redis restarted empty takes every lease at once: bounded by --log-rate.
    this.opts.log(`lost the lease of ${channel}: its actor runs elsewhere now`, undefined, { event: 'actor.lease_lost', channel });
  }

  /** The shard's side: where pushes and kicks for this node's subscribers go, and the compute pool. */
  attach(local: LocalRelay): void {
    this.local = local;
  }

  /** The loaded actors with their hooks routed to the one activation of each channel. */
  place(loaded: LoadedActor[]): LoadedActor[] {
    this.loaded = loaded;
    return loaded.map((a) => ({ ...a, def: this.proxy(a.def) }));
  }

  private proxy(real: ActorDefinition): ActorDefinition {
    const who = (s: Subscriber): RemoteSubscriber => {
      // Only what is set: msgpack has no `undefined`, and the activation compares records byte-wise.
      return {
        socketId: s.socketId,
        node: this.node,
        ...(s.userId !== undefined ? { userId: s.userId } : {}),
        ...(s.userInfo !== undefined ? { userInfo: s.userInfo } : {}),
        ...(s.transport !== undefined ? { transport: s.transport } : {}),
      };
    };
    const def: ActorDefinition & { [RUN_ELSEWHERE]: true; [REJOIN]: Rejoin } = {
      [RUN_ELSEWHERE]: true,
      [REJOIN]: async (channel, s, replayed) => {
        // A replayed subscriber never went through onJoin on this (new) shard: watched from now on.
        if (replayed) this.watch(channel, 1);
        await this.call(channel, 'join', [who(s), null]);
      },
      match: real.match,
      // Subscribers are counted by the activation: it hears of every join and leave on every host.
      onJoin: async (ctx, s, data) => {
        this.watch(ctx.channel, 1);
        let r: { r?: unknown } | null;
        try {
          r = (await this.call(ctx.channel, 'join', [who(s), data ?? null])) as { r?: unknown } | null;
        } catch (err) {
          // Refused here, so the relay never reports a leave for it.
          this.watch(ctx.channel, -1);
          // Unanswered is not undone: the activation may still run the join, so a leave follows it.
          if ((err as RtError)?.code === 'timeout') void this.leave(ctx.channel, who(s));
          throw err;
        }
        return r && typeof r === 'object' && 'r' in r ? { reply: r.r } : undefined;
      },
      onLeave: async (ctx, s) => {
        this.watch(ctx.channel, -1);
        await this.leave(ctx.channel, who(s));
      },
    };
    if (real.history) def.history = real.history;
    if (real.clientPublish !== undefined) def.clientPublish = real.clientPublish;
    if (real.authorize) {
      def.authorize = async (ctx, s, data) => {
        return (await this.call(ctx.channel, 'auth', [who(s), data ?? null])) as boolean | { info?: unknown };
      };
    }
    // Messages are answered with a Published promise at once: the relay's mailbox does not wait for
    // the round trip, so a host forwards a channel's messages back to back, in order.
    if (real.onMessage) {
      def.onMessage = (ctx, msg, s, delivery) => this.forwarded(ctx.channel, this.call(ctx.channel, 'msg', [{ event: msg.event, data: msg.data }, who(s), delivery?.exclude ?? null]));
    }
    // Backend publishes go through the activation even without onPublish, so they take their place in
    // the same order as the actor's own publications.
    def.onPublish = (ctx, msg, source, delivery) => {
      const claim = source === 'redis' ? this.claim(ctx.channel, msg) : undefined;
      return this.forwarded(ctx.channel, this.call(ctx.channel, 'pub', [{ event: msg.event, data: msg.data }, source, claim ?? null, delivery?.exclude ?? null]));
    };
    return def;
  }

  /**
   * The connection is gone whatever happens here. A leave the activation never heard of leaves a
   * subscriber it counts until the sweep finds the relaying node dead (see prune).
   */
  private async leave(channel: string, s: RemoteSubscriber): Promise<void> {
    try {
      await this.call(channel, 'leave', [s]);
    } catch (err) {
      // Refused by a hook (onLeave failed, logged by the activation) or not delivered at all.
      const ran = (err as RtError)?.code === 'actor_failed' || (err as RtError)?.code === 'actor_timeout';
      if (!ran) this.opts.log(`leave of ${s.socketId} from ${channel} not delivered to its actor`, err);
    }
  }

  /**
   * The activation answers `{p: offset, r?: reply}` (it published), `{r: reply}` (it answered the sender
   * without publishing), `{dup: 1}` (another host's copy of this backend message was published) or null
   * (the actor refused).
   */
  private forwarded(channel: string, answer: Promise<unknown>): OutgoingMessage {
    const result = answer.then((v): PublishResult => {
      const a = v as { p?: unknown; r?: unknown; dup?: unknown } | null;
      if (a && typeof a === 'object' && a.dup === 1) return {};
      if (a && typeof a === 'object' && (typeof a.p === 'number' || 'r' in a)) {
        const out: PublishResult = {};
        if (typeof a.p === 'number') out.offset = a.p;
        if ('r' in a) out.data = a.r;
        return out;
      }
      throw new RtError('publish_refused', `publish to ${channel} refused by the channel actor`, 403);
    });
    return new Published(result) as unknown as OutgoingMessage;
  }

  /**
   * Every host receives a Laravel message published to Redis and forwards it: the same claim
   * (payload digest and how many times it was seen lately) lets the activation sequence it once.
   */
  private claim(channel: string, msg: OutgoingMessage): string {
    let digest: string;
    try {
      digest = createHash('sha1').update(JSON.stringify([msg.event, msg.data])).digest('base64url').slice(0, 20);
    } catch {
      digest = 'unhashable';
    }
    let m = this.seen.get(channel);
    if (!m) this.seen.set(channel, (m = new Map()));
    const now = Date.now();
    const e = m.get(digest);
    const n = e && e.until > now ? e.n + 1 : 1;
    m.set(digest, { n, until: now + 10_000 });
    if (m.size > 256) for (const [k, v] of m) if (v.until <= now) m.delete(k);
    return `${digest}:${n}`;
  }

  /**
   * Runs one event at the channel's activation, wherever it is. Retries (at the new owner) while the
   * owner moves or dies, for up to two lease times plus a margin — the time a dead owner's lease takes
   * to expire. Calls are sent back to back; once one has to be retried, the channel's calls go through
   * its reroute queue, one at a time in the order they were made, until the queue is empty (see Reroute).
   */
  private async call(channel: string, op: string, args: unknown[]): Promise<unknown> {
    const seq = ++this.calls;
    const deadline = Date.now() + 2 * this.ttlMs + 5000;
    if (!this.rerouting.has(channel)) {
      try {
        return await this.attempt(channel, op, args);
      } catch (err) {
        this.mayRetry(channel, err, deadline);
      }
    }
    return this.reroute(channel, seq, () => this.retrying(channel, op, args, deadline));
  }

  private async attempt(channel: string, op: string, args: unknown[]): Promise<unknown> {
    const owner = await this.ownerOf(channel);
    if (owner === this.node) return await this.serve(channel, op, args);
    return await this.rpc.request(owner, channel, op, args, Math.max(1000, this.ttlMs));
  }

  /** After a failed attempt: the owner is looked up afresh, and what a retry cannot mend is thrown. */
  private mayRetry(channel: string, err: unknown, deadline: number): void {
    this.owners.delete(channel);
    if (!RETRY.has((err as RtError)?.code) || Date.now() > deadline || this.closing) throw err;
  }

  /** The attempts of one call in the reroute queue: until answered, refused, or past its deadline. */
  private async retrying(channel: string, op: string, args: unknown[], deadline: number): Promise<unknown> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.attempt(channel, op, args);
      } catch (err) {
        this.mayRetry(channel, err, deadline);
        await sleep(Math.min(25 * 2 ** attempt, Math.max(100, this.ttlMs / 4)));
      }
    }
  }

  /**
   * While the owner moves or dies, every call of the channel would retry on its own backoff, and the
   * one that happened to retry first once the lease was free ran first: a client's moves sent in a row
   * reached the new owner in reverse. Queued by the order the calls were made instead (a call that
   * failed late still goes before those made after it), each one answered before the next is sent.
   */
  private reroute(channel: string, seq: number, run: () => Promise<unknown>): Promise<unknown> {
    let q = this.rerouting.get(channel);
    if (!q) this.rerouting.set(channel, (q = []));
    const queue = q;
    return new Promise((resolve, reject) => {
      // The head is running: a call made before it but failing after it goes next.
      let at = queue.length;
      while (at > 1 && queue[at - 1]!.seq > seq) at--;
      queue.splice(at, 0, { seq, run, resolve, reject });
      if (queue.length === 1) void this.drain(channel, queue);
    });
  }

  private async drain(channel: string, q: Reroute[]): Promise<void> {
    while (q.length > 0) {
      const e = q[0]!;
      try {
        e.resolve(await e.run());
      } catch (err) {
        e.reject(err);
      }
      q.shift();
    }
    this.rerouting.delete(channel);
  }

  /** The node holding the channel's lease, taking it when nobody does. */
  private async ownerOf(channel: string): Promise<string> {
    if (this.broker.leases.fence(channel)) return this.node;
    const known = this.owners.get(channel);
    if (known) return known;
    if (this.closing) throw new RtError('unavailable', 'shutting down', 503);
    let r;
    try {
      r = await this.broker.leases.acquire(channel);
    } catch (err) {
      this.broker.stats.errors++;
      throw unavailable(err);
    }
    if (r.held) return this.node;
    this.owners.set(channel, r.holder);
    return r.holder;
  }

  /** An event for a channel this node should run: refused (`not_owner`) unless it holds the lease. */
  private async serve(channel: string, op: string, args: unknown[]): Promise<unknown> {
    // Pushes and kicks come as notices (rpc.notify); as a request they are answered all the same.
    if (RELAY_OPS.has(op)) return this.relayed(channel, op, args);
    // Checked before anything is activated: a bad request must not take a lease.
    if (!OPS.has(op)) throw new RtError('bad_request', `unknown placed-actor operation ${String(op).slice(0, 40)}`);
    assertChannel(channel);
    if (!this.loaded.some((x) => x.matches(channel))) throw new RtError('not_found', `no actor serves ${channel} on this host`, 404);
    const a = await this.activation(channel);
    return a.run(op, args);
  }

  /**
   * A push or kick from an activation (here or on another node) for subscribers this node relays:
   * handed to the channel's actor on this shard, which delivers it as it would its own.
   */
  private relayed(channel: string, op: string, args: unknown[]): null {
    assertChannel(channel);
    if (!this.loaded.some((x) => x.matches(channel))) throw new RtError('not_found', `no actor serves ${channel} on this host`, 404);
    if (!this.local) throw new RtError('unavailable', 'this node is not serving yet', 503);
    if (op === 'push') {
      const [ids, event, data, js] = args as [unknown, unknown, unknown, unknown];
      if (!Array.isArray(ids) || ids.length === 0 || !ids.every((x) => typeof x === 'string')) throw new RtError('bad_request', 'push: malformed');
      assertEventName(event);
      if (js !== undefined && !isJsonText(js)) throw new RtError('bad_request', 'push: malformed');
      this.local.push(channel, ids as string[], event, data ?? null, js as string | undefined);
    } else {
      const [id, reason] = args as [unknown, unknown];
      if (typeof id !== 'string' || typeof reason !== 'string') throw new RtError('bad_request', 'kick: malformed');
      this.local.kick(channel, id, reason.slice(0, 200));
    }
    return null;
  }

  /** Sends an activation's push or kick to the node relaying the subscriber: in this thread when it is this node. */
  private relay(channel: string, node: string, op: 'push' | 'kick', args: unknown[]): void {
    if (node === this.node) {
      try {
        this.relayed(channel, op, args);
      } catch (err) {
        this.opts.log(`${op} in ${channel} not delivered`, err);
      }
      return;
    }
    // One way: a node that is gone took its connections with it; Redis away loses the push (logged).
    this.rpc.notify(node, channel, op, args).catch((err) => this.opts.log(`${op} in ${channel} not delivered to node ${node}`, err));
  }

  private async activation(channel: string): Promise<Activation> {
    if (this.closing) throw new RtError('not_owner', 'this host is shutting down', 503);
    const fence = this.broker.leases.fence(channel);
    const live = this.activations.get(channel);
    if (live && fence && !live.stopped && live.epoch === fence.epoch) return live;
    if (live) this.leaseLost(channel);
    const pending = this.starting.get(channel);
    if (pending) return pending;
    const p = this.activate(channel, fence).finally(() => this.starting.delete(channel));
    this.starting.set(channel, p);
    return p;
  }

  private async activate(channel: string, known: Fence | undefined): Promise<Activation> {
    let fence = known;
    if (!fence) {
      let r;
      try {
        r = await this.broker.leases.acquire(channel);
      } catch (err) {
        this.broker.stats.errors++;
        throw unavailable(err);
      }
      if (!r.held) {
        this.owners.set(channel, r.holder);
        throw new RtError('not_owner', `the actor of ${channel} runs on ${r.holder}`, 503);
      }
      fence = this.broker.leases.fence(channel);
      if (!fence) throw new RtError('moved', `lease of ${channel} lost while activating`, 503);
    }
    const actor = this.loaded.find((x) => x.matches(channel));
    if (!actor) throw new RtError('not_found', `no actor serves ${channel} on this host`, 404);
    const a = await Activation.start(channel, actor.def, {
      broker: this.broker,
      bounds: this.opts.historyFor(channel, actor.def),
      stateTtlMs: STATE_TTL_MS,
      relay: (node, op, args) => this.relay(channel, node, op, args),
      compute: this.local?.compute ? (task, input) => this.local!.compute!(task, input) : undefined,
      mailboxSize: this.opts.mailboxSize,
      hookTimeoutMs: this.opts.hookTimeoutMs,
      file: actor.file,
      stats: this.local?.stats,
      log: this.opts.log,
    }, fence);
    this.activations.set(channel, a);
    return a;
  }

  /** Where a channel's activation runs, when this node runs it. */
  owned(channel: string): { epoch: number } | undefined {
    const a = this.activations.get(channel);
    return a && !a.stopped ? { epoch: a.epoch } : undefined;
  }

  private watch(channel: string, delta: number): void {
    const n = (this.watched.get(channel) ?? 0) + delta;
    if (n > 0) this.watched.set(channel, n);
    else this.watched.delete(channel);
  }

  /**
   * A channel whose owner died has no activation until an event arrives — and a timer (an auction's
   * close) is not an event anyone sends. So a node with subscribers takes such a channel over as soon as
   * its lease is free, and the activation re-arms the persisted timers. A channel nobody subscribes to
   * (its timers set by backend publishes) is found in the index of pending timers, scanned by every node:
   * the one whose lease acquire wins activates it, once its earliest timer is due within a lease time.
   */
  private async revive(): Promise<void> {
    if (this.closing || !this.broker.up) return;
    for (const ch of this.watched.keys()) {
      if (this.broker.leases.fence(ch)) continue;
      try {
        if (await this.broker.leases.owner(ch)) continue;
        await this.activation(ch);
      } catch {
        /* another node took it first, or Redis is away: next round */
      }
    }
    let due: [string, number][];
    try {
      due = await this.broker.leases.dueTimers(Date.now() + this.ttlMs, 1000);
    } catch {
      return; // Redis is away: next round.
    }
    for (const [ch, score] of due) {
      if (this.closing) return;
      if (this.broker.leases.fence(ch) || !this.loaded.some((x) => x.matches(ch))) continue;
      try {
        if (await this.broker.leases.owner(ch)) continue;
        const a = await this.activation(ch);
        // Its saved record has no timers (a removal that did not happen): the entry goes.
        if (!a.hasTimers) await this.broker.leases.unindexTimers(ch, score);
      } catch {
        /* another node took it first, or Redis is away: next round */
      }
    }
  }

  /**
   * Subscribers relayed by a node that stopped heartbeating (its host died, or its shard was replaced)
   * leave the activations here, as one turn each (onLeave runs): their connections died with it.
   */
  private async prune(): Promise<void> {
    const alive = new Map<string, Promise<boolean>>();
    for (const a of this.activations.values()) {
      for (const node of a.relayNodes()) {
        if (node === this.node || a.stopped) continue;
        let p = alive.get(node);
        // Redis away: nobody is taken for dead.
        if (!p) alive.set(node, (p = this.broker.nodeAlive(node).catch(() => true)));
        if (await p) continue;
        for (const s of a.relayedBy(node)) a.run('leave', [s]).catch(() => {/* a failing onLeave is logged by the activation */});
      }
    }
  }

  /** Channels this node keeps bookkeeping for (lease owners it learned, recent ingest claims): rt_redis_tracked_channels. */
  get trackedChannels(): number {
    return this.owners.size + this.seen.size;
  }

  /**
   * What a channel leaves behind once nobody here uses it: without this, every channel a node ever
   * forwarded to another host, or ingested a Laravel broadcast for, kept an entry for the life of the
   * process (channels created once, e.g. one per order or per chat, grew the heap without end).
   */
  private forgetUnused(now: number): void {
    for (const [ch, m] of this.seen) {
      for (const [k, v] of m) if (v.until <= now) m.delete(k);
      if (m.size === 0) this.seen.delete(ch);
    }
    for (const ch of this.owners.keys()) if (!this.watched.has(ch)) this.owners.delete(ch);
  }

  /** Dead nodes' subscribers leave; activations with no subscribers and nothing to do give their lease back. */
  private async sweep(): Promise<void> {
    await this.prune().catch((err) => this.opts.log('pruning the subscribers of dead nodes failed', err));
    const now = Date.now();
    this.forgetUnused(now);
    // Entries nobody activated for longer than saved state lives (channels of an actor no host serves any
    // more): their state is gone, and they would fill the head of every scan.
    await this.broker.leases.dropTimersBefore(now - STATE_TTL_MS).catch(() => {/* Redis away: next sweep */});
    const idleMs = this.opts.idleMs ?? 60_000;
    for (const [ch, a] of this.activations) {
      if (a.subscriberCount > 0 || a.hasTimers || !a.idle || now - a.lastActivity < idleMs) continue;
      a.stop();
      this.activations.delete(ch);
      await this.broker.leases.release(ch).catch(() => {});
    }
  }

  /**
   * SIGTERM: stop taking events (callers retry elsewhere), let running turns finish, then release every
   * lease so the next event activates the actor on another host at once, from the state just saved.
   * A crashing shard (`drain` false) has no time to let turns finish, but must stop taking events all
   * the same: its own clients' leaves, sent as it tears down, took back the leases it had just released,
   * and it died holding them, so their channels waited out --lease-ttl.
   */
  async close(drain = true, drainMs = 2000): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    clearInterval(this.watcher);
    if (drain) await Promise.all([...this.activations.values()].map((a) => a.drain(drainMs)));
    for (const a of this.activations.values()) a.stop();
    await this.broker.leases.releaseAll().catch(() => {});
    this.activations.clear();
    this.rpc.close();
  }
}
