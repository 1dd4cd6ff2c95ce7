/**
 * The one activation of a placed channel actor in the whole cluster, on the node holding the channel's
 * lease. It runs the user's hooks one turn at a time with a cluster-wide context (every subscriber on
 * every host), publishes with the lease's fence, and persists its state after every turn that changed
 * it — in the same Lua call as the turn's publication when there is one — so the next holder resumes
 * from exactly what was accepted.
 *
 * Persisted record (msgpack, keys.state): `{ s: state, m: subscribers }`. State must therefore be
 * msgpack-serialisable: plain objects, arrays, strings, numbers, booleans, null, Dates, Maps and Sets;
 * not functions, class instances (they come back as plain objects) or handles.
 */
import { Packr, Unpackr } from 'msgpackr';
import type { ActorContext, ActorDefinition, OutgoingMessage, Subscriber } from '../actors/define.js';
import { Mailbox } from '../actors/mailbox.js';
import { RtError } from '../errors.js';
import type { Member } from '../protocol/native.js';
import type { PublishSource } from '../runtime/messages.js';
import type { HistoryBounds } from './broker.js';
import type { Fence } from './lease.js';
import type { RedisBroker } from './redis-broker.js';

const packr = new Packr({ useRecords: false, moreTypes: true });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', moreTypes: true });

/** A subscriber as the activation knows it: which node (host shard) relays it. */
export interface RemoteSubscriber extends Subscriber {
  node: string;
}

interface Record {
  s: unknown;
  m: RemoteSubscriber[];
}

export interface ActivationEnv {
  broker: RedisBroker;
  bounds: HistoryBounds;
  /** State lives this long in Redis after the last turn that wrote it. */
  stateTtlMs: number;
  log(msg: string, err?: unknown): void;
}

/** Backend messages seen lately (their claims), so the copies every host forwards are sequenced once. */
const CLAIM_WINDOW_MS = 10_000;

export class Activation {
  private readonly mailbox = new Mailbox();
  private readonly subs = new Map<string, RemoteSubscriber>();
  private readonly ctx: ActorContext<unknown>;
  private saved: Buffer | undefined;
  private readonly outbox: Promise<unknown>[] = [];
  private readonly claims = new Map<string, number>();
  lastActivity = Date.now();
  stopped = false;

  private constructor(readonly channel: string, private readonly def: ActorDefinition, private readonly env: ActivationEnv, private fence: Fence) {
    const self = this;
    this.ctx = {
      channel,
      state: undefined,
      broadcast: (event: string, data: unknown) => {
        self.outbox.push(self.publish({ event, data }).catch((err) => self.env.log(`broadcast from actor hook failed`, err)));
        // Sequenced by Redis after the hook returns: the offset is not known here.
        return 0;
      },
      members: () => self.memberList(),
      subscriberCount: () => self.subs.size,
      // The placed activation predates the push/reply/timer API (issue 9): those parts are not wired yet.
    } as unknown as ActorContext<unknown>;
  }

  /**
   * Activates from the persisted record (or `init` when there is none). Subscribers relayed by nodes
   * that stopped heartbeating are dropped: their connections died with their host.
   */
  static async start(channel: string, def: ActorDefinition, env: ActivationEnv, fence: Fence): Promise<Activation> {
    const a = new Activation(channel, def, env, fence);
    const bytes = await env.broker.leases.loadState(channel);
    let rec: Record | undefined;
    if (bytes) {
      try {
        rec = unpackr.unpack(bytes) as Record;
      } catch (err) {
        env.log(`persisted state of ${channel} is unreadable; starting from init`, err);
      }
    }
    if (rec) {
      a.ctx.state = rec.s;
      const nodes = [...new Set((rec.m ?? []).map((m) => m.node))];
      const alive = new Set<string>();
      await Promise.all(nodes.map(async (n) => ((await env.broker.nodeAlive(n)) ? alive.add(n) : undefined)));
      for (const m of rec.m ?? []) if (alive.has(m.node)) a.subs.set(m.socketId, m);
      a.saved = packr.pack({ s: rec.s, m: [...a.subs.values()] });
    } else {
      a.ctx.state = def.init ? def.init(channel) : undefined;
    }
    return a;
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  get idle(): boolean {
    return this.mailbox.idle;
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

  /** Runs one forwarded event as one turn of the mailbox. */
  run(op: string, args: unknown[]): Promise<unknown> {
    return Promise.resolve(this.mailbox.run(() => this.turn(op, args)));
  }

  private async turn(op: string, args: unknown[]): Promise<unknown> {
    if (this.stopped) throw new RtError('moved', `the actor of ${this.channel} moved (lease lost)`, 503);
    this.lastActivity = Date.now();
    let out: OutgoingMessage | null | undefined;
    let result: unknown;
    switch (op) {
      case 'auth': {
        const [who, data] = args as [RemoteSubscriber, unknown];
        result = this.def.authorize ? await this.def.authorize(this.ctx, who, data) : true;
        if (result !== true && result !== false && (typeof result !== 'object' || result === null)) result = !!result;
        break;
      }
      case 'join': {
        const [who] = args as [RemoteSubscriber];
        const known = this.subs.has(who.socketId);
        this.subs.set(who.socketId, who);
        if (!known) await this.def.onJoin?.(this.ctx, who, undefined);
        break;
      }
      case 'leave': {
        const [who] = args as [RemoteSubscriber];
        const known = this.subs.get(who.socketId);
        if (known) {
          this.subs.delete(who.socketId);
          await this.def.onLeave?.(this.ctx, known);
        }
        break;
      }
      case 'msg': {
        const [msg, who] = args as [OutgoingMessage, RemoteSubscriber];
        if (!this.def.onMessage) throw new RtError('bad_request', 'no onMessage');
        const v = (await this.def.onMessage(this.ctx, msg, this.subs.get(who.socketId) ?? who)) as OutgoingMessage | null | undefined;
        out = v === null ? null : (v ?? msg);
        break;
      }
      case 'pub': {
        const [msg, source, claim] = args as [OutgoingMessage, PublishSource, string | undefined];
        if (claim !== undefined && this.seenClaim(claim)) return null;
        const v = this.def.onPublish ? await this.def.onPublish(this.ctx, msg, source) : undefined;
        out = v === null ? null : (v ?? msg);
        break;
      }
      default:
        throw new RtError('bad_request', `unknown placed-actor operation ${op}`);
    }
    await this.flushOutbox();
    if (op === 'msg' || op === 'pub') {
      if (out === null) return null;
      if (!out || typeof out.event !== 'string' || out.event.length === 0) throw new RtError('internal', `actor for ${this.channel} returned a message without an event`, 500);
      const pos = await this.publish({ event: out.event, data: out.data }, this.changedState());
      return { p: pos };
    }
    const changed = this.changedState();
    if (changed) {
      await this.env.broker.leases.saveState(this.channel, changed, this.env.stateTtlMs);
      this.saved = changed;
    }
    return result;
  }

  /** Broadcasts of this turn go out before the turn's own publication, in call order. */
  private async flushOutbox(): Promise<void> {
    while (this.outbox.length) await Promise.allSettled(this.outbox.splice(0));
  }

  /** The record to persist when it differs from what was saved last, else undefined. */
  private changedState(): Buffer | undefined {
    let bytes: Buffer;
    try {
      bytes = packr.pack({ s: this.ctx.state, m: [...this.subs.values()] });
    } catch (err) {
      throw new RtError('internal', `state of ${this.channel} is not serialisable: ${(err as Error).message}`, 500);
    }
    if (this.saved && bytes.equals(this.saved)) return undefined;
    return bytes;
  }

  private async publish(msg: OutgoingMessage, state?: Buffer): Promise<number> {
    const fence: Fence = state ? { ...this.fence, state, stateTtlMs: this.env.stateTtlMs } : this.fence;
    const pos = await this.env.broker.publish(this.channel, { event: msg.event, data: msg.data }, this.env.bounds, undefined, fence);
    if (state) this.saved = state;
    return pos!.offset;
  }

  private seenClaim(claim: string): boolean {
    const now = Date.now();
    for (const [k, until] of this.claims) if (until <= now) this.claims.delete(k);
    if (this.claims.has(claim)) return true;
    this.claims.set(claim, now + CLAIM_WINDOW_MS);
    return false;
  }

  /** The lease is gone: refuse further turns (callers retry at the new owner). */
  stop(): void {
    this.stopped = true;
  }

  /** Waits for the turn in progress and those queued, at most `ms`. */
  async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (!this.mailbox.idle && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }
}
