/**
 * A thread's hub: the connections it holds, which channels they are in, and delivery to them.
 * Subscriptions and publishes go to the channel's owner shard through the mesh; deliveries come back
 * as one frame per thread and are fanned out here — through uWS topics for WebSocket clients (encoded
 * once per codec) and directly for the others.
 */
import type { TokenExpiry } from '../security/token-expiry.js';
import type { RecognizedString, TemplatedApp, WebSocket } from 'uWebSockets.js';
import { randomBytes } from 'node:crypto';
import { RtError } from '../errors.js';
import { appSuffixOf } from './app-scope.js';
import { encodeKicked, encodePush, type Encoded, type WireCodec } from '../protocol/codecs.js';
import type { Member, Publication, StreamPosition } from '../protocol/native.js';
import { EncodedPayload, EncodedPubRequest, JsonData } from '../protocol/encoded-payload.js';
import { CloseCode, type Client } from './client.js';
import type { HubBridge } from '../bridge/broker.js';
import { ownerOf } from './hash.js';
import type { MeshEndpoint } from './mesh.js';
import { channelKind } from '../auth/channels.js';
import type { ChannelInfo, HistoryAnswer, Notice, PublishResult, PublishSource, Request, SubscribeResult } from './messages.js';
import { metrics, type Series } from './metrics.js';
import { PresenceLedger } from './presence-ledger.js';
import { codecKind, connKind, preciseNow, type ConnKind } from './instruments.js';
import { threadLogger } from '../log.js';

export interface HubOptions {
  mesh: MeshEndpoint;
  /** The thread's uWS app (absent on the main thread). */
  app?: TemplatedApp;
  maxChannelsPerConnection: number;
  /** Answers requests addressed to this thread as a channel owner (shards only). */
  ownerRequest?: (from: number, req: Request) => unknown;
  /** Called for the notices addressed to this thread as a channel owner ('unsub', 'regrant', 'restarted', 'replayed'). */
  ownerNotice?: (from: number, n: Notice) => void;
  /** Redis bridge: cluster-wide channel queries and user messages, instead of this host's owners. */
  bridge?: HubBridge;
  /**
   * --write-delay, in ms: publications that arrive within this long of the last delivery are held and
   * delivered together, so each subscriber gets them in one socket write (0: every publication at once).
   */
  writeDelayMs?: number;
}

/** Memo for one delivery: each codec encodes at most once. */
class EncodeMemo<E extends Encoded | undefined = Encoded> {
  private readonly out: (E | undefined)[] = [];
  constructor(private readonly make: (c: WireCodec) => E) {}
  /** (A codec for which `make` gives undefined is simply asked again: that costs nothing.) */
  get(c: WireCodec): E {
    return (this.out[c.id] ??= this.make(c)) as E;
  }
}

export class Hub {
  readonly mesh: MeshEndpoint;
  readonly thread: number;
  readonly shards: number;
  private readonly app?: TemplatedApp;
  private readonly opts: HubOptions;
  readonly clients = new Map<string, Client>();
  /** Asks connections for a fresh token when theirs expires (shards set it; see security/token-expiry.ts). */
  expiry?: TokenExpiry;
  private readonly byUser = new Map<string, Set<Client>>();
  /** Subscribers that are not delivered through uWS topics, per channel. */
  private readonly sinks = new Map<string, Set<Client>>();
  /** Local subscription count and last seen stream position, per channel. */
  private readonly local = new Map<string, LocalChannel>();
  /**
   * The presence members this thread's clients were told about, for a replaced owner (see replay).
   * None with the Redis bridge, where presence lives in Redis.
   */
  private readonly presenceSeen = new PresenceLedger();
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
  /** This thread's metrics block (bound before the hub is built). */
  private readonly m = metrics();
  private readonly publishedTotal = this.m.series('rt_publishes_total');
  private readonly deliveredTotal = this.m.series('rt_deliveries_total');
  private readonly latency = this.m.series('rt_publish_deliver_seconds');
  private readonly outByKind = new Map<string, Series>();
  /**
   * Publications held by --write-delay, in arrival order. Anything else that reaches a subscriber of
   * this thread (presence, pushes, subscription replies, history replays) first delivers them, so
   * holding never reorders what a client sees; it only changes how many socket writes carry it.
   */
  private held: { pub: Publication; ex?: string; at?: number }[] = [];
  private heldTimer?: NodeJS.Timeout | NodeJS.Immediate;
  private lastDelivery = -Infinity;

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

  /** rt_messages_out_total for a transport/protocol pair (handles cached: this is the delivery path). */
  private out(k: ConnKind): Series {
    const key = k.transport + '/' + k.protocol;
    let s = this.outByKind.get(key);
    if (!s) this.outByKind.set(key, (s = this.m.series('rt_messages_out_total', k as unknown as Record<string, string>)));
    return s;
  }

  private countConnection(client: Client, k: ConnKind, delta: 1 | -1): void {
    const labels = k as unknown as Record<string, string>;
    this.m.inc('rt_connections', labels, delta);
    if (delta === 1) {
      client.kind = k;
      this.m.inc('rt_connections_opened_total', labels);
    }
  }

  add(client: Client): void {
    this.clients.set(client.id, client);
    this.countConnection(client, connKind(client), 1);
    if (client.user !== undefined) this.indexUser(client);
    if (this.expiry) {
      client.expiry = this.expiry;
      this.expiry.schedule(client);
    }
    const log = threadLogger();
    if (log.enabled('debug')) log.debug('connection opened', { event: 'conn.open', conn: client.id, transport: client.transport, user: client.user });
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
    client.expiry?.unschedule(client);
    const log = threadLogger();
    if (log.enabled('debug')) log.debug('connection closed', { event: 'conn.close', conn: client.id, transport: client.transport, user: client.user, channels: client.channels.size });
    const k = client.kind;
    if (k) this.m.inc('rt_connections', k as unknown as Record<string, string>, -1);
    if (client.user !== undefined) {
      const set = this.byUser.get(client.user);
      if (set) {
        set.delete(client);
        if (set.size === 0) this.byUser.delete(client.user);
      }
    }
    for (const ch of client.channels) this.dropLocal(client, ch, false);
    client.leaveAll();
  }

  /**
   * Subscribes through the owner. The owner's reply is handled inside the mesh drain loop, before any
   * later delivery for the channel from that owner, so the client is in the topic before the next
   * publication arrives and resumed publications are sent before live ones. `hidden` marks a hidden
   * channel's subscription (see Client.hidden): outside the per-connection channel limit.
   */
  subscribe(client: Client, channel: string, since?: StreamPosition, data?: unknown, beforeJoin?: (res: SubscribeResult) => void, hidden?: 'quiet' | 'sink'): Promise<SubscribeResult> {
    if (client.channels.has(channel) || client.pendingChannels?.has(channel)) {
      return Promise.reject(new RtError('already_subscribed', `already subscribed to ${channel}`));
    }
    const counted = client.channels.size + (client.pendingChannels?.size ?? 0) - (client.hidden?.size ?? 0);
    if (!hidden && counted >= this.opts.maxChannelsPerConnection) {
      return Promise.reject(new RtError('too_many_channels', `a connection may join at most ${this.opts.maxChannelsPerConnection} channels`));
    }
    if (hidden) (client.hidden ??= new Map()).set(channel, hidden);
    (client.pendingChannels ??= new Set()).add(channel);
    const req: Request = { t: 'sub', ch: channel, conn: client.connRef(channel) };
    if (since) req.since = since;
    if (data !== undefined) req.data = data;
    return new Promise((resolve, reject) => {
      this.mesh.call<SubscribeResult>(this.ownerOf(channel), req, (err, res) => {
        client.pendingChannels!.delete(channel);
        // Held publications precede the owner's answer: the client's position and resume count on them.
        this.flushHeld();
        if (err) {
          client.hidden?.delete(channel);
          const log = threadLogger();
          if (log.enabled('debug')) log.debug(`subscribe to ${channel} refused`, { event: 'subscribe.refused', conn: client.id, channel, code: (err as { code?: string }).code, detail: err.message });
          return reject(err);
        }
        const gone = (): void => {
          // Undone at the owner so presence and counts stay right.
          this.mesh.notify(this.ownerOf(channel), { t: 'unsub', ch: channel, conn: client.connRef() });
          client.hidden?.delete(channel);
          reject(new RtError('unavailable', 'connection closed', 503));
        };
        if (client.closed) return gone();
        if (res!.info !== undefined && client.info === undefined) client.info = res!.info;
        beforeJoin?.(res!);
        // Writing the reply can end the connection (an SSE or long-polling session already too far
        // behind is ended by the next thing it is sent): joined now, it would stay a subscriber, and a
        // presence member, that nothing ever removes.
        if (client.closed) return gone();
        this.addLocal(client, channel, res!);
        if (data !== undefined) (client.subscribeData ??= new Map()).set(channel, data);
        const log = threadLogger();
        if (log.enabled('debug')) log.debug(`subscribed to ${channel}`, { event: 'subscribe', conn: client.id, channel, user: client.user });
        resolve(res!);
      });
    });
  }

  private addLocal(client: Client, channel: string, res: SubscribeResult): void {
    client.joinChannel(channel);
    this.stats.subscriptions++;
    let l = this.local.get(channel);
    if (!l) this.local.set(channel, (l = { refs: 0 }));
    l.refs++;
    if (!l.pos || l.pos.epoch !== res.epoch || l.pos.offset < res.offset) l.pos = { epoch: res.epoch, offset: res.offset };
    if (res.members) {
      // Before this client is in the channel here: the others learn what its list says changed.
      const { joins, leaves } = this.presenceSeen.reply(channel, res.members);
      for (const m of leaves) this.deliverPresence('leave!', channel, m);
      for (const m of joins) this.deliverPresence('join!', channel, m);
    }
    const hidden = client.hidden?.get(channel);
    if (hidden === 'quiet') return;
    if (client.ws && hidden !== 'sink') client.ws.subscribe(topicOf(l, client.codec, channel));
    else {
      let s = this.sinks.get(channel);
      if (!s) this.sinks.set(channel, (s = new Set()));
      s.add(client);
    }
  }

  private dropLocal(client: Client, channel: string, unsubscribeSocket: boolean, tellOwner = true): void {
    this.stats.subscriptions--;
    // Quiet and sink subscriptions never joined the topic; unsubscribing from it is then a no-op.
    if (client.ws && unsubscribeSocket) client.ws.unsubscribe(client.codec.tag + channel);
    client.hidden?.delete(channel);
    const s = this.sinks.get(channel);
    if (s) {
      s.delete(client);
      if (s.size === 0) this.sinks.delete(channel);
    }
    const l = this.local.get(channel);
    if (l && --l.refs === 0) {
      this.local.delete(channel);
      this.presenceSeen.drop(channel);
    }
    if (!tellOwner) return;
    const notice: Extract<Notice, { t: 'unsub' }> = { t: 'unsub', ch: channel, conn: client.connRef() };
    if (client.presenceGraceMs && channelKind(channel) === 'presence') notice.g = client.presenceGraceMs;
    this.mesh.notify(this.ownerOf(channel), notice);
  }

  /**
   * Moves a client between per-client sends (sinks) and uWS topic delivery, keeping its channels: used
   * when a Socket.IO session upgrades from HTTP long-polling to a WebSocket on the same thread.
   */
  rebind(client: Client, ws: WebSocket<unknown> | undefined): void {
    this.flushHeld();
    for (const ch of client.channels) {
      if (client.hidden?.has(ch)) continue;
      if (client.ws) client.ws.unsubscribe(client.codec.tag + ch);
      else {
        const s = this.sinks.get(ch);
        s?.delete(client);
        if (s && s.size === 0) this.sinks.delete(ch);
      }
    }
    client.ws = ws;
    // A Socket.IO session upgrading from polling to WebSocket changes transport, not connection.
    const before = client.kind;
    if (before) {
      const after = connKind(client);
      this.m.inc('rt_connections', before as unknown as Record<string, string>, -1);
      this.m.inc('rt_connections', after as unknown as Record<string, string>, 1);
      client.kind = after;
    }
    for (const ch of client.channels) {
      if (client.hidden?.has(ch)) continue;
      const l = this.local.get(ch);
      if (ws) ws.subscribe(l ? topicOf(l, client.codec, ch) : client.codec.tag + ch);
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

  /**
   * After a fresh token replaced the connection's own (native `auth`, Socket.IO `token:refresh`): each
   * private or presence channel that token's `channels` claim admitted the connection to is checked
   * against the new claim by its owner, which kicks the connection from those it no longer grants.
   * Subscriptions a subscribe token or the auth endpoint vouched for are not the connection token's.
   * A subscribe still on its way is asked too: the owner admitted it with the old grants, and the notice
   * reaches the owner after the request (one ring, in order), so it finds the subscriber it must check.
   */
  regrant(client: Client): void {
    for (const set of [client.channels, client.pendingChannels]) {
      if (!set) continue;
      for (const ch of set) {
        if (client.hidden?.has(ch) || client.channelIdentity?.has(ch) || channelKind(ch) === 'public') continue;
        this.mesh.notify(this.ownerOf(ch), { t: 'regrant', ch, conn: client.connRef(ch) });
      }
    }
  }

  unsubscribe(client: Client, channel: string): boolean {
    if (!client.leaveChannel(channel)) return false;
    this.flushHeld();
    this.dropLocal(client, channel, true);
    const log = threadLogger();
    if (log.enabled('debug')) log.debug(`unsubscribed from ${channel}`, { event: 'unsubscribe', conn: client.id, channel });
    return true;
  }

  /**
   * Publishes through the channel's owner. `data` may be an EncodedPayload (the JSON text it arrived
   * in), which then reaches the wire frames without being decoded again. `whisper` marks a client event (Socket.IO / Echo): without
   * an actor `onMessage`, the owner applies the whisper policy instead of --client-publish.
   */
  publish(channel: string, event: string, data: unknown, src: Exclude<PublishSource, 'client'>, from?: Client, exclude?: string): Promise<{ offset: number; data?: unknown }>;
  publish(channel: string, event: string, data: unknown, src: PublishSource, from?: Client, exclude?: string, whisper?: boolean): Promise<PublishResult>;
  publish(channel: string, event: string, data: unknown, src: PublishSource, from?: Client, exclude?: string, whisper?: boolean): Promise<PublishResult> {
    // An encoded payload travels as such (see encoded-payload.ts); anything else as the value.
    const req: Request = data instanceof EncodedPayload ? new EncodedPubRequest(channel, event, src, data) : { t: 'pub', ch: channel, ev: event, data, src };
    req.at = preciseNow();
    if (from) req.from = from.connRef();
    if (exclude) req.ex = exclude;
    if (whisper) req.w = 1;
    // Counted once the owner accepted it: a publish refused (policy, actor, Redis down, overload) or
    // failed is not a publish the operator's rt_publishes_total should show.
    return this.mesh.request<PublishResult>(this.ownerOf(channel), req).then(this.accepted);
  }

  private readonly accepted = <R>(r: R): R => {
    this.stats.published++;
    this.publishedTotal.inc();
    return r;
  };

  /**
   * Every connection of `user` on every thread (one frame per thread) — on every host with the Redis
   * bridge, where the promise rejects when Redis is unreachable (callers may ignore it; it is handled).
   * `data` may be JsonData: its text then travels beside the value, for the codecs that splice it.
   */
  publishToUser(user: string, event: string, data: unknown, exclude?: string): Promise<void> {
    const js = data instanceof JsonData ? data.text : undefined;
    // Parsed anew, not read(): the same JsonData may also go to channels, which splice it while unread.
    if (js !== undefined) data = JSON.parse(js);
    if (this.opts.bridge) {
      const p = this.opts.bridge.publishToUser(user, event, data, exclude, js).then(this.accepted);
      p.catch(() => {});
      return p;
    }
    // Every thread gets the frame, so every thread must be able to take it.
    const busy = this.mesh.firstOverloaded(threadsUpTo(this.shards));
    if (busy >= 0) {
      const refused = Promise.reject(this.mesh.refusal(busy));
      refused.catch(() => {});
      return refused;
    }
    const n: Notice = { t: 'user!', user, ev: event, data };
    if (exclude) n.ex = exclude;
    if (js !== undefined) n.js = js;
    this.mesh.broadcast(n, true);
    this.accepted(undefined);
    return Promise.resolve();
  }

  /**
   * A Socket.IO session was recovered with these presence memberships ([channel, user]): another host
   * may keep them in their grace (see ChannelActor.unsubscribe), and would announce them gone when it
   * ran out, after this host's own leave. One host needs nothing: its owner saw the subscribe.
   */
  stayed(m: [string, string][]): void {
    if (this.opts.bridge && m.length > 0) void this.opts.bridge.stayed(m).catch((err) => threadLogger().warn('could not tell the other hosts that a presence member was recovered here', err));
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

  history(channel: string, since?: StreamPosition, limit?: number, withTimes = false): Promise<HistoryAnswer> {
    const req: Request = { t: 'history', ch: channel };
    if (since) req.since = since;
    if (limit) req.limit = limit;
    if (withTimes) req.times = 1;
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

  /** Refuses the user's tokens issued at or before `at` (seconds), keeping the latest revocation. */
  revoke(user: string, at: number): boolean {
    if (at <= (this.revokedAt.get(user) ?? -1)) return false;
    this.revokedAt.set(user, at);
    return true;
  }

  /**
   * Disconnects every local connection of a user (used by the API, and by token revocation): those
   * that are the user, and those that are the user on some channel only (channelIdentity: a Socket.IO
   * subscribe authorized with the user's token, a backend's auth endpoint or Pusher channel_data naming
   * them). Left connected, the latter kept the revoked user's private channels and presence. They are
   * found by a scan, as kicks are rare; the byUser index stays for deliveries to a user, which are not.
   */
  disconnectUser(user: string, reason: string): number {
    const targets = new Set(this.byUser.get(user));
    for (const c of this.clients.values()) {
      if (!c.channelIdentity || targets.has(c)) continue;
      for (const [channel, identity] of c.channelIdentity) {
        // The identity holds the id its app's clients know: user 42 of another Pusher app is `42 @<id>`
        // here, and must not be mistaken for the default app's user 42 (app-scope.ts).
        if (identity.user !== undefined && !identity.observer && identity.user + appSuffixOf(channel) === user) {
          targets.add(c);
          break;
        }
      }
    }
    for (const c of targets) c.disconnect(4011, reason, false);
    return targets.size;
  }

  private onNotice(from: number, n: Notice): void {
    if (n.t === 'pub!') return this.deliverOrHold(n.pub, n.ex, n.at);
    this.flushHeld();
    switch (n.t) {
      case 'join!':
        if (this.presenceSeen.joined(n.ch, n.m)) this.deliverPresence(n.t, n.ch, n.m, n.ex);
        return;
      case 'leave!':
        if (this.presenceSeen.left(n.ch, n.m)) this.deliverPresence(n.t, n.ch, n.m, n.ex);
        return;
      case 'count!':
        return this.deliverCount(n.ch, n.n);
      case 'resync!':
        return this.resync(n.ch);
      case 'user!':
        return this.deliverToUser(n);
      case 'push!':
        return this.deliverPush(n);
      case 'kick!':
        return this.kickFromChannel(n.ch, n.to, n.reason);
      case 'kick':
        this.revokedAt.set(n.user, n.at ?? Math.floor(Date.now() / 1000));
        this.disconnectUser(n.user, 'disconnected by the server');
        return;
      case 'revoke':
        // Read from Redis at start and after a reconnect: one this thread did not know of was made while
        // it was away, and its kick went by unheard. The user's connections here end now, as they would
        // have then (those opened meanwhile were let in with the old token too).
        if (this.revoke(n.user, n.at)) this.disconnectUser(n.user, 'disconnected by the server');
        return;
      case 'restarted':
        this.mesh.peerReplaced(n.peer);
        this.opts.ownerNotice?.(from, n);
        return this.replay(n.peer);
      default:
        this.opts.ownerNotice?.(from, n);
    }
  }

  /**
   * Nagle-like: a publication arriving more than --write-delay after the last delivery goes out at
   * the end of this event-loop turn (with whatever else this turn brings: no added latency at low
   * rates); closer ones wait for the end of that window, so a busy channel's subscribers get several
   * publications per socket write.
   */
  private deliverOrHold(pub: Publication, ex?: string, at?: number): void {
    const w = this.opts.writeDelayMs;
    if (!w) return this.deliver(pub, ex, at);
    this.held.push({ pub, ex, at });
    if (this.heldTimer) return;
    const wait = this.lastDelivery + w - performance.now();
    this.heldTimer = wait > 0 ? setTimeout(this.flushHeld, wait) : setImmediate(this.flushHeld);
  }

  /** Delivers what --write-delay holds, in order, in this event-loop turn (uWS then writes once per socket). */
  readonly flushHeld = (): void => {
    const t = this.heldTimer;
    if (!t) return;
    clearTimeout(t as NodeJS.Timeout);
    clearImmediate(t as NodeJS.Immediate);
    this.heldTimer = undefined;
    this.lastDelivery = performance.now();
    const held = this.held;
    this.held = [];
    for (const h of held) {
      // As in the mesh's dispatch: one publication that cannot be encoded (a payload that does not
      // decode) is logged and skipped; this runs from a timer, where a throw would end the thread.
      try {
        this.deliver(h.pub, h.ex, h.at);
      } catch (err) {
        threadLogger().error(`delivery on ${h.pub.channel} failed`, err, { event: 'mesh.error' });
      }
    }
  };

  /** `at`: when the publish entered the server (preciseNow), for rt_publish_deliver_seconds. */
  private deliver(pub: Publication, exclude?: string, at?: number): void {
    const ch = pub.channel;
    this.onDeliver?.(pub);
    const l = this.local.get(ch);
    if (l?.pos && l.pos.offset < pub.offset) l.pos.offset = pub.offset;
    const ex = exclude ? (this.clients.get(exclude) ?? this.aliases.get(exclude)) : undefined;
    let n = 0;
    if (this.app && l?.topics) {
      for (const { codec, topic } of l.topics) {
        const count = this.app.numSubscribers(topic);
        if (count === 0) continue;
        const bytes = codec.pub(pub);
        // ws.publish skips the publishing socket itself: that is how a sender is excluded natively.
        let sent = count;
        if (ex?.ws && ex.codec === codec && ex.channels.has(ch)) {
          publishTopic(ex.ws, codec, topic, bytes);
          sent--;
        } else {
          publishTopic(this.app, codec, topic, bytes);
        }
        n += sent;
        this.out(codecKind(codec)).inc(sent);
      }
    }
    const sinks = this.sinks.get(ch);
    if (sinks) {
      const memo = new EncodeMemo((c) => c.pub(pub));
      for (const c of sinks) {
        if (c === ex) {
          c.excludedFrom?.(pub);
          continue;
        }
        c.sendEncoded(memo.get(c.codec));
        this.out(c.kind ?? connKind(c)).inc();
        n++;
      }
    }
    this.stats.delivered += n;
    this.deliveredTotal.inc(n);
    if (at !== undefined && n > 0) this.latency.observe(Math.max(0, preciseNow() - at) / 1000);
  }

  private deliverPresence(kind: 'join!' | 'leave!', ch: string, m: Member, exclude?: string): void {
    const ex = exclude ? (this.clients.get(exclude) ?? this.aliases.get(exclude)) : undefined;
    this.toChannel(ch, (c) => (kind === 'join!' ? c.join(ch, m) : c.leave(ch, m)), ex);
  }

  /** A channel's subscriber count, to its subscribers whose codec has such an event (Pusher's). */
  private deliverCount(ch: string, n: number): void {
    this.toChannel(ch, (c) => c.count?.(ch, n));
  }

  /**
   * A channel event other than a publication, to this thread's subscribers of `ch` (but `ex`), encoded
   * once per codec that has subscribers; codecs for which `make` gives nothing are skipped.
   */
  private toChannel(ch: string, make: (c: WireCodec) => Encoded | undefined, ex?: Client): void {
    const topics = this.local.get(ch)?.topics;
    if (this.app && topics) {
      for (const { codec, topic } of topics) {
        if (this.app.numSubscribers(topic) === 0) continue;
        const bytes = make(codec);
        if (bytes === undefined) continue;
        if (ex?.ws && ex.codec === codec && ex.channels.has(ch)) publishTopic(ex.ws, codec, topic, bytes);
        else publishTopic(this.app, codec, topic, bytes);
      }
    }
    const sinks = this.sinks.get(ch);
    if (sinks) {
      const memo = new EncodeMemo(make);
      for (const c of sinks) {
        const bytes = c === ex ? undefined : memo.get(c.codec);
        if (bytes !== undefined) c.sendEncoded(bytes);
      }
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
    const memo = new EncodeMemo((c) => c.user(n.ev, n.data, n.js));
    const ex = n.ex !== undefined ? this.aliases.get(n.ex) : undefined;
    for (const c of set) {
      if (c.id === n.ex || c === ex) continue;
      c.sendEncoded(memo.get(c.codec));
      this.stats.delivered++;
      this.deliveredTotal.inc();
      this.out(c.kind ?? connKind(c)).inc();
    }
  }

  /** The local connection behind a socket id an actor knows (a moved Socket.IO session answers to its old id). */
  private clientById(id: string): Client | undefined {
    return this.clients.get(id) ?? this.aliases.get(id);
  }

  /**
   * A channel actor's private message. Only to connections still in (or joining) the channel: one that
   * left after the actor decided must not get the channel's messages any more.
   */
  private deliverPush(n: Extract<Notice, { t: 'push!' }>): void {
    let memo: EncodeMemo | undefined;
    // Parsed once, and only for the codecs that cannot splice the JSON text.
    let value = n.data;
    let parsed = n.js === undefined;
    const data = () => (parsed ? value : ((parsed = true), (value = JSON.parse(n.js!))));
    for (const id of n.to) {
      const c = this.clientById(id);
      if (!c || c.closed || !(c.channels.has(n.ch) || c.pendingChannels?.has(n.ch))) continue;
      memo ??= new EncodeMemo((codec) => encodePush(codec, n.ch, n.ev, data, n.js));
      c.sendEncoded(memo.get(c.codec));
      this.stats.delivered++;
    }
  }

  /** The channel's actor removed this connection: leave the channel here (the owner already forgot it) and tell the client. */
  private kickFromChannel(ch: string, id: string, reason: string): void {
    const c = this.clientById(id);
    if (!c || c.closed || !c.leaveChannel(ch)) return;
    this.dropLocal(c, ch, true, false);
    c.sendEncoded(encodeKicked(c.codec, ch, reason));
    c.onKicked?.(ch);
  }

  /**
   * The owner of some of our channels was replaced and lost its actors: subscribe our connections
   * again, telling it where each stream was so offsets stay monotonic; then tell it which members our
   * clients know on its presence channels, so it can announce those that left with the dead thread.
   * With the Redis bridge too: the members are in Redis, but the joins and leaves published while the
   * channel had no owner on this host reached nobody here, and the new owner compares.
   */
  private replay(peer: number): void {
    this.resubscribe(peer);
    this.mesh.notify(peer, { t: 'replayed', seen: this.presenceSeen.seen((ch) => this.ownerOf(ch) === peer) });
  }

  private resubscribe(peer: number): void {
    for (const c of this.clients.values()) {
      for (const ch of c.channels) {
        if (this.ownerOf(ch) !== peer) continue;
        const pos = this.local.get(ch)?.pos;
        const req: Request = { t: 'sub', ch, conn: c.connRef(ch), replay: true };
        if (pos) req.since = pos;
        const data = c.subscribeData?.get(ch);
        if (data !== undefined) req.data = data;
        this.mesh.call(peer, req, (err) => {
          if (err && !c.closed) {
            // Redis bridge unreachable: the client comes back later and resumes, rather than losing the channel.
            if (err.code === 'unavailable' || err.code === 'overloaded') c.disconnect(CloseCode.RESYNC, `${ch} is unavailable for now: reconnect and resume`, true);
            // Refused now (e.g. token expired meanwhile): the client must know it lost the channel,
            // as when an actor kicks it (the new owner never registered it).
            else this.kickFromChannel(ch, c.id, `refused when the channel's owner restarted: ${err.code ?? 'refused'}`);
          }
        });
      }
    }
  }
}

/**
 * A channel this thread has subscribers of. `topics`: the uWS topic of each codec a WebSocket subscriber
 * of the channel has used (never removed while the entry lives: uWS counts who is still there), as
 * bytes. A delivery asks uWS about these codecs only, and passes the topic as bytes: a topic string is
 * converted to UTF-8 by uWS.js at every call, and asking about every codec was six such calls per
 * publication per shard.
 */
interface LocalChannel {
  refs: number;
  pos?: StreamPosition;
  topics?: { codec: WireCodec; topic: Buffer }[];
}

/** The topic of `codec`'s subscribers of `channel`, as bytes, recorded in the channel's entry. */
function topicOf(l: LocalChannel, codec: WireCodec, channel: string): Buffer {
  const topics = (l.topics ??= []);
  for (const t of topics) if (t.codec === codec) return t.topic;
  const topic = Buffer.from(codec.tag + channel);
  topics.push({ codec, topic });
  return topic;
}

function* threadsUpTo(last: number): Iterable<number> {
  for (let t = 0; t <= last; t++) yield t;
}

/** One delivery to a topic: one frame, or several for codecs whose messages span frames (see WireCodec.frames). */
function publishTopic(target: { publish(topic: RecognizedString, message: Encoded, isBinary?: boolean): boolean }, codec: WireCodec, topic: Buffer, bytes: Encoded): void {
  const parts = codec.frames?.(bytes);
  if (!parts) target.publish(topic, bytes, codec.binary);
  else for (const p of parts) target.publish(topic, p, typeof p !== 'string');
}
