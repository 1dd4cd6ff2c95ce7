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
import type { Broker, BrokerMessage, ChannelSink, HistoryBounds } from '../bridge/broker.js';
import type { ActorContext, ActorDefinition, OutgoingMessage, Subscriber } from './define.js';
import { History } from './history.js';
import { Mailbox } from './mailbox.js';
import { Published } from './published.js';

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
  presence(thread: number, kind: 'join!' | 'leave!', channel: string, member: Member, exclude?: string): void;
  /** Throws (`overloaded`) when new deliveries to `thread` must be refused: checked before a publish is accepted. */
  admit?(thread: number): void;
  /** History bounds of a channel (per-pattern settings); defaults to historySize / historyTtlMs. */
  historyFor?(channel: string, def: ActorDefinition): HistoryBounds;
  /**
   * Redis bridge (src/bridge): the broker owns the channel's sequence, history and presence; the actor
   * relays what the channel's subscription brings. Absent in the embedded default.
   */
  broker?: Broker;
  /** Tells a thread's subscribers of a channel that they missed publications and must resync. */
  resync?(thread: number, channel: string): void;
  log?(msg: string, err?: unknown): void;
}

interface MemberEntry { info: unknown; conns: number }

/**
 * A publish whose offset the broker assigns later. Returned through the mailbox as a plain object so
 * the mailbox does not wait for Redis: publishes leave in mailbox order on one connection, and Redis
 * sequences them in that order.
 */
class Pending {
  constructor(readonly done: Promise<{ offset: number }>) {}
}

function settle(v: { offset: number } | Pending): { offset: number } | Promise<{ offset: number }> {
  return v instanceof Pending ? v.done : v;
}

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
  private readonly bounds: HistoryBounds;
  /** Redis mode: this host is subscribed to the channel in Redis (it has local subscribers). */
  private bridged = false;
  /** Redis mode: writes of this channel's presence and counts, kept in issue order. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Redis mode: per thread, the offset up to which a replay after a shard restart was caught up. */
  private readonly caught = new Map<number, number>();

  constructor(name: string, private readonly def: ActorDefinition, private readonly env: ActorEnv) {
    this.name = name;
    this.kind = channelKind(name);
    this.bounds = env.historyFor ? env.historyFor(name, def) : { size: def.history?.size ?? env.historySize, ttlMs: (def.history?.ttlSeconds ?? env.historyTtlMs / 1000) * 1000 };
    this.history = new History(this.bounds.size, this.bounds.ttlMs);
    this.perThread = new Array(env.threads).fill(0);
    const self = this;
    this.ctx = {
      channel: name,
      state: def.init ? def.init(name) : undefined,
      broadcast: (event, data) => {
        const r = self.emit(event, data);
        if (!(r instanceof Pending)) return r.offset;
        // With a broker the offset is assigned by Redis later; a failure is logged, not thrown at the hook.
        r.done.catch((err) => self.log(`broadcast from actor hook failed`, err));
        return 0;
      },
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
    return this.subs.size === 0 && !this.bridged && this.mailbox.idle && this.history.expired(now) && now - this.lastActivity > 1000;
  }

  private log(msg: string, err?: unknown): void {
    if (this.env.log) this.env.log(`channel ${this.name}: ${msg}`, err);
    else console.error(`channel ${this.name}: ${msg}`, err ?? '');
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
    if (!this.env.broker && replay && since && this.offset === 0 && this.history.length === 0) {
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
    if (this.env.broker) return this.admitBridged(conn, verdict, since, replay);
    if (verdict === false || verdict === null || verdict === undefined) throw new RtError('forbidden', `subscription to ${this.name} refused`, 403);
    if (typeof verdict === 'object' && 'info' in verdict) conn = { ...conn, info: verdict.info };
    if (this.kind === 'presence' && !conn.user) throw new RtError('unauthorized', `presence channel ${this.name} needs a user id (token sub)`, 401);
    const thread = threadOfSocket(conn.id);
    if (thread < 0 || thread >= this.perThread.length) throw new RtError('bad_request', `bad socket id ${conn.id}`);
    const known = this.subs.get(conn.id);
    if (!known && this.kind === 'presence' && !replay && this.env.maxPresenceMembers && !this.members.has(conn.user!) && this.members.size >= this.env.maxPresenceMembers) {
      throw new RtError('too_many_members', `presence channel ${this.name} is full (${this.env.maxPresenceMembers} members)`, 403);
    }
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
    const broker = this.env.broker;
    if (this.kind === 'presence' && conn.user) {
      const e = this.members.get(conn.user);
      if (e && --e.conns === 0) {
        this.members.delete(conn.user);
        const user = conn.user;
        // With a broker the leave is announced by Redis, and only when this was the user's last host.
        if (broker) void this.op(() => broker.leave(this.name, user)).catch((err) => this.log(`presence leave of ${user} not recorded`, err));
        else this.presenceToThreads('leave!', e.info === undefined ? { user_id: conn.user } : { user_id: conn.user, user_info: e.info });
      }
    }
    if (broker && this.bridged) {
      const n = this.subs.size;
      void this.op(() => broker.count(this.name, n)).catch((err) => this.log('subscriber count not recorded', err));
      if (n === 0) this.unbridge();
    }
    if (this.def.onLeave) return this.def.onLeave(this.ctx, subscriberOf(conn));
  }

  /** A thread was replaced: its connections are gone. */
  dropThread(thread: number): void | Promise<void> {
    return this.mailbox.run(() => {
      const gone = [...this.subs.keys()].filter((id) => threadOfSocket(id) === thread);
      for (const id of gone) void Promise.resolve(this.doUnsubscribe(id)).catch((err) => this.log('onLeave failed', err));
    });
  }

  publish(msg: OutgoingMessage, source: PublishSource, from?: ConnRef, exclude?: string, at?: number): { offset: number } | Promise<{ offset: number }> {
    const r = this.mailbox.run(() => this.doPublish(msg, source, from, exclude, at));
    return r instanceof Promise ? r.then(settle) : settle(r);
  }

  private doPublish(msg: OutgoingMessage, source: PublishSource, from: ConnRef | undefined, exclude: string | undefined, at?: number): { offset: number } | Pending | Promise<{ offset: number } | Pending> {
    // Backpressure: refuse before accepting, since an accepted publish's deliveries are never dropped.
    if (this.env.admit) for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.admit(t);
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
    if (verdict instanceof Promise) return verdict.then((v) => this.afterVerdict(msg, v, exclude, at));
    return this.afterVerdict(msg, verdict, exclude, at);
  }

  private afterVerdict(msg: OutgoingMessage, verdict: OutgoingMessage | null | void, exclude: string | undefined, at?: number): { offset: number } | Pending {
    if (verdict === null) throw new RtError('publish_refused', `publish to ${this.name} refused by the channel actor`, 403);
    if ((verdict as unknown) instanceof Published) {
      const o = (verdict as unknown as Published).offset;
      return typeof o === 'number' ? { offset: o } : new Pending(o.then((offset) => ({ offset })));
    }
    const out = verdict ?? msg;
    if (!out || typeof out.event !== 'string' || out.event.length === 0) throw new RtError('internal', `actor for ${this.name} returned a message without an event`, 500);
    return this.emit(out.event, out.data, exclude, at);
  }

  /** Assigns the next offset, records, and sends one frame to each thread that has subscribers. */
  private emit(event: string, data: unknown, exclude?: string, at?: number): { offset: number } | Pending {
    const now = Date.now();
    this.lastActivity = now;
    if (this.env.broker) {
      // Redis assigns the offset and fans out to every host, this one included (see relay).
      const msg: BrokerMessage = exclude ? { event, data, exclude } : { event, data };
      return new Pending(this.env.broker.publish(this.name, msg, this.bounds).then((pos) => ({ offset: pos!.offset })));
    }
    const pub: Publication = { channel: this.name, event, data, offset: ++this.offset };
    this.history.push(pub, now);
    for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.deliver(t, pub, exclude, at);
    return { offset: pub.offset };
  }

  historySince(since: StreamPosition | undefined, limit: number): HistoryAnswer | Promise<HistoryAnswer> {
    if (this.env.broker) return this.historyBridged(this.env.broker, since, limit);
    const base = { offset: this.offset, epoch: this.epoch };
    if (!since) return { ...base, pubs: this.history.latest(limit), recovered: true };
    if (since.epoch !== this.epoch) return { ...base, pubs: [], recovered: false };
    const pubs = this.history.since(since.offset, this.offset, limit);
    return { ...base, pubs: pubs ?? [], recovered: pubs !== null };
  }

  // ——— Redis mode (env.broker): see docs/scaling.md ———

  /** Runs a presence/count write after the previous ones, whatever their outcome. */
  private op<T>(f: () => Promise<T>): Promise<T> {
    const p = this.chain.then(f, f);
    this.chain = p.catch(() => {});
    return p;
  }

  private async bridge(broker: Broker): Promise<void> {
    const pos = await broker.attach(this.name, this.sink, this.bounds);
    this.offset = pos.offset;
    this.epoch = pos.epoch;
    this.bridged = true;
  }

  private unbridge(): void {
    this.bridged = false;
    this.caught.clear();
    this.env.broker!.detach(this.name);
  }

  /**
   * Subscribe with a broker. Everything that needs Redis happens first, while the mailbox holds later
   * deliveries back; the actor's state changes only once all of it succeeded, so a failure leaves
   * nothing half-done and the client gets `unavailable`. While Redis is away, a channel this host
   * already relays still takes subscribers: their presence and count are registered when it is back
   * (recover), and only what truly needs Redis — a first subscription, history, the member list — fails.
   */
  private async admitBridged(conn: ConnRef, verdict: boolean | { info?: unknown }, since: StreamPosition | undefined, replay?: boolean): Promise<SubscribeResult> {
    if (verdict === false || verdict === null || verdict === undefined) throw new RtError('forbidden', `subscription to ${this.name} refused`, 403);
    if (typeof verdict === 'object' && 'info' in verdict) conn = { ...conn, info: verdict.info };
    if (this.kind === 'presence' && !conn.user) throw new RtError('unauthorized', `presence channel ${this.name} needs a user id (token sub)`, 401);
    const thread = threadOfSocket(conn.id);
    if (thread < 0 || thread >= this.perThread.length) throw new RtError('bad_request', `bad socket id ${conn.id}`);
    const broker = this.env.broker!;
    const known = this.subs.has(conn.id);
    const newMember = this.kind === 'presence' && !known && !this.members.has(conn.user!);
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
      if (newMember) {
        await this.op(() => broker.join(this.name, conn.user!, conn.info, conn.id)).then(() => (joined = true), later);
      }
      // Counted before the reply, so /api/channels on any host sees a subscription once it is acknowledged.
      if (!known) await this.op(() => broker.count(this.name, this.subs.size + 1)).catch(later);
      result = { offset: this.offset, epoch: this.epoch };
      if (since && !replay) {
        if (since.epoch === this.epoch && since.offset >= this.offset) {
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
      if (this.kind === 'presence') result.members = await broker.members(this.name);
    } catch (err) {
      if (joined) void this.op(() => broker.leave(this.name, conn.user!)).catch(() => {});
      if (!known) void this.op(() => broker.count(this.name, this.subs.size)).catch(() => {});
      if (attached && this.subs.size === 0) this.unbridge();
      throw err;
    }
    if (!known) {
      this.subs.set(conn.id, conn);
      this.perThread[thread]!++;
      if (this.kind === 'presence') {
        const e = this.members.get(conn.user!);
        if (e) e.conns++;
        else this.members.set(conn.user!, { info: conn.info, conns: 1 });
      }
    }
    if (this.kind === 'presence') result.info = conn.info;
    if (!known && this.def.onJoin && !replay) await this.def.onJoin(this.ctx, subscriberOf(conn));
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

  private async historyBridged(broker: Broker, since: StreamPosition | undefined, limit: number): Promise<HistoryAnswer> {
    const pos = this.bridged ? { offset: this.offset, epoch: this.epoch } : await broker.position(this.name, this.bounds);
    if (!since) {
      const pubs = (await broker.latest(this.name, limit, this.bounds)).filter((p) => p.offset <= pos.offset);
      return { ...pos, pubs, recovered: true };
    }
    if (since.epoch !== pos.epoch) return { ...pos, pubs: [], recovered: false };
    const h = await broker.history(this.name, since.offset, pos.offset, limit, this.bounds);
    return { ...pos, pubs: h.pubs, recovered: h.recovered };
  }

  /** What the channel's Redis subscription delivers, queued through the mailbox like everything else. */
  private readonly sink: ChannelSink = {
    publication: (pub, epoch, exclude) => this.enqueue(() => this.relay(pub, epoch, exclude)),
    presence: (kind, m, exclude) =>
      this.enqueue(() => {
        if (!this.bridged) return;
        for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.presence(t, kind, this.name, m, exclude);
      }),
    ingest: (msg, claim) => this.enqueue(() => this.ingest(msg, claim)),
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

  private fanOut(pub: Publication, exclude?: string): void {
    for (let t = 0; t < this.perThread.length; t++) if (this.perThread[t]! > 0) this.env.deliver(t, pub, exclude);
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

  /** Delivers (offset, upTo] from history, or tells local subscribers they must resync. */
  private async fill(upTo: number): Promise<void> {
    const broker = this.env.broker!;
    const h = await broker.history(this.name, this.offset, upTo, Infinity, this.bounds).catch(() => null);
    if (h?.recovered) {
      for (const p of h.pubs) {
        this.offset = p.offset;
        this.fanOut(p);
      }
      broker.stats.recovered += h.pubs.length;
      if (this.offset >= upTo) return;
    }
    this.resyncAll(`publications ${this.offset + 1}..${upTo} could not be recovered from history`);
    this.offset = upTo;
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
      this.log(`${why}: subscribers were told to resync`);
    }
  }

  private resyncThread(thread: number, why: string): void {
    this.env.resync?.(thread, this.name);
    this.env.broker!.stats.resyncs++;
    this.log(`${why}: subscribers on thread ${thread} were told to resync`);
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
        const o = (v as unknown as Published).offset;
        if (typeof o !== 'number') o.catch((err) => this.log('a message published through Redis was refused by its actor', err));
        return;
      }
      const out = v ?? { event: msg.event, data: msg.data };
      if (!out || typeof out.event !== 'string' || out.event.length === 0) return this.log('onPublish returned a message without an event; dropped');
      const m: BrokerMessage = msg.exclude ? { event: out.event, data: out.data, exclude: msg.exclude } : { event: out.event, data: out.data };
      this.env.broker!.publish(this.name, m, this.bounds, claim).catch((err) => this.log('could not sequence a message published through Redis', err));
    };
    if (!this.def.onPublish) return send(undefined);
    const verdict = this.def.onPublish(this.ctx, { event: msg.event, data: msg.data }, 'redis');
    if (verdict instanceof Promise) return verdict.then(send, (err) => this.log('onPublish refused a message published through Redis', err));
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
    for (const [user, e] of this.members) await this.op(() => broker.join(this.name, user, e.info, undefined));
    const n = this.subs.size;
    await this.op(() => broker.count(this.name, n));
    const pos = await broker.position(this.name, this.bounds);
    if (!this.bridged) return;
    if (pos.epoch !== this.epoch) return this.reset(pos.epoch, pos.offset, "the channel's stream in Redis was reset (Redis restarted without persistence?)");
    if (pos.offset > this.offset) await this.fill(pos.offset);
  }
}

export type HistoryAnswer = { pubs: Publication[]; recovered: boolean; offset: number; epoch: string };
