/**
 * The one activation of a placed channel actor in the whole cluster, on the node holding the channel's
 * lease. It runs the user's hooks one turn at a time with a cluster-wide context (every subscriber on
 * every host), publishes with the lease's fence, and persists its state after every turn that changed
 * it — in the same Lua call as the turn's publication when there is one — so the next holder resumes
 * from exactly what was accepted. Private pushes and kicks go, at the end of the turn, to the node
 * relaying the subscriber (ActivationEnv.relay), whose channel actor delivers them; compute tasks run on
 * this host's pool. Checks shared with the one-host runtime live in actors/context-rules.ts.
 *
 * Persisted record (msgpack, keys.state): `{ s: state, m: subscribers }`. State must therefore be
 * msgpack-serialisable: plain objects, arrays, strings, numbers, booleans, null, Dates, Maps, Sets, BigInts;
 * not functions, class instances (they come back as plain objects) or handles.
 */
import { Packr, Unpackr } from 'msgpackr';
import type { ActorContext, ActorDefinition, ComputeResult, OutgoingMessage, Subscriber } from '../actors/define.js';
import { ACTOR_DEFAULTS, type ActorStats } from '../actors/channel-actor.js';
import { systemClock } from '../actors/clock.js';
import { HookRunner, type Hook } from '../actors/hook-runner.js';
import { TurnContext } from '../actors/turn-context.js';
import { assertEventName, checkCompute, clientEventUser, deliveryOf, hookFailure, kickReason, runCompute, sendableJson, type ComputeFn } from '../actors/context-rules.js';
import { channelKind } from '../auth/channels.js';
import { Mailbox } from '../actors/mailbox.js';
import { checkTimer } from '../actors/timers.js';
import { RtError } from '../errors.js';
import type { Member } from '../protocol/native.js';
import type { PublishSource } from '../runtime/messages.js';
import type { BrokerMessage, HistoryBounds } from './broker.js';
import type { Fence } from './lease.js';
import type { RedisBroker } from './redis-broker.js';

// Plain objects are written as records (their definitions inline: each record is read on its own) and
// Maps as msgpack maps, so that both come back as they were: with maps read as objects, a Map in the
// state came back at the next owner as a plain object, its keys turned into strings.
const packr = new Packr({ useRecords: true, moreTypes: true });
// Only a BigInt is written as a 64-bit integer (numbers are written as such or as floats): read back as a
// BigInt, or the next owner found a number, rounded past 2^53, that `+= 1n` throws on.
const unpackr = new Unpackr({ useRecords: true, mapsAsObjects: false, int64AsType: 'bigint', moreTypes: true });
/** Records saved before, whose objects are msgpack maps (read as a Map at the top with `unpackr`). */
const legacyUnpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint', moreTypes: true });

/** A subscriber as the activation knows it: which node (host shard) relays it. */
export interface RemoteSubscriber extends Subscriber {
  node: string;
}

/** A timer as persisted: name, due (epoch ms), repeat interval (0 = once), data (left out when undefined). */
type TimerEntry = [string, number, number, unknown?];

interface Record {
  s: unknown;
  m: RemoteSubscriber[];
  t?: TimerEntry[];
}

export interface ActivationEnv {
  broker: RedisBroker;
  bounds: HistoryBounds;
  /** State lives this long in Redis after the last turn that wrote it. */
  stateTtlMs: number;
  /**
   * Sends a private push (to socket ids) or a kick to the node relaying those subscribers — this node
   * or another, through its inbox. Never throws: a node that is gone took its connections with it.
   */
  relay(node: string, op: 'push' | 'kick', args: unknown[]): void;
  /** This host's compute pool (ctx.compute); absent where the actors folder has no task. */
  compute?: ComputeFn;
  /** Operations that may wait in the activation's mailbox, and compute tasks in flight (--actor-mailbox-size). */
  mailboxSize?: number;
  /** Deadline of a hook that returns a promise (--actor-hook-timeout). */
  hookTimeoutMs?: number;
  /** Consecutive hook failures after which the actor restarts with fresh state. */
  maxFailures?: number;
  /** The actor's file, named when its hooks fail. */
  file?: string;
  /** This shard's actor counters (failures, restarts) for /metrics. */
  stats?: ActorStats;
  log(msg: string, err?: unknown): void;
}

/** Operations a client or the backend sends: refused with `overloaded` when the mailbox is full. Others (leaves, timers, results) were already accepted. */
const BOUNDED_OPS = new Set(['auth', 'join', 'msg', 'pub']);

/** Backend messages seen lately (their claims), so the copies every host forwards are sequenced once. */
const CLAIM_WINDOW_MS = 10_000;

export class Activation {
  private readonly mailbox: Mailbox;
  private readonly runner: HookRunner;
  /** The hooks failed too often during this turn: the fresh state is saved when it ends. */
  private restarted = false;
  private readonly subs = new Map<string, RemoteSubscriber>();
  private readonly ctx: ActorContext<unknown>;
  private saved: Buffer | undefined;
  private readonly outbox: Promise<unknown>[] = [];
  /** Whether the current turn called a user hook (see run: such a turn is never run again elsewhere). */
  private hookRan = false;
  /** Pushes and kicks of the turn in progress: sent once its writes succeeded (see run). */
  private readonly relays: [node: string, op: 'push' | 'kick', args: unknown[]][] = [];
  /** Whether a turn is running: a push or kick made outside one (a timer or promise of the actor's own) leaves at once. */
  private inTurn = false;
  private readonly claims = new Map<string, number>();
  /** Compute tasks in flight. */
  private computing = 0;
  /**
   * The offset the next publication of the channel gets, so ctx.broadcast() returns it at once: this
   * activation is the channel's only writer when the actor has onMessage (every client publish and
   * backend publish comes through it). Undefined until read from Redis, and again after a publication
   * failed or came back with another offset; 0 when the actor is not the only writer.
   */
  private nextOffset: number | undefined;
  /** When nextOffset was last confirmed by Redis. */
  private confirmedAt = 0;
  lastActivity = Date.now();
  stopped = false;
  /** Timers: their deadlines are part of the persisted record, so a new owner fires them on time. */
  private readonly timers = new Map<string, { due: number; every: number; data: unknown; handle?: NodeJS.Timeout }>();
  /** The due time this activation last wrote to the index of pending timers (keys.timers), if any. */
  private indexed: number | undefined;

  private constructor(readonly channel: string, private readonly def: ActorDefinition, private readonly env: ActivationEnv, private fence: Fence) {
    this.mailbox = new Mailbox(env.mailboxSize ?? ACTOR_DEFAULTS.mailboxSize);
    this.runner = new HookRunner({
      clock: systemClock,
      hookTimeoutMs: env.hookTimeoutMs ?? ACTOR_DEFAULTS.hookTimeoutMs,
      maxFailures: env.maxFailures ?? ACTOR_DEFAULTS.maxFailures,
      file: env.file ?? 'unknown',
      log: (msg, err) => env.log(`channel ${channel}: ${msg}`, err),
      counted: () => env.stats && env.stats.failures++,
      restart: () => this.restart(),
    });
    const self = this;
    this.ctx = {
      channel,
      state: undefined,
      broadcast: (event: string, data: unknown) => {
        assertEventName(event);
        sendableJson(data, `broadcast ${event}'s data`);
        if (self.stopped) return 0;
        const expected = self.nextOffset;
        self.outbox.push(self.publish({ event, data }).catch((err) => self.env.log(`broadcast from actor hook failed`, err)));
        return expected ?? 0;
      },
      members: () => self.memberList(),
      subscribers: () => [...self.subs.values()],
      subscriberCount: () => self.subs.size,
      now: () => Date.now(),
      timers: {
        after: (name: string, ms: number, data?: unknown) => self.setTimer(name, ms, false, data),
        every: (name: string, ms: number, data?: unknown) => self.setTimer(name, ms, true, data),
        cancel: (name: string) => self.cancelTimer(name),
        has: (name: string) => self.timers.has(name),
      },
      // Private messages and kicks go to the node relaying the subscriber, wherever it is, after the
      // turn: a push goes as the JSON text it was checked as, i.e. as the data was when pushed.
      push: (socketId: string, event: string, data: unknown) => {
        assertEventName(event);
        const js = sendableJson(data, `push ${event}'s data`);
        const s = self.subs.get(socketId);
        if (!s || self.stopped) return false;
        self.relays.push([s.node, 'push', [[socketId], event, null, js]]);
        if (!self.inTurn) self.sendRelays();
        return true;
      },
      pushUser: (userId: string, event: string, data: unknown) => {
        assertEventName(event);
        const js = sendableJson(data, `push ${event}'s data`);
        if (self.stopped) return 0;
        const byNode = new Map<string, string[]>();
        for (const s of self.subs.values()) {
          if (s.userId !== userId) continue;
          const ids = byNode.get(s.node);
          if (ids) ids.push(s.socketId);
          else byNode.set(s.node, [s.socketId]);
        }
        let n = 0;
        for (const [node, ids] of byNode) {
          self.relays.push([node, 'push', [ids, event, null, js]]);
          n += ids.length;
        }
        if (!self.inTurn) self.sendRelays();
        return n;
      },
      kick: (socketId: string, reason?: string) => {
        const s = self.subs.get(socketId);
        if (!s || self.stopped) return false;
        self.subs.delete(socketId);
        self.relays.push([s.node, 'kick', [socketId, kickReason(reason)]]);
        if (!self.inTurn) self.sendRelays();
        // onLeave runs after the hook that kicked, as a turn of its own (the relay's own leave finds
        // the subscriber gone and does nothing).
        if (self.def.onLeave) void self.run('kicked', [s]).catch((err) => self.env.log(`onLeave of kicked ${socketId} in ${self.channel} failed`, err));
        return true;
      },
      compute: (task: string, input: unknown, tag?: string) => {
        checkCompute(self.env.compute, self.channel, self.computing, self.env.mailboxSize ?? ACTOR_DEFAULTS.mailboxSize, task);
        if (self.stopped) return;
        self.computing++;
        // The result is a turn of its own. A task in flight when the owner dies is lost with it.
        void runCompute(self.env.compute, task, input, tag)
          .then((res) => {
            self.computing--;
            if (self.def.onComputed && !self.stopped) return self.run('computed', [res]);
          })
          .catch((err) => self.env.log(`onComputed of ${self.channel} failed`, err));
      },
    } as unknown as ActorContext<unknown>;
  }

  /**
   * Activates from the persisted record (or `init` when there is none), its subscribers included;
   * those relayed by nodes that stopped heartbeating leave at the next sweep (onLeave runs).
   */
  static async start(channel: string, def: ActorDefinition, env: ActivationEnv, fence: Fence): Promise<Activation> {
    const a = new Activation(channel, def, env, fence);
    const bytes = await env.broker.leases.loadState(channel);
    let rec: Record | undefined;
    if (bytes) {
      try {
        rec = unpackr.unpack(bytes) as Record;
        if ((rec as unknown) instanceof Map) rec = legacyUnpackr.unpack(bytes) as Record;
      } catch (err) {
        env.log(`persisted state of ${channel} is unreadable; starting from init`, err);
      }
    }
    if (rec) {
      a.ctx.state = rec.s;
      // All of them, those of dead nodes too: the sweep (PlacedActors.prune) makes those leave, with
      // their onLeave, as it does for any dead relay. Dropped here, they left without one.
      for (const m of rec.m ?? []) a.subs.set(m.socketId, m);
      for (const [name, due, every, data] of rec.t ?? []) a.timers.set(String(name), { due: Number(due), every: Number(every) || 0, data });
      a.saved = a.record();
      for (const name of a.timers.keys()) a.arm(name);
      // Indexed again should the entry be missing (a former owner's late removal, state older than the index).
      const due = a.earliestDue();
      if (due !== undefined) await a.index(due).catch((err) => env.log(`${channel}: its timers were not indexed`, err));
    } else {
      a.ctx.state = a.initialState();
    }
    return a;
  }

  private initialState(): unknown {
    if (!this.def.init) return undefined;
    try {
      return this.def.init(this.channel);
    } catch (err) {
      if (this.env.stats) this.env.stats.failures++;
      this.env.log(`channel ${this.channel}: init failed (actor ${this.env.file ?? 'unknown'})`, err);
      throw new RtError('actor_failed', `the channel actor of ${this.channel} failed to start; see the server log`, 500);
    }
  }

  /** A user hook, under the deadline and failure rules of every actor (hook-runner.ts). */
  /** Runs a hook with a ctx of its own, cut off if the hook outlives its deadline (turn-context.ts). */
  private hook<T>(name: Hook, fn: (ctx: ActorContext<unknown>) => T | Promise<T>): Promise<T> {
    this.hookRan = true;
    const turn = new TurnContext(this.ctx, (msg) => this.env.log(`channel ${this.channel}: ${msg}`));
    return Promise.resolve(this.runner.invoke(name, () => fn(turn as unknown as ActorContext<unknown>), () => turn.end(name)));
  }

  /**
   * The hooks failed `maxFailures` times in a row: as on one host, onStop('failed'), timers cleared and
   * `init` state; subscribers stay. The fresh record is saved when the failing turn ends.
   */
  private restart(): void {
    if (this.stopped) return;
    if (this.env.stats) this.env.stats.restarts++;
    for (const name of [...this.timers.keys()]) this.cancelTimer(name);
    this.runner.freshState(this.def, this.ctx);
    this.restarted = true;
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  /** The nodes relaying this channel's subscribers (for the sweep that prunes dead ones). */
  relayNodes(): Set<string> {
    const out = new Set<string>();
    for (const m of this.subs.values()) out.add(m.node);
    return out;
  }

  relayedBy(node: string): RemoteSubscriber[] {
    return [...this.subs.values()].filter((m) => m.node === node);
  }

  get idle(): boolean {
    return this.mailbox.idle && this.computing === 0;
  }

  get epoch(): number {
    return this.fence.epoch;
  }

  private memberList(): Member[] {
    const seen = new Map<string, Member>();
    for (const s of this.subs.values()) {
      if (s.userId === undefined || seen.has(s.userId)) continue;
      seen.set(s.userId, s.userInfo === undefined ? { user_id: s.userId } : { user_id: s.userId, user_info: s.userInfo });
    }
    return [...seen.values()];
  }

  /**
   * Runs one forwarded event as one turn of the mailbox. The turn's pushes and kicks leave at its end,
   * after its publications and state were written with the fence (or failed), and only while the lease
   * is still held: an owner that lost its lease (paused, cut off) tells no client anything.
   */
  run(op: string, args: unknown[]): Promise<unknown> {
    try {
      return Promise.resolve(
        this.mailbox.run(async () => {
          this.hookRan = false;
          this.inTurn = true;
          try {
            return await this.turn(op, args);
          } catch (err) {
            // A hook that failed (or whose answer could not be sent) keeps what it did to ctx.state, as on
            // one host (docs/actors.md): saved now, or the next owner after a kill -9 would resume without
            // it, behind what the turn broadcast before failing.
            if (this.hookRan && !this.stopped && (err as RtError)?.code !== 'moved') {
              await this.saveIfChanged().catch((e) => this.env.log(`channel ${this.channel}: the state of a failed turn was not saved`, e));
            }
            // The lease was lost while the turn ran (a hook blocking the thread past --lease-ttl, the
            // host paused): its writes were fenced, but its hooks ran. `moved` would have the caller run
            // it again at the next owner — the hooks twice, a looping hook taken to every host in turn.
            // Answered as a forwarded event the owner did not answer in time is: not sent again. A leave
            // is still retried: the next owner must not keep counting a subscriber that is gone.
            if (this.hookRan && op !== 'leave' && (err as RtError)?.code === 'moved') {
              throw new RtError('timeout', `the actor of ${this.channel} lost its lease while running this event (a turn longer than --lease-ttl, or its host paused): it is not run again`, 504);
            }
            throw err;
          } finally {
            if (this.restarted) {
              this.restarted = false;
              await this.saveIfChanged().catch((err) => this.env.log(`channel ${this.channel}: the restarted actor's state was not saved`, err));
            }
            this.inTurn = false;
            this.sendRelays();
          }
        }, BOUNDED_OPS.has(op)),
      );
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private sendRelays(): void {
    if (this.relays.length === 0) return;
    const out = this.relays.splice(0);
    const fence = this.env.broker.leases.fence(this.channel);
    if (this.stopped || !fence || fence.epoch !== this.fence.epoch) {
      this.env.log(`${out.length} push(es)/kick(s) of ${this.channel} dropped: the lease was lost during the turn`);
      return;
    }
    for (const [node, op, args] of out) this.env.relay(node, op, args);
  }

  private async turn(op: string, args: unknown[]): Promise<unknown> {
    const who = args[op === 'msg' ? 1 : 0] as RemoteSubscriber | undefined;
    if ((op === 'auth' || op === 'join' || op === 'leave' || op === 'msg') && (!who || typeof who !== 'object' || typeof who.socketId !== 'string' || typeof who.node !== 'string')) {
      throw new RtError('bad_request', `${op}: malformed subscriber`);
    }
    if ((op === 'msg' || op === 'pub') && (!args[0] || typeof (args[0] as OutgoingMessage).event !== 'string')) throw new RtError('bad_request', `${op}: malformed message`);
    if (this.stopped) throw new RtError('moved', `the actor of ${this.channel} moved (lease lost)`, 503);
    this.lastActivity = Date.now();
    await this.knowOffset();
    let out: OutgoingMessage | null | undefined;
    let result: unknown;
    let reply: { r: unknown } | undefined;
    /** The member a client event came from, on a presence channel. */
    let sender: string | undefined;
    /** The socket id that does not get this turn's publication (the sender of a client event, a socket_id). */
    let exclude: string | undefined;
    switch (op) {
      case 'auth': {
        const [who, data] = args as [RemoteSubscriber, unknown];
        const authorize = this.def.authorize;
        result = authorize ? await this.hook('authorize', (ctx) => authorize(ctx, who, data)) : true;
        if (result !== true && result !== false && (typeof result !== 'object' || result === null)) result = !!result;
        break;
      }
      case 'join': {
        const [who, data] = args as [RemoteSubscriber, unknown];
        // Registered once onJoin accepted it, as on one host: a refused join leaves no subscriber behind.
        const known = this.subs.has(who.socketId);
        const onJoin = this.def.onJoin;
        const v = known || !onJoin ? undefined : await this.hook('onJoin', (ctx) => onJoin(ctx, who, data ?? undefined));
        // A reply that cannot be sent fails the join: it registers nothing (as on one host).
        if (v && typeof v === 'object' && 'reply' in v) sendable(this.channel, () => sendableJson((v as { reply: unknown }).reply, 'its onJoin reply'));
        this.subs.set(who.socketId, who);
        if (v && typeof v === 'object' && 'reply' in v) result = { r: (v as { reply: unknown }).reply };
        break;
      }
      case 'leave': {
        const [who] = args as [RemoteSubscriber];
        const known = this.subs.get(who.socketId);
        if (known) {
          this.subs.delete(who.socketId);
          const onLeave = this.def.onLeave;
          if (onLeave) await this.hook('onLeave', (ctx) => onLeave(ctx, known));
        }
        break;
      }
      case 'msg': {
        const [msg, who, ex] = args as [OutgoingMessage, RemoteSubscriber, unknown];
        const onMessage = this.def.onMessage;
        if (!onMessage) throw new RtError('bad_request', 'no onMessage');
        exclude = excluded(ex);
        const v = checkVerdict(this.channel, await this.hook('onMessage', (ctx) => onMessage(ctx, msg, this.subs.get(who.socketId) ?? who, deliveryOf(exclude))));
        if (v && typeof v === 'object' && 'reply' in v) {
          sendable(this.channel, () => sendableJson(v.reply, 'its reply'));
          reply = { r: v.reply };
        }
        if (v && typeof v === 'object' && 'reply' in v && v.event === undefined) {
          // Answers the sender, publishes nothing.
          await this.flushOutbox();
          await this.saveIfChanged();
          return reply;
        }
        out = v === null ? null : v === undefined ? msg : ({ event: v.event, data: v.data } as OutgoingMessage);
        // As on one host: a client event published for a presence member shows who sent it.
        if (channelKind(this.channel) === 'presence') sender = who.userId;
        break;
      }
      case 'timer': {
        const [name] = args as [string, unknown];
        const t = this.timers.get(name);
        if (!t) return null;
        // A repeating timer is re-armed before its tick runs, so the tick may cancel it.
        if (t.every > 0) {
          t.due = Date.now() + t.every;
          this.arm(name);
        } else this.timers.delete(name);
        const onTimer = this.def.onTimer;
        if (onTimer) await this.hook('onTimer', (ctx) => onTimer(ctx, name, t.data));
        break;
      }
      case 'kicked': {
        const [who] = args as [RemoteSubscriber];
        const onLeave = this.def.onLeave;
        if (onLeave) await this.hook('onLeave', (ctx) => onLeave(ctx, who));
        break;
      }
      case 'computed': {
        const [res] = args as [ComputeResult];
        const onComputed = this.def.onComputed;
        if (onComputed) await this.hook('onComputed', (ctx) => onComputed(ctx, res));
        break;
      }
      case 'pub': {
        const [msg, source, claim, ex] = args as [OutgoingMessage, PublishSource, string | null | undefined, unknown];
        // Another host's copy of the same backend message was sequenced already: not a refusal.
        if (typeof claim === 'string' && this.seenClaim(claim)) return { dup: 1 };
        exclude = excluded(ex);
        const onPublish = this.def.onPublish;
        const v = onPublish ? checkVerdict(this.channel, await this.hook('onPublish', (ctx) => onPublish(ctx, msg, source, deliveryOf(exclude)))) : undefined;
        out = v === null ? null : v === undefined ? msg : ({ event: v.event, data: v.data } as OutgoingMessage);
        break;
      }
      default:
        throw new RtError('bad_request', `unknown placed-actor operation ${op}`);
    }
    await this.flushOutbox();
    if (op === 'msg' || op === 'pub') {
      if (out === null) {
        // Refused, nothing published: what the hook changed in the state is kept, so saved.
        await this.saveIfChanged();
        return null;
      }
      if (!out || typeof out.event !== 'string' || out.event.length === 0) throw new RtError('actor_failed', `the channel actor of ${this.channel} returned a message without an event`, 500);
      const msgOut = out;
      sendable(this.channel, () => {
        assertEventName(msgOut.event);
        sendableJson(msgOut.data, `message ${msgOut.event}'s data`);
      });
      const state = this.changedState();
      const pos = await this.persist(state, () => this.publish({ event: out.event, data: out.data }, state, clientEventUser(out.event, sender), exclude));
      return reply ? { p: pos, ...reply } : { p: pos };
    }
    await this.saveIfChanged();
    return result;
  }

  private async saveIfChanged(): Promise<void> {
    const changed = this.changedState();
    if (!changed) return;
    await this.persist(changed, () => this.env.broker.leases.saveState(this.channel, changed, this.env.stateTtlMs));
    this.saved = changed;
  }

  /**
   * Runs a write of the record (`state`; none: nothing is saved) with the index of pending timers kept
   * a superset of the channels whose saved record has timers: the entry goes in before a record with
   * timers, and out after one without. Every node scans the index (placement.ts, revive), so a channel
   * whose owner died, stopped or went idle is activated again in time for its timers, subscribers or not.
   */
  private async persist<T>(state: Buffer | undefined, write: () => Promise<T>): Promise<T> {
    const due = state ? this.earliestDue() : undefined;
    if (due !== undefined && due !== this.indexed) await this.index(due);
    const r = await write();
    if (state && due === undefined && this.indexed !== undefined) {
      const was = this.indexed;
      this.indexed = undefined;
      await this.env.broker.leases.unindexTimers(this.channel, was).catch((err) => this.env.log(`${this.channel}: its timers index entry was not removed`, err));
    }
    return r;
  }

  private async index(due: number): Promise<void> {
    await this.env.broker.leases.indexTimers(this.channel, due);
    this.indexed = due;
  }

  private earliestDue(): number | undefined {
    let due: number | undefined;
    for (const t of this.timers.values()) if (due === undefined || t.due < due) due = t.due;
    return due;
  }

  /** Broadcasts of this turn go out before the turn's own publication, in call order. */
  private async flushOutbox(): Promise<void> {
    while (this.outbox.length) await Promise.allSettled(this.outbox.splice(0));
  }

  /** The record to persist when it differs from what was saved last, else undefined. */
  private record(): Buffer {
    // A timer set without data fires with `undefined` on the next owner too, as on this one (not null).
    const t: TimerEntry[] = [...this.timers].map(([name, x]) => (x.data === undefined ? [name, x.due, x.every] : [name, x.due, x.every, x.data]));
    return packr.pack(t.length ? { s: this.ctx.state, m: [...this.subs.values()], t } : { s: this.ctx.state, m: [...this.subs.values()] });
  }

  private changedState(): Buffer | undefined {
    let bytes: Buffer;
    try {
      bytes = this.record();
    } catch (err) {
      throw new RtError('actor_failed', `state of ${this.channel} is not serialisable: ${(err as Error).message}`, 500);
    }
    if (this.saved && bytes.equals(this.saved)) return undefined;
    return bytes;
  }

  /**
   * Publications leave in call order on one connection, so each gets the offset after the previous
   * one's. Checked when Redis answers: any difference (a failure, the stream reset) makes the next turn
   * read the position again.
   */
  private async publish(msg: OutgoingMessage, state?: Buffer, user?: string, exclude?: string): Promise<number> {
    const fence: Fence = state ? { ...this.fence, state, stateTtlMs: this.env.stateTtlMs } : this.fence;
    const expected = this.nextOffset;
    if (expected !== undefined && expected > 0) this.nextOffset = expected + 1;
    let pos;
    try {
      const m: BrokerMessage = { event: msg.event, data: msg.data };
      if (user !== undefined) m.user = user;
      if (exclude !== undefined) m.exclude = exclude;
      pos = await this.env.broker.publish(this.channel, m, this.env.bounds, undefined, fence);
    } catch (err) {
      if (expected) this.nextOffset = undefined;
      throw err;
    }
    if (state) this.saved = state;
    if (expected && pos!.offset !== expected) {
      this.env.log(`${this.channel}: publication got offset ${pos!.offset}, expected ${expected}; reading the position again`);
      this.nextOffset = undefined;
    } else if (expected) this.confirmedAt = Date.now();
    return pos!.offset;
  }

  /**
   * Before a turn: the channel's position, when it is not known or not confirmed for a while (a
   * channel idle past its history ttl starts a new stream in Redis). Reading it also keeps it alive.
   */
  private async knowOffset(): Promise<void> {
    if (!this.def.onMessage) {
      // Clients publish to the channel straight through Redis: the offset is not this actor's to know.
      this.nextOffset = 0;
      return;
    }
    if (this.nextOffset !== undefined && Date.now() - this.confirmedAt < this.env.bounds.ttlMs / 2) return;
    try {
      const pos = await this.env.broker.position(this.channel, this.env.bounds);
      this.nextOffset = pos.offset + 1;
      this.confirmedAt = Date.now();
    } catch {
      // Redis is away: the turn's own writes will say so; until then broadcast() cannot know (0).
      this.nextOffset = undefined;
    }
  }

  private seenClaim(claim: string): boolean {
    const now = Date.now();
    for (const [k, until] of this.claims) if (until <= now) this.claims.delete(k);
    if (this.claims.has(claim)) return true;
    this.claims.set(claim, now + CLAIM_WINDOW_MS);
    return false;
  }

  /** The lease is gone (or handed over): refuse further turns and fire no timers here. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t.handle);
  }

  /** Timers with a deadline wake an idle activation: it must stay while any is set. */
  get hasTimers(): boolean {
    return this.timers.size > 0;
  }

  private setTimer(name: string, ms: number, repeat: boolean, data: unknown): void {
    checkTimer(name, ms, repeat);
    this.cancelTimer(name);
    this.timers.set(name, { due: Date.now() + ms, every: repeat ? ms : 0, data });
    this.arm(name);
  }

  private cancelTimer(name: string): boolean {
    const t = this.timers.get(name);
    if (!t) return false;
    clearTimeout(t.handle);
    this.timers.delete(name);
    return true;
  }

  private arm(name: string): void {
    const t = this.timers.get(name);
    if (!t || this.stopped) return;
    clearTimeout(t.handle);
    t.handle = setTimeout(() => {
      if (this.timers.get(name) !== t || this.stopped) return;
      void this.run('timer', [name, t.data]).catch((err) => this.env.log(`timer ${name} of ${this.channel} failed`, err));
    }, Math.max(0, t.due - Date.now()));
    t.handle.unref?.();
  }

  /** Waits for the turn in progress and those queued, at most `ms`. */
  async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.mailbox.idle && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }
}

type Verdict = (Partial<OutgoingMessage> & { reply?: unknown }) | null | undefined;

/** What onMessage / onPublish returned, refused as on one host when it is neither a message, `{ reply }`, null nor undefined. */
function checkVerdict(channel: string, v: unknown): Verdict {
  if (v === null || v === undefined) return v;
  if (typeof v !== 'object') throw new RtError('actor_failed', `the channel actor of ${channel} returned ${typeof v} instead of a message or { reply }`, 500);
  return v as Verdict;
}

/** Runs a check of what a hook returned: its failure is the hook's (see sendableJson). */
function sendable(channel: string, check: () => unknown): void {
  try {
    check();
  } catch (err) {
    throw hookFailure(channel, err);
  }
}

/** An excluded socket id as it came through the node inbox: a short string, or nothing. */
function excluded(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 && v.length <= 64 ? v : undefined;
}
