/**
 * The Socket.IO v5 layer over Engine.IO sessions: namespaces, events and acks both ways, and the
 * channel conventions of laravel-echo (DESIGN.md "Socket.IO gateway"):
 *   subscribe {channel, auth} / unsubscribe {channel}   → optional ack { ok } / { ok: false, error }
 *   deliveries                                          → (event, channel, data)
 *   'client event' {channel, event: 'client-…', data}  → whisper to the channel's other subscribers
 *   presence:subscribed (channel, members), presence:joining / presence:leaving (channel, member)
 * Any other event goes to the namespace's request handlers (src/actors/handlers.ts).
 *
 * Each connected namespace of a session is one hub Client, with its namespace's codec: deliveries to
 * WebSocket sessions go through uWS topics, to polling sessions through sendEncoded.
 */
import { randomInt } from 'node:crypto';
import { countRefusal } from '../../runtime/instruments.js';
import { CloseCode, Client } from '../../runtime/client.js';
import type { ThreadContext } from '../../runtime/context.js';
import type { Encoded, WireCodec } from '../../protocol/codecs.js';
import { decodeSioMsgpack, SioDecoder, SioError, SioType, type SioPacket } from '../../protocol/socketio.js';
import type { Publication, StreamPosition } from '../../protocol/native.js';
import { assertChannel, assertEvent } from '../../protocol/native.js';
import { channelKind } from '../../auth/channels.js';
import type { JwtClaims } from '../../auth/jwt.js';
import { RtError, toErrorBody } from '../../errors.js';
import type { ChannelIdentity } from '../../runtime/client.js';
import { ackArgsOf, runHandler, type Connection, type HandlerRegistry } from '../../actors/handlers.js';
import type { ActorRegistry } from '../../actors/registry.js';
import { MAX_RATE_STRIKES, rateRefusal, type TokenBucket } from '../../security/token-bucket.js';
import { authorizeChannel, bearerOf, looksLikeJwt, verifyToken, type ChannelAuthDeps, type TokenCheck } from './auth.js';
import { namespaceCodec, packetFrames, type Frame, type SioParser } from './codec.js';
import { TOO_BIG_CLOSE, type Engine, type EioSession, type SessionListener, type SessionOwner } from './engine.js';
import { eventEncoded, framesOf } from './codec.js';
import { inChannelOrder } from '../channel-order.js';
import { newPid, publicationOrder, receivedUpTo, Recovery, type ChannelTrack, type MissedSlice, type SavedChannel, type SavedSocket, type Snapshot } from './recovery.js';
import { payloadSize } from '../../protocol/payload-size.js';
import { logInternal } from '../../log.js';

export interface GatewayOptions {
  parser: SioParser;
  namespaces: Iterable<string>;
  handlers: HandlerRegistry;
  actors: ActorRegistry;
  /** A session that joins no namespace within this time is closed (ms). */
  connectTimeout: number;
  /** Default wait for a client's ack to emitWithAck (ms). */
  ackTimeout: number;
  /** Connection state recovery window (ms); 0 turns recovery off. */
  recoveryMs: number;
  /** How long a presence member of a socket saved for recovery stays before it leaves (ms; 0 = at once). */
  presenceGraceMs: number;
}

type Ack = (args: unknown[]) => void;

/**
 * Ack ids a moved socket leaves to its old thread: handlers still running there may emitWithAck
 * after the move, so the new thread starts numbering past this many and relays answers in the range.
 */
const GHOST_ACK_IDS = 1_000_000;
/** Fresh sockets start numbering their emitWithAck ids somewhere below this (see SioClient.nextAck). */
const ACK_ID_START_SPREAD = 2 ** 31; // ids stay 32-bit unsigned in msgpack, with room for GHOST_ACK_IDS
/** Missed publications read per channel to put a recovery's replay in publication order (the history request's own cap). */
const HISTORY_LIMIT = 1000;
/** Snapshots of earlier sockets a recovered socket keeps per channel: recoveries cut in a row, this many back. */
const MAX_EARLIER_SNAPSHOTS = 8;

interface SocketState {
  nsp: string;
  publicId: string;
  auth: Record<string, unknown>;
  user?: string;
  info?: unknown;
  grants?: string[];
  expiresAt?: number;
  issuedAt?: number;
  data: Record<string, unknown>;
  channels: Array<{ ch: string; pos?: StreamPosition; data?: unknown; identity?: ChannelIdentity; snaps?: Snapshot[] }>;
  nextAck: number;
  acks: number[];
  pid?: string;
  staleOffset?: string;
}

/** Why a session may end without the client wanting it to: only then is it saved for recovery. */
const UNRECOVERABLE = new Set(['parse error', 'rate limit exceeded', 'overlapping polling requests', 'no namespace joined in time', 'polling body over maxHttpBufferSize', TOO_BIG_CLOSE, 'moved', 'replaced']);

interface ConnectionState {
  sockets: SocketState[];
}

/** Mesh requests for Socket.IO sockets that moved (route 'sio'). */
type SioOp = { op: 'ack'; sid: string; nsp: string; id: number; args: unknown[] };

export class SioGateway implements SessionOwner {
  readonly codecs = new Map<string, WireCodec>();
  readonly authDeps: ChannelAuthDeps;
  readonly tokens: TokenCheck;
  engine!: Engine;
  readonly recovery?: Recovery;
  private warned = new Set<string>();

  /** A request handler's deadline: the actor hooks' (--actor-hook-timeout). */
  get handlerDeadlineMs(): number {
    return this.ctx.config.actorHookTimeout * 1000;
  }

  constructor(
    readonly ctx: ThreadContext,
    readonly opts: GatewayOptions,
  ) {
    if (opts.recoveryMs > 0) this.recovery = new Recovery(ctx.hub, opts.recoveryMs, ctx.sharedStore, (m) => ctx.log.warn(m));
    const rec = this.recovery;
    const offset = rec ? () => rec.offset() : undefined;
    for (const nsp of opts.namespaces) {
      this.codecs.set(nsp, namespaceCodec(nsp, opts.parser, (why) => this.warnOnce(why), offset));
    }
    this.tokens = { verify: (t) => ctx.verifyToken(t), isRevoked: (u, iat) => ctx.hub.isRevoked(u, iat) };
    this.authDeps = {
      tokens: this.tokens,
      jwtConfigured: ctx.verifier.algorithms.length > 0,
      authEndpoint: ctx.config.authEndpoint,
      actorAuthorizes: (ch) => opts.actors.definitionFor(ch).authorize !== undefined,
    };
    ctx.hub.onForward('sio', (body: SioOp) => this.onForward(body));
  }

  warnOnce(why: string): void {
    if (this.warned.size > 100 || this.warned.has(why)) return;
    this.warned.add(why);
    this.ctx.log.warn(`socket.io: a delivery was not sent to Socket.IO clients: ${why}`);
  }

  open(session: EioSession): SessionListener {
    return new SioConnection(this, session);
  }

  restore(session: EioSession, state: unknown, from: number): SessionListener {
    const c = new SioConnection(this, session);
    c.restore(state as ConnectionState, from);
    return c;
  }

  /** An ack for an emitWithAck of a socket that has since moved to another thread. */
  private onForward(op: SioOp): null {
    if (op.op === 'ack') {
      const s = this.engine.sessions.get(op.sid);
      const conn = s?.listener instanceof SioConnection ? s.listener : undefined;
      conn?.sockets.get(op.nsp)?.onAck(op.id, op.args);
    }
    return null;
  }

  log(msg: string, err?: unknown): void {
    if (err !== undefined) this.ctx.log.error(msg, err);
    else this.ctx.log.debug(msg);
  }
}

/** One Engine.IO session's Socket.IO side. */
export class SioConnection implements SessionListener {
  readonly sockets = new Map<string, SioClient>();
  private readonly connecting = new Map<string, Promise<void>>();
  /** Packets for a namespace whose connect is still being decided (a client may pipeline them). */
  private readonly early = new Map<string, SioPacket[]>();
  private readonly decoder: SioDecoder | null;
  /** --rate-limit on the events a connection sends. */
  bucket?: TokenBucket;
  private connectTimer?: NodeJS.Timeout;
  /** The session moved to another thread; this is what stays behind on the old one. */
  moved = false;
  private isReleased = false;

  constructor(
    readonly gw: SioGateway,
    readonly session: EioSession,
  ) {
    this.decoder = gw.opts.parser === 'json' ? new SioDecoder({ maxPacketBytes: gw.ctx.config.socketioMaxHttpBufferSize }) : null;
    this.connectTimer = setTimeout(() => {
      if (this.sockets.size === 0 && this.connecting.size === 0) session.close('no namespace joined in time');
    }, gw.opts.connectTimeout);
  }

  get ctx(): ThreadContext {
    return this.gw.ctx;
  }

  /** Sends one packet. Throws a coded RtError when the packet cannot be encoded (e.g. a reserved event name). */
  sendPacket(p: SioPacket): void {
    this.session.send(this.encode(p));
  }

  encode(p: SioPacket): Frame[] {
    try {
      return packetFrames(p, this.gw.opts.parser);
    } catch (err) {
      if (err instanceof SioError) throw new RtError('bad_request', err.message);
      throw err;
    }
  }

  private violation(why: string): void {
    this.gw.log(`socket.io ${this.session.sid}: ${why}; closing`);
    // With the close packet: a polling client learns from its next poll that the session is over.
    this.session.close('parse error');
  }

  onMessage(data: string | Uint8Array): void {
    this.ctx.metrics.inc('rt_messages_in_total', { transport: this.session.transport === 'websocket' ? 'websocket' : 'polling', protocol: 'socketio' });
    let p: SioPacket | null;
    try {
      if (this.decoder) p = this.decoder.add(data);
      else {
        if (typeof data === 'string') throw new SioError('sio_bad_packet', 'the msgpack parser expects binary messages');
        p = decodeSioMsgpack(data);
      }
    } catch (err) {
      return this.violation((err as Error).message);
    }
    if (p) this.onPacket(p);
  }

  private onPacket(p: SioPacket): void {
    const nsp = p.nsp;
    switch (p.type) {
      case SioType.CONNECT: {
        if (this.sockets.has(nsp) || this.connecting.has(nsp)) return this.violation(`second CONNECT for ${nsp}`);
        if (!this.gw.codecs.has(nsp)) {
          this.sendPacket({ type: SioType.CONNECT_ERROR, nsp, data: { message: 'Invalid namespace' } });
          return;
        }
        const done = this.connect(nsp, (p.data ?? {}) as Record<string, unknown>).finally(() => {
          this.connecting.delete(nsp);
          const queued = this.early.get(nsp) ?? [];
          this.early.delete(nsp);
          // Replayed only if the connect succeeded; otherwise they are for a namespace never joined.
          if (this.sockets.has(nsp)) for (const q of queued) if (!this.session.closed) this.onPacket(q);
        });
        this.connecting.set(nsp, done);
        return;
      }
      case SioType.DISCONNECT:
        this.sockets.get(nsp)?.leave('client namespace disconnect', false);
        return;
      case SioType.EVENT: {
        const s = this.sockets.get(nsp);
        if (!s && this.connecting.has(nsp)) return this.hold(p);
        if (!s) return this.violation(`event for namespace ${nsp} it has not joined`);
        s.onEvent(p.data as unknown[], p.id);
        return;
      }
      case SioType.ACK: {
        const s = this.sockets.get(nsp);
        if (!s && this.connecting.has(nsp)) return this.hold(p);
        if (!s) return this.violation(`ack for namespace ${nsp} it has not joined`);
        s.onAck(p.id!, p.data as unknown[]);
        return;
      }
      default:
        return this.violation(`unexpected packet type ${p.type}`);
    }
  }

  private hold(p: SioPacket): void {
    let q = this.early.get(p.nsp);
    if (!q) this.early.set(p.nsp, (q = []));
    if (q.length >= 100) return this.violation(`too many packets for ${p.nsp} before its connect was answered`);
    q.push(p);
  }

  private async connect(nsp: string, auth: Record<string, unknown>): Promise<void> {
    const { ctx, gw } = this;
    const client = new SioClient(this, nsp, ctx.hub.nextSocketId(), auth);
    // What onConnect emits waits for the CONNECT packet: a client drops events of a namespace it has not joined.
    client.held = [];
    const recovery = gw.recovery;
    const pid = auth.pid;
    let saved: SavedSocket | undefined;
    if (recovery && typeof pid === 'string' && pid.length > 0 && pid.length <= 64) {
      saved = await recovery.take(pid).catch(() => undefined);
      // Another namespace's session (sessions are per namespace, as in socket.io): left for its own.
      if (saved && saved.nsp !== nsp) {
        recovery.save(saved);
        saved = undefined;
      }
      // The client's socket is the same object: it may still answer an emitWithAck of the session before
      // (a listener that answers late), with that session's id. Numbering on keeps such an answer from
      // resolving another emitWithAck of this socket that was given the same id.
      if (saved?.nextAck !== undefined) client.nextAck = saved.nextAck;
      // Kicked (POST /api/users/:id/disconnect) while away: the kick revoked what the session was let in with.
      if (saved?.user !== undefined && ctx.hub.isRevoked(saved.user, saved.issuedAt)) saved = undefined;
      // Likewise a channel it was in as a user revoked since (a subscribe with that user's token).
      if (saved?.channels.some(({ identity: id }) => id?.user !== undefined && !id.observer && ctx.hub.isRevoked(id.user, id.issuedAt))) saved = undefined;
    }
    try {
      let claims: JwtClaims | undefined;
      if (this.tokenIsJwt(auth.token)) {
        if (typeof auth.token !== 'string') throw new RtError('bad_request', 'auth.token must be a string');
        claims = await verifyToken(gw.tokens, auth.token);
      } else if (ctx.config.socketioAuthToken !== 'off') {
        // laravel-echo hands its `auth` option to io() too, so the subscribe headers also arrive here.
        const bearer = bearerOf(auth.headers);
        if (bearer !== undefined && looksLikeJwt(bearer)) {
          try {
            claims = await verifyToken(gw.tokens, bearer);
          } catch (err) {
            // With an auth endpoint it may be the backend's own token, meant for that endpoint.
            if (!ctx.config.authEndpoint) throw err;
          }
        }
      }
      if (!claims && ctx.config.socketioAuthToken === 'jwt') throw new RtError('unauthorized', 'this server verifies every connect: pass auth: { token: <JWT> }', 401);
      if (claims) client.authenticate(claims);
      else if (saved?.user !== undefined) client.resume(saved);
      else if (ctx.config.requireAuth) throw new RtError('unauthorized', 'this server requires a token to connect: pass auth: { token: <JWT> }', 401);
      for (const hook of gw.opts.handlers.get(nsp)?.onConnect ?? []) {
        await runHandler(hook, client.connection(), [], (m, e) => gw.log(m, e), gw.handlerDeadlineMs);
      }
    } catch (err) {
      client.held = undefined;
      client.dropAcks();
      countRefusal(err);
      logInternal(err, 'a Socket.IO namespace connect');
      // A refused attempt must not use the saved session up: the client retries with the same pid.
      if (saved) recovery!.save(saved);
      const e = toErrorBody(err);
      if (!this.session.closed) this.sendPacket({ type: SioType.CONNECT_ERROR, nsp, data: { message: e.message, data: { code: e.code } } });
      return;
    }
    if (this.session.closed) {
      if (saved) recovery!.save(saved);
      return client.dropAcks();
    }
    ctx.hub.add(client);
    let recovered = false;
    if (saved) recovered = await client.recover(saved, auth.offset);
    // The host that saved it had the member in its grace; one that recovers its own session saw the subscribe.
    if (recovered && recovery!.fromElsewhere(saved!)) ctx.hub.stayed(client.presenceMemberships());
    if (saved && this.session.closed) {
      // Cut while recovering (another namespace's CONNECT answered first, a slow history read): the
      // client never got this CONNECT and comes back with the pid and offset it had, so the session is
      // saved again as it was, and its presence member goes back into its grace rather than leaving.
      recovery!.save(saved);
      client.presenceGraceMs = gw.opts.presenceGraceMs;
      return client.teardown('transport close', true);
    }
    if (recovery) client.setPid(recovered ? saved!.pid : newPid());
    if (recovery) client.staleOffset = recovered ? saved!.stale : typeof auth.offset === 'string' ? auth.offset : undefined;
    const held = client.held;
    client.held = undefined;
    if (this.session.closed) return client.teardown('transport close', true);
    this.sockets.set(nsp, client);
    clearTimeout(this.connectTimer);
    this.sendPacket({ type: SioType.CONNECT, nsp, data: client.pid ? { sid: client.publicId, pid: client.pid } : { sid: client.publicId } });
    if (held.length > 0) this.session.send(held);
    if (this.session.transport === 'websocket') ctx.hub.rebind(client, this.session.ws as Client['ws']);
  }

  /** Whether the CONNECT payload's `token` is to be verified as a JWT (--socketio-auth-token). */
  private tokenIsJwt(token: unknown): boolean {
    if (token === undefined) return false;
    switch (this.ctx.config.socketioAuthToken) {
      case 'off':
        return false;
      case 'jwt':
        return true;
      default:
        // auto: a token that is not a JWT, or a server with no way to verify one, leaves it to the handlers.
        return this.gw.authDeps.jwtConfigured && typeof token === 'string' && looksLikeJwt(token);
    }
  }

  onTransport(): void {
    for (const s of this.sockets.values()) this.ctx.hub.rebind(s, this.session.ws as Client['ws']);
  }

  /** Resolves once no namespace connect and no subscription is in flight (a move waits for that). */
  async settled(): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const pending: Promise<unknown>[] = [...this.connecting.values()];
      for (const s of this.sockets.values()) pending.push(...s.channelOps.values());
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  exportState(): ConnectionState {
    this.moved = true;
    clearTimeout(this.connectTimer);
    return { sockets: [...this.sockets.values()].map((s) => s.exportState()) };
  }

  /** Rebuilds the sockets of a session that moved here and re-subscribes them where they were. */
  restore(state: ConnectionState, from: number): void {
    const { hub } = this.ctx;
    const subs: Promise<unknown>[] = [];
    for (const st of state.sockets) {
      if (!this.gw.codecs.has(st.nsp)) continue;
      const c = new SioClient(this, st.nsp, hub.nextSocketId(), st.auth ?? {});
      c.publicId = st.publicId;
      c.user = st.user;
      c.info = st.info;
      c.grants = st.grants;
      c.expiresAt = st.expiresAt;
      c.issuedAt = st.issuedAt;
      c.data = st.data ?? {};
      c.nextAck = st.nextAck + GHOST_ACK_IDS;
      c.remoteAcks = { thread: from, ids: new Set(st.acks), from: st.nextAck, below: c.nextAck };
      c.ws = this.session.ws as Client['ws'];
      if (st.pid) c.setPid(st.pid);
      c.staleOffset = st.staleOffset;
      hub.add(c);
      hub.aliases.set(c.publicId, c);
      this.sockets.set(st.nsp, c);
      for (const ch of st.channels) {
        if (ch.snaps) c.earlier.set(ch.ch, ch.snaps);
        subs.push(c.resubscribe(ch.ch, ch.pos, ch.data, ch.identity));
      }
    }
    if (this.sockets.size > 0) clearTimeout(this.connectTimer);
    void Promise.allSettled(subs).then(() => hub.forward(from, this.gw.engine.opts.route, { op: 'release', sid: this.session.sid }).catch(() => {}));
  }

  released(): void {
    if (this.isReleased) return;
    this.isReleased = true;
    for (const s of this.sockets.values()) this.ctx.hub.remove(s);
  }

  onClose(reason: string): void {
    clearTimeout(this.connectTimer);
    if (this.moved) {
      // The ghost expired: its sockets live on elsewhere; only leftovers are dropped.
      this.released();
      for (const s of this.sockets.values()) s.dropAcks();
      return;
    }
    const recovery = this.gw.recovery;
    for (const s of [...this.sockets.values()]) {
      if (recovery && s.pid && !UNRECOVERABLE.has(reason)) {
        recovery.save(s.saved(recovery));
        // Its client may be back within the window: the others should not see it leave and join again.
        s.presenceGraceMs = this.gw.opts.presenceGraceMs;
      }
      s.teardown(reason, true);
    }
    this.sockets.clear();
  }
}

/** One connected namespace of a session: what the hub sees as a connection. */
export class SioClient extends Client {
  /** The id the client knows (its `socket.id`); differs from `id` after a move between threads. */
  publicId: string;
  data: Record<string, unknown> = {};
  /**
   * The next emitWithAck id. A fresh socket starts at a random point, as the client's socket object
   * outlives its connections: a listener may still answer an emitWithAck of the connection before, and
   * that answer must not meet an id this socket gave to another one (a saved session numbers on instead).
   */
  nextAck = randomInt(ACK_ID_START_SPREAD);
  /** Acks answering emitWithAck calls made on the thread this socket moved from (see GHOST_ACK_IDS). */
  remoteAcks?: { thread: number; ids: Set<number>; from: number; below: number };
  /** The last subscribe or unsubscribe of each channel still running (see inOrder). */
  readonly channelOps = new Map<string, Promise<void>>();
  /** Frames emitted while the namespace connect is being decided (sent after the CONNECT packet). */
  held?: Frame[];
  /** Connection state recovery: the private id the client presents to get this socket back. */
  pid?: string;
  /**
   * The offset a client presented when this socket started afresh (its recovery failed): socket.io-client
   * keeps it until an event with an offset arrives, so coming back with it means nothing of this socket
   * reached it — it names a delivery of the socket before, possibly of a thread that is gone.
   */
  staleOffset?: string;
  /** The `iat` of the token this socket's user came with: a saved session is not resumed past its user's revocation. */
  issuedAt?: number;
  /** Where this socket stands in each channel on this thread (recovery). */
  private readonly tracks = new Map<string, ChannelTrack>();
  /**
   * Snapshots from the sockets this one continues, per channel: threads it was on before (a move at
   * upgrade), and the sockets of the session it recovered (their last offset may still be all the
   * client has, when the replay was cut before it arrived).
   */
  readonly earlier = new Map<string, Snapshot[]>();
  /** Channels given back by recovery: a client subscribing again (laravel-echo does) is simply told ok. */
  private restored?: Set<string>;
  private readonly subData = new Map<string, unknown>();
  private readonly acks = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private handlerConn?: Connection;

  override authenticate(claims: JwtClaims): void {
    super.authenticate(claims);
    this.issuedAt = claims.iat;
  }

  override onKicked(channel: string): void {
    this.channelIdentity?.delete(channel);
    this.subData.delete(channel);
  }

  constructor(
    readonly conn: SioConnection,
    readonly nsp: string,
    id: string,
    readonly auth: Record<string, unknown>,
  ) {
    super(id, 'socket.io', conn.gw.codecs.get(nsp)!);
    this.publicId = id;
  }

  private get hub() {
    return this.conn.ctx.hub;
  }

  /** [channel, user] of each presence channel this socket is a member of (not an observer). */
  presenceMemberships(): [string, string][] {
    const out: [string, string][] = [];
    for (const ch of this.channels) {
      if (channelKind(ch) !== 'presence') continue;
      const ref = this.connRef(ch);
      if (ref.user !== undefined && !ref.observer) out.push([ch, ref.user]);
    }
    return out;
  }

  override get onWebSocket(): boolean {
    return this.conn.session.transport === 'websocket';
  }

  sendEncoded(data: Encoded): void {
    if (this.closed) return;
    if (this.held) this.held.push(...framesOf(data));
    else this.conn.session.deliver(data);
  }

  /**
   * From the hub (API kick, shutdown, slow consumer). Reconnect: the Engine.IO session ends and the
   * client reconnects by itself. Otherwise the namespace gets Socket.IO's DISCONNECT, which tells the
   * client not to reconnect.
   */
  disconnect(_code: number, reason: string, reconnect: boolean): void {
    if (reconnect) {
      this.conn.session.close(reason);
      return;
    }
    if (this.conn.sockets.get(this.nsp) !== this) {
      this.hub.remove(this);
      return;
    }
    this.leave(reason, true);
    if (this.conn.sockets.size === 0) this.conn.session.closeAfterFlush(reason);
  }

  override tokenExpiring(deadline: number): void {
    this.emitSafe('token:expiring', [{ deadline }]);
  }

  /**
   * Says why (Socket.IO's own disconnect carries no code), then disconnects the namespace. The Engine.IO
   * session stays for the client to close (socket.io-client does once no namespace is left): closing it
   * here could drop both packets before a polling client fetched them.
   */
  override tokenExpired(code: number, reason: string): void {
    this.emitSafe('token:expired', [{ code, reason }]);
    this.leave(reason, true);
  }

  /** `token:refresh` with `{ token }`: the fresh token that keeps this socket connected past its exp. */
  private opRefresh(arg: unknown, ack: Ack | undefined): void {
    const token = typeof arg === 'string' ? arg : (arg as { token?: unknown } | null)?.token;
    if (typeof token !== 'string' || token.length === 0) {
      return this.fail(ack, 'token:refresh', undefined, new RtError('bad_request', 'token:refresh needs { token: <JWT> }'), true);
    }
    verifyToken(this.conn.gw.tokens, token).then(
      (claims) => {
        if (this.closed) return;
        if (String(claims.sub) !== this.user) throw new RtError('forbidden', 'a connection cannot change user; reconnect instead', 403);
        this.authenticate(claims);
        // The fresh token's grants replace the old ones: channels it no longer grants are left (kicked).
        this.hub.regrant(this);
        ack?.([{ ok: true, user: this.user }]);
      },
    ).catch((err) => this.fail(ack, 'token:refresh', undefined, err, true));
  }

  /** Leaves the namespace (the session may stay for others). */
  leave(reason: string, tell: boolean): void {
    if (this.conn.sockets.get(this.nsp) === this) this.conn.sockets.delete(this.nsp);
    if (tell && !this.conn.session.closed) this.conn.sendPacket({ type: SioType.DISCONNECT, nsp: this.nsp });
    this.teardown(reason, false);
  }

  teardown(reason: string, sessionGone: boolean): void {
    const hub = this.hub;
    if (this.pid && this.handOver) this.conn.gw.recovery?.unbind(this.pid, this.handOver);
    for (const ch of this.tracks.keys()) this.conn.gw.recovery?.unwatch(ch);
    this.tracks.clear();
    // A closed WebSocket must not be touched; uWS drops its topics itself.
    if (sessionGone) this.ws = undefined;
    else for (const ch of [...this.channels]) hub.unsubscribe(this, ch);
    hub.remove(this);
    if (hub.aliases.get(this.publicId) === this) hub.aliases.delete(this.publicId);
    this.dropAcks();
    const hooks = this.conn.gw.opts.handlers.get(this.nsp)?.onDisconnect ?? [];
    for (const h of hooks) void runHandler(h, this.connection(), [reason], (m, e) => this.conn.gw.log(m, e), this.conn.gw.handlerDeadlineMs).catch(() => {});
  }

  dropAcks(): void {
    for (const a of this.acks.values()) {
      clearTimeout(a.timer);
      a.reject(new RtError('unavailable', 'the connection closed before acknowledging', 503));
    }
    this.acks.clear();
  }

  // ---- events from the client

  onEvent(args: unknown[], id: number | undefined): void {
    const ack: Ack | undefined = id === undefined ? undefined : (res) => this.sendAck(id, res);
    const name = args[0];
    const arg = args[1];
    const bucket = rateRefusal(this.conn, this.conn.ctx.config);
    if (bucket) {
      if (bucket.strikes >= MAX_RATE_STRIKES) {
        // A polling client still fetches the replies queued for what it sent before, then the close.
        this.conn.session.closeAfterFlush('rate limit exceeded');
        return;
      }
      const err = new RtError('rate_limited', `more than ${this.conn.ctx.config.rateLimit} events per second; slow down`, 429);
      const op = name === 'subscribe' || name === 'unsubscribe' || name === 'client event';
      const channel = op && arg && typeof arg === 'object' && typeof (arg as { channel?: unknown }).channel === 'string' ? (arg as { channel: string }).channel.slice(0, 200) : undefined;
      return this.fail(ack, String(name).slice(0, 200), channel, err, op);
    }
    if (name === 'subscribe') return this.opSubscribe(arg, ack);
    if (name === 'unsubscribe') return this.opUnsubscribe(arg, ack);
    if (name === 'client event') return void this.opWhisper(arg, ack);
    if (name === 'token:refresh') return this.opRefresh(arg, ack);
    const fn = typeof name === 'string' ? this.conn.gw.opts.handlers.handler(this.nsp, name) : undefined;
    if (!fn) {
      const err = new RtError('no_handler', `no handler for event ${JSON.stringify(name).slice(0, 100)} in namespace ${this.nsp}`, 404);
      return this.fail(ack, String(name), undefined, err, false);
    }
    runHandler(fn, this.connection(), args.slice(1), (m, e) => this.conn.gw.log(m, e), this.conn.gw.handlerDeadlineMs).then(
      (v) => ack?.(ackArgsOf(v)),
      (err) => this.fail(ack, name as string, undefined, err, false),
    );
  }

  onAck(id: number, args: unknown[]): void {
    const r = this.remoteAcks;
    if (r && (r.ids.delete(id) || (id >= r.from && id < r.below))) {
      const op: SioOp = { op: 'ack', sid: this.conn.session.sid, nsp: this.nsp, id, args };
      this.hub.forward(r.thread, 'sio', op).catch(() => {});
      return;
    }
    const a = this.acks.get(id);
    if (!a) return; // late (timed out) or never asked: nothing waits for it
    this.acks.delete(id);
    clearTimeout(a.timer);
    a.resolve(args[0]);
  }

  private sendAck(id: number, args: unknown[]): void {
    try {
      this.conn.sendPacket({ type: SioType.ACK, nsp: this.nsp, id, data: args });
    } catch (err) {
      // The handler returned something that cannot be sent (e.g. a cyclic object): say so instead.
      this.conn.sendPacket({ type: SioType.ACK, nsp: this.nsp, id, data: [{ error: { code: 'bad_reply', message: (err as Error).message } }] });
    }
  }

  /** Reports a failure: through the ack when there is one, else as an event, never silently. */
  private fail(ack: Ack | undefined, event: string, channel: string | undefined, err: unknown, channelOp: boolean): void {
    countRefusal(err);
    logInternal(err, `Socket.IO event ${event.slice(0, 200)}`);
    const error = toErrorBody(err);
    if (ack) return ack(channelOp ? [{ ok: false, error }] : [{ error }]);
    if (event === 'subscribe') return this.emitSafe('subscription_error', [channel ?? null, error]);
    this.emitSafe('error', [{ ...error, event: event.slice(0, 200), ...(channel !== undefined ? { channel } : {}) }]);
  }

  emitSafe(event: string, args: unknown[]): void {
    try {
      this.emitEvent(event, args);
    } catch (err) {
      this.conn.gw.log(`socket.io: cannot emit ${event}: ${(err as Error).message}`);
    }
  }

  emitEvent(event: string, args: unknown[]): void {
    if (typeof event !== 'string' || event.length === 0) throw new RtError('bad_request', 'event must be a non-empty string');
    const recovery = this.conn.gw.recovery;
    // A last argument that is a string would be taken for an offset by a recovering client: one follows it.
    const tail = recovery && typeof args[args.length - 1] === 'string' ? [recovery.offset()] : [];
    this.send({ type: SioType.EVENT, nsp: this.nsp, data: [event, ...args, ...tail] });
  }

  /** A packet of this socket's own (not a channel delivery), held while its connect is decided. */
  private send(p: SioPacket): void {
    const frames = this.conn.encode(p);
    if (this.held) this.held.push(...frames);
    else this.conn.session.send(frames);
  }

  emitWithAck(event: string, args: unknown[], timeoutMs = this.conn.gw.opts.ackTimeout): Promise<unknown> {
    if (this.conn.session.closed) return Promise.reject(new RtError('unavailable', 'connection closed', 503));
    const id = this.nextAck++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new RtError('timeout', `the client did not acknowledge ${event} within ${timeoutMs} ms`, 504));
      }, timeoutMs);
      this.acks.set(id, { resolve, reject, timer });
      try {
        this.send({ type: SioType.EVENT, nsp: this.nsp, id, data: [event, ...args] });
      } catch (err) {
        clearTimeout(timer);
        this.acks.delete(id);
        reject(err);
      }
    });
  }

  // ---- channel operations

  /** Runs a subscribe or unsubscribe of `channel` after the ones the client sent before it (channel-order.ts). */
  private inOrder(channel: string, op: () => Promise<void>): void {
    inChannelOrder(this.channelOps, channel, op, (err) => this.conn.gw.log(`socket.io ${this.publicId}: a channel operation on ${channel} failed`, err));
  }

  private opSubscribe(payload: unknown, ack: Ack | undefined): void {
    const p = (payload && typeof payload === 'object' ? payload : {}) as { channel?: unknown; auth?: unknown; data?: unknown };
    let channel: string;
    try {
      if (!payload || typeof payload !== 'object') throw new RtError('bad_request', 'subscribe expects { channel, auth }');
      channel = assertChannel(p.channel);
    } catch (err) {
      return this.fail(ack, 'subscribe', typeof p.channel === 'string' ? p.channel.slice(0, 200) : undefined, err, true);
    }
    this.inOrder(channel, () => this.subscribeNow(channel, p, ack).catch((err) => this.fail(ack, 'subscribe', channel, err, true)));
  }

  private async subscribeNow(channel: string, p: { auth?: unknown; data?: unknown }, ack: Ack | undefined): Promise<void> {
    if (this.restored?.delete(channel) && this.channels.has(channel)) {
      if (channelKind(channel) === 'presence') void this.hub.presence(channel).then((r) => this.emitSafe('presence:subscribed', [channel, r.members]), () => {});
      return ack?.([{ ok: true }]);
    }
    if (this.channels.has(channel)) throw new RtError('already_subscribed', `already subscribed to ${channel}`);
    const identity = await authorizeChannel(this.conn.gw.authDeps, this, this.publicId, this.conn.session.handshake, channel, p.auth);
    if (identity) (this.channelIdentity ??= new Map()).set(channel, identity);
    if (p.data !== undefined) this.subData.set(channel, p.data);
    try {
      await this.hub.subscribe(this, channel, undefined, p.data, (res) => {
        // Before the client joins the channel's delivery, so these precede any publication.
        if (res.members) this.emitSafe('presence:subscribed', [channel, res.members]);
        ack?.([res.data === undefined ? { ok: true } : { ok: true, data: res.data }]);
        this.track(channel, res.epoch, res.offset, []);
      });
    } catch (err) {
      this.channelIdentity?.delete(channel);
      this.subData.delete(channel);
      throw err;
    }
  }

  private opUnsubscribe(payload: unknown, ack: Ack | undefined): void {
    let channel: string;
    try {
      channel = assertChannel((payload as { channel?: unknown } | null)?.channel);
    } catch (err) {
      return this.fail(ack, 'unsubscribe', undefined, err, true);
    }
    this.inOrder(channel, async () => {
      if (!this.hub.unsubscribe(this, channel)) {
        return this.fail(ack, 'unsubscribe', channel, new RtError('not_subscribed', `not subscribed to ${channel}`), true);
      }
      this.channelIdentity?.delete(channel);
      this.subData.delete(channel);
      this.untrack(channel);
      ack?.([{ ok: true }]);
    });
  }

  private async opWhisper(payload: unknown, ack: Ack | undefined): Promise<void> {
    const p = (payload && typeof payload === 'object' ? payload : {}) as { channel?: unknown; event?: unknown; data?: unknown };
    let channel: string | undefined;
    try {
      channel = assertChannel(p.channel);
      const event = assertEvent(p.event);
      await this.channelOps.get(channel);
      if (!this.channels.has(channel)) throw new RtError('not_subscribed', `subscribe to ${channel} before whispering on it`, 403);
      const limit = this.conn.ctx.config.maxWhisperSize;
      if (payloadSize(p.data, limit) > limit) throw new RtError('payload_too_large', `whispers are limited to ${limit} bytes`, 413);
      // The channel's owner decides, as for a native publish: its actor's onMessage when it has one,
      // else the whisper policy (client- events on private and presence channels).
      // Excluded by the id the client knows, which a recovered or moved socket keeps (see resumed).
      const r = await this.hub.publish(channel, event, p.data, 'client', this, this.publicId, true);
      ack?.([r.data === undefined ? { ok: true } : { ok: true, data: r.data }]);
    } catch (err) {
      this.fail(ack, 'client event', channel, err, true);
    }
  }

  /** After a move: subscribe again from where the old thread's deliveries stopped. */
  resubscribe(channel: string, since: StreamPosition | undefined, data: unknown, identity: ChannelIdentity | undefined): Promise<unknown> {
    if (identity) (this.channelIdentity ??= new Map()).set(channel, identity);
    if (data !== undefined) this.subData.set(channel, data);
    return this.hub
      .subscribe(this, channel, since, data, (res) => {
        if (res.recovered === false) this.conn.gw.log(`socket.io ${this.publicId}: publications on ${channel} during the move to this thread are not in history`);
        this.track(channel, res.epoch, since?.offset ?? res.offset, this.resumed(res.pubs ?? []));
      })
      .catch((err) => {
        this.channelIdentity?.delete(channel);
        this.subData.delete(channel);
        if (!this.closed) this.emitSafe('subscription_error', [channel, toErrorBody(err)]);
      });
  }

  exportState(): SocketState {
    const channels = [...this.channels].map((ch) => {
      const c: SocketState['channels'][number] = { ch };
      const pos = this.hub.position(ch);
      if (pos) c.pos = pos;
      if (this.subData.has(ch)) c.data = this.subData.get(ch);
      const id = this.channelIdentity?.get(ch);
      if (id) c.identity = id;
      return c;
    });
    const recovery = this.conn.gw.recovery;
    if (recovery) for (const c of channels) c.snaps = this.snapshots(recovery, c.ch);
    const st: SocketState = { nsp: this.nsp, publicId: this.publicId, auth: this.auth, data: plainData(this.data, (m) => this.conn.gw.log(m)), channels, nextAck: this.nextAck, acks: [...this.acks.keys()] };
    if (this.pid) st.pid = this.pid;
    if (this.staleOffset !== undefined) st.staleOffset = this.staleOffset;
    if (this.user !== undefined) st.user = this.user;
    if (this.info !== undefined) st.info = this.info;
    if (this.grants !== undefined) st.grants = this.grants;
    if (this.expiresAt !== undefined) st.expiresAt = this.expiresAt;
    if (this.issuedAt !== undefined) st.issuedAt = this.issuedAt;
    return st;
  }

  // ---- connection state recovery (see recovery.ts)

  private handOver?: () => SavedSocket;

  /** Names this socket for recovery; a client coming back with this pid while it still lives takes it over. */
  setPid(pid: string): void {
    const recovery = this.conn.gw.recovery!;
    this.pid = pid;
    this.handOver = () => {
      const rec = this.saved(recovery);
      this.pid = undefined;
      // The taking connection is the same member, back at once: the others see nothing.
      this.presenceGraceMs = this.conn.gw.opts.presenceGraceMs;
      if (this.conn.sockets.get(this.nsp) === this) this.leave('taken over by a recovering connection', false);
      if (this.conn.sockets.size === 0) this.conn.session.close('taken over by a recovering connection');
      return rec;
    };
    recovery.bind(pid, this.handOver);
  }

  /** Starts tracking this socket's place in `channel` (it just joined its live deliveries). */
  private track(channel: string, epoch: string, base: number, marks: Array<[number, number]>): void {
    const recovery = this.conn.gw.recovery;
    if (!recovery) return;
    if (!this.tracks.has(channel)) recovery.watch(channel);
    this.tracks.set(channel, { epoch, base, joinedAt: recovery.seq, marks });
  }

  private untrack(channel: string): void {
    if (this.tracks.delete(channel)) this.conn.gw.recovery?.unwatch(channel);
    this.earlier.delete(channel);
  }

  /**
   * Sends publications to this socket alone (resumed from history), each with a number of its own;
   * not those it was excluded from (a `socket_id`, its own whispers), which live delivery skipped too.
   * `as`: the id the client knows the socket by (a recovering socket takes it only once recovered).
   */
  private resumed(pubs: readonly Publication[], as = this.publicId): Array<[number, number]> {
    const recovery = this.conn.gw.recovery;
    const marks: Array<[number, number]> = [];
    for (const pub of pubs) {
      if (pub.ex !== undefined && pub.ex === as) continue;
      if (!recovery) {
        this.sendEncoded(this.codec.pub(pub));
        continue;
      }
      const offset = recovery.next();
      marks.push([recovery.seq, pub.offset]);
      this.sendEncoded(eventEncoded(this.nsp, [pub.event, pub.channel, pub.data, offset], this.conn.gw.opts.parser, (why) => this.conn.gw.warnOnce(why)));
    }
    return marks;
  }

  private snapshots(recovery: Recovery, channel: string): Snapshot[] {
    const track = this.tracks.get(channel);
    const earlier = this.earlier.get(channel) ?? [];
    return track ? [...earlier, recovery.snapshot(track, channel)] : earlier;
  }

  /** What is saved of this socket when its session ends for a reason its client comes back from. */
  saved(recovery: Recovery): SavedSocket {
    const channels = [...this.channels].map((ch) => {
      const c: SavedSocket['channels'][number] = { ch, snaps: this.snapshots(recovery, ch) };
      if (this.subData.has(ch)) c.data = this.subData.get(ch);
      const id = this.channelIdentity?.get(ch);
      if (id) c.identity = id;
      return c;
    });
    const rec: SavedSocket = { pid: this.pid!, nsp: this.nsp, publicId: this.publicId, data: plainData(this.data, (m) => this.conn.gw.log(m)), channels, until: Date.now() + recovery.windowMs };
    if (this.user !== undefined) rec.user = this.user;
    if (this.info !== undefined) rec.info = this.info;
    if (this.grants !== undefined) rec.grants = this.grants;
    if (this.expiresAt !== undefined) rec.expiresAt = this.expiresAt;
    if (this.issuedAt !== undefined) rec.issuedAt = this.issuedAt;
    if (this.staleOffset !== undefined) rec.stale = this.staleOffset;
    rec.nextAck = this.nextAck;
    return rec;
  }

  /** Takes the identity of a saved socket (a recovering client that presents no token of its own). */
  resume(saved: SavedSocket): void {
    this.user = saved.user;
    this.info = saved.info;
    this.grants = saved.grants;
    this.expiresAt = saved.expiresAt;
    this.issuedAt = saved.issuedAt;
  }

  /**
   * Gives a saved socket back: its id, data and channels, each subscribed again from the last
   * publication the client received, with what it missed sent (held until the CONNECT packet). All or
   * nothing: when one channel cannot be recovered, the socket starts afresh (`recovered: false`).
   */
  async recover(saved: SavedSocket, clientOffset: unknown): Promise<boolean> {
    if (clientOffset !== undefined && typeof clientOffset !== 'string') return false;
    // Still the offset of the session before this one started afresh: it received nothing from this one.
    const offset = clientOffset === saved.stale ? undefined : clientOffset;
    const since = saved.channels.map((c) => receivedUpTo(c.snaps, offset));
    if (since.some((p) => p === undefined)) return false;
    let ok = true;
    const heldBefore = this.held?.length ?? 0;
    const early = await this.missedInOrder(saved.channels, since as StreamPosition[], saved.publicId);
    await Promise.all(
      saved.channels.map((c, i) => {
        if (c.identity) (this.channelIdentity ??= new Map()).set(c.ch, c.identity);
        if (c.data !== undefined) this.subData.set(c.ch, c.data);
        // From the last publication already sent: the subscribe gives what came after it.
        return this.hub
          .subscribe(this, c.ch, early.after[i] ?? since[i], c.data, (res) => {
            if (res.recovered !== true) ok = false;
            this.track(c.ch, res.epoch, since[i]!.offset, [...early.marks[i]!, ...this.resumed(res.pubs ?? [], saved.publicId)]);
          })
          .catch(() => (ok = false));
      }),
    );
    // A session closed meanwhile is the caller's (connect saves the session again): a recovered socket
    // torn down keeps its presence in its grace, where unsubscribing here would be a leave at once.
    if (!ok) {
      for (const ch of [...this.channels]) {
        this.hub.unsubscribe(this, ch);
        this.untrack(ch);
      }
      this.channelIdentity?.clear();
      this.subData.clear();
      // Nothing of the old socket survives, including what was sent while trying.
      if (this.held) this.held.length = heldBefore;
      return false;
    }
    // A client cut again before the replay reached it comes back with the offset it had before this
    // recovery, which names the thread of the socket it recovered: kept, the next recovery reads it.
    for (const c of saved.channels) this.earlier.set(c.ch, c.snaps.slice(-MAX_EARLIER_SNAPSHOTS));
    this.publicId = saved.publicId;
    this.hub.aliases.set(this.publicId, this);
    this.data = saved.data ?? {};
    this.restored = new Set(saved.channels.map((c) => c.ch));
    return true;
  }

  /**
   * What the channels missed, read from their history before subscribing and sent in the order it was
   * published across channels, as socket.io's one stream per session replays it (HISTORY_LIMIT per
   * channel; the subscribe then gives the rest). A channel whose history cannot be read so (another
   * epoch, a gap, an error) resumes at its subscribe alone, as each channel did before.
   */
  private async missedInOrder(channels: readonly SavedChannel[], since: readonly StreamPosition[], as: string): Promise<{ marks: Array<Array<[number, number]>>; after: Array<StreamPosition | undefined> }> {
    const marks = channels.map((): Array<[number, number]> => []);
    const after: Array<StreamPosition | undefined> = channels.map(() => undefined);
    if (channels.length < 2) return { marks, after };
    const answers = await Promise.all(channels.map((c, i) => this.hub.history(c.ch, since[i], HISTORY_LIMIT, true).catch(() => undefined)));
    const slices = answers.map((a, i): MissedSlice | undefined => (a && a.recovered && a.epoch === since[i]!.epoch && a.times?.length === a.pubs.length ? { pubs: a.pubs, times: a.times } : undefined));
    for (const [i, pub] of publicationOrder(slices)) {
      marks[i]!.push(...this.resumed([pub], as));
      after[i] = { epoch: since[i]!.epoch, offset: pub.offset };
    }
    return { marks, after };
  }

  // ---- what request handlers see

  connection(): Connection {
    if (this.handlerConn) return this.handlerConn;
    const c = this;
    const hub = this.hub;
    this.handlerConn = {
      get socketId() {
        return c.publicId;
      },
      get userId() {
        return c.user;
      },
      get userInfo() {
        return c.info;
      },
      auth: c.auth,
      transport: 'socket.io',
      namespace: c.nsp,
      get handshake() {
        return c.conn.session.handshake;
      },
      get data() {
        return c.data;
      },
      channels: () => [...c.channels],
      emit: (event, ...args) => c.emitEvent(event, args),
      emitWithAck: (event, ...args) => c.emitWithAck(event, args),
      publish: (channel, event, data, opts) => hub.publish(assertChannel(channel), assertEvent(event), data, 'server', undefined, opts?.excludeSelf ? c.publicId : undefined),
      publishToUser: (user, event, data) => hub.publishToUser(String(user), assertEvent(event), data),
      disconnect: (reason) => c.disconnect(CloseCode.DISCONNECTED, reason ?? 'disconnected by the server', false),
    };
    return this.handlerConn;
  }
}

/** `conn.data` must cross threads when a session moves: keep what survives JSON, say what does not. */
function plainData(data: Record<string, unknown>, log: (m: string) => void): Record<string, unknown> {
  try {
    return JSON.parse(JSON.stringify(data)) as Record<string, unknown>;
  } catch (err) {
    log(`socket.io: connection data could not be carried to another thread: ${(err as Error).message}`);
    return {};
  }
}

