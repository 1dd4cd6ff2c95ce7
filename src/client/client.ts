/**
 * The rt-actors client: one connection (over whichever transport works), any number of channels, and
 * reconnection that resumes every channel from the last offset it delivered.
 *
 *   const client = new RtClient('https://rt.example.com', { token: () => fetchToken() });
 *   client.channel('orders').listen('shipped', (data) => …);
 *   const room = client.join('room.1').here((m) => …).joining((m) => …).leaving((m) => …);
 *   await client.private('chat.1').publish('message', { text: 'hi' });
 *
 * Delivery guarantees (docs/transports.md): within what the server's history keeps, a reconnect
 * loses nothing and repeats nothing; when the gap is older than history, or the server lost its
 * history (restart), the channel emits 'resync' so the application refetches its state.
 */
import { Emitter, safeCall } from './emitter.js';
import { reservedEvent } from './reserved-events.js';
import { createTransport, TRANSPORTS, type CloseInfo, type Frame, type Transport, type TransportName } from './transports.js';

export type ConnectionState = 'disconnected' | 'connecting' | 'connected';

export interface ClientOptions {
  /** A token, or a function returning one; the function is called again for every connection and before the token expires. */
  token?: string | (() => string | Promise<string>);
  /** Transports to try, in order. Default: websocket, sse, polling. */
  transports?: TransportName[];
  /** Milliseconds one transport gets to connect before the next is tried. Default 5000. */
  connectTimeout?: number;
  /** First reconnect delay in ms; doubles per failed attempt, with jitter. Default 500. */
  reconnectDelay?: number;
  /** Longest reconnect delay in ms. Default 15000. */
  maxReconnectDelay?: number;
  /** Milliseconds to wait for the server's answer to publish/whisper/history. Default 10000. */
  ackTimeout?: number;
  /** Ping after this many ms without a frame, to notice a dead connection. Default 25000; 0 disables. */
  pingInterval?: number;
  /** Start with the transport that worked last time (kept in localStorage where there is one). Default true. */
  rememberTransport?: boolean;
  /** Connect from the constructor. Default true. */
  autoConnect?: boolean;
  /** WebSocket implementation where there is no global one (Node < 22: `import WebSocket from 'ws'`). */
  WebSocket?: new (url: string, protocols?: string | string[]) => any;
  /** EventSource implementation; null uses the built-in fetch() stream reader (the default where there is no EventSource, e.g. Node). */
  EventSource?: (new (url: string) => any) | null;
  fetch?: typeof fetch;
}

export interface Member {
  user_id: string;
  user_info?: unknown;
}

export interface MessageMeta {
  channel: string;
  event: string;
  /** The publication's offset; for a push, where the channel's stream stood when it came. */
  offset: number;
  /** A channel actor's private push to this connection (ctx.push): not part of the stream, not in history. */
  push?: true;
}

export interface Publication {
  channel: string;
  event: string;
  data: unknown;
  offset: number;
}

export class RtClientError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'RtClientError';
    this.code = code;
  }
}

type ClientEvents = {
  /** Every state change. */
  state: (s: { state: ConnectionState; previous: ConnectionState }) => void;
  connecting: (info: { attempt: number }) => void;
  connected: (info: { socketId: string; transport: TransportName; user: string | null }) => void;
  disconnected: (info: { code: number; reason: string; willReconnect: boolean }) => void;
  error: (err: RtClientError) => void;
  /** Messages sent to this user (API publish with "user"), not to a channel. */
  message: (m: { event: string; data: unknown }) => void;
};

type ChannelEvents = {
  /** `data`: what the channel's actor answered the join with (its onJoin `reply`), when it did. */
  subscribed: (info: { offset: number; epoch: string; recovered?: boolean; data?: unknown }) => void;
  error: (err: RtClientError) => void;
  /** Messages were missed and cannot be replayed: refetch the state this channel feeds. */
  resync: (info: { offset: number; epoch?: string; reason: string }) => void;
  /** The channel's actor removed this connection (ctx.kick): the channel is left; channel(name) joins again. */
  kicked: (info: { reason: string }) => void;
};

const CHANNEL_RE = /^[A-Za-z0-9_\-=@.:;#$%&*+!~/?|^<>[\]{}()'"`\\]{1,200}$/;
const EVENT_RE = /^[^\x00-\x1f\x7f-\x9f]{1,200}$/;

function checkChannel(name: string): void {
  if (typeof name !== 'string' || !CHANNEL_RE.test(name) || name.includes(',')) {
    throw new RtClientError('invalid_channel', `channel must be 1-200 printable ASCII characters without spaces or commas: ${JSON.stringify(name)}`);
  }
}

function checkEvent(name: string): void {
  if (typeof name !== 'string' || !EVENT_RE.test(name)) throw new RtClientError('bad_frame', `event must be 1-200 characters without control characters: ${JSON.stringify(name)}`);
  // Refused here as the server would refuse it, before it counts toward the server's malformed-frame close.
  const reserved = reservedEvent(name);
  if (reserved) throw new RtClientError('bad_frame', `${reserved}: ${JSON.stringify(name)}`);
}

function errorFrom(f: Frame): RtClientError {
  const e = f.error ?? {};
  return new RtClientError(typeof e.code === 'string' ? e.code : 'error', typeof e.message === 'string' ? e.message : 'request failed');
}

/** Seconds-since-epoch `exp` of a JWT, if it is one. */
function jwtExpiry(token: string): number | undefined {
  const part = token.split('.')[1];
  if (!part) return undefined;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}

interface Pending {
  frame: Frame;
  cb: (err: RtClientError | null, f?: Frame) => void;
  timer?: ReturnType<typeof setTimeout>;
  sent: boolean;
}

/** Refusals the server means as "not now": a channel's subscribe is tried again by itself. */
const TRANSIENT = new Set(['unavailable', 'overloaded']);

type Listener = (data: any, meta: MessageMeta) => void;
type AnyListener = (event: string, data: any, meta: MessageMeta) => void;

export class Channel {
  /** Where this channel's stream stands for this client: the next subscribe resumes after it. */
  offset?: number;
  epoch?: string;
  state: 'unsubscribed' | 'subscribing' | 'subscribed' | 'failed' = 'unsubscribed';
  private readonly events = new (class extends Emitter<ChannelEvents> {
    fire<K extends keyof ChannelEvents>(e: K, ...a: Parameters<ChannelEvents[K]>): void {
      this.emit(e, ...a);
    }
  })();
  private readonly handlers = new Map<string, Set<Listener>>();
  private readonly anyHandlers = new Set<AnyListener>();
  /** Offsets of our own exclude_self publishes: history replays them to us, the live stream did not. */
  private readonly own = new Set<number>();
  /** unsubscribe() came while the subscribe was in flight: its reply belongs to nobody. */
  private dropped = false;
  /** Sent with every subscribe of this channel, resubscribes included: a custom actor's authorize reads it. */
  joinData?: unknown;
  /** A subscribe the server refused for now (`unavailable`, `overloaded`) is sent again after this. */
  private retryTimer?: ReturnType<typeof setTimeout>;
  private retries = 0;

  constructor(protected readonly client: RtClient, readonly name: string) {}

  listen(event: string, cb: Listener): this {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(cb);
    return this;
  }

  listenToAll(cb: AnyListener): this {
    this.anyHandlers.add(cb);
    return this;
  }

  /** Without `cb`, removes every listener of `event`. */
  stopListening(event: string, cb?: Listener): this {
    if (cb) this.handlers.get(event)?.delete(cb);
    else this.handlers.delete(event);
    return this;
  }

  stopListeningToAll(cb?: AnyListener): this {
    if (cb) this.anyHandlers.delete(cb);
    else this.anyHandlers.clear();
    return this;
  }

  /** Whispers are client events (`client-<name>`) that other subscribers receive and the sender does not. */
  listenForWhisper(event: string, cb: Listener): this {
    return this.listen(`client-${event}`, cb);
  }

  stopListeningForWhisper(event: string, cb?: Listener): this {
    return this.stopListening(`client-${event}`, cb);
  }

  whisper(event: string, data: unknown): Promise<{ offset?: number; data?: unknown }> {
    return this.publish(`client-${event}`, data, { excludeSelf: true });
  }

  /**
   * Publishes from this client (the server's client-publish policy applies); resolves with the offset,
   * and with `data` when the channel's actor replied (no offset when it replied without publishing).
   */
  publish(event: string, data: unknown, opts: { excludeSelf?: boolean } = {}): Promise<{ offset?: number; data?: unknown }> {
    // A promise-returning call reports a bad argument as a rejection, where .catch() sees it.
    try {
      checkEvent(event);
    } catch (err) {
      return Promise.reject(err);
    }
    const frame: Frame = { op: 'publish', channel: this.name, event, data: data === undefined ? null : data };
    if (opts.excludeSelf) frame.exclude_self = true;
    return this.client.request(frame).then((r) => {
      const out: { offset?: number; data?: unknown } = {};
      if (typeof r.offset === 'number') {
        out.offset = r.offset;
        if (opts.excludeSelf) {
          this.own.add(r.offset);
          if (this.own.size > 256) this.own.delete(this.own.values().next().value!);
        }
      }
      if (r.data !== undefined) out.data = r.data;
      return out;
    });
  }

  /** The channel's recent publications (latest `limit`: the server's default is 100, its most 1000). */
  history(opts: { limit?: number } = {}): Promise<Publication[]> {
    // None asked for is none: the wire knows no limit 0, and leaving it out would mean the default.
    if (opts.limit === 0) return Promise.resolve([]);
    const frame: Frame = { op: 'history', channel: this.name };
    if (opts.limit !== undefined) frame.limit = opts.limit;
    return this.client.request(frame).then((r) => r.publications as Publication[]);
  }

  subscribed(cb: ChannelEvents['subscribed']): this {
    this.events.on('subscribed', cb);
    return this;
  }

  error(cb: ChannelEvents['error']): this {
    this.events.on('error', cb);
    return this;
  }

  on<K extends keyof ChannelEvents>(event: K, cb: ChannelEvents[K]): this {
    this.events.on(event, cb);
    return this;
  }

  off<K extends keyof ChannelEvents>(event: K, cb?: ChannelEvents[K]): this {
    this.events.off(event, cb);
    return this;
  }

  unsubscribe(): void {
    this.client.leaveChannel(this);
  }

  /** @internal */
  _subscribe(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.state = 'subscribing';
    this.dropped = false;
    const frame: Frame = { op: 'subscribe', channel: this.name };
    if (this.joinData !== undefined) frame.data = this.joinData;
    if (this.offset !== undefined && this.epoch !== undefined) {
      frame.since = { offset: this.offset, epoch: this.epoch };
      // What an earlier connection of ours was left out of (a whisper whose reply was lost, a backend
      // publish naming its socket_id) is left out of the resume too.
      if (this.client._previousIds.length > 0) frame.as = this.client._previousIds;
    }
    // A callback, not a promise: the reply must be handled before the frames right behind it.
    this.client.requestRaw(frame, (err, r) => {
      // Left while in flight: leaveChannel already sent the unsubscribe right behind this subscribe.
      if (this.dropped) return;
      if (err) {
        if (err.code === 'disconnected' || err.code === 'closed') return;
        // Unanswered in time, it may still let us in (a slow authorize): undo it, so that the server
        // does not keep a subscription this client dropped (the unsubscribe waits for the subscribe).
        if (err.code === 'timeout') this.client.requestRaw({ op: 'unsubscribe', channel: this.name }, () => {});
        this.state = 'failed';
        // The server's "retry shortly" (its Redis reconnecting, a shard's queue full): left failed, the
        // channel stayed deaf on a connection that lived on, though the server was back a second later.
        if (TRANSIENT.has(err.code)) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            if (this.state === 'failed' && this.client._holds(this)) this._subscribe();
          }, this.client._backoff(this.retries++));
        }
        this.events.fire('error', err);
        return;
      }
      this.retries = 0;
      this.onSubscribed(r!, frame.since !== undefined);
    });
  }

  /** @internal */
  _drop(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.state === 'subscribing') this.dropped = true;
    this.state = 'unsubscribed';
  }

  /** @internal */
  _connectionLost(): void {
    // The reconnect subscribes every channel again.
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.state === 'subscribed' || this.state === 'subscribing') this.state = 'unsubscribed';
  }

  protected onSubscribed(r: Frame, resumed: boolean): void {
    this.state = 'subscribed';
    if (resumed && r.recovered === true) {
      for (const p of (r.publications ?? []) as Publication[]) {
        if (this.offset !== undefined && p.offset <= this.offset) continue;
        this.offset = p.offset;
        if (this.own.delete(p.offset)) continue;
        this.dispatch(p.event, p.data, p.offset);
      }
    } else if (resumed && r.recovered === false) {
      this.events.fire('resync', { offset: r.offset, epoch: r.epoch, reason: r.epoch === this.epoch ? 'history_gap' : 'epoch_changed' });
    }
    this.offset = r.offset;
    this.epoch = r.epoch;
    const info: Parameters<ChannelEvents['subscribed']>[0] = resumed ? { offset: r.offset, epoch: r.epoch, recovered: r.recovered === true } : { offset: r.offset, epoch: r.epoch };
    if (r.data !== undefined) info.data = r.data;
    this.events.fire('subscribed', info);
  }

  /** @internal A live publication, or an actor's push. */
  _message(f: Frame): void {
    if (this.state !== 'subscribed') return;
    if (typeof f.offset !== 'number') {
      // A push has no place in the stream: the position the next resume starts from stays as it is.
      const meta: MessageMeta = { channel: this.name, event: f.event, offset: this.offset ?? 0, push: true };
      return this.emitTo(f.event, f.data, meta);
    }
    const offset = f.offset;
    if (this.offset !== undefined && offset <= this.offset) {
      if (offset === this.offset) return;
      // The channel's owner lost its stream (it restarted) and counts again from the start.
      this.events.fire('resync', { offset, reason: 'stream_reset' });
    }
    this.offset = offset;
    this.dispatch(f.event, f.data, offset);
  }

  private dispatch(event: string, data: unknown, offset: number): void {
    this.emitTo(event, data, { channel: this.name, event, offset });
  }

  private emitTo(event: string, data: unknown, meta: MessageMeta): void {
    const set = this.handlers.get(event);
    if (set) for (const cb of [...set]) safeCall(cb, [data, meta]);
    for (const cb of [...this.anyHandlers]) safeCall(cb, [event, data, meta]);
  }

  /** @internal The channel's actor removed this connection; the client has already forgotten the channel. */
  _kicked(reason: string): void {
    this.state = 'unsubscribed';
    this.events.fire('kicked', { reason });
  }

  /** @internal */
  _presence(_f: Frame): void {}
}

/** A `presence-` channel: who is here, and who comes and goes (one join per user, however many tabs). */
export class PresenceChannel extends Channel {
  members: Member[] = [];
  private readonly hereCbs = new Set<(m: Member[]) => void>();
  private readonly joiningCbs = new Set<(m: Member) => void>();
  private readonly leavingCbs = new Set<(m: Member) => void>();

  /** Called with the member list on every (re)subscription — at once if already subscribed. */
  here(cb: (members: Member[]) => void): this {
    this.hereCbs.add(cb);
    if (this.state === 'subscribed') safeCall(cb, [this.members.slice()]);
    return this;
  }

  joining(cb: (member: Member) => void): this {
    this.joiningCbs.add(cb);
    return this;
  }

  leaving(cb: (member: Member) => void): this {
    this.leavingCbs.add(cb);
    return this;
  }

  protected override onSubscribed(r: Frame, resumed: boolean): void {
    this.members = Array.isArray(r.members) ? (r.members as Member[]) : [];
    super.onSubscribed(r, resumed);
    for (const cb of [...this.hereCbs]) safeCall(cb, [this.members.slice()]);
  }

  override _presence(f: Frame): void {
    if (this.state !== 'subscribed') return;
    const m = f.member as Member;
    if (!m || typeof m.user_id !== 'string') return;
    const i = this.members.findIndex((x) => x.user_id === m.user_id);
    if (f.op === 'join') {
      if (i < 0) this.members.push(m);
      for (const cb of [...this.joiningCbs]) safeCall(cb, [m]);
    } else {
      if (i >= 0) this.members.splice(i, 1);
      for (const cb of [...this.leavingCbs]) safeCall(cb, [m]);
    }
  }
}

const STORAGE_PREFIX = 'rt-actors.transport:';
const REMEMBER_MS = 24 * 3600 * 1000;

function storage(): { getItem(k: string): string | null; setItem(k: string, v: string): void } | undefined {
  try {
    return (globalThis as any).localStorage ?? undefined;
  } catch {
    return undefined; // sandboxed frames throw on access
  }
}

export class RtClient extends Emitter<ClientEvents> {
  readonly url: string;
  state: ConnectionState = 'disconnected';
  socketId?: string;
  /** @internal The socket ids of this client's last connections before the current one, newest last. */
  _previousIds: string[] = [];
  user?: string | null;
  /** The transport of the current connection. */
  transport?: TransportName;
  private readonly opts: Required<Pick<ClientOptions, 'connectTimeout' | 'reconnectDelay' | 'maxReconnectDelay' | 'ackTimeout' | 'pingInterval' | 'rememberTransport'>> & ClientOptions;
  private readonly fetchFn: typeof fetch;
  private readonly channelMap = new Map<string, Channel>();
  private readonly userHandlers = new Map<string, Set<(data: any) => void>>();
  private readonly pending = new Map<number, Pending>();
  private outbox: Pending[] = [];
  private ref = 0;
  private conn?: Transport;
  /** Bumped by connect()/disconnect(): an attempt of an older cycle stops where it is. */
  private cycle = 0;
  private failures = 0;
  private stopped = true;
  private retryTimer?: ReturnType<typeof setTimeout>;
  private pingTimer?: ReturnType<typeof setInterval>;
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private lastFrameAt = 0;
  private remembered?: TransportName;
  /**
   * The welcome shows a transport's downstream works, not its upstream: a proxy may pass an SSE stream
   * and refuse its POSTs. A connection counts as working once the server answered something sent on
   * it; one lost before that sends the next attempt to the other transports first, and does not reset
   * the reconnect delay, so such a transport is neither retried in a tight loop nor kept for good.
   */
  private proven = false;
  private demoted?: TransportName;
  /** Gives up the transport being tried: disconnect() must not leave its socket and timer running. */
  private cancelAttempt?: () => void;

  constructor(url: string, options: ClientOptions = {}) {
    super();
    this.url = url.replace(/^ws(s?):/, 'http$1:').replace(/\/+$/, '');
    if (!/^https?:\/\//.test(this.url)) throw new RtClientError('bad_url', `url must be http(s):// or ws(s)://, not ${JSON.stringify(url)}`);
    this.opts = { connectTimeout: 5000, reconnectDelay: 500, maxReconnectDelay: 15000, ackTimeout: 10000, pingInterval: 25000, rememberTransport: true, ...options };
    for (const t of this.opts.transports ?? []) if (!TRANSPORTS.includes(t)) throw new RtClientError('bad_transport', `unknown transport ${JSON.stringify(t)}; known: ${TRANSPORTS.join(', ')}`);
    if (this.opts.transports?.length === 0) throw new RtClientError('bad_transport', `transports is empty: give at least one of ${TRANSPORTS.join(', ')} (or leave it out for all)`);
    const f = options.fetch ?? (globalThis as any).fetch;
    // Browsers refuse fetch called with another `this` ("Illegal invocation").
    this.fetchFn = options.fetch ?? (f ? f.bind(globalThis) : undefined);
    if (this.opts.rememberTransport) {
      try {
        const saved = storage()?.getItem(STORAGE_PREFIX + this.url);
        const [name, at] = (saved ?? '').split('@');
        if (name && Date.now() - Number(at) < REMEMBER_MS && TRANSPORTS.includes(name as TransportName)) this.remembered = name as TransportName;
      } catch {
        /* storage unavailable */
      }
    }
    if (options.autoConnect !== false) {
      // The first attempt starts on the next microtask: listeners added right after `new RtClient(…)`
      // would otherwise miss its 'connecting'. The client is already started (requests queue, not
      // 'closed'), and a disconnect() before then cancels the attempt through the cycle.
      this.stopped = false;
      const cycle = this.cycle;
      queueMicrotask(() => {
        if (cycle === this.cycle && !this.stopped) void this.run();
      });
    }
  }

  // ---- channels -------------------------------------------------------------------------------

  /**
   * A channel (created and subscribed on first use). `presence-` names give a PresenceChannel.
   * `data` goes with its subscribes (a custom actor's authorize gets it); given for a channel already
   * there, it is what its next subscribe (a reconnect) sends.
   */
  channel(name: string, opts: { data?: unknown } = {}): Channel {
    let ch = this.channelMap.get(name);
    if (ch) {
      if (opts.data !== undefined) ch.joinData = opts.data;
      return ch;
    }
    checkChannel(name);
    ch = name.startsWith('presence-') ? new PresenceChannel(this, name) : new Channel(this, name);
    if (opts.data !== undefined) ch.joinData = opts.data;
    this.channelMap.set(name, ch);
    if (this.state === 'connected') ch._subscribe();
    return ch;
  }

  /** `private-<name>` (laravel-echo's naming). */
  private(name: string): Channel {
    return this.channel(`private-${name}`);
  }

  /** `presence-<name>`. */
  join(name: string): PresenceChannel {
    return this.channel(`presence-${name}`) as PresenceChannel;
  }

  /** Leaves `name`, `private-name` and `presence-name`, as laravel-echo does. */
  leave(name: string): void {
    for (const n of [name, `private-${name}`, `presence-${name}`]) this.channelMap.get(n)?.unsubscribe();
  }

  get channels(): Channel[] {
    return [...this.channelMap.values()];
  }

  /** @internal */
  leaveChannel(ch: Channel): void {
    if (this.channelMap.get(ch.name) !== ch) return;
    this.channelMap.delete(ch.name);
    const was = ch.state;
    ch._drop();
    // While disconnected the server already forgot the subscription. With the subscribe in flight the
    // unsubscribe goes now, not when its reply lands: the server takes a connection's frames in order,
    // so a channel() of the same name right after (a component unmounted and mounted again) subscribes
    // after it, instead of meeting already_subscribed and then losing its subscription to a late
    // unsubscribe.
    if (this.state === 'connected' && (was === 'subscribed' || was === 'subscribing')) this.requestRaw({ op: 'unsubscribe', channel: ch.name }, () => {});
  }

  /** Listens to messages sent to this connection's user (POST /api/publish with "user"). */
  listen(event: string, cb: (data: any) => void): this {
    let set = this.userHandlers.get(event);
    if (!set) this.userHandlers.set(event, (set = new Set()));
    set.add(cb);
    return this;
  }

  stopListening(event: string, cb?: (data: any) => void): this {
    if (cb) this.userHandlers.get(event)?.delete(cb);
    else this.userHandlers.delete(event);
    return this;
  }

  // ---- requests -------------------------------------------------------------------------------

  /** Sends a frame and resolves with the server's reply (rejects with its error). */
  request(frame: Frame): Promise<Frame> {
    return new Promise((resolve, reject) => this.requestRaw(frame, (err, f) => (err ? reject(err) : resolve(f!))));
  }

  /** @internal Callback form: runs synchronously when the reply frame is handled. */
  requestRaw(frame: Frame, cb: (err: RtClientError | null, f?: Frame) => void): void {
    if (this.stopped) return cb(new RtClientError('closed', 'client is disconnected: call connect() first'));
    const ref = ++this.ref;
    const p: Pending = { frame: { ...frame, ref }, cb, sent: false };
    p.timer = setTimeout(() => {
      if (!this.pending.delete(ref)) return;
      this.outbox = this.outbox.filter((x) => x !== p);
      // Never sent is safe to retry; sent and unanswered may have taken effect: the app must know which.
      if (!p.sent) cb(new RtClientError('not_sent', `${frame.op} not sent: no connection within ${this.opts.ackTimeout} ms (it will not be sent later)`));
      else cb(new RtClientError('timeout', `no answer to ${frame.op} within ${this.opts.ackTimeout} ms`));
    }, this.opts.ackTimeout);
    this.pending.set(ref, p);
    if (this.conn && this.state === 'connected') {
      p.sent = true;
      this.conn.send([p.frame]);
    } else {
      this.outbox.push(p);
    }
  }

  private settle(ref: number, err: RtClientError | null, f?: Frame): void {
    const p = this.pending.get(ref);
    if (!p) return;
    this.pending.delete(ref);
    clearTimeout(p.timer);
    p.cb(err, f);
  }

  // ---- connection -----------------------------------------------------------------------------

  connect(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.failures = 0;
    void this.run();
  }

  /** Closes the connection for good (until connect()); pending requests fail with code 'closed'. */
  disconnect(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.cycle++;
    this.clearTimers();
    this.cancelAttempt?.();
    const conn = this.conn;
    this.conn = undefined;
    conn?.close();
    for (const ch of this.channelMap.values()) ch._connectionLost();
    for (const ref of [...this.pending.keys()]) this.settle(ref, new RtClientError('closed', 'client disconnected'));
    this.outbox = [];
    const was = this.state;
    this.setState('disconnected');
    if (was === 'connected') this.emit('disconnected', { code: 1000, reason: 'client disconnected', willReconnect: false });
  }

  private setState(s: ConnectionState): void {
    if (s === this.state) return;
    const previous = this.state;
    this.state = s;
    this.emit('state', { state: s, previous });
  }

  private clearTimers(): void {
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.refreshTimer);
    this.retryTimer = this.pingTimer = this.refreshTimer = undefined;
  }

  private async token(): Promise<string | undefined> {
    const t = this.opts.token;
    if (typeof t === 'function') {
      const v = await t();
      if (typeof v !== 'string' || v === '') throw new RtClientError('bad_token', 'the token function returned no token');
      return v;
    }
    return t || undefined;
  }

  private order(): TransportName[] {
    const allowed = this.opts.transports ?? [...TRANSPORTS];
    const r = this.remembered;
    const order = r && allowed.includes(r) ? [r, ...allowed.filter((t) => t !== r)] : [...allowed];
    const d = this.demoted;
    return d && order.includes(d) ? [...order.filter((t) => t !== d), d] : order;
  }

  private async run(): Promise<void> {
    const cycle = ++this.cycle;
    this.setState('connecting');
    this.emit('connecting', { attempt: this.failures });
    let token: string | undefined;
    try {
      token = await this.token();
    } catch (err) {
      if (cycle !== this.cycle) return;
      this.emit('error', new RtClientError('token_failed', `token function failed: ${(err as Error)?.message ?? err}`));
      return this.retryLater(cycle);
    }
    const failures: string[] = [];
    for (const name of this.order()) {
      if (cycle !== this.cycle) return;
      const info = await this.attempt(name, token, cycle);
      if (cycle !== this.cycle || info === null) return; // connected, or superseded
      failures.push(`${name}: ${info.reason}`);
      // `unauthorized`: no token where the server requires one (--require-auth).
      if (info.status === 401 && (info.error?.code?.startsWith('token_') || info.error?.code === 'unauthorized')) {
        if (typeof this.opts.token !== 'function') {
          // A fixed token (or none) the server refuses will be refused forever.
          this.emit('error', new RtClientError(info.error.code, info.error.message));
          this.disconnect();
          return;
        }
        try {
          token = await this.token();
        } catch {
          break;
        }
      }
    }
    if (cycle !== this.cycle) return;
    this.emit('error', new RtClientError('connect_failed', `could not connect: ${failures.join('; ')}`));
    this.retryLater(cycle);
  }

  private retryLater(cycle: number): void {
    if (cycle !== this.cycle || this.stopped) return;
    const delay = this._backoff(this.failures++);
    this.setState('connecting');
    this.retryTimer = setTimeout(() => {
      if (cycle === this.cycle && !this.stopped) void this.run();
    }, delay);
  }

  /** @internal The delay before the n-th retry (0 first): doubling from reconnectDelay up to maxReconnectDelay. */
  _backoff(n: number): number {
    const base = Math.min(this.opts.maxReconnectDelay, this.opts.reconnectDelay * 2 ** Math.min(n, 20));
    // Jitter spreads a crowd of clients that lost the same server over the interval.
    return base / 2 + Math.random() * (base / 2);
  }

  /** @internal Whether a channel may subscribe now: still this client's, on a live connection. */
  _holds(ch: Channel): boolean {
    return this.state === 'connected' && this.channelMap.get(ch.name) === ch;
  }

  /** Resolves null once connected, or with why this transport failed. */
  private attempt(name: TransportName, token: string | undefined, cycle: number): Promise<CloseInfo | null> {
    return new Promise((resolve) => {
      let settled = false;
      let t: Transport | undefined;
      const fail = (info: CloseInfo) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this.cancelAttempt === cancel) this.cancelAttempt = undefined;
        t?.close();
        resolve(info);
      };
      const cancel = () => fail({ code: 1000, reason: 'client disconnected', reconnect: false });
      this.cancelAttempt = cancel;
      const timer = setTimeout(() => fail({ code: 0, reason: `no welcome within ${this.opts.connectTimeout} ms`, reconnect: true }), this.opts.connectTimeout);
      try {
        t = createTransport(
          name,
          { base: this.url, token, WebSocket: this.opts.WebSocket, EventSource: this.opts.EventSource, fetch: this.fetchFn },
          {
            frame: (f) => {
              if (!settled) {
                if (f.op !== 'welcome') return;
                settled = true;
                clearTimeout(timer);
                if (this.cancelAttempt === cancel) this.cancelAttempt = undefined;
                if (cycle !== this.cycle) {
                  t!.close();
                } else {
                  this.opened(t!, f, token);
                }
                return resolve(null);
              }
              if (t === this.conn) this.onFrame(f);
            },
            close: (info) => {
              if (!settled) return fail(info);
              if (t === this.conn) this.lost(info);
            },
            refused: (frames, error) => {
              for (const fr of frames) if (typeof fr.ref === 'number') this.settle(fr.ref, new RtClientError(error.code, error.message));
            },
          },
        );
      } catch (err) {
        fail({ code: 0, reason: (err as Error).message, reconnect: true });
      }
    });
  }

  private opened(t: Transport, welcome: Frame, token: string | undefined): void {
    this.conn = t;
    this.transport = t.name;
    if (this.socketId !== undefined && this.socketId !== welcome.socket_id) {
      // A few suffice (the server takes up to 16): publications older than a few reconnects are rarely still to resume.
      this._previousIds = [...this._previousIds.slice(-7), this.socketId];
    }
    this.socketId = welcome.socket_id;
    this.user = welcome.user ?? null;
    this.proven = false;
    this.lastFrameAt = Date.now();
    if (this.opts.rememberTransport) {
      this.remembered = t.name;
      try {
        storage()?.setItem(STORAGE_PREFIX + this.url, `${t.name}@${Date.now()}`);
      } catch {
        /* quota, private mode */
      }
    }
    this.setState('connected');
    // Channels first, then what was queued while offline: a publish may need its subscription.
    for (const ch of this.channelMap.values()) ch._subscribe();
    const queued = this.outbox;
    this.outbox = [];
    const frames = [];
    for (const p of queued) {
      if (!this.pending.has(p.frame.ref)) continue;
      p.sent = true;
      frames.push(p.frame);
    }
    if (frames.length > 0) t.send(frames);
    // Something must be answered for the connection to prove itself (see `proven`).
    if (this.channelMap.size === 0 && frames.length === 0) this.requestRaw({ op: 'ping' }, () => {});
    this.startPing();
    this.scheduleRefresh(token);
    this.emit('connected', { socketId: this.socketId!, transport: t.name, user: this.user ?? null });
  }

  private onFrame(f: Frame): void {
    this.lastFrameAt = Date.now();
    switch (f.op) {
      case 'reply':
        if (!this.proven) {
          this.proven = true;
          this.failures = 0;
          this.demoted = undefined;
        }
        if (typeof f.ref === 'number') this.settle(f.ref, f.ok === false ? errorFrom(f) : null, f);
        return;
      case 'message': {
        if (typeof f.channel === 'string') {
          this.channelMap.get(f.channel)?._message(f);
          return;
        }
        const set = this.userHandlers.get(f.event);
        if (set) for (const cb of [...set]) safeCall(cb, [f.data]);
        this.emit('message', { event: f.event, data: f.data });
        return;
      }
      case 'join':
      case 'leave':
        this.channelMap.get(f.channel)?._presence(f);
        return;
      case 'kicked': {
        const ch = this.channelMap.get(f.channel);
        if (!ch || ch.state !== 'subscribed') return;
        // The server dropped the subscription: a reconnect must not bring it back.
        this.channelMap.delete(f.channel);
        ch._kicked(typeof f.reason === 'string' ? f.reason : 'kicked');
        return;
      }
      case 'error':
        this.emit('error', errorFrom(f));
        return;
      case 'refresh':
        // The token expired: the server waits until f.deadline for a fresh one, then closes with 4010.
        void this.refreshNow();
        return;
      default:
        return; // 'disconnect' is handled by the transport's close; unknown ops are ignored
    }
  }

  private lost(info: CloseInfo): void {
    this.conn = undefined;
    clearInterval(this.pingTimer);
    clearTimeout(this.refreshTimer);
    for (const ch of this.channelMap.values()) ch._connectionLost();
    // Sent requests have an unknown outcome; subscriptions are redone on reconnect anyway.
    for (const [ref, p] of [...this.pending]) if (p.sent) this.settle(ref, new RtClientError('disconnected', `connection lost before the answer (${info.reason})`));
    const willReconnect = !this.stopped && info.reconnect;
    if (!this.proven && this.transport) this.demote(this.transport);
    if (!willReconnect && !this.stopped) {
      // The server said not to come back (e.g. the backend disconnected this user). Stopped before
      // 'disconnected' is emitted, as disconnect() is: a listener's connect() (with a fresh token,
      // say) must start a new cycle, not be a no-op that this then overrides.
      this.stopped = true;
      this.cycle++;
      this.clearTimers();
      for (const ref of [...this.pending.keys()]) this.settle(ref, new RtClientError('closed', `disconnected by the server: ${info.reason}`));
      this.outbox = [];
      this.setState('disconnected');
    }
    // No longer 'connected' while listeners run: a channel() they make would subscribe through the
    // outbox and again on the reconnect, and the second subscribe's already_subscribed fail the channel.
    if (willReconnect) this.setState('connecting');
    // A listener may disconnect() and connect() again: that cycle is not to be doubled by this retry.
    const cycle = this.cycle;
    this.emit('disconnected', { code: info.code, reason: info.reason, willReconnect });
    if (willReconnect) this.retryLater(cycle);
  }

  private demote(name: TransportName): void {
    this.demoted = name;
    if (this.remembered !== name) return;
    this.remembered = undefined;
    try {
      storage()?.setItem(STORAGE_PREFIX + this.url, '');
    } catch {
      /* quota, private mode */
    }
  }

  private startPing(): void {
    const every = this.opts.pingInterval;
    if (!every) return;
    this.pingTimer = setInterval(() => {
      if (!this.conn || Date.now() - this.lastFrameAt < every) return;
      const conn = this.conn;
      this.requestRaw({ op: 'ping' }, (err) => {
        // No answer: the connection is dead without having said so (sleep, network change).
        if (err?.code === 'timeout' && conn === this.conn) {
          conn.close();
          this.lost({ code: 4408, reason: 'ping timeout', reconnect: true });
        }
      });
    }, Math.max(1000, every / 2));
  }

  /** Refreshes an expiring token on the live connection (op: auth) before the server would refuse it. */
  private scheduleRefresh(token: string | undefined): void {
    if (!token || typeof this.opts.token !== 'function') return;
    const exp = jwtExpiry(token);
    if (exp === undefined) return;
    const ms = Math.max(1000, (exp * 1000 - Date.now()) * 0.8);
    if (ms > 2 ** 31 - 1) return;
    this.refreshTimer = setTimeout(() => void this.refreshNow(), ms);
  }

  /** Sends a fresh token from the token function on the live connection (op: auth). */
  private async refreshNow(): Promise<void> {
    clearTimeout(this.refreshTimer);
    const conn = this.conn;
    if (typeof this.opts.token !== 'function') {
      // The server asked (op: refresh) but a fixed token cannot be renewed: it will close with 4010.
      this.emit('error', new RtClientError('token_expiring', 'the server asked for a fresh token; pass a token function to renew it without reconnecting'));
      return;
    }
    let next: string | undefined;
    try {
      next = await this.token();
    } catch (err) {
      this.emit('error', new RtClientError('token_failed', `token refresh failed: ${(err as Error)?.message ?? err}`));
      return;
    }
    if (!next || !conn || conn !== this.conn) return;
    this.requestRaw({ op: 'auth', token: next }, (err) => {
      if (err && conn === this.conn) {
        this.emit('error', err);
        conn.close();
        this.lost({ code: 4010, reason: `token refresh refused: ${err.message}`, reconnect: true });
      } else if (!err) this.scheduleRefresh(next);
    });
  }
}

/** Shorthand for `new RtClient(url, options)`. */
export function connect(url: string, options: ClientOptions = {}): RtClient {
  return new RtClient(url, options);
}
