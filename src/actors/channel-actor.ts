/**
 * One channel's actor, on the shard that owns the channel: its subscribers (by thread), presence,
 * history and custom logic. Each operation runs through the mailbox, so the channel sees one message
 * at a time and every subscriber sees the same order.
 */
import { randomBytes } from 'node:crypto';
import { channelAllowed } from '../auth/jwt.js';
import { channelKind, type ChannelKind } from '../auth/channels.js';
import { RtError } from '../errors.js';
import type { Member, Publication, StreamPosition } from '../protocol/native.js';
import type { ConnRef, PublishSource, SubscribeResult } from '../runtime/messages.js';
import { threadOfSocket } from '../runtime/hash.js';
import type { ActorContext, ActorDefinition, OutgoingMessage, Subscriber } from './define.js';
import { History } from './history.js';
import { Mailbox } from './mailbox.js';

/** What an actor needs from its shard: sending to threads and the policy knobs. */
export interface ActorEnv {
  threads: number;
  clientPublish: 'none' | 'private' | 'all';
  historySize: number;
  historyTtlMs: number;
  deliver(thread: number, pub: Publication, exclude?: string): void;
  presence(thread: number, kind: 'join!' | 'leave!', channel: string, member: Member): void;
}

interface MemberEntry { info: unknown; conns: number }

function subscriberOf(c: ConnRef): Subscriber {
  return { socketId: c.id, userId: c.user, userInfo: c.info, transport: c.transport };
}

export class ChannelActor {
  readonly name: string;
  readonly kind: ChannelKind;
  epoch = randomBytes(6).toString('base64url');
  offset = 0;
  private readonly history: History;
  private readonly subs = new Map<string, ConnRef>();
  private readonly perThread: number[];
  private readonly members = new Map<string, MemberEntry>();
  private readonly mailbox = new Mailbox();
  private readonly ctx: ActorContext<unknown>;
  lastActivity = Date.now();

  constructor(name: string, private readonly def: ActorDefinition, private readonly env: ActorEnv) {
    this.name = name;
    this.kind = channelKind(name);
    this.history = new History(def.history?.size ?? env.historySize, (def.history?.ttlSeconds ?? env.historyTtlMs / 1000) * 1000);
    this.perThread = new Array(env.threads).fill(0);
    const self = this;
    this.ctx = {
      channel: name,
      state: def.init ? def.init(name) : undefined,
      broadcast: (event, data) => self.emit(event, data).offset,
      members: () => self.memberList(),
      subscriberCount: () => self.subs.size,
    };
  }

  get subscriberCount(): number {
    return this.subs.size;
  }

  get memberCount(): number {
    return this.members.size;
  }

  memberList(): Member[] {
    const out: Member[] = [];
    for (const [user_id, e] of this.members) out.push(e.info === undefined ? { user_id } : { user_id, user_info: e.info });
    return out;
  }

  /** No subscribers, nothing queued and no history worth keeping: the host may drop it. */
  idle(now: number): boolean {
    return this.subs.size === 0 && this.mailbox.idle && this.history.expired(now) && now - this.lastActivity > 1000;
  }

  stop(): void {
    try {
      this.def.onStop?.(this.ctx);
    } catch (err) {
      console.error(`actor ${this.name}: onStop failed:`, err);
    }
  }

  subscribe(conn: ConnRef, since?: StreamPosition, data?: unknown, replay?: boolean): SubscribeResult | Promise<SubscribeResult> {
    return this.mailbox.run(() => this.doSubscribe(conn, since, data, replay));
  }

  private doSubscribe(conn: ConnRef, since?: StreamPosition, data?: unknown, replay?: boolean): SubscribeResult | Promise<SubscribeResult> {
    this.lastActivity = Date.now();
    if (replay && since && this.offset === 0 && this.history.length === 0) {
      // The previous owner of this channel died; its subscribers tell us where the stream was, so
      // offsets stay monotonic for clients that never noticed.
      this.epoch = since.epoch;
      this.offset = Math.max(this.offset, since.offset);
    }
    const who = subscriberOf(conn);
    if (this.def.authorize) {
      let verdict: ReturnType<NonNullable<ActorDefinition['authorize']>>;
      verdict = this.def.authorize(this.ctx, who, data);
      if (verdict instanceof Promise) return verdict.then((v) => this.admit(conn, v, since, replay));
      return this.admit(conn, verdict, since, replay);
    }
    if (this.kind !== 'public' && conn.granted !== this.name) {
      if (!conn.user) throw new RtError('unauthorized', `channel ${this.name} needs authorization: connect with a token`, 401);
      if (!channelAllowed(conn.grants, this.name)) throw new RtError('forbidden', `token for user ${conn.user} does not grant channel ${this.name}`, 403);
    }
    return this.admit(conn, true, since, replay);
  }

  private admit(conn: ConnRef, verdict: boolean | { info?: unknown }, since: StreamPosition | undefined, replay?: boolean): SubscribeResult | Promise<SubscribeResult> {
    if (verdict === false || verdict === null || verdict === undefined) throw new RtError('forbidden', `subscription to ${this.name} refused`, 403);
    if (typeof verdict === 'object' && 'info' in verdict) conn = { ...conn, info: verdict.info };
    if (this.kind === 'presence' && !conn.user) throw new RtError('unauthorized', `presence channel ${this.name} needs a user id (token sub)`, 401);
    const thread = threadOfSocket(conn.id);
    if (thread < 0 || thread >= this.perThread.length) throw new RtError('bad_request', `bad socket id ${conn.id}`);
    const known = this.subs.get(conn.id);
    if (!known) {
      this.subs.set(conn.id, conn);
      this.perThread[thread]!++;
      if (this.kind === 'presence') this.memberJoined(conn, !!replay);
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
    if (!known && this.def.onJoin && !replay) {
      const r = this.def.onJoin(this.ctx, subscriberOf(conn));
      if (r instanceof Promise) return r.then(() => result);
    }
    return result;
  }

  private memberJoined(conn: ConnRef, silent: boolean): void {
    const user = conn.user!;
    const e = this.members.get(user);
    if (e) {
      e.conns++;
      return;
    }
    this.members.set(user, { info: conn.info, conns: 1 });
    if (silent) return;
    const m: Member = conn.info === undefined ? { user_id: user } : { user_id: user, user_info: conn.info };
    this.presenceToThreads('join!', m);
  }

  private presenceToThreads(kind: 'join!' | 'leave!', m: Member): void {
    for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.presence(t, kind, this.name, m);
  }

  unsubscribe(connId: string): void | Promise<void> {
    return this.mailbox.run(() => this.doUnsubscribe(connId));
  }

  private doUnsubscribe(connId: string): void | Promise<void> {
    const conn = this.subs.get(connId);
    if (!conn) return;
    this.lastActivity = Date.now();
    this.subs.delete(connId);
    this.perThread[threadOfSocket(connId)]!--;
    if (this.kind === 'presence' && conn.user) {
      const e = this.members.get(conn.user);
      if (e && --e.conns === 0) {
        this.members.delete(conn.user);
        this.presenceToThreads('leave!', e.info === undefined ? { user_id: conn.user } : { user_id: conn.user, user_info: e.info });
      }
    }
    if (this.def.onLeave) return this.def.onLeave(this.ctx, subscriberOf(conn));
  }

  /** A thread was replaced: its connections are gone. */
  dropThread(thread: number): void | Promise<void> {
    return this.mailbox.run(() => {
      const gone = [...this.subs.keys()].filter((id) => threadOfSocket(id) === thread);
      for (const id of gone) void this.doUnsubscribe(id);
    });
  }

  publish(msg: OutgoingMessage, source: PublishSource, from?: ConnRef, exclude?: string): { offset: number } | Promise<{ offset: number }> {
    return this.mailbox.run(() => this.doPublish(msg, source, from, exclude));
  }

  private doPublish(msg: OutgoingMessage, source: PublishSource, from: ConnRef | undefined, exclude: string | undefined): { offset: number } | Promise<{ offset: number }> {
    let verdict: OutgoingMessage | null | void | Promise<OutgoingMessage | null | void>;
    if (source === 'client') {
      if (!from || !this.subs.has(from.id)) throw new RtError('not_subscribed', `subscribe to ${this.name} before publishing to it`, 403);
      if (this.def.onMessage) verdict = this.def.onMessage(this.ctx, msg, subscriberOf(this.subs.get(from.id)!));
      else {
        const allowed = this.def.clientPublish ?? (this.env.clientPublish === 'all' || (this.env.clientPublish === 'private' && this.kind !== 'public'));
        if (!allowed) throw new RtError('publish_refused', `clients may not publish to ${this.name} (client publish policy: ${this.def.clientPublish === false ? 'refused by actor' : this.env.clientPublish})`, 403);
        verdict = undefined;
      }
    } else {
      verdict = this.def.onPublish ? this.def.onPublish(this.ctx, msg, source) : undefined;
    }
    if (verdict instanceof Promise) return verdict.then((v) => this.afterVerdict(msg, v, exclude));
    return this.afterVerdict(msg, verdict, exclude);
  }

  private afterVerdict(msg: OutgoingMessage, verdict: OutgoingMessage | null | void, exclude: string | undefined): { offset: number } {
    if (verdict === null) throw new RtError('publish_refused', `publish to ${this.name} refused by the channel actor`, 403);
    const out = verdict ?? msg;
    if (!out || typeof out.event !== 'string' || out.event.length === 0) throw new RtError('internal', `actor for ${this.name} returned a message without an event`, 500);
    return this.emit(out.event, out.data, exclude);
  }

  /** Assigns the next offset, records, and sends one frame to each thread that has subscribers. */
  private emit(event: string, data: unknown, exclude?: string): { offset: number } {
    const now = Date.now();
    this.lastActivity = now;
    const pub: Publication = { channel: this.name, event, data, offset: ++this.offset };
    this.history.push(pub, now);
    for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.deliver(t, pub, exclude);
    return { offset: pub.offset };
  }

  historySince(since: StreamPosition | undefined, limit: number): { pubs: Publication[]; recovered: boolean; offset: number; epoch: string } {
    const base = { offset: this.offset, epoch: this.epoch };
    if (!since) return { ...base, pubs: this.history.latest(limit), recovered: true };
    if (since.epoch !== this.epoch) return { ...base, pubs: [], recovered: false };
    const pubs = this.history.since(since.offset, this.offset, limit);
    return { ...base, pubs: pubs ?? [], recovered: pubs !== null };
  }
}
