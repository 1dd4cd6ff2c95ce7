/**
 * rt-actors/testing: runs a channel actor in memory — the server's own actor runtime, without threads
 * or sockets — with simulated subscribers and a clock that moves only when the test says so. See
 * docs/actors.md ("Testing an actor").
 */
import { RtError } from '../errors.js';
import { ChannelActor, newActorStats, type ActorStats } from '../actors/channel-actor.js';
import type { AnyActorDefinition, StopReason } from '../actors/define.js';
import { validateActorDefinition } from '../actors/validate-definition.js';
import type { Member, Publication } from '../protocol/native.js';
import type { ConnRef, PublishResult, PublishSource } from '../runtime/messages.js';
import { ManualClock } from './clock.js';

export { ManualClock } from './clock.js';

/** One thing a simulated subscriber received. */
export interface Received {
  event: string;
  data: unknown;
  /** Offset of a channel publication; absent for a private push. */
  offset?: number;
  /** True for a private push (ctx.push / ctx.pushUser). */
  private?: boolean;
}

export interface TestSubscriber {
  readonly socketId: string;
  readonly userId?: string;
  /** What the actor answered in the subscribe reply (onJoin's `{ reply }`). */
  readonly reply: unknown;
  /** Stream position in the subscribe reply: the next publication it receives has offset + 1. */
  readonly offset: number;
  /** Everything received since joining, in order. */
  readonly received: Received[];
  /** Presence joins and leaves received (presence channels). */
  readonly presence: Array<{ kind: 'join' | 'leave'; member: Member }>;
  /** Set when the actor kicked it, to the reason its client was told. */
  kicked?: string;
  /** Whether it is still in the channel. */
  readonly joined: boolean;
  /** The `received` entries of one event. */
  events(event: string): Received[];
}

export interface JoinOptions {
  userId?: string;
  userInfo?: unknown;
  /** The subscribe request's `data` (seen by authorize and onJoin). */
  data?: unknown;
  transport?: string;
  /** Channel patterns granted as by a token's `channels` claim (private-/presence- channels without authorize). */
  grants?: string[];
}

export interface ActorTestOptions {
  /** The channel to run (default: the first exact name of `match`, else 'test-channel'). */
  channel?: string;
  /** Start time of the clock, ms since the epoch (default 0). */
  now?: number;
  /** Hook deadline in ms of the (manual) clock (default 5000). */
  hookTimeoutMs?: number;
  mailboxSize?: number;
  /** --client-publish policy for channels without onMessage (default 'private'). */
  clientPublish?: 'none' | 'private' | 'all';
  /** Compute tasks for ctx.compute, by name (what `<name>.task.ts` would export). */
  tasks?: Record<string, (input: unknown) => unknown>;
}

class Sub implements TestSubscriber {
  reply: unknown;
  offset = 0;
  readonly received: Received[] = [];
  readonly presence: Array<{ kind: 'join' | 'leave'; member: Member }> = [];
  kicked?: string;
  joined = false;
  joining = false;
  constructor(readonly socketId: string, readonly userId: string | undefined) {}
  events(event: string): Received[] {
    return this.received.filter((r) => r.event === event);
  }
}

export class ActorTest {
  readonly clock: ManualClock;
  readonly channel: string;
  /** Every publication of the channel, in order, made with subscribers or not. */
  readonly publications: Publication[] = [];
  /** Failure and restart counters, as /metrics reports them. */
  readonly stats: ActorStats = newActorStats();
  /** Messages the actor logged (failures, refusals without an answer). */
  readonly logs: string[] = [];
  private readonly actor: ChannelActor;
  private readonly subs = new Map<string, Sub>();
  private n = 0;

  constructor(def: AnyActorDefinition, opts: ActorTestOptions = {}) {
    this.clock = new ManualClock(opts.now ?? 0);
    this.channel = opts.channel ?? defaultChannel(def);
    const tasks = opts.tasks ?? {};
    this.actor = new ChannelActor(
      this.channel,
      def,
      {
        threads: 1,
        clientPublish: opts.clientPublish ?? 'private',
        historySize: 1000,
        historyTtlMs: 3_600_000,
        clock: this.clock,
        hookTimeoutMs: opts.hookTimeoutMs,
        mailboxSize: opts.mailboxSize,
        stats: this.stats,
        log: (msg, err) => this.logs.push(err === undefined ? msg : `${msg}: ${(err as Error)?.message ?? String(err)}`),
        published: (pub) => this.publications.push(pub),
        deliver: (_t, pub, exclude) => {
          for (const s of this.subs.values()) {
            if (s.joined && s.socketId !== exclude) s.received.push({ event: pub.event, data: pub.data, offset: pub.offset });
          }
        },
        presence: (_t, kind, _ch, member) => {
          for (const s of this.subs.values()) if (s.joined) s.presence.push({ kind: kind === 'join!' ? 'join' : 'leave', member });
        },
        push: (_t, _ch, to, event, data, js) => {
          for (const id of to) {
            const s = this.subs.get(id);
            // As a subscriber gets it: the data as it was when pushed, as its JSON.
            if (s && (s.joined || s.joining)) s.received.push({ event, data: js === undefined ? data : JSON.parse(js), private: true });
          }
        },
        kick: (_t, _ch, id, reason) => {
          const s = this.subs.get(id);
          if (!s) return;
          s.joined = false;
          s.kicked = reason;
        },
        compute: async (task, input) => {
          const fn = tasks[task];
          if (!fn) throw new RtError('not_found', `no compute task ${task} (pass it in options.tasks)`, 404);
          try {
            return await fn(input);
          } catch (err) {
            // As the server's compute pool reports it (compute-pool.ts).
            throw new RtError('task_failed', `compute task ${task} failed: ${err instanceof Error ? err.message : String(err)}`, 500);
          }
        },
      },
      'test',
    );
  }

  /** The actor's state (ctx.state). */
  get state(): unknown {
    return this.actor.state;
  }

  /** Subscribes a simulated connection. Rejects with the actor's error (`err.code`) when refused. */
  async join(opts: JoinOptions = {}): Promise<TestSubscriber> {
    const s = new Sub(`0.test${(this.n++).toString(36)}`, opts.userId);
    const conn: ConnRef = { id: s.socketId, transport: opts.transport ?? 'memory' };
    if (opts.userId !== undefined) conn.user = opts.userId;
    if (opts.userInfo !== undefined) conn.info = opts.userInfo;
    if (opts.grants) conn.grants = opts.grants;
    this.subs.set(s.socketId, s);
    s.joining = true;
    try {
      const res = await this.actor.subscribe(conn, undefined, opts.data);
      s.offset = res.offset;
      s.reply = res.data;
      s.joined = true;
      return s;
    } catch (err) {
      this.subs.delete(s.socketId);
      throw err;
    } finally {
      s.joining = false;
    }
  }

  /** The subscriber leaves (unsubscribe or disconnect); resolves once onLeave ran. */
  async leave(sub: TestSubscriber): Promise<void> {
    const s = this.subs.get(sub.socketId);
    if (!s) return;
    s.joined = false;
    await this.actor.unsubscribe(s.socketId);
  }

  /** A client message from `sub` (native publish, Socket.IO client event). Resolves with `{ offset, data }` (data: the actor's reply). */
  async send(sub: TestSubscriber, event: string, data: unknown, opts: { excludeSelf?: boolean } = {}): Promise<PublishResult> {
    const conn: ConnRef = { id: sub.socketId };
    if (sub.userId !== undefined) conn.user = sub.userId;
    return this.actor.publish({ event, data }, 'client', conn, opts.excludeSelf ? sub.socketId : undefined);
  }

  /** A backend publish (HTTP API by default). */
  async publish(event: string, data: unknown, source: Exclude<PublishSource, 'client'> = 'api'): Promise<PublishResult> {
    return this.actor.publish({ event, data }, source);
  }

  /**
   * Moves the clock forward by `ms`, firing due timers in order; after each, waits until the actor has
   * handled everything it queued (timer hooks, kicks' onLeave, compute results).
   */
  async advance(ms: number): Promise<void> {
    const end = this.clock.now() + ms;
    await this.settle();
    for (let d = this.clock.nextDue(end); d; d = this.clock.nextDue(end)) {
      this.clock.fire(d);
      await this.settle();
    }
    this.clock.set(end);
  }

  /**
   * Lets the actor run what it has queued: waits until its mailbox is empty, or — when a hook is waiting
   * on the clock itself (a deadline, a timer) — until nothing moves for a while.
   */
  async settle(): Promise<void> {
    for (let i = 0; i < 3 || (this.actor.busy && i < 200); i++) await new Promise((r) => setImmediate(r));
  }

  /** Stops the actor (onStop with `reason`). */
  stop(reason: StopReason = 'shutdown'): Promise<void> {
    return this.actor.stop(reason);
  }

  members(): Member[] {
    return this.actor.memberList();
  }

  get subscriberCount(): number {
    return this.actor.subscriberCount;
  }
}

function defaultChannel(def: AnyActorDefinition): string {
  const list = (Array.isArray(def.match) ? def.match : [def.match]) as Array<string | RegExp>;
  const exact = list.find((m): m is string => typeof m === 'string' && !m.includes('*'));
  if (exact) return exact;
  const glob = list.find((m): m is string => typeof m === 'string');
  return glob ? glob.replace(/\*/g, 'test') : 'test-channel';
}

/** Runs `def` in memory: `const t = testActor(auction, { channel: 'auction-1' })`. */
export function testActor(def: AnyActorDefinition, opts: ActorTestOptions = {}): ActorTest {
  // The checks the server makes when it loads the file, so a unit test fails where the start would.
  return new ActorTest(validateActorDefinition(def, 'testActor'), opts);
}
