/**
 * One channel's actor, on the shard that owns the channel: its subscribers (by thread), presence,
 * history and custom logic. Each operation runs through the mailbox, so the channel sees one message
 * at a time and every subscriber sees the same order. Custom hooks run through a HookRunner: a deadline,
 * failures logged once and counted, and a restart with fresh state when they keep failing.
 */
import { randomBytes } from 'node:crypto';
import { channelAllowed } from '../auth/jwt.js';
import { channelKind, type ChannelKind } from '../auth/channels.js';
import { RtError } from '../errors.js';
import type { Member, Publication, StreamPosition } from '../protocol/native.js';
import { payloadOf, EncodedMessage, EncodedPublication, JsonData } from '../protocol/encoded-payload.js';
import type { ConnRef, HistoryAnswer, PublishResult, PublishSource, SubscribeResult } from '../runtime/messages.js';
import { threadOfSocket } from '../runtime/hash.js';
import type { Broker, BrokerMessage, ChannelSink, HistoryBounds } from '../bridge/broker.js';
import type { ActorContext, AnyActorDefinition, JoinResult, OutgoingMessage, StopReason, Subscriber } from './define.js';
import { assertEventName, checkCompute, clientEventUser, deliveryOf, hookFailure, kickReason, runCompute, sendableJson } from './context-rules.js';
import { systemClock, type Clock } from './clock.js';
import { History } from './history.js';
import { deliberate, HookRunner, REJOIN, RUN_ELSEWHERE, type Hook, type Rejoin } from './hook-runner.js';
import { isThenable, Mailbox } from './mailbox.js';
import { TimerSet } from './timers.js';
import { TurnContext } from './turn-context.js';
import { threadLogger } from '../log.js';
import { Published } from './published.js';
import { ReplayGhosts } from './replay-ghosts.js';
import { CountThrottle } from './count-throttle.js';

/** Counters of custom actors on one shard, for /metrics. */
export interface ActorStats {
  /** Hooks that threw (other than an ActorError refusal), rejected or missed their deadline. */
  failures: number;
  /** Actors restarted with fresh state after repeated failures. */
  restarts: number;
  /** Compute tasks finished (ctx.compute). */
  computed: number;
}

export function newActorStats(): ActorStats {
  return { failures: 0, restarts: 0, computed: 0 };
}

/** Defaults of the knobs in ActorEnv (documented in docs/actors.md and the config schema). */
export const ACTOR_DEFAULTS = { hookTimeoutMs: 5000, mailboxSize: 1000, maxFailures: 3 } as const;

/** How long after a failed subscriber count write it is tried again (see recountLater). */
const RECOUNT_RETRY_MS = 1000;

/** What an actor needs from its shard: sending to threads and the policy knobs. */
export interface ActorEnv {
  threads: number;
  clientPublish: 'none' | 'private' | 'all';
  historySize: number;
  historyTtlMs: number;
  /** Members a presence channel may hold (--max-presence-members). */
  maxPresenceMembers?: number;
  /** `at`: when the publish entered the server, carried to the delivering threads for latency metrics. */
  deliver(thread: number, pub: Publication, exclude?: string, at?: number): void;
  /** deliver() to several threads at once, where the shard can encode the frame once for all of them. */
  deliverMany?(threads: readonly number[], pub: Publication, exclude?: string, at?: number): void;
  /** Throws (`overloaded`) when new deliveries to `thread` must be refused: checked before a publish is accepted. */
  admit?(thread: number): void;
  presence(thread: number, kind: 'join!' | 'leave!', channel: string, member: Member, exclude?: string): void;
  /** A private message to some subscribers (socket ids) of `channel` on `thread`: no offset, no history. `js`: data's JSON text, when known. */
  push?(thread: number, channel: string, to: string[], event: string, data: unknown, js?: string): void;
  /** Removes a subscriber of `channel` on `thread` from the channel, telling its client why. */
  kick?(thread: number, channel: string, socketId: string, reason: string): void;
  /** Runs a compute task (`ctx.compute`) off the shard; absent where there is no pool. */
  compute?(task: string, input: unknown): Promise<unknown>;
  /** History bounds of a channel (per-pattern settings); defaults to historySize / historyTtlMs. */
  historyFor?(channel: string, def: AnyActorDefinition): HistoryBounds;
  /**
   * Redis bridge (src/bridge): the broker owns the channel's sequence, history and presence; the actor
   * relays what the channel's subscription brings. Absent in the embedded default.
   */
  broker?: Broker;
  /** Sees every publication the actor makes, subscribers or not (the test kit's `publications`). */
  published?(pub: Publication): void;
  /** Tells a thread's subscribers of a channel that they missed publications and must resync. */
  resync?(thread: number, channel: string): void;
  /**
   * Whether the channel's subscribers are told its subscriber count when it changes (Pusher's
   * subscription_count events, an app option). Absent, or false: the count is never announced.
   */
  countWanted?(channel: string): boolean;
  /** The channel's subscriber count (cluster-wide with a broker), for the subscribers on `thread`. */
  count?(thread: number, channel: string, n: number): void;
  /** `fields` with an `event` make the line one of a kind --log-rate bounds (one per channel can come by the thousand). */
  log?(msg: string, err?: unknown, fields?: Record<string, unknown>): void;
  /**
   * Channel lifecycle for observers such as Pusher webhooks, without a broker (one host). With a
   * broker the actor does not call it: the broker reports the cluster-wide transitions its Redis
   * writes decide (RedisBrokerOptions.onLifecycle).
   */
  observe?(e: ChannelLifecycle): void;
  /** Time source of timers, deadlines and ctx.now() (a manual one in rt-actors/testing). */
  clock?: Clock;
  /** Deadline of a hook that returns a promise (--actor-hook-timeout). */
  hookTimeoutMs?: number;
  /** Operations that may wait in one actor's mailbox (--actor-mailbox-size). */
  mailboxSize?: number;
  /** Consecutive hook failures after which the actor restarts with fresh state. */
  maxFailures?: number;
  stats?: ActorStats;
}

export type ChannelLifecycle = { t: 'occupied' | 'vacated'; ch: string } | { t: 'member_added' | 'member_removed'; ch: string; user: string };

/** `leaving`: the member's last connection dropped and it may come back (see removeSub's `graceMs`). */
interface MemberEntry { info: unknown; conns: number; leaving?: ReturnType<typeof setTimeout>; leavesAt?: number }

/**
 * A publish whose offset the broker assigns later. Returned through the mailbox as a plain object so
 * the mailbox does not wait for Redis: publishes leave in mailbox order on one connection, and Redis
 * sequences them in that order.
 */
class Pending {
  constructor(readonly done: Promise<PublishResult>) {}
}

function settle(v: PublishResult | Pending): PublishResult | Promise<PublishResult> {
  return v instanceof Pending ? v.done : v;
}

function withReply(v: PublishResult | Pending, reply: unknown): PublishResult | Pending {
  if (v instanceof Pending) return new Pending(v.done.then((r) => ({ ...r, data: reply })));
  return { ...v, data: reply };
}

function subscriberOf(c: ConnRef): Subscriber {
  return { socketId: c.id, userId: c.user, userInfo: c.info, transport: c.transport };
}

export class ChannelActor {
  readonly name: string;
  readonly kind: ChannelKind;
  epoch = randomBytes(6).toString('base64url');
  offset = 0;
  /** The offset so far is only what replayed subscribers reported (after this shard replaced a dead one). */
  private fromReplay = false;
  private readonly history: History;
  private readonly subs = new Map<string, ConnRef>();
  private readonly perThread: number[];
  private readonly members = new Map<string, MemberEntry>();
  /** Members in their grace (MemberEntry.leaving): the actor is not idle while one may still leave. */
  private lingering = 0;
  private readonly mailbox: Mailbox;
  private readonly ctx: ActorContext<unknown>;
  private readonly clock: Clock;
  private readonly timers: TimerSet;
  private readonly stats: ActorStats;
  lastActivity = Date.now();
  private readonly bounds: HistoryBounds;
  /** Redis mode: this host is subscribed to the channel in Redis (it has local subscribers). */
  private bridged = false;
  /** Redis mode: writes of this channel's presence and counts, kept in issue order. */
  private chain: Promise<unknown> = Promise.resolve();
  private recountTimer?: ReturnType<typeof setTimeout>;
  /**
   * Redis mode: members whose presence leave Redis refused. Left again by recount, before its count:
   * nothing else would (a node that heartbeats is never swept), and they stayed listed on every host.
   */
  private readonly unleft = new Set<string>();
  /** Redis mode: per thread, the offset up to which a replay after a shard restart was caught up. */
  private readonly caught = new Map<number, number>();
  /** The connection whose onJoin is running: it may be pushed to before it is registered. */
  private joining?: ConnRef;
  /** Deadlines, failure counting and restarts of the custom hooks. */
  private readonly runner: HookRunner;
  /** Compute tasks in flight. */
  private computing = 0;
  private stopped = false;
  /** Announces the subscriber count, when the channel's subscribers asked for it (env.countWanted). */
  private readonly counter?: CountThrottle;
  /** Members lost with a replaced owner's thread (see reconcileReplay). */
  private readonly ghosts = new ReplayGhosts();
  /**
   * With the bridge, a presence channel's members as this host's threads were told them: the first
   * subscriber's list from Redis, then every join and leave relayed. Pub/sub keeps nothing for a
   * subscription that is down (a dropped connection, a Cluster failover): what Redis announced
   * meanwhile is found by comparing this with Redis once it is back (announceMissed).
   */
  private told?: Map<string, Member>;

  constructor(name: string, private readonly def: AnyActorDefinition, private readonly env: ActorEnv, readonly file = 'built-in') {
    this.name = name;
    this.kind = channelKind(name);
    this.bounds = env.historyFor ? env.historyFor(name, def) : { size: def.history?.size ?? env.historySize, ttlMs: (def.history?.ttlSeconds ?? env.historyTtlMs / 1000) * 1000 };
    this.history = new History(this.bounds.size, this.bounds.ttlMs);
    this.perThread = new Array(env.threads).fill(0);
    this.mailbox = new Mailbox(env.mailboxSize ?? ACTOR_DEFAULTS.mailboxSize);
    this.clock = env.clock ?? systemClock;
    this.stats = env.stats ?? newActorStats();
    this.runner = new HookRunner({
      clock: this.clock,
      hookTimeoutMs: env.hookTimeoutMs ?? ACTOR_DEFAULTS.hookTimeoutMs,
      maxFailures: env.maxFailures ?? ACTOR_DEFAULTS.maxFailures,
      file,
      log: (msg, err) => this.log(msg, err),
      counted: () => this.stats.failures++,
      restart: () => this.restart(),
    });
    if (env.count && env.countWanted?.(name)) this.counter = new CountThrottle(this.clock, (n) => this.countToThreads(n));
    this.timers = new TimerSet(this.clock, (timer, data, done) => {
      this.background('onTimer', (ctx) => (this.def.onTimer ? this.def.onTimer(ctx, timer, data) : undefined), done);
    });
    const self = this;
    this.ctx = {
      channel: name,
      state: this.initialState(),
      now: () => self.clock.now(),
      broadcast: (event, data) => {
        assertEventName(event);
        const text = sendableJson(data, `broadcast ${event}'s data`);
        if (self.stopped) return 0;
        const r = self.emit(new EncodedMessage(event, new JsonData(text)));
        if (!(r instanceof Pending)) return r.offset!;
        // With a broker the offset is assigned by Redis later; a failure is logged, not thrown at the hook.
        r.done.catch((err) => self.log(`broadcast from actor hook failed`, err));
        return 0;
      },
      // The JSON text the data was checked as is what is sent: the value as it was when pushed (the hook
      // may change it afterwards), written as JSON writes it (as broadcast's), on every thread alike.
      push: (socketId, event, data) => {
        assertEventName(event);
        const text = sendableJson(data, `push ${event}'s data`);
        return self.pushTo([socketId], event, data, text) === 1;
      },
      pushUser: (userId, event, data) => {
        assertEventName(event);
        const text = sendableJson(data, `push ${event}'s data`);
        const ids: string[] = [];
        for (const c of self.subs.values()) if (c.user === userId) ids.push(c.id);
        // Inside onJoin the joiner is not a subscriber yet, but push() reaches it: so does pushUser().
        if (self.joining?.user === userId && !self.subs.has(self.joining.id)) ids.push(self.joining.id);
        return self.pushTo(ids, event, data, text);
      },
      kick: (socketId, reason) => self.kick(socketId, kickReason(reason)),
      timers: this.timers,
      compute: (task, input, tag) => self.compute(task, input, tag),
      members: () => self.memberList(),
      subscribers: () => [...self.subs.values()].map(subscriberOf),
      subscriberCount: () => self.subs.size,
    };
  }

  private initialState(): unknown {
    if (!this.def.init) return undefined;
    try {
      return this.def.init(this.name);
    } catch (err) {
      this.stats.failures++;
      this.log(`init failed (actor ${this.file})`, err);
      throw new RtError('actor_failed', `the channel actor of ${this.name} failed to start; see the server log`, 500);
    }
  }

  /** Whether a hook of this actor sees published messages (onPublish, onMessage). */
  get readsMessages(): boolean {
    return this.def.onPublish !== undefined || this.def.onMessage !== undefined;
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  /** The stream has started here: an offset assigned by this actor, not only reported by replayed subscribers. */
  get published(): boolean {
    return this.offset > 0 && !this.fromReplay;
  }

  /** The actor's state (ctx.state), for rt-actors/testing and diagnostics. */
  get state(): unknown {
    return this.ctx.state;
  }

  /** Something is running or waiting in the mailbox, or a compute task is out (rt-actors/testing settles on it). */
  get busy(): boolean {
    return !this.mailbox.idle || this.computing > 0;
  }

  get memberCount(): number {
    return this.members.size;
  }

  memberList(): Member[] {
    const out: Member[] = [];
    for (const [user_id, e] of this.members) out.push(e.info === undefined ? { user_id } : { user_id, user_info: e.info });
    return out;
  }

  /** Whether a subscriber is one of the channel's members: on presence channels, everyone but observers. */
  private isMember(conn: ConnRef): boolean {
    return this.kind === 'presence' && conn.observer !== true;
  }

  /** No subscribers, nothing queued, no timer or task pending and no history worth keeping: the host may drop it. */
  idle(now: number): boolean {
    return this.subs.size === 0 && this.lingering === 0 && !this.bridged && !this.recountTimer && this.unleft.size === 0 && this.mailbox.idle && this.timers.size === 0 && this.computing === 0 && this.history.expired(now) && now - this.lastActivity > 1000;
  }

  private log(msg: string, err?: unknown, fields?: Record<string, unknown>): void {
    if (this.env.log) this.env.log(`channel ${this.name}: ${msg}`, err, fields);
    else if (err === undefined) threadLogger().error(`channel ${this.name}: ${msg}`, { event: 'actor.error', channel: this.name });
    else threadLogger().error(`channel ${this.name}: ${msg}`, err, { event: 'actor.error', channel: this.name });
  }

  // ——— hooks: deadlines and failures (hook-runner.ts) ———

  /** Runs a hook with a ctx of its own, cut off if the hook outlives its deadline (turn-context.ts). */
  private invoke<T>(hook: Hook, fn: (ctx: ActorContext<unknown>) => T | Promise<T>): T | Promise<T> {
    if (RUN_ELSEWHERE in this.def) return fn(this.ctx);
    const turn = new TurnContext(this.ctx, (msg) => this.log(`${msg} (actor ${this.file})`));
    return this.runner.invoke(hook, () => fn(turn as unknown as ActorContext<unknown>), () => turn.end(hook));
  }

  /** Hooks keep failing: the state may be what is broken. Subscribers stay; timers and state start over. */
  private restart(): void {
    if (this.stopped) return;
    this.stats.restarts++;
    this.timers.clear();
    this.runner.freshState(this.def, this.ctx);
  }

  /** Runs a hook through the mailbox with nobody waiting for its answer (timers, results, kicks). */
  private background(hook: Hook, fn: (ctx: ActorContext<unknown>) => unknown, done?: () => void): void {
    const quiet = (err: unknown) => {
      // Failures were logged by invoke; a deliberate refusal has nobody to go to: say so once.
      if (deliberate(err) && !(err instanceof RtError && err.code === 'actor_failed')) this.log(`${hook} refused: ${(err as Error).message}`);
    };
    try {
      const r = this.mailbox.run(() => (this.stopped ? undefined : this.invoke(hook, fn)), false);
      if (isThenable(r)) r.then(done, (err) => (done?.(), quiet(err)));
      else done?.();
    } catch (err) {
      done?.();
      quiet(err);
    }
  }

  /** Stops the actor for good: timers cleared, then onStop (with its deadline). Never throws. */
  async stop(reason: StopReason = 'idle'): Promise<void> {
    if (this.stopped) return;
    // Members still in their grace leave now: nothing would announce it once the actor is gone. Unless
    // the host is shutting down with a broker that can keep them: then Redis holds them for the rest
    // of their grace, so one recovered on another host (a rolling restart) is not seen leaving.
    const broker = this.env.broker;
    const handed: Promise<void>[] = [];
    for (const [user, e] of this.members) {
      if (!e.leaving) continue;
      const ms = (e.leavesAt ?? 0) - Date.now();
      if (reason !== 'shutdown' || !broker?.holdMember || ms <= 0 || e.conns > 0) {
        this.memberGone(user);
        continue;
      }
      this.endGrace(e);
      this.members.delete(user);
      const hold = broker.holdMember.bind(broker);
      handed.push(this.op(() => hold(this.name, user, e.info, ms)).catch((err) => this.log(`presence of ${user} not handed over`, err)));
    }
    // Leaves and a count still to be written get their last try: once stopped, nothing here would write them.
    if (this.recountTimer) {
      clearTimeout(this.recountTimer);
      this.recountTimer = undefined;
      handed.push(this.rewrite().then((ok) => (ok ? undefined : this.log('subscriber count or presence leaves not recorded'))));
    }
    await Promise.all(handed);
    this.stopped = true;
    this.timers.clear(true);
    this.counter?.stop();
    if (!this.def.onStop) return;
    try {
      await this.invoke('onStop', (ctx) => this.def.onStop!(ctx, reason));
    } catch {
      /* logged by invoke */
    }
  }

  // ——— private pushes, kicks, compute ———

  /**
   * Sends a private message to those of `ids` that are subscribed (or joining), one frame per thread;
   * returns how many. Also what a placed actor's activation asks of the host relaying its subscribers.
   */
  private pushTo(ids: Iterable<string>, event: string, data: unknown, js?: string): number {
    if (this.stopped || !this.env.push) return 0;
    const byThread = new Map<number, string[]>();
    for (const id of ids) {
      if (!this.subs.has(id) && this.joining?.id !== id) continue;
      const t = threadOfSocket(id);
      const list = byThread.get(t);
      if (list) list.push(id);
      else byThread.set(t, [id]);
    }
    let n = 0;
    for (const [t, list] of byThread) {
      this.env.push(t, this.name, list, event, data, js);
      n += list.length;
    }
    return n;
  }

  private kick(socketId: string, reason: string): boolean {
    const conn = this.subs.get(socketId);
    if (!conn || this.stopped) return false;
    // The kick first: its thread then drops the connection from the channel before the presence
    // leave this causes arrives there, so the kicked client is not told of its own leave (it was
    // when another subscriber of the channel shared its thread, and was not otherwise).
    this.env.kick?.(threadOfSocket(socketId), this.name, socketId, reason);
    this.removeSub(conn);
    // onLeave runs after the hook that kicked, like any later message.
    if (this.def.onLeave) this.background('onLeave', (ctx) => this.def.onLeave!(ctx, subscriberOf(conn)));
    return true;
  }

  /**
   * A push or kick decided by a placed actor's activation on another node (src/bridge/placement.ts),
   * for subscribers this host relays: through the mailbox, after what this host relayed before it.
   */
  relayPush(ids: string[], event: string, data: unknown, js?: string): void {
    this.relayed('push', () => void this.pushTo(ids, event, data, js));
  }

  relayKick(socketId: string, reason: string): void {
    this.relayed('kick', () => void this.kick(socketId, reason));
  }

  private relayed(what: string, task: () => void): void {
    // Unbounded: the activation already decided; refusing here would lose it.
    const r = this.mailbox.run(task, false);
    if (isThenable(r)) r.catch((err) => this.log(`relayed ${what} failed`, err));
  }

  private compute(task: string, input: unknown, tag: string | undefined): void {
    checkCompute(this.env.compute, this.name, this.computing, this.mailbox.limit, task);
    if (this.stopped) return;
    this.computing++;
    void runCompute(this.env.compute, task, input, tag).then((res) => {
      this.computing--;
      this.stats.computed++;
      if (this.def.onComputed) this.background('onComputed', (ctx) => this.def.onComputed!(ctx, res));
    });
  }

  // ——— subscribe ———

  subscribe(conn: ConnRef, since?: StreamPosition, data?: unknown, replay?: boolean): SubscribeResult | Promise<SubscribeResult> {
    return this.mailbox.run(() => this.doSubscribe(conn, since, data, replay), !replay);
  }

  private doSubscribe(conn: ConnRef, since?: StreamPosition, data?: unknown, replay?: boolean): SubscribeResult | Promise<SubscribeResult> {
    this.lastActivity = Date.now();
    if (!this.env.broker && replay && since && this.history.length === 0 && (this.offset === 0 || (this.fromReplay && since.epoch === this.epoch))) {
      // The previous owner of this channel died; its subscribers tell us where the stream was, so
      // offsets stay monotonic for clients that never noticed. Threads may have seen different last
      // offsets: the stream goes on after the highest (publishes wait for every replay: ActorHost).
      this.epoch = since.epoch;
      this.offset = Math.max(this.offset, since.offset);
      this.fromReplay = true;
    }
    const who = subscriberOf(conn);
    if (this.def.authorize) {
      const verdict = this.invoke('authorize', (ctx) => this.def.authorize!(ctx, who, data));
      if (isThenable(verdict)) return verdict.then((v) => this.admit(conn, v, since, replay, data));
      return this.admit(conn, verdict, since, replay, data);
    }
    const refused = this.grantRefusal(conn);
    if (refused) throw refused;
    return this.admit(conn, true, since, replay, data);
  }

  /**
   * Why a channel without `authorize` does not admit `conn`: a private or presence channel its token's
   * `channels` claim does not grant, unless the subscription was vouched for on its own (`granted`).
   */
  private grantRefusal(conn: ConnRef): RtError | undefined {
    if (this.kind === 'public' || conn.granted === this.name) return undefined;
    if (!conn.user) return new RtError('unauthorized', `channel ${this.name} needs authorization: connect with a token`, 401);
    if (!channelAllowed(conn.grants, this.name)) return new RtError('forbidden', `token for user ${conn.user} does not grant channel ${this.name}`, 403);
    return undefined;
  }

  /** Runs onJoin for a new subscriber before it is registered: a refusal or failure leaves nothing behind. */
  private join(conn: ConnRef, data: unknown): JoinResult | void | Promise<JoinResult | void> {
    this.joining = conn;
    let r: JoinResult | void | Promise<JoinResult | void>;
    try {
      r = this.invoke('onJoin', (ctx) => this.def.onJoin!(ctx, subscriberOf(conn), data));
    } catch (err) {
      this.joining = undefined;
      throw err;
    }
    if (!isThenable(r)) {
      this.joining = undefined;
      return r;
    }
    return r.finally(() => (this.joining = undefined));
  }

  private admit(conn: ConnRef, verdict: boolean | { info?: unknown }, since: StreamPosition | undefined, replay: boolean | undefined, data: unknown): SubscribeResult | Promise<SubscribeResult> {
    if (this.env.broker) return this.admitBridged(conn, verdict, since, replay, data);
    if (verdict === false || verdict === null || verdict === undefined) throw new RtError('forbidden', `subscription to ${this.name} refused`, 403);
    if (typeof verdict === 'object' && 'info' in verdict) conn = { ...conn, info: verdict.info };
    if (this.isMember(conn) && !conn.user) throw new RtError('unauthorized', `presence channel ${this.name} needs a user id (token sub)`, 401);
    const thread = threadOfSocket(conn.id);
    if (thread < 0 || thread >= this.perThread.length) throw new RtError('bad_request', `bad socket id ${conn.id}`);
    const known = this.subs.has(conn.id);
    if (!known && this.isMember(conn) && !replay && this.env.maxPresenceMembers && !this.members.has(conn.user!) && this.members.size >= this.env.maxPresenceMembers) {
      throw new RtError('too_many_members', `presence channel ${this.name} is full (${this.env.maxPresenceMembers} members)`, 403);
    }
    if (known || replay || !this.def.onJoin) return this.register(conn, known, since, replay, undefined);
    const joined = this.join(conn, data);
    if (isThenable(joined)) return joined.then((j) => this.register(conn, known, since, replay, this.sendableJoin(j)));
    return this.register(conn, known, since, replay, this.sendableJoin(joined));
  }

  /** An onJoin whose reply cannot be sent failed: it registers nothing (see sendableJson). */
  private sendableJoin(j: JoinResult | void): JoinResult | void {
    if (j && typeof j === 'object' && j.reply !== undefined) {
      try {
        sendableJson(j.reply, 'its onJoin reply');
      } catch (err) {
        throw hookFailure(this.name, err);
      }
    }
    return j;
  }

  /**
   * Registers an admitted subscriber and builds its reply. The offset is read after onJoin ran, so what
   * onJoin broadcast (which the joiner, not yet in the channel, does not receive) is before it: the
   * offsets a client sees continue from its subscribe reply without a gap.
   */
  private register(conn: ConnRef, known: boolean, since: StreamPosition | undefined, replay: boolean | undefined, joined: JoinResult | void): SubscribeResult {
    if (!known) {
      this.subs.set(conn.id, conn);
      this.perThread[threadOfSocket(conn.id)]!++;
      if (this.subs.size === 1 && !replay) this.env.observe?.({ t: 'occupied', ch: this.name });
      // A replay re-registers subscribers a restarted owner lost: the count did not change for clients.
      if (!replay) this.counter?.changed(this.subs.size);
      if (this.isMember(conn)) this.memberJoined(conn, !!replay);
      if (replay) this.ghosts.due();
    }
    const result: SubscribeResult = { offset: this.offset, epoch: this.epoch };
    if (since && !replay) {
      if (since.epoch === this.epoch) {
        const pubs = this.history.since(since.offset, this.offset);
        result.recovered = pubs !== null;
        if (pubs) result.pubs = pubs;
      } else {
        result.recovered = false;
      }
    }
    if (this.kind === 'presence') {
      result.members = this.memberList();
      result.info = conn.info;
    }
    if (joined && typeof joined === 'object' && joined.reply !== undefined) result.data = joined.reply;
    return result;
  }

  private memberJoined(conn: ConnRef, silent: boolean): void {
    const user = conn.user!;
    const e = this.members.get(user);
    if (e) {
      e.conns++;
      this.endGrace(e);
      return;
    }
    this.members.set(user, { info: conn.info, conns: 1 });
    if (silent) return;
    const m: Member = conn.info === undefined ? { user_id: user } : { user_id: user, user_info: conn.info };
    this.presenceToThreads('join!', m);
    this.env.observe?.({ t: 'member_added', ch: this.name, user });
  }

  private countToThreads(n: number): void {
    if (this.stopped) return;
    for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.count!(t, this.name, n);
  }

  private presenceToThreads(kind: 'join!' | 'leave!', m: Member): void {
    for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.presence(t, kind, this.name, m);
  }

  // ——— unsubscribe ———

  /**
   * `graceMs`: the connection dropped and its client may come back (Socket.IO recovery); a presence
   * member it was the last connection of stays that long before the others see it leave, and one back
   * in time is neither announced gone nor joined again.
   */
  unsubscribe(connId: string, graceMs = 0): void | Promise<void> {
    return this.mailbox.run(() => this.doUnsubscribe(connId, graceMs), false);
  }

  /**
   * The subscriber's connection authenticated again with a fresh token (`conn` carries its new grants):
   * a subscription the old token's `channels` claim admitted and the new one does not ends as a kick,
   * as if by ctx.kick. An actor with `authorize` decides admission itself and is not asked again; a
   * subscription vouched for on its own (subscribe token, auth endpoint) is kept.
   */
  regrant(conn: ConnRef): void | Promise<void> {
    return this.mailbox.run(() => {
      const cur = this.subs.get(conn.id);
      if (!cur || this.stopped || this.def.authorize || cur.granted === this.name) return;
      if (this.grantRefusal(conn)) this.kick(conn.id, `the connection's new token does not grant ${this.name}`);
    }, false);
  }

  /** Never throws: a leave always happens; a failing onLeave is logged (and counted) by invoke. */
  private doUnsubscribe(connId: string, graceMs = 0): void | Promise<void> {
    const conn = this.subs.get(connId);
    if (!conn) return;
    this.removeSub(conn, graceMs);
    if (!this.def.onLeave) return;
    try {
      const r = this.invoke('onLeave', (ctx) => this.def.onLeave!(ctx, subscriberOf(conn)));
      if (isThenable(r)) return r.catch(() => {});
    } catch {
      /* logged by invoke */
    }
  }

  private removeSub(conn: ConnRef, graceMs = 0): void {
    const connId = conn.id;
    this.lastActivity = Date.now();
    this.subs.delete(connId);
    this.perThread[threadOfSocket(connId)]!--;
    const broker = this.env.broker;
    if (this.isMember(conn) && conn.user) {
      const e = this.members.get(conn.user);
      if (e && --e.conns === 0) {
        const user = conn.user;
        if (graceMs > 0 && !this.stopped) {
          this.lingering++;
          e.leaving = setTimeout(() => void this.mailbox.run(() => this.memberGone(user), false), graceMs);
          e.leavesAt = Date.now() + graceMs;
          e.leaving.unref?.();
        } else this.memberGone(user);
      }
    }
    if (!broker && this.subs.size === 0) this.env.observe?.({ t: 'vacated', ch: this.name });
    // With a broker the count to announce is the cluster-wide one, which comes back through sink.count.
    if (!broker) this.counter?.changed(this.subs.size);
    if (broker && this.bridged) {
      const n = this.subs.size;
      const held = this.members.size > 0;
      void this.op(() => broker.count(this.name, n, held)).catch((err) => {
        this.log('subscriber count not recorded', err);
        this.recountLater();
      });
      if (n === 0) this.unbridge();
    }
  }

  /** The member's last connection is gone for good (at once, or when its grace ran out). */
  private memberGone(user: string): void {
    const e = this.members.get(user);
    if (!e || e.conns > 0) return;
    this.endGrace(e);
    this.members.delete(user);
    const broker = this.env.broker;
    // With a broker the leave is announced by Redis, and only when this was the user's last host.
    if (broker) {
      // The last member held of a channel no longer relayed here: its count of 0 kept it on this node's
      // list for the members' entries (count's `held`); once they are gone, recount takes it off.
      const last = !this.bridged && this.members.size === 0;
      void this.op(() => broker.leave(this.name, user)).then(
        () => (last ? this.recountLater() : undefined),
        (err) => {
          this.log(`presence leave of ${user} not recorded`, err);
          this.leaveLater(user);
        },
      );
    }
    else this.memberLeft(e.info === undefined ? { user_id: user } : { user_id: user, user_info: e.info });
  }

  /**
   * The member came back on another host (with a broker): it is that host's now. Let go here at once and
   * silently — this host's share is only removed, as Redis still counts the other's — or the leave would
   * come when the grace ran out, after any leave of the new host, and be the one announced.
   */
  recoveredElsewhere(user: string): void {
    void this.mailbox.run(() => {
      const e = this.members.get(user);
      if (e?.leaving && e.conns === 0) this.memberGone(user);
    }, false);
  }

  /** Ends a member's grace, if it is in one: it came back (it never left), or it leaves now. */
  private endGrace(e: MemberEntry): void {
    if (!e.leaving) return;
    clearTimeout(e.leaving);
    e.leaving = undefined;
    this.lingering--;
  }

  /** Announces a member's departure (one host: no broker decides it). */
  private memberLeft(m: Member): void {
    this.ghosts.memberLeft(m.user_id);
    this.presenceToThreads('leave!', m);
    this.env.observe?.({ t: 'member_removed', ch: this.name, user: m.user_id });
  }

  /** This actor's shard replaced a dead one: leaves announced from now on are not announced again by the reconcile. */
  expectReplay(): void {
    this.ghosts.due();
  }

  /**
   * This actor's shard replaced a dead one and every thread re-subscribed (or the wait timed out):
   * `seen` is what the threads' clients knew of the channel's members. Those not registered again had
   * their connections on the dead thread only; they leave as if their last connection closed. Queued
   * behind the replayed subscriptions, so it sees them all. With a broker presence lives in Redis.
   */
  reconcileReplay(seen: readonly Member[]): void | Promise<void> {
    return this.mailbox.run(() => {
      this.fromReplay = false;
      if (this.stopped) return;
      if (this.env.broker) return this.reconcileBridged(seen);
      const due = this.ghosts.waiting;
      if (this.kind === 'presence') for (const m of this.ghosts.settle(seen, (u) => this.members.has(u))) this.memberLeft(m);
      // The replay registered subscribers without announcing their count, which the crash changed.
      if (due && this.subs.size > 0) this.counter?.changed(this.subs.size);
    }, false);
  }

  /**
   * reconcileReplay with the Redis bridge: the members are Redis's, but what it announced while this
   * host had no owner for the channel (the dead thread's members leaving, joins on other hosts) reached
   * no thread here. The threads' clients are told the difference between what they know and Redis.
   */
  private async reconcileBridged(seen: readonly Member[]): Promise<void> {
    if (!this.ghosts.waiting) return;
    if (this.kind !== 'presence' || !this.bridged) return this.ghosts.end();
    let current: Member[];
    try {
      current = await this.env.broker!.members(this.name);
    } catch (err) {
      this.ghosts.end();
      return this.log('could not compare the members after a restart with Redis', err);
    }
    if (!this.bridged || this.stopped) return this.ghosts.end();
    const { leaves, joins } = this.ghosts.settleAgainst(seen, current);
    for (const m of leaves) this.presenceToThreads('leave!', m);
    for (const m of joins) this.presenceToThreads('join!', m);
    this.told = new Map(current.map((m) => [m.user_id, m]));
  }

  /**
   * After a reconnect: the joins and leaves Redis published while this host's subscription was down
   * reached none of its threads. They are told the difference between what they know and Redis; Redis's
   * own event for one of them, if it still comes, is dropped by each thread's presence ledger as a
   * repeat (src/runtime/presence-ledger.ts).
   */
  private async announceMissed(broker: Broker): Promise<void> {
    if (!this.told) return;
    let current: Member[];
    try {
      current = await broker.members(this.name);
    } catch (err) {
      return this.log('could not compare the members with Redis after a reconnect', err);
    }
    if (!this.bridged || !this.told) return;
    const now = new Map(current.map((m) => [m.user_id, m]));
    for (const [user, m] of this.told) {
      if (now.has(user)) continue;
      this.presenceToThreads('leave!', m);
    }
    for (const [user, m] of now) {
      if (this.told.has(user)) continue;
      this.presenceToThreads('join!', m);
    }
    this.told = now;
  }

  /** A thread was replaced: its connections are gone. */
  dropThread(thread: number): void | Promise<void> {
    return this.mailbox.run(() => {
      const gone = [...this.subs.keys()].filter((id) => threadOfSocket(id) === thread);
      for (const id of gone) void this.doUnsubscribe(id);
    }, false);
  }

  // ——— publish ———

  /** `whisper`: a Socket.IO/Echo or Pusher client event; without onMessage the whisper rule applies, and --client-publish=none (or the actor's clientPublish: false) refuses it. */
  publish(msg: OutgoingMessage, source: PublishSource, from?: ConnRef, exclude?: string, whisper?: boolean, at?: number): PublishResult | Promise<PublishResult> {
    const r = this.mailbox.run(() => this.doPublish(msg, source, from, exclude, whisper, at));
    return isThenable(r) ? r.then(settle) : settle(r);
  }

  private doPublish(msg: OutgoingMessage, source: PublishSource, from: ConnRef | undefined, exclude: string | undefined, whisper: boolean | undefined, at?: number): PublishResult | Pending | Promise<PublishResult | Pending> {
    // Backpressure: refuse before accepting, since an accepted publish's deliveries are never dropped.
    if (this.env.admit) for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.admit(t);
    let verdict: unknown;
    let user: string | undefined;
    if (source === 'client') {
      const sender = from ? this.subs.get(from.id) : undefined;
      if (!sender) throw new RtError('not_subscribed', `subscribe to ${this.name} before publishing to it`, 403);
      // Pusher shows who sent a client event on a presence channel (`user_id`): the member it subscribed as.
      if (this.kind === 'presence') user = sender.user;
      if (this.def.onMessage) {
        verdict = this.invoke('onMessage', (ctx) => this.def.onMessage!(ctx, msg, subscriberOf(sender), deliveryOf(exclude)));
      } else if (whisper) {
        // Whispers follow their own rule (client- events, private/presence channels) but are client
        // publishes all the same: where no client may publish, none may whisper either.
        if (this.def.clientPublish === false || (this.def.clientPublish === undefined && this.env.clientPublish === 'none')) {
          throw new RtError('publish_refused', `clients may not publish to ${this.name} (client publish policy: ${this.def.clientPublish === false ? 'refused by actor' : 'none'})`, 403);
        }
        if (this.kind === 'public') throw new RtError('forbidden', 'only subscribers of private- and presence- channels may whisper', 403);
        if (!msg.event.startsWith('client-')) throw new RtError('bad_request', 'whisper events must start with "client-"');
      } else {
        const allowed = this.def.clientPublish ?? (this.env.clientPublish === 'all' || (this.env.clientPublish === 'private' && this.kind !== 'public'));
        if (!allowed) throw new RtError('publish_refused', `clients may not publish to ${this.name} (client publish policy: ${this.def.clientPublish === false ? 'refused by actor' : this.env.clientPublish})`, 403);
      }
    } else if (this.def.onPublish) {
      verdict = this.invoke('onPublish', (ctx) => this.def.onPublish!(ctx, msg, source, deliveryOf(exclude)));
    }
    if (isThenable(verdict)) return verdict.then((v) => this.afterVerdict(msg, v, exclude, source, at, user));
    return this.afterVerdict(msg, verdict, exclude, source, at, user);
  }

  private afterVerdict(msg: OutgoingMessage, verdict: unknown, exclude: string | undefined, source: PublishSource, at?: number, user?: string): PublishResult | Pending {
    if (verdict === null) throw new RtError('publish_refused', `publish to ${this.name} refused by the channel actor`, 403);
    if ((verdict as unknown) instanceof Published) {
      const r = (verdict as unknown as Published).result;
      return r instanceof Promise ? new Pending(r) : r;
    }
    if (verdict === undefined) return this.emit(msg, exclude, at, clientEventUser(msg.event, user));
    const v = verdict as Partial<OutgoingMessage> & { reply?: unknown };
    if (typeof v !== 'object') throw new RtError('actor_failed', `the channel actor of ${this.name} returned ${typeof v} instead of a message or { reply }`, 500);
    // Checked before anything is published: a failed hook publishes nothing.
    try {
      if ('reply' in v) sendableJson(v.reply, 'its reply');
    } catch (err) {
      throw hookFailure(this.name, err);
    }
    // Only a client has someone to reply to; backend publishes always publish (and have an offset).
    if ('reply' in v && v.event === undefined && source === 'client') return { data: v.reply };
    if (typeof v.event !== 'string' || v.event.length === 0) throw new RtError('actor_failed', `the channel actor of ${this.name} returned a message without an event`, 500);
    let text: string;
    try {
      assertEventName(v.event);
      text = sendableJson(v.data, `message ${v.event}'s data`);
    } catch (err) {
      throw hookFailure(this.name, err);
    }
    const out = this.emit(new EncodedMessage(v.event, new JsonData(text)), exclude, at, clientEventUser(v.event, user));
    return 'reply' in v ? withReply(out, v.reply) : out;
  }

  /** Assigns the next offset, records, and sends one frame to each thread that has subscribers. */
  private emit(out: OutgoingMessage, exclude?: string, at?: number, user?: string): PublishResult | Pending {
    const now = Date.now();
    this.lastActivity = now;
    const event = out.event;
    if (this.env.broker) {
      // Redis assigns the offset and fans out to every host, this one included (see relay). A payload
      // still in the JSON text it came as goes on as that text (RedisBroker.publish), so that every
      // host's subscribers get it byte for byte, as they do without Redis.
      const raw = payloadOf(out);
      const msg: BrokerMessage = raw ? new EncodedMessage(event, raw) : { event, data: out.data };
      if (exclude) msg.exclude = exclude;
      if (user !== undefined) msg.user = user;
      return new Pending(this.env.broker.publish(this.name, msg, this.bounds).then((pos) => ({ offset: pos!.offset })));
    }
    // The payload stays JSON text if it came as such and nothing read it (see encoded-payload.ts).
    const raw = payloadOf(out);
    const pub: Publication = raw ? new EncodedPublication(this.name, event, ++this.offset, raw) : { channel: this.name, event, data: out.data, offset: ++this.offset };
    if (user !== undefined) pub.user = user;
    if (exclude !== undefined) pub.ex = exclude;
    this.history.push(pub, now);
    this.env.published?.(pub);
    this.fanOut(pub, exclude, at);
    return { offset: pub.offset };
  }

  historySince(since: StreamPosition | undefined, limit: number, withTimes = false): HistoryAnswer | Promise<HistoryAnswer> {
    if (this.env.broker) return this.historyBridged(this.env.broker, since, limit, withTimes);
    const base = { offset: this.offset, epoch: this.epoch };
    if (since && since.epoch !== this.epoch) return { ...base, pubs: [], recovered: false };
    const pubs = since ? this.history.since(since.offset, this.offset, limit) : this.history.latest(limit);
    const answer: HistoryAnswer = { ...base, pubs: pubs ?? [], recovered: pubs !== null };
    if (withTimes) answer.times = answer.pubs.map((p) => this.history.timeOf(p.offset));
    return answer;
  }

  // ——— Redis mode (env.broker): see docs/scaling.md ———

  /** Runs a presence/count write after the previous ones, whatever their outcome. */
  private op<T>(f: () => Promise<T>): Promise<T> {
    const p = this.chain.then(f, f);
    this.chain = p.catch(() => {});
    return p;
  }

  /**
   * A count (or presence leave) write failed. recover() writes it again, but only after a reconnect, and
   * none may come: Redis refusing writes with the connection up, a Cluster failover that left this channel's
   * subscription where it was. Until then every host's /api/channels and Pusher subscription_count showed the
   * old count (and the member). Written again from the mailbox, so the count is this host's current one, not
   * one of a subscribe half-done; the actor is not idle (dropped) until it is written.
   */
  private recountLater(): void {
    if (this.recountTimer || this.stopped) return;
    this.recountTimer = setTimeout(() => {
      this.recountTimer = undefined;
      this.enqueue(() => this.recount());
    }, RECOUNT_RETRY_MS);
    this.recountTimer.unref?.();
  }

  private async recount(): Promise<void> {
    if (this.stopped) return;
    if (!(await this.rewrite())) this.recountLater();
  }

  /** A presence leave failed: made again by recount (see unleft), as for a count no reconnect may come. */
  private leaveLater(user: string): void {
    this.unleft.add(user);
    this.recountLater();
  }

  /**
   * Writes again what Redis refused: the leaves, then this host's count — also of a channel no longer
   * relayed here, whose last subscriber's count of 0 failed (unbridged, nothing else writes it while the
   * connection stays up). The leaves first: a count of 0 takes the channel off this node's list, and the
   * sweep of a dead node would then miss presence entries left with it. False when Redis refused again.
   */
  private async rewrite(): Promise<boolean> {
    const broker = this.env.broker!;
    for (const user of [...this.unleft]) {
      // Back meanwhile (or in its grace again): Redis holds it as it should, and its own leave comes later.
      if (!this.members.has(user)) {
        const ok = await this.op(() => broker.leave(this.name, user)).then(() => true, () => false);
        if (!ok) return false;
      }
      this.unleft.delete(user);
    }
    const held = this.members.size > 0;
    return this.op(() => broker.count(this.name, this.subs.size, held)).then(() => true, () => false);
  }

  private async bridge(broker: Broker): Promise<void> {
    const pos = await broker.attach(this.name, this.sink, this.bounds);
    this.offset = pos.offset;
    this.epoch = pos.epoch;
    this.bridged = true;
  }

  private unbridge(): void {
    this.bridged = false;
    this.told = undefined;
    this.caught.clear();
    this.env.broker!.detach(this.name);
  }

  /**
   * Subscribe with a broker. Everything that needs Redis happens first, while the mailbox holds later
   * deliveries back; the actor's state changes only once all of it succeeded, so a failure leaves
   * nothing half-done and the client gets `unavailable`. While Redis is away, a channel this host
   * already relays still takes subscribers: their presence and count are registered when it is back
   * (recover), and only what truly needs Redis — a first subscription, history, the member list (and
   * with it a presence join: see below) — fails.
   */
  private async admitBridged(conn: ConnRef, verdict: boolean | { info?: unknown }, since: StreamPosition | undefined, replay: boolean | undefined, data: unknown): Promise<SubscribeResult> {
    if (verdict === false || verdict === null || verdict === undefined) throw new RtError('forbidden', `subscription to ${this.name} refused`, 403);
    if (typeof verdict === 'object' && 'info' in verdict) conn = { ...conn, info: verdict.info };
    if (this.isMember(conn) && !conn.user) throw new RtError('unauthorized', `presence channel ${this.name} needs a user id (token sub)`, 401);
    const thread = threadOfSocket(conn.id);
    if (thread < 0 || thread >= this.perThread.length) throw new RtError('bad_request', `bad socket id ${conn.id}`);
    const broker = this.env.broker!;
    const known = this.subs.has(conn.id);
    const newMember = this.isMember(conn) && !known && !this.members.has(conn.user!);
    // The limit counts this host's members (docs/security.md): the others' are in Redis, and a check
    // there could not be atomic with their joins anyway.
    if (newMember && !replay && this.env.maxPresenceMembers && this.members.size >= this.env.maxPresenceMembers) {
      throw new RtError('too_many_members', `presence channel ${this.name} is full (${this.env.maxPresenceMembers} members)`, 403);
    }
    let attached = false;
    let joined = false;
    let result: SubscribeResult;
    try {
      if (!this.bridged) {
        await this.bridge(broker);
        attached = true;
      }
      const later = (err: unknown): void => {
        if (broker.up) throw err;
      };
      // Counted before the reply, so /api/channels on any host sees a subscription once it is acknowledged;
      // and before the join, so a channel's first subscriber occupies it before its member is added: the
      // order webhooks (channel_occupied, then member_added) have on one host and on Pusher.
      if (!known) await this.op(() => broker.count(this.name, this.subs.size + 1)).catch(later);
      if (newMember) {
        await this.op(() => broker.join(this.name, conn.user!, conn.info, conn.id)).then(() => (joined = true), later);
      }
      result = { offset: this.offset, epoch: this.epoch };
      if (since && !replay) {
        // Past this host's offset, Redis decides: the client may only be ahead of this relay, or past the stream's end.
        if (since.epoch === this.epoch && since.offset === this.offset) {
          result.recovered = true;
          result.pubs = [];
        } else if (since.epoch === this.epoch) {
          const h = await broker.history(this.name, since.offset, this.offset, Infinity, this.bounds);
          result.recovered = h.recovered;
          if (h.recovered) result.pubs = h.pubs;
        } else {
          result.recovered = false;
        }
      }
      if (replay) await this.catchUp(thread, since);
      if (this.kind === 'presence') {
        // The member list needs Redis anyway, so a join put off above is made now or the subscribe fails.
        // Left to recover(), it was lost in a Cluster failover: the list read succeeded on the promoted
        // replica (the reply left the subscriber out), and no reconnect came to run the recovery.
        const user = conn.user!;
        if (newMember && !joined) await this.op(() => broker.join(this.name, user, conn.info, conn.id)).then(() => (joined = true));
        result.members = await broker.members(this.name);
      }
      // onJoin last, inside the undo: a refusal or failure rolls back the presence join and count above.
      if (!known && this.def.onJoin && !replay) {
        const j = await this.join(conn, data);
        if (j && typeof j === 'object' && j.reply !== undefined) result.data = j.reply;
        await this.pastJoinBroadcasts(broker, result);
      }
      // A replay after a shard crash: a placed actor's activation knows this subscriber under the dead
      // shard's node and would make it leave when that node is swept. Registered under this one (no
      // onJoin: the activation knows it); a failure is logged, as in recover().
      const rejoin = replay && !known ? (this.def as { [REJOIN]?: Rejoin })[REJOIN] : undefined;
      if (rejoin) await rejoin(this.name, subscriberOf(conn), true).catch((err) => this.log(`subscriber ${conn.id} could not be registered with the channel's actor again`, err));
    } catch (err) {
      if (joined) void this.op(() => broker.leave(this.name, conn.user!)).catch(() => this.leaveLater(conn.user!));
      if (!known) {
        const held = this.members.size > 0;
        void this.op(() => broker.count(this.name, this.subs.size, held)).catch(() => this.recountLater());
      }
      if (attached && this.subs.size === 0) this.unbridge();
      throw err;
    }
    if (!known) {
      this.subs.set(conn.id, conn);
      this.perThread[thread]!++;
      if (this.isMember(conn)) {
        const e = this.members.get(conn.user!);
        if (e) {
          e.conns++;
          this.endGrace(e);
        } else this.members.set(conn.user!, { info: conn.info, conns: 1 });
      }
    }
    if (replay) this.ghosts.due();
    if (this.kind === 'presence') {
      result.info = conn.info;
      if (!this.told && result.members) this.told = new Map(result.members.map((m) => [m.user_id, m]));
    }
    return result;
  }

  /**
   * A shard restart: the connections of `thread` subscribe again, telling where their stream was. What
   * was published while this channel's owner was gone is sent to that thread from history once.
   */
  private async catchUp(thread: number, since: StreamPosition | undefined): Promise<void> {
    if (!since) return;
    const done = this.caught.get(thread);
    if (done !== undefined && done >= this.offset) return;
    this.caught.set(thread, this.offset);
    if (since.epoch !== this.epoch) return this.resyncThread(thread, 'stream reset while the shard restarted');
    const from = Math.max(since.offset, done ?? -1);
    if (from >= this.offset) return;
    const h = await this.env.broker!.history(this.name, from, this.offset, Infinity, this.bounds).catch(() => null);
    if (!h?.recovered) return this.resyncThread(thread, h ? 'missed publications are no longer in history' : 'history unreachable');
    for (const p of h.pubs) this.env.deliver(thread, p);
    this.env.broker!.stats.recovered += h.pubs.length;
  }

  private async historyBridged(broker: Broker, since: StreamPosition | undefined, limit: number, withTimes: boolean): Promise<HistoryAnswer> {
    const pos = this.bridged ? { offset: this.offset, epoch: this.epoch } : await broker.position(this.name, this.bounds);
    if (!since) {
      const pubs = (await broker.latest(this.name, limit, this.bounds)).filter((p) => p.offset <= pos.offset);
      return { ...pos, pubs, recovered: true };
    }
    if (since.epoch !== pos.epoch) return { ...pos, pubs: [], recovered: false };
    const h = await broker.history(this.name, since.offset, pos.offset, limit, this.bounds);
    const answer: HistoryAnswer = { ...pos, pubs: h.pubs, recovered: h.recovered };
    if (withTimes && h.times) answer.times = h.times;
    return answer;
  }

  /** What the channel's Redis subscription delivers, queued through the mailbox like everything else. */
  private readonly sink: ChannelSink = {
    publication: (pub, epoch, exclude) => this.enqueue(() => this.relay(pub, epoch, exclude)),
    presence: (kind, m, exclude) =>
      this.enqueue(() => {
        if (!this.bridged) return;
        if (kind === 'join!') this.told?.set(m.user_id, m);
        else this.told?.delete(m.user_id);
        for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.presence(t, kind, this.name, m, exclude);
      }),
    ingest: (msg, claim) => this.enqueue(() => this.ingest(msg, claim)),
    // Through the mailbox: a count caused by a subscribe is announced after that subscribe's reply.
    count: (total) => {
      if (this.counter) this.enqueue(() => (this.bridged ? this.counter!.changed(total) : undefined));
    },
    recover: () => this.enqueue(() => this.recover()),
  };

  private enqueue(task: () => unknown): void {
    try {
      const r = this.mailbox.run(task);
      if (r instanceof Promise) r.catch((err) => this.log('relay failed', err));
    } catch (err) {
      this.log('relay failed', err);
    }
  }

  /** One delivery to each thread that has subscribers. */
  private fanOut(pub: Publication, exclude?: string, at?: number): void {
    const many = this.env.deliverMany;
    if (many) {
      const to: number[] = [];
      for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) to.push(t);
      if (to.length > 0) many(to, pub, exclude, at);
      return;
    }
    for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.deliver(t, pub, exclude, at);
  }

  /**
   * A publication from the channel's subscription. Offsets come from Redis, so the next one is known:
   * an older one was already delivered, a later one means something was missed and is fetched from
   * the stream first. A different epoch means Redis lost the channel's stream.
   */
  private relay(pub: Publication, epoch: string, exclude?: string): void | Promise<void> {
    if (!this.bridged) return;
    this.lastActivity = Date.now();
    if (epoch !== this.epoch) return this.reset(epoch, pub.offset, "the channel's stream in Redis was reset (Redis restarted without persistence, or the channel expired)");
    if (pub.offset <= this.offset) return;
    if (pub.offset === this.offset + 1) {
      this.offset = pub.offset;
      return this.fanOut(pub, exclude);
    }
    return this.fill(pub.offset - 1).then(() => {
      if (this.bridged && epoch === this.epoch && pub.offset === this.offset + 1) {
        this.offset = pub.offset;
        this.fanOut(pub, exclude);
      }
    });
  }

  /** Delivers (offset, upTo] from history, or tells local subscribers they must resync. Resolves with what it delivered, null if it could not. */
  private async fill(upTo: number): Promise<Publication[] | null> {
    const broker = this.env.broker!;
    const h = await broker.history(this.name, this.offset, upTo, Infinity, this.bounds).catch(() => null);
    if (h?.recovered) {
      for (const p of h.pubs) {
        this.offset = p.offset;
        this.fanOut(p);
      }
      broker.stats.recovered += h.pubs.length;
      if (this.offset >= upTo) return h.pubs;
    }
    this.resyncAll(`publications ${this.offset + 1}..${upTo} could not be recovered from history`);
    this.offset = upTo;
    return null;
  }

  /**
   * What a placed onJoin broadcast went through Redis and is still on its way to this relay, queued
   * behind this subscribe: delivered now to the others, it is before the joiner's reply offset, as on
   * one host (register) — the joiner does not get it, and its stream does not start with a gap. The
   * join already ran at the activation: nothing here may refuse it.
   */
  private async pastJoinBroadcasts(broker: Broker, result: SubscribeResult): Promise<void> {
    const pos = await this.op(() => broker.position(this.name, this.bounds)).catch(() => undefined);
    if (!pos || pos.epoch !== this.epoch || pos.offset <= this.offset) return;
    const pubs = await this.fill(pos.offset);
    result.offset = this.offset;
    if (result.pubs) {
      if (pubs) result.pubs = [...result.pubs, ...pubs];
      else {
        result.recovered = false;
        delete result.pubs;
      }
    }
  }

  private reset(epoch: string, offset: number, why: string): void {
    this.resyncAll(why);
    this.epoch = epoch;
    this.offset = offset;
  }

  private resyncAll(why: string): void {
    let told = false;
    for (let t = 0; t < this.perThread.length; t++) {
      if (this.perThread[t]! > 0) {
        this.env.resync?.(t, this.name);
        told = true;
      }
    }
    if (told) {
      this.env.broker!.stats.resyncs++;
      // Redis restarted empty resets every channel at once: one line each, bounded by --log-rate.
      this.log(`${why}: subscribers were told to resync`, undefined, { event: 'redis.resync', channel: this.name });
    }
  }

  private resyncThread(thread: number, why: string): void {
    this.env.resync?.(thread, this.name);
    this.env.broker!.stats.resyncs++;
    this.log(`${why}: subscribers on thread ${thread} were told to resync`, undefined, { event: 'redis.resync', channel: this.name });
  }

  /**
   * A backend message (Laravel) seen by every subscribed host: each runs the actor's onPublish, and
   * the claim makes exactly one of them sequence it. Not awaited, like a publish: claims leave in
   * arrival order, which keeps the backend's order.
   */
  private ingest(msg: BrokerMessage, claim: string): void | Promise<void> {
    if (!this.bridged) return;
    const send = (v: OutgoingMessage | null | void): void => {
      if (v === null) return;
      if ((v as unknown) instanceof Published) {
        const o = (v as unknown as Published).result;
        if (o instanceof Promise) o.catch((err) => this.log('a message published through Redis was refused by its actor', err));
        return;
      }
      const out = v ?? { event: msg.event, data: msg.data };
      if (!out || typeof out.event !== 'string' || out.event.length === 0) return this.log('onPublish returned a message without an event; dropped');
      const m: BrokerMessage = msg.exclude ? { event: out.event, data: out.data, exclude: msg.exclude } : { event: out.event, data: out.data };
      this.env.broker!.publish(this.name, m, this.bounds, claim).catch((err) => this.log('could not sequence a message published through Redis', err));
    };
    if (!this.def.onPublish) return send(undefined);
    let verdict: OutgoingMessage | null | void | Promise<OutgoingMessage | null | void>;
    try {
      verdict = this.invoke('onPublish', (ctx) => this.def.onPublish!(ctx, { event: msg.event, data: msg.data }, 'redis', deliveryOf(msg.exclude)));
    } catch (err) {
      return this.log(`onPublish refused a message published through Redis: ${(err as Error).message}`);
    }
    if (isThenable(verdict)) return verdict.then(send, (err) => this.log(`onPublish refused a message published through Redis: ${(err as Error).message}`));
    return send(verdict);
  }

  /**
   * The broker reconnected. Redis may have lost what this host registered (restart) or a sweeper may
   * have removed it (outage longer than the presence ttl): register again — idempotent — then compare
   * the channel's position with what was delivered here.
   */
  private async recover(): Promise<void> {
    if (!this.bridged) return;
    const broker = this.env.broker!;
    // Counted before the members join again, as in subscribe: a channel Redis lost is occupied again
    // before its members are added again (webhooks: channel_occupied, then member_added). A failed count
    // is retried (recountLater) and must not keep the members out of Redis: they join all the same.
    const n = this.subs.size;
    clearTimeout(this.recountTimer);
    this.recountTimer = undefined;
    let countFailed: { err: unknown } | undefined;
    // The total is published again even if unchanged: a change announced while this host's subscriber
    // connection was down (CLIENT KILL, a reconnect) reached nobody here, and its subscribers kept a
    // stale subscription_count until the next change. Every host recovering does the same.
    await this.op(() => broker.count(this.name, n, false, true)).catch((err) => {
      this.recountLater();
      countFailed = { err };
    });
    // Leaves still refused are made by recount (prune below too, later: whichever comes first, one leave).
    if (this.unleft.size > 0) this.recountLater();
    for (const [user, e] of this.members) await this.op(() => broker.join(this.name, user, e.info, undefined));
    if (this.kind === 'presence') await this.announceMissed(broker);
    // Not awaited: the broker waits for the other hosts to subscribe again before announcing the leaves.
    if (this.kind === 'presence') broker.prune(this.name, this.members).catch((err) => this.log('could not remove the members that left while Redis was away', err));
    if (countFailed) throw countFailed.err;
    // A placed actor's activation made this host's subscribers leave when it was taken for dead.
    const rejoin = (this.def as { [REJOIN]?: Rejoin })[REJOIN];
    if (rejoin) {
      for (const conn of [...this.subs.values()]) {
        await rejoin(this.name, subscriberOf(conn)).catch((err) => this.log(`subscriber ${conn.id} could not be registered with the channel's actor again`, err));
      }
    }
    // Redis behind what was delivered here (a failover lost the old master's last writes, and the new
    // one reuses their offsets) starts a new epoch: relaying on would drop the reused offsets as
    // duplicates nobody ever saw, and a client resuming later from a lost offset would be told
    // `recovered: true` over publications it never got.
    const pos = await broker.position(this.name, this.bounds, { offset: this.offset, epoch: this.epoch });
    if (!this.bridged) return;
    if (pos.epoch !== this.epoch && pos.offset < this.offset) return this.reset(pos.epoch, pos.offset, `the channel's stream in Redis went back from offset ${this.offset} to ${pos.offset} (a failover lost its last writes?): new epoch`);
    if (pos.epoch !== this.epoch) return this.reset(pos.epoch, pos.offset, "the channel's stream in Redis was reset (Redis restarted without persistence?)");
    if (pos.offset > this.offset) await this.fill(pos.offset);
  }
}

