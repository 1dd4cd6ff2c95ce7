/**
 * A thread's hub: the connections it holds, which channels they are in, and delivery to them.
 * Subscriptions and publishes go to the channel's owner shard through the mesh; deliveries come back
 * as one frame per thread and are fanned out here — through uWS topics for WebSocket clients (encoded
 * once per codec) and directly for the others.
 */
import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import { randomBytes } from 'node:crypto';
import { RtError } from '../errors.js';
import { allCodecs, type Encoded, type WireCodec } from '../protocol/codecs.js';
import type { Member, Publication, StreamPosition } from '../protocol/native.js';
import { CloseCode, type Client } from './client.js';
import type { HubBridge } from '../bridge/broker.js';
import { ownerOf } from './hash.js';
import type { MeshEndpoint } from './mesh.js';
import type { ChannelInfo, Notice, PublishSource, Request, SubscribeResult } from './messages.js';

export interface HubOptions {
  mesh: MeshEndpoint;
  /** The thread's uWS app (absent on the main thread). */
  app?: TemplatedApp;
  maxChannelsPerConnection: number;
  /** Answers requests addressed to this thread as a channel owner (shards only). */
  ownerRequest?: (from: number, req: Request) => unknown;
  /** Called for 'unsub' / 'restarted' notices addressed to this thread as owner. */
  ownerNotice?: (from: number, n: Notice) => void;
  /** Redis bridge: cluster-wide channel queries and user messages, instead of this host's owners. */
  bridge?: HubBridge;
}

/** Memo for one delivery: each codec encodes at most once. */
class EncodeMemo {
  private readonly out: (Encoded | undefined)[] = [];
  constructor(private readonly make: (c: WireCodec) => Encoded) {}
  get(c: WireCodec): Encoded {
    return (this.out[c.id] ??= this.make(c));
  }
}

export class Hub {
  readonly mesh: MeshEndpoint;
  readonly thread: number;
  readonly shards: number;
  private readonly app?: TemplatedApp;
  private readonly opts: HubOptions;
  readonly clients = new Map<string, Client>();
  private readonly byUser = new Map<string, Set<Client>>();
  /** Subscribers that are not delivered through uWS topics, per channel. */
  private readonly sinks = new Map<string, Set<Client>>();
  /** Local subscription count and last seen stream position, per channel. */
  private readonly local = new Map<string, { refs: number; pos?: StreamPosition }>();
  private readonly idPrefix: string;
  private seq = 0;
  /**
   * Other ids a local client answers to for exclusion (`socket_id` in the API, whisper senders): a
   * Socket.IO session that moved here from another thread keeps the socket id its client knows.
   */
  readonly aliases = new Map<string, Client>();
  /** Counters for /metrics. */
  readonly stats = { delivered: 0, published: 0, subscriptions: 0 };
  /** Called before each publication this thread delivers (Socket.IO recovery numbers its deliveries). */
  onDeliver?: (pub: Publication) => void;

  constructor(opts: HubOptions) {
    this.opts = opts;
    this.mesh = opts.mesh;
    this.thread = opts.mesh.self;
    this.shards = opts.mesh.shards;
    this.app = opts.app;
    // The random part keeps ids unique across restarts of the same thread.
    this.idPrefix = `${this.thread}.${randomBytes(6).toString("hex")}`;
  }

  private readonly forwardHandlers = new Map<string, (body: any, from: number) => unknown>();

  /**
   * Serves requests other threads forward for sessions living here (see `forward`). A transport
   * registers one handler per route name, e.g. 'poll' or 'eio'.
   */
  onForward(route: string, handler: (body: any, from: number) => unknown): void {
    this.forwardHandlers.set(route, handler);
  }

  /** Runs `route`'s handler on `thread` (directly when it is this thread) and resolves with its answer. */
  forward<T = unknown>(thread: number, route: string, body: unknown, timeoutMs?: number): Promise<T> {
    return this.mesh.request<T>(thread, { t: 'fwd', route, body }, timeoutMs);
  }

  start(): void {
    this.mesh.start(
      (from, req) => {
        if (req.t === 'fwd') {
          const h = this.forwardHandlers.get(req.route);
          if (!h) throw new RtError('not_found', `thread ${this.thread} has no handler for ${req.route}`, 404);
          return h(req.body, from);
        }
        if (!this.opts.ownerRequest) throw new RtError('unavailable', `thread ${this.thread} owns no channels`, 503);
        return this.opts.ownerRequest(from, req);
      },
      (from, n) => this.onNotice(from, n),
    );
  }

  nextSocketId(): string {
    return `${this.idPrefix}${(this.seq++).toString(36)}`;
  }

  ownerOf(channel: string): number {
    return ownerOf(channel, this.shards);
  }

  get connections(): number {
    return this.clients.size;
  }

  add(client: Client): void {
    this.clients.set(client.id, client);
    if (client.user !== undefined) this.indexUser(client);
  }

  /** Records the client's user after it authenticated (at connect or later). */
  indexUser(client: Client): void {
    let set = this.byUser.get(client.user!);
    if (!set) this.byUser.set(client.user!, (set = new Set()));
    set.add(client);
  }

  remove(client: Client): void {
    if (!this.clients.delete(client.id)) return;
    client.closed = true;
    if (client.user !== undefined) {
      const set = this.byUser.get(client.user);
      if (set) {
        set.delete(client);
        if (set.size === 0) this.byUser.delete(client.user);
      }
    }
    for (const ch of client.channels) this.dropLocal(client, ch, false);
    client.channels.clear();
  }

  /**
   * Subscribes through the owner. The owner's reply is handled inside the mesh drain loop, before any
   * later delivery for the channel from that owner, so the client is in the topic before the next
   * publication arrives and resumed publications are sent before live ones.
   */
  subscribe(client: Client, channel: string, since?: StreamPosition, data?: unknown, beforeJoin?: (res: SubscribeResult) => void): Promise<SubscribeResult> {
    if (client.channels.has(channel) || client.pendingChannels?.has(channel)) {
      return Promise.reject(new RtError('already_subscribed', `already subscribed to ${channel}`));
    }
    if (client.channels.size + (client.pendingChannels?.size ?? 0) >= this.opts.maxChannelsPerConnection) {
      return Promise.reject(new RtError('too_many_channels', `a connection may join at most ${this.opts.maxChannelsPerConnection} channels`));
    }
    (client.pendingChannels ??= new Set()).add(channel);
    const req: Request = { t: 'sub', ch: channel, conn: client.connRef(channel) };
    if (since) req.since = since;
    if (data !== undefined) req.data = data;
    return new Promise((resolve, reject) => {
      this.mesh.call<SubscribeResult>(this.ownerOf(channel), req, (err, res) => {
        client.pendingChannels!.delete(channel);
        if (err) return reject(err);
        if (client.closed) {
          // Gone while we waited: undo at the owner so presence and counts stay right.
          this.mesh.notify(this.ownerOf(channel), { t: 'unsub', ch: channel, conn: client.connRef() });
          return reject(new RtError('unavailable', 'connection closed'));
        }
        if (res!.info !== undefined && client.info === undefined) client.info = res!.info;
        beforeJoin?.(res!);
        this.addLocal(client, channel, res!);
        resolve(res!);
      });
    });
  }

  private addLocal(client: Client, channel: string, res: SubscribeResult): void {
    client.channels.add(channel);
    this.stats.subscriptions++;
    let l = this.local.get(channel);
    if (!l) this.local.set(channel, (l = { refs: 0 }));
    l.refs++;
    if (!l.pos || l.pos.epoch !== res.epoch || l.pos.offset < res.offset) l.pos = { epoch: res.epoch, offset: res.offset };
    if (client.ws) client.ws.subscribe(client.codec.tag + channel);
    else {
      let s = this.sinks.get(channel);
      if (!s) this.sinks.set(channel, (s = new Set()));
      s.add(client);
    }
  }

  private dropLocal(client: Client, channel: string, unsubscribeSocket: boolean): void {
    this.stats.subscriptions--;
    if (client.ws && unsubscribeSocket) client.ws.unsubscribe(client.codec.tag + channel);
    const s = this.sinks.get(channel);
    if (s) {
      s.delete(client);
      if (s.size === 0) this.sinks.delete(channel);
    }
    const l = this.local.get(channel);
    if (l && --l.refs === 0) this.local.delete(channel);
    this.mesh.notify(this.ownerOf(channel), { t: 'unsub', ch: channel, conn: client.connRef() });
  }

  /**
   * Moves a client between per-client sends (sinks) and uWS topic delivery, keeping its channels: used
   * when a Socket.IO session upgrades from HTTP long-polling to a WebSocket on the same thread.
   */
  rebind(client: Client, ws: WebSocket<unknown> | undefined): void {
    for (const ch of client.channels) {
      if (client.ws) client.ws.unsubscribe(client.codec.tag + ch);
      else {
        const s = this.sinks.get(ch);
        s?.delete(client);
        if (s && s.size === 0) this.sinks.delete(ch);
      }
    }
    client.ws = ws;
    for (const ch of client.channels) {
      if (ws) ws.subscribe(client.codec.tag + ch);
      else {
        let s = this.sinks.get(ch);
        if (!s) this.sinks.set(ch, (s = new Set()));
        s.add(client);
      }
    }
  }

  /** The last stream position this thread saw for a channel it has subscribers of. */
  position(channel: string): StreamPosition | undefined {
    const p = this.local.get(channel)?.pos;
    return p ? { epoch: p.epoch, offset: p.offset } : undefined;
  }

  unsubscribe(client: Client, channel: string): boolean {
    if (!client.channels.delete(channel)) return false;
    this.dropLocal(client, channel, true);
    return true;
  }

  publish(channel: string, event: string, data: unknown, src: PublishSource, from?: Client, exclude?: string): Promise<{ offset: number }> {
    this.stats.published++;
    const req: Request = { t: 'pub', ch: channel, ev: event, data, src };
    if (from) req.from = from.connRef();
    if (exclude) req.ex = exclude;
    return this.mesh.request<{ offset: number }>(this.ownerOf(channel), req);
  }

  /**
   * Every connection of `user` on every thread (one frame per thread) — on every host with the Redis
   * bridge, where the promise rejects when Redis is unreachable (callers may ignore it; it is handled).
   */
  publishToUser(user: string, event: string, data: unknown, exclude?: string): Promise<void> {
    this.stats.published++;
    if (this.opts.bridge) {
      const p = this.opts.bridge.publishToUser(user, event, data, exclude);
      p.catch(() => {});
      return p;
    }
    const n: Notice = { t: 'user!', user, ev: event, data };
    if (exclude) n.ex = exclude;
    this.mesh.broadcast(n, true);
    return Promise.resolve();
  }

  /** Disconnects every connection of a user on every thread (every host with the Redis bridge). */
  kick(user: string): Promise<void> {
    if (this.opts.bridge) return this.opts.bridge.kick(user);
    this.mesh.broadcast({ t: 'kick', user, at: Math.floor(Date.now() / 1000) }, true);
    return Promise.resolve();
  }

  presence(channel: string): Promise<{ members: Member[] }> {
    if (this.opts.bridge) return this.opts.bridge.presence(channel);
    return this.mesh.request(this.ownerOf(channel), { t: 'presence', ch: channel });
  }

  history(channel: string, since?: StreamPosition, limit?: number): Promise<{ pubs: Publication[]; recovered: boolean; offset: number; epoch: string }> {
    const req: Request = { t: 'history', ch: channel };
    if (since) req.since = since;
    if (limit) req.limit = limit;
    return this.mesh.request(this.ownerOf(channel), req);
  }

  channel(channel: string): Promise<ChannelInfo> {
    if (this.opts.bridge) return this.opts.bridge.channel(channel);
    return this.mesh.request(this.ownerOf(channel), { t: 'channel', ch: channel });
  }

  async channels(prefix?: string): Promise<ChannelInfo[]> {
    if (this.opts.bridge) return this.opts.bridge.channels(prefix);
    const parts = await Promise.all(
      Array.from({ length: this.shards }, (_, s) => this.mesh.request<ChannelInfo[]>(s, prefix ? { t: 'channels', prefix } : { t: 'channels' })),
    );
    return parts.flat().sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** When each user's tokens were revoked (POST /api/users/:id/disconnect), in seconds. */
  private readonly revokedAt = new Map<string, number>();

  /** A token issued at or before its user's revocation (or with no `iat` after one) is refused. */
  isRevoked(user: string, iat: number | undefined): boolean {
    const at = this.revokedAt.get(user);
    return at !== undefined && (iat === undefined || iat <= at);
  }

  /** Disconnects every local connection of a user (used by the API, and by token revocation). */
  disconnectUser(user: string, reason: string): number {
    const set = this.byUser.get(user);
    if (!set) return 0;
    let n = 0;
    for (const c of [...set]) {
      c.disconnect(4011, reason, false);
      n++;
    }
    return n;
  }

  private onNotice(from: number, n: Notice): void {
    switch (n.t) {
      case 'pub!':
        return this.deliver(n.pub, n.ex);
      case 'join!':
      case 'leave!':
        return this.deliverPresence(n.t, n.ch, n.m, n.ex);
      case 'resync!':
        return this.resync(n.ch);
      case 'user!':
        return this.deliverToUser(n);
      case 'kick':
        this.revokedAt.set(n.user, n.at ?? Math.floor(Date.now() / 1000));
        this.disconnectUser(n.user, 'disconnected by the server');
        return;
      case 'restarted':
        this.mesh.peerReplaced(n.peer);
        this.opts.ownerNotice?.(from, n);
        return this.replay(n.peer);
      default:
        this.opts.ownerNotice?.(from, n);
    }
  }

  private deliver(pub: Publication, exclude?: string): void {
    const ch = pub.channel;
    this.onDeliver?.(pub);
    const l = this.local.get(ch);
    if (l?.pos && l.pos.offset < pub.offset) l.pos.offset = pub.offset;
    const ex = exclude ? (this.clients.get(exclude) ?? this.aliases.get(exclude)) : undefined;
    let n = 0;
    if (this.app) {
      for (const codec of allCodecs()) {
        const topic = codec.tag + ch;
        const count = this.app.numSubscribers(topic);
        if (count === 0) continue;
        const bytes = codec.pub(pub);
        // ws.publish skips the publishing socket itself: that is how a sender is excluded natively.
        if (ex?.ws && ex.codec === codec && ex.channels.has(ch)) {
          publishTopic(ex.ws, codec, topic, bytes);
          n += count - 1;
        } else {
          publishTopic(this.app, codec, topic, bytes);
          n += count;
        }
      }
    }
    const sinks = this.sinks.get(ch);
    if (sinks) {
      const memo = new EncodeMemo((c) => c.pub(pub));
      for (const c of sinks) {
        if (c === ex) continue;
        c.sendEncoded(memo.get(c.codec));
        n++;
      }
    }
    this.stats.delivered += n;
  }

  private deliverPresence(kind: 'join!' | 'leave!', ch: string, m: Member, exclude?: string): void {
    const make = (c: WireCodec): Encoded => (kind === 'join!' ? c.join(ch, m) : c.leave(ch, m));
    const ex = exclude ? (this.clients.get(exclude) ?? this.aliases.get(exclude)) : undefined;
    if (this.app) {
      for (const codec of allCodecs()) {
        const topic = codec.tag + ch;
        if (this.app.numSubscribers(topic) === 0) continue;
        if (ex?.ws && ex.codec === codec && ex.channels.has(ch)) publishTopic(ex.ws, codec, topic, make(codec));
        else publishTopic(this.app, codec, topic, make(codec));
      }
    }
    const sinks = this.sinks.get(ch);
    if (sinks) {
      const memo = new EncodeMemo(make);
      for (const c of sinks) if (c !== ex) c.sendEncoded(memo.get(c.codec));
    }
  }

  /**
   * Redis bridge: this thread's subscribers of `ch` missed publications nobody can give them back. They
   * are disconnected with a reconnect hint; their resume then answers `recovered: false`, which is how
   * a client learns to reload. Silence would leave them with a gap they cannot see.
   */
  private resync(ch: string): void {
    for (const c of [...this.clients.values()]) {
      if (c.channels.has(ch)) c.disconnect(CloseCode.RESYNC, `missed messages on ${ch} could not be recovered: reconnect, resume and reload`, true);
    }
  }

  private deliverToUser(n: Extract<Notice, { t: 'user!' }>): void {
    const set = this.byUser.get(n.user);
    if (!set) return;
    const memo = new EncodeMemo((c) => c.user(n.ev, n.data));
    const ex = n.ex !== undefined ? this.aliases.get(n.ex) : undefined;
    for (const c of set) {
      if (c.id === n.ex || c === ex) continue;
      c.sendEncoded(memo.get(c.codec));
      this.stats.delivered++;
    }
  }

  /**
   * The owner of some of our channels was replaced and lost its actors: subscribe our connections
   * again, telling it where each stream was so offsets stay monotonic.
   */
  private replay(peer: number): void {
    for (const c of this.clients.values()) {
      for (const ch of c.channels) {
        if (this.ownerOf(ch) !== peer) continue;
        const pos = this.local.get(ch)?.pos;
        const req: Request = { t: 'sub', ch, conn: c.connRef(ch), replay: true };
        if (pos) req.since = pos;
        this.mesh.call(peer, req, (err) => {
          if (err && !c.closed) {
            // Redis bridge unreachable: the client comes back later and resumes, rather than losing the channel.
            if (err.code === 'unavailable') c.disconnect(CloseCode.RESYNC, `${ch} is unavailable for now: reconnect and resume`, true);
            // Refused now (e.g. token expired meanwhile): the client must know it lost the channel.
            else this.unsubscribe(c, ch);
          }
        });
      }
    }
  }
}

/** One delivery to a topic: one frame, or several for codecs whose messages span frames (see WireCodec.frames). */
function publishTopic(target: { publish(topic: string, message: Encoded, isBinary?: boolean): boolean }, codec: WireCodec, topic: string, bytes: Encoded): void {
  const parts = codec.frames?.(bytes);
  if (!parts) target.publish(topic, bytes, codec.binary);
  else for (const p of parts) target.publish(topic, p, typeof p !== 'string');
}
