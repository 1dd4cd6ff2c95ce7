/**
 * Engine.IO v4 server on uWS: sessions, HTTP long-polling, WebSocket, heartbeats and the upgrade.
 *
 * Sessions live on one thread, the one whose index prefixes their sid. A polling request that lands
 * on another shard (no sticky sessions) is forwarded there through the mesh and answered back. The
 * upgrade's WebSocket may land anywhere too: on the home thread the session just switches transport;
 * elsewhere the session moves to the WebSocket's thread (its Socket.IO state is exported, rebuilt and
 * re-subscribed there), because a uWS socket cannot change threads and relaying every delivery of a
 * long-lived socket through another thread would defeat per-shard topic fan-out. The old thread keeps
 * a ghost of the session for a while that relays late output (handler acks) to the new home.
 */
import { countRefusal } from '../../runtime/instruments.js';
import { metrics } from '../../runtime/metrics.js';
import { randomBytes } from 'node:crypto';
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from 'uWebSockets.js';
import { decodeEioPacket, decodeEioPayload, EioError, openPacketData, type EioPacket } from '../../protocol/engineio.js';
import type { Encoded } from '../../protocol/codecs.js';
import { threadOfSocket } from '../../runtime/hash.js';
import type { ThreadContext } from '../../runtime/context.js';
import { guardBehavior, readBody, statusLine, type ResponseState } from '../http.js';
import { originAllowed } from '../../security/origins.js';
import { admissionError } from '../../security/admission.js';
import { clientAddress, forwardingHeader } from '../../security/client-ip.js';
import type { Handshake } from '../../actors/handlers.js';
import { frameBytes, framesOf, NOOP, pollingPayload, type Frame } from './codec.js';
import { headSafe } from '../head.js';

export const SOCKETIO_PATH = '/socket.io/';

/** Engine.IO's HTTP error codes (sent as `{ code, message }`). */
const EioCode = {
  UNKNOWN_TRANSPORT: 0,
  UNKNOWN_SID: 1,
  BAD_HANDSHAKE_METHOD: 2,
  BAD_REQUEST: 3,
  FORBIDDEN: 4,
  UNSUPPORTED_PROTOCOL_VERSION: 5,
} as const;
const EIO_MESSAGES = ['Transport unknown', 'Session ID unknown', 'Bad handshake method', 'Bad request', 'Forbidden', 'Unsupported protocol version'];

export interface EngineOptions {
  /** URL path served, with its trailing slash ('/socket.io/'). */
  path: string;
  /** Mesh route for requests between threads about this engine's sessions. */
  route: string;
  pingInterval: number;
  pingTimeout: number;
  maxPayload: number;
  polling: boolean;
  websocket: boolean;
  /** Browser origins allowed besides the server's own host (--allowed-origins). */
  allowedOrigins: readonly string[];
  /** Bytes queued for a polling client that is not fetching them before it is disconnected. */
  maxBuffered: number;
  maxBackpressure: number;
  upgradeTimeout: number;
  /** How long a moved session's ghost relays late output to its new thread. */
  ghostTtl: number;
}

/**
 * Arrival time of a request, in microseconds of the process-wide monotonic clock: the same on every
 * thread, so the session's thread can order requests that other shards received (see `Tomb`).
 */
export function arrivalStamp(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** While a WebSocket probe is answered, a pending poll is ended with a noop this often (as the reference server does). */
const UPGRADE_TICK_MS = 100;
/** How long a closed session's id is remembered, for requests that arrived before the close but reach its thread after. */
const TOMB_MS = 3000;

/** Why a WebSocket session ended when its client sent a message over maxPayload (see UNRECOVERABLE in gateway.ts). */
export const TOO_BIG_CLOSE = 'message over maxHttpBufferSize';

/** What remains of a closed polling session for a while. */
interface Tomb {
  closedAt: number;
  /** The packets a GET that arrived before the close gets (the close packet, or a noop), once. */
  lastWords?: string;
  /**
   * The next poll gets the last words whenever it arrived: the client itself closed (a GET and a POST
   * `1` sent at once can reach two shards in either order), or it was just sent its last packets (see
   * closeAfterFlush) and polls once more.
   */
  lenient?: boolean;
}

/** What the Socket.IO layer does with one session. */
export interface SessionListener {
  onMessage(data: string | Uint8Array): void;
  onClose(reason: string): void;
  /** The session switched to its WebSocket on this thread. */
  onTransport(): void;
  /** Resolves when nothing is half-done that a move would lose (namespace connects, subscriptions). */
  settled(): Promise<void>;
  /** The session is moving to another thread: freeze and describe yourself (msgpack-serializable). */
  exportState(): unknown;
  /** The new thread took over: let go of what was kept for the move (on the ghost). */
  released(): void;
}

export interface SessionOwner {
  open(session: EioSession): SessionListener;
  /** A session moved in from another thread. */
  restore(session: EioSession, state: unknown, from: number): SessionListener;
}

interface HttpAnswer {
  status: number;
  body: string;
  type: 'text' | 'html' | 'json';
}

type ProbeAnswer = 'accepted' | 'unknown' | 'busy';

interface WsData {
  handshake: Handshake;
  session?: EioSession;
  /**
   * Set on an upgrade's WebSocket until the client sends the upgrade packet. `accepted` once the session's
   * home thread took the probe; packets before that wait in `early`.
   */
  probe?: { sid: string; home: number; timer?: NodeJS.Timeout; accepted?: boolean; answer?: ProbeAnswer };
  /** Packets that arrived while a moving session was being rebuilt here, or before a probe was accepted. */
  early?: EioPacket[];
  moving?: boolean;
  /** The socket closed (uWS forbids touching it afterwards). */
  gone?: boolean;
  /** Closed for a message over maxPayload (1009): the session ends for good, as a polling body over it does. */
  tooBig?: boolean;
  /** Counted in the connection limits at upgrade: the session created at open owns that count. */
  admitted?: boolean;
  /** uWS dropped a message for it: counted and closed once, however many more it drops before the close runs. */
  dropped?: boolean;
}

/** Mesh requests between threads for sessions (route 'eio'). */
type EioOp =
  | { op: 'get'; sid: string; rid: string; at: number }
  | { op: 'abort'; sid: string; rid: string }
  | { op: 'post'; sid: string; body: string; at: number }
  | { op: 'kill'; sid: string; reason: string }
  | { op: 'probe'; sid: string }
  | { op: 'probed'; sid: string }
  | { op: 'unprobe'; sid: string }
  | { op: 'migrate'; sid: string; at: number }
  | { op: 'release'; sid: string }
  | { op: 'out'; sid: string; frames: Frame[] };

interface Migrated {
  frames: Frame[];
  state: unknown;
  handshake: Handshake;
  /** The address counted against the connection limits, released by whichever thread ends the session. */
  admitted?: string;
}

/** Sessions closed for misbehaving count as refusals (rt_refusals_total). */
function countCloseReason(reason: string): void {
  if (reason === 'parse error') countRefusal('malformed');
  else if (reason.startsWith('slow consumer')) countRefusal('slow_consumer');
  else if (reason === 'rate limit exceeded') countRefusal('rate_limit');
}

function answer(code: number, status = code === EioCode.FORBIDDEN ? 403 : 400): HttpAnswer {
  return { status, body: JSON.stringify({ code, message: EIO_MESSAGES[code] }), type: 'json' };
}

const OK_ANSWER: HttpAnswer = { status: 200, body: 'ok', type: 'html' };

/** Request headers kept with a session (handlers see them; the auth endpoint gets the cookie). */
const KEPT_HEADERS = ['cookie', 'origin', 'host', 'user-agent', 'referer', 'accept-language', 'x-forwarded-for', 'x-real-ip'];

function snapshotHandshake(res: HttpResponse, req: HttpRequest, query: URLSearchParams): Handshake {
  const headers: Record<string, string> = {};
  for (const h of KEPT_HEADERS) {
    const v = h === 'x-forwarded-for' || h === 'x-real-ip' ? forwardingHeader(req, h) : req.getHeader(h);
    if (v) headers[h] = v.length > 8192 ? v.slice(0, 8192) : v;
  }
  const q: Record<string, string> = {};
  let n = 0;
  for (const [k, v] of query) {
    if (++n > 50) break;
    q[k] = v;
  }
  return { headers, query: q, address: clientAddress(res.getRemoteAddressAsText(), (h) => forwardingHeader(req, h)) };
}

export class EioSession {
  readonly sid: string;
  readonly handshake: Handshake;
  transport: 'polling' | 'websocket';
  ws?: WebSocket<WsData>;
  listener!: SessionListener;
  closed = false;
  /** Thread the session moved to (this object is then a ghost relaying late output). */
  movedTo?: number;
  /** Address counted in the shared connection limits (released once, when the session ends). */
  admitted?: string;
  /** A WebSocket probe was opened for this session and has not ended. */
  probing = false;
  /** The probe answered the client's probe ping: pending polls are ended so the client can switch. */
  upgrading = false;
  private queue: Frame[] = [];
  private queuedBytes = 0;
  private getter?: { rid: string; send: (a: HttpAnswer) => void; at: number };
  private flushScheduled = false;
  private timer?: NodeJS.Timeout;
  private upgradeTimer?: NodeJS.Timeout;
  private hurryTimer?: NodeJS.Timeout;
  /** When the upgrade packet arrived (monotonic µs), once the session is leaving for another thread. */
  upgradedAt?: number;
  /** When the client's pong is due (monotonic µs), while a ping is unanswered. */
  private pongDue?: number;
  /** Why the session ends once its queue is fetched (see closeAfterFlush). */
  private closing?: string;

  constructor(
    private readonly engine: Engine,
    sid: string,
    transport: 'polling' | 'websocket',
    handshake: Handshake,
  ) {
    this.sid = sid;
    this.transport = transport;
    this.handshake = handshake;
  }

  get opts(): EngineOptions {
    return this.engine.opts;
  }

  /** Output of the Socket.IO layer itself (connect answers, acks, handler emits): relayed when moved. */
  send(frames: Frame[]): void {
    if (this.closed) return;
    if (this.movedTo !== undefined) {
      this.engine.relay(this.movedTo, this.sid, frames);
      return;
    }
    this.write(frames);
  }

  /**
   * Hub deliveries (channel publications, presence, user messages): dropped on a ghost, because the
   * new thread re-subscribed from the ghost's last stream position and delivers them itself.
   */
  deliver(e: Encoded): void {
    if (this.closed || this.movedTo !== undefined) return;
    this.write(framesOf(e));
  }

  write(frames: Frame[]): void {
    if (this.transport === 'websocket') {
      const ws = this.ws!;
      for (const f of frames) ws.send(f, typeof f !== 'string');
      return;
    }
    // The backlog already waiting tells a slow client, not the size of what comes (as on /poll, SSE and
    // WebSockets): one large write (a handler's reply, a recovery's replay) must reach a client that
    // is fetching, or it would be closed, and a recovering one would ask for the replay again.
    if (this.queuedBytes > this.opts.maxBuffered) {
      this.close('slow consumer: polling client is not fetching its messages');
      return;
    }
    for (const f of frames) {
      this.queue.push(f);
      this.queuedBytes += frameBytes(f);
    }
    if (this.getter && !this.flushScheduled) {
      // Coalesce everything produced in this turn (e.g. one mesh drain) into one response.
      this.flushScheduled = true;
      queueMicrotask(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    if (!this.getter || this.queue.length === 0) return;
    const g = this.getter;
    this.getter = undefined;
    const body = pollingPayload(this.queue);
    this.queue = [];
    this.queuedBytes = 0;
    g.send({ status: 200, body, type: 'text' });
    if (this.closing !== undefined) this.close(this.closing, true, true);
  }

  // ---- heartbeat: ping every pingInterval, expect the pong within pingTimeout

  startHeartbeat(): void {
    this.schedulePing();
  }

  private schedulePing(): void {
    clearTimeout(this.timer);
    // Due from when the ping is scheduled, not sent: a timer running late must not extend the session.
    this.pongDue = arrivalStamp() + (this.opts.pingInterval + this.opts.pingTimeout) * 1000;
    this.timer = setTimeout(() => {
      this.write(['2']);
      this.timer = setTimeout(() => this.close('ping timeout'), this.opts.pingTimeout);
    }, this.opts.pingInterval);
  }

  /** A request that arrived after the pong was due finds the session closed, even if the timer runs late. */
  private overdue(at: number): boolean {
    if (this.pongDue === undefined || at <= this.pongDue) return false;
    this.close('ping timeout');
    return true;
  }

  // ---- packets from the client

  onPacket(p: EioPacket): void {
    if (this.closed) return;
    switch (p.type) {
      case 'message':
        this.listener.onMessage(p.data ?? '');
        return;
      case 'pong':
        this.schedulePing();
        return;
      case 'close':
        // As in engine.io: a transport loss, which the client comes back from (engine.io-client sends
        // it on its own ping timeout and when the browser goes offline). A client that leaves on
        // purpose sends Socket.IO's DISCONNECT first, and that socket is not saved.
        this.close('transport close', false, true);
        return;
      case 'ping':
      case 'noop':
        // v4 clients do not ping (the server does); tolerated rather than fatal.
        return;
      default:
        throw new EioError('eio_bad_packet', `unexpected ${p.type} packet`);
    }
  }

  // ---- polling

  poll(rid: string, send: (a: HttpAnswer) => void, at: number): void {
    if (this.closed || this.overdue(at)) return send(this.engine.afterClose(this.sid, at));
    if (this.transport !== 'polling' || this.movedTo !== undefined || this.upgradedAt !== undefined) return send(answer(EioCode.BAD_REQUEST));
    if (this.getter) {
      // Two GETs at once is a broken or hostile client: end the session (protocol test suite behaviour).
      // The one that arrived second (whichever shard forwarded it faster) is refused; the first gets the close packet.
      if (at < this.getter.at) {
        const later = this.getter;
        this.getter = { rid, send, at };
        later.send(answer(EioCode.BAD_REQUEST));
      } else send(answer(EioCode.BAD_REQUEST));
      this.close('overlapping polling requests');
      return;
    }
    this.getter = { rid, send, at };
    // During an upgrade the poll is ended with a noop a little later, unless the upgrade completes first.
    if (this.upgrading) this.hurryLater();
    else if (this.queue.length > 0) this.flush();
  }

  private hurryLater(): void {
    clearTimeout(this.hurryTimer);
    this.hurryTimer = setTimeout(() => this.hurryPoll(), UPGRADE_TICK_MS);
  }

  private hurryPoll(): void {
    clearTimeout(this.hurryTimer);
    if (!this.getter) return;
    const g = this.getter;
    this.getter = undefined;
    g.send({ status: 200, body: pollingPayload([...this.queue.splice(0), NOOP]), type: 'text' });
    this.queuedBytes = 0;
  }

  abortPoll(rid: string): void {
    if (this.getter?.rid === rid) this.getter = undefined;
  }

  post(body: string, at: number): HttpAnswer {
    if (this.closed || this.overdue(at)) return answer(EioCode.UNKNOWN_SID);
    if (this.transport !== 'polling' || this.movedTo !== undefined || (this.upgradedAt !== undefined && at > this.upgradedAt)) return answer(EioCode.BAD_REQUEST);
    let packets: EioPacket[];
    try {
      packets = decodeEioPayload(body);
    } catch (err) {
      this.engine.ctx.log.debug(`socket.io ${this.sid}: bad polling payload: ${(err as Error).message}`);
      this.close('parse error');
      return answer(EioCode.BAD_REQUEST);
    }
    try {
      for (const p of packets) this.onPacket(p);
    } catch (err) {
      this.engine.ctx.log.debug(`socket.io ${this.sid}: ${(err as Error).message}`);
      this.close('parse error');
      return answer(EioCode.BAD_REQUEST);
    }
    return OK_ANSWER;
  }

  // ---- upgrade

  /**
   * A WebSocket probe opened for this session (on any thread). One at a time: a client probes again
   * only after a failed probe ended (unprobe), as the reference server requires.
   */
  beginProbe(): boolean {
    if (this.closed || this.closing !== undefined || this.transport !== 'polling' || this.movedTo !== undefined || this.probing) return false;
    this.probing = true;
    clearTimeout(this.upgradeTimer);
    this.upgradeTimer = setTimeout(() => this.endProbe(), this.opts.upgradeTimeout);
    return true;
  }

  /** The probe answered the client's probe ping: end pending polls with a noop on a tick until it switches. */
  probed(): void {
    if (!this.probing || this.upgrading) return;
    this.upgrading = true;
    if (this.getter) this.hurryLater();
  }

  /** The probe ended without completing the upgrade. */
  endProbe(): void {
    clearTimeout(this.upgradeTimer);
    clearTimeout(this.hurryTimer);
    this.probing = false;
    this.upgrading = false;
  }

  /** Upgrade on this thread: same session, new transport; queued packets go out on the WebSocket. */
  switchTo(ws: WebSocket<WsData>): void {
    this.endProbe();
    this.endPoll();
    this.transport = 'websocket';
    this.ws = ws;
    const q = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    this.write(q);
    this.listener.onTransport();
  }

  /**
   * Ends a poll still pending at the upgrade with a 400: a client sends the upgrade packet only after
   * its last poll was answered (it pauses polling on the probe's pong), so a poll pending now was sent
   * after the upgrade packet and merely reached this thread first.
   */
  private endPoll(): void {
    clearTimeout(this.hurryTimer);
    if (this.getter) {
      const g = this.getter;
      this.getter = undefined;
      g.send(answer(EioCode.BAD_REQUEST));
    }
  }

  /** Upgrade onto another thread: hand over the queue and the Socket.IO state, stay as a ghost. */
  moveTo(thread: number): Migrated | null {
    if (this.closed || !this.probing || this.transport !== 'polling' || this.movedTo !== undefined) return null;
    this.endProbe();
    clearTimeout(this.timer);
    this.endPoll();
    const frames = this.queue;
    this.queue = [];
    this.queuedBytes = 0;
    const state = this.listener.exportState();
    this.movedTo = thread;
    const admitted = this.admitted;
    this.admitted = undefined;
    this.timer = setTimeout(() => {
      this.closed = true;
      this.listener.onClose('moved');
      this.engine.forget(this);
    }, this.opts.ghostTtl);
    return admitted === undefined ? { frames, state, handshake: this.handshake } : { frames, state, handshake: this.handshake, admitted };
  }

  // ---- closing

  /**
   * Ends the session. Over WebSocket the socket is closed (the client reconnects unless Socket.IO told
   * it otherwise first); over polling the close packet goes to the pending or the next GET.
   */
  close(reason: string, notify = true, byClient = false): void {
    if (this.closed) return;
    this.closed = true;
    countCloseReason(reason);
    clearTimeout(this.timer);
    this.endProbe();
    if (this.transport === 'websocket') {
      const ws = this.ws!;
      this.ws = undefined;
      ws.getUserData().session = undefined;
      try {
        ws.end(1000, reason.slice(0, 120));
      } catch {
        /* already closed by the peer */
      }
      this.engine.forget(this);
    } else if (this.movedTo === undefined) {
      const frames = notify ? [...this.queue, '1'] : this.queue;
      const words = pollingPayload(frames.length ? frames : [NOOP]);
      this.queue = [];
      this.queuedBytes = 0;
      if (this.getter) {
        const g = this.getter;
        this.getter = undefined;
        g.send({ status: 200, body: words, type: 'text' });
        this.engine.bury(this, undefined);
      } else {
        // A GET that arrived before this close but reaches this thread after it still gets these words.
        // A ping timeout closed the session when the pong was due, however late its timer ran: a GET
        // that arrived after that is too late, as overdue() would have told it.
        const closedAt = reason === 'ping timeout' && this.pongDue !== undefined ? Math.min(arrivalStamp(), this.pongDue) : arrivalStamp();
        this.engine.bury(this, words, byClient, closedAt);
      }
    } else this.engine.forget(this);
    this.listener?.onClose(reason);
  }

  /**
   * Ends the session after the client fetched what is queued, as engine.io does (it closes on drain):
   * a polling client given Socket.IO's DISCONNECT and the close packet in one response acts on the
   * close first (`transport close`, and reconnects), then on the DISCONNECT. The close packet goes to
   * the poll after; a client that does not poll again is closed by the heartbeat.
   */
  closeAfterFlush(reason: string): void {
    if (this.closed || this.transport !== 'polling' || this.movedTo !== undefined || this.probing || this.queue.length === 0) return this.close(reason);
    this.closing = reason;
    if (this.getter && !this.flushScheduled) this.flush();
  }

  /** The WebSocket went away under us. */
  transportClosed(reason: string): void {
    if (this.closed) return;
    this.ws = undefined;
    this.closed = true;
    clearTimeout(this.timer);
    this.engine.forget(this);
    this.listener.onClose(reason);
  }
}

export class Engine {
  readonly sessions = new Map<string, EioSession>();
  /**
   * Sessions being moved here, with output their old thread relayed meanwhile: the relay can be
   * drained from the ring before the hand-over's reply has been acted on.
   */
  private readonly adopting = new Map<string, Frame[]>();
  /** Recently closed polling sessions (see Tomb). */
  private readonly tombs = new Map<string, Tomb>();
  private rid = 0;

  constructor(
    readonly ctx: ThreadContext,
    readonly opts: EngineOptions,
    private readonly owner: SessionOwner,
  ) {}

  /** Forgets a closed polling session, keeping its tomb for requests already on their way. */
  bury(s: EioSession, lastWords: string | undefined, lenient = false, closedAt = arrivalStamp()): void {
    this.forget(s);
    const tomb: Tomb = { closedAt };
    if (lastWords !== undefined) tomb.lastWords = lastWords;
    if (lenient) tomb.lenient = true;
    this.tombs.set(s.sid, tomb);
    setTimeout(() => {
      if (this.tombs.get(s.sid) === tomb) this.tombs.delete(s.sid);
    }, TOMB_MS).unref();
  }

  /** The answer to a GET for a session that is gone: its last words if the GET arrived before the close, else 400. */
  afterClose(sid: string, at: number): HttpAnswer {
    const tomb = this.tombs.get(sid);
    if (tomb?.lastWords !== undefined && (at < tomb.closedAt || tomb.lenient)) {
      const body = tomb.lastWords;
      tomb.lastWords = undefined;
      return { status: 200, body, type: 'text' };
    }
    return answer(EioCode.UNKNOWN_SID);
  }

  forget(s: EioSession): void {
    if (this.sessions.get(s.sid) === s) this.sessions.delete(s.sid);
    if (s.admitted !== undefined) {
      this.ctx.limits.release(s.admitted);
      s.admitted = undefined;
    }
  }

  /** Counts a new session against the host's connection limits; an HTTP answer when refused. */
  private admit(ip: string): HttpAnswer | null {
    const r = this.ctx.limits.admit(ip);
    if (r === 'ok') return null;
    const err = admissionError(r, ip, this.ctx.config);
    // The error, not the bare result: a code is not a reason, and counted as one it was dropped.
    countRefusal(err);
    return { status: err.status, body: JSON.stringify({ code: EioCode.BAD_REQUEST, message: err.message }), type: 'json' };
  }

  /** A ghost's late output goes to the session's new thread. */
  relay(thread: number, sid: string, frames: Frame[]): void {
    this.ctx.hub.forward(thread, this.opts.route, { op: 'out', sid, frames } satisfies EioOp).catch(() => {});
  }

  private newSid(): string {
    return `${this.ctx.thread}.${randomBytes(15).toString('base64url')}`;
  }

  private create(transport: 'polling' | 'websocket', handshake: Handshake, ws?: WebSocket<WsData>): EioSession {
    const s = new EioSession(this, this.newSid(), transport, handshake);
    s.admitted = handshake.address;
    s.ws = ws;
    this.sessions.set(s.sid, s);
    s.listener = this.owner.open(s);
    s.startHeartbeat();
    return s;
  }

  private openPacket(sid: string, upgrades: string[]): string {
    const o = this.opts;
    return '0' + openPacketData({ sid, upgrades, pingInterval: o.pingInterval, pingTimeout: o.pingTimeout, maxPayload: o.maxPayload });
  }

  /** A probe for a session held on this thread. */
  private probeHere(sid: string): ProbeAnswer {
    const s = this.sessions.get(sid);
    return !s ? 'unknown' : s.beginProbe() ? 'accepted' : 'busy';
  }

  /** Which thread holds a sid, or -1 when it cannot be one of ours. */
  private homeOf(sid: string): number {
    if (sid.length > 64) return -1;
    const t = threadOfSocket(sid);
    return t >= 0 && t < this.ctx.hub.shards ? t : -1;
  }

  // ---- requests for sessions held here (directly, or forwarded by another shard)

  private localOp(op: EioOp, from: number): unknown {
    const s = this.sessions.get(op.sid);
    switch (op.op) {
      case 'get':
        if (!s) return this.afterClose(op.sid, op.at);
        return new Promise<HttpAnswer>((resolve) => s.poll(op.rid, resolve, op.at));
      case 'abort':
        s?.abortPoll(op.rid);
        return null;
      case 'post':
        return s ? s.post(op.body, op.at) : answer(EioCode.UNKNOWN_SID);
      case 'kill':
        s?.close(op.reason);
        return null;
      case 'probe':
        return s ? s.beginProbe() : 'unknown';
      case 'probed':
        s?.probed();
        return null;
      case 'unprobe':
        s?.endProbe();
        return null;
      case 'migrate':
        if (!s) return null;
        // From now on the session is leaving: polls that arrive after the upgrade packet get a 400.
        s.upgradedAt = op.at;
        return s.listener.settled().then(() => s.moveTo(from));
      case 'release':
        if (s?.movedTo !== undefined) s.listener.released();
        return null;
      case 'out': {
        if (s && s.movedTo === undefined) s.send(op.frames);
        else if (!s) this.adopting.get(op.sid)?.push(...op.frames);
        return null;
      }
    }
  }

  private run(home: number, op: EioOp, timeoutMs?: number): Promise<unknown> {
    if (home === this.ctx.thread) return Promise.resolve(this.localOp(op, home));
    return this.ctx.hub.forward(home, this.opts.route, op, timeoutMs);
  }

  register(app: TemplatedApp): void {
    const path = this.opts.path;
    this.ctx.hub.onForward(this.opts.route, (body: EioOp, from: number) => this.localOp(body, from));
    if (this.opts.polling) {
      app.get(path, (res, req) => this.http(res, req, 'GET'));
      app.post(path, (res, req) => this.http(res, req, 'POST'));
    }
    app.options(path, (res, req) => this.preflight(res, req));
    const other = (res: HttpResponse, req: HttpRequest) => {
      const state = { aborted: false };
      res.onAborted(() => (state.aborted = true));
      const method = req.getMethod().toUpperCase();
      if (method === 'OPTIONS') return this.preflight(res, req);
      if (this.opts.polling && (method === 'GET' || method === 'POST')) return this.http(res, req, method);
      // Polling turned off (--socketio-transports=websocket): as engine.io says, an unknown transport.
      if (method === 'GET' || method === 'POST') return this.reply(res, state, answer(EioCode.UNKNOWN_TRANSPORT), '', req.getHeader('connection'));
      const sid = new URLSearchParams(req.getQuery() ?? '').get('sid');
      this.reply(res, state, answer(sid === null ? EioCode.BAD_HANDSHAKE_METHOD : EioCode.BAD_REQUEST), '', req.getHeader('connection'));
    };
    // Any other method (PUT, DELETE, …) is a 400 as Engine.IO defines it, not the catch-all 404.
    app.any(path, headSafe(other));
    // Without the trailing slash the client would get the catch-all 404; the official clients always
    // send it, but some hand-written ones do not.
    app.any(path.slice(0, -1), headSafe(other));
    if (this.opts.websocket) this.registerWs(app);
  }

  // ---- CORS

  /** The Origin to echo back, '' when the request has none, or null when it is not allowed. */
  private corsOrigin(origin: string, host: string): string | null {
    if (!origin) return '';
    return originAllowed(origin, host, this.opts.allowedOrigins) ? origin : null;
  }

  private preflight(res: HttpResponse, req: HttpRequest): void {
    const origin = this.corsOrigin(req.getHeader('origin'), req.getHeader('host'));
    const headers = req.getHeader('access-control-request-headers');
    res.cork(() => {
      if (origin === null) {
        countRefusal('origin');
        res.writeStatus(statusLine(403)).writeHeader('content-type', 'application/json').end(answer(EioCode.FORBIDDEN).body);
        return;
      }
      res.writeStatus(statusLine(204));
      if (origin) res.writeHeader('access-control-allow-origin', origin).writeHeader('access-control-allow-credentials', 'true').writeHeader('vary', 'Origin');
      res.writeHeader('access-control-allow-methods', 'GET, POST, OPTIONS');
      if (headers) res.writeHeader('access-control-allow-headers', headers.slice(0, 1024));
      res.writeHeader('access-control-max-age', '86400');
      res.endWithoutBody();
    });
  }

  private reply(res: HttpResponse, state: { aborted: boolean }, a: HttpAnswer, origin: string, connection = ''): void {
    if (state.aborted) return;
    state.aborted = true;
    // An error may leave an unread body behind: close rather than parse it as the next request. A
    // client that asked for `Connection: close` is told so, or keep-alive agents reuse a dead socket.
    // uWS writes the header itself when end() closes a connection the client did not ask to close.
    const asked = /(^|,)\s*close\s*(,|$)/i.test(connection);
    const close = a.status >= 400 || asked;
    res.cork(() => {
      res.writeStatus(statusLine(a.status));
      res.writeHeader('content-type', a.type === 'json' ? 'application/json' : a.type === 'html' ? 'text/html' : 'text/plain; charset=UTF-8');
      res.writeHeader('cache-control', 'no-store');
      if (asked) res.writeHeader('connection', 'close');
      if (origin) res.writeHeader('access-control-allow-origin', origin).writeHeader('access-control-allow-credentials', 'true').writeHeader('vary', 'Origin');
      res.end(a.body, close);
    });
  }

  // ---- HTTP long-polling

  private http(res: HttpResponse, req: HttpRequest, method: 'GET' | 'POST'): void {
    const state: ResponseState = { aborted: false };
    let onAbort: (() => void) | undefined;
    res.onAborted(() => {
      state.aborted = true;
      onAbort?.();
      state.onAbort?.();
    });
    const at = arrivalStamp();
    const query = new URLSearchParams(req.getQuery() ?? '');
    const connection = req.getHeader('connection');
    const origin0 = this.corsOrigin(req.getHeader('origin'), req.getHeader('host'));
    if (origin0 === null) {
      countRefusal('origin');
      return this.reply(res, state, answer(EioCode.FORBIDDEN), '', connection);
    }
    const origin = origin0;
    const send = (a: HttpAnswer) => this.reply(res, state, a, origin, connection);
    const fail = (code: number) => send(answer(code));
    if (query.get('EIO') !== '4') return fail(EioCode.UNSUPPORTED_PROTOCOL_VERSION);
    const transport = query.get('transport');
    if (transport !== 'polling' || !this.opts.polling) return fail(EioCode.UNKNOWN_TRANSPORT);
    // JSONP polling (`j`) was never used by v4 clients.
    if (query.has('j')) return fail(EioCode.BAD_REQUEST);
    const sid = query.get('sid');

    if (sid === null) {
      if (method !== 'GET') return fail(EioCode.BAD_HANDSHAKE_METHOD);
      if (this.ctx.draining) return send({ status: 503, body: JSON.stringify({ code: EioCode.BAD_REQUEST, message: 'Server shutting down' }), type: 'json' });
      const handshake = snapshotHandshake(res, req, query);
      const refused = this.admit(handshake.address);
      if (refused) return send(refused);
      const s = this.create('polling', handshake);
      send({ status: 200, body: this.openPacket(s.sid, this.opts.websocket ? ['websocket'] : []), type: 'text' });
      return;
    }

    const home = this.homeOf(sid);
    if (home < 0) return fail(EioCode.UNKNOWN_SID);
    if (method === 'GET') {
      // Unique across threads: an abort must never match another shard's request.
      const rid = `${this.ctx.thread}.${++this.rid}`;
      // Longer than a poll is ever held: the session's next ping answers it within pingInterval.
      const timeout = this.opts.pingInterval + this.opts.pingTimeout + 5000;
      onAbort = () => void this.run(home, { op: 'abort', sid, rid }).catch(() => {});
      this.run(home, { op: 'get', sid, rid, at }, timeout).then(
        (a) => send(a as HttpAnswer),
        () => fail(EioCode.UNKNOWN_SID),
      );
      return;
    }
    const declared = req.getHeader('content-length');
    const limit = this.opts.maxPayload;
    const ctype = req.getHeader('content-type');
    readBody(res, declared || undefined, limit, state).then(
      (body) => {
        // v3-style binary payloads: v4 clients send text only.
        if (ctype.startsWith('application/octet-stream')) return fail(EioCode.BAD_REQUEST);
        this.run(home, { op: 'post', sid, body: body.toString('utf8'), at }).then(
          (a) => send(a as HttpAnswer),
          () => fail(EioCode.UNKNOWN_SID),
        );
      },
      () => {
        // A client gone mid-body: nobody to answer, and the session lives on for its next request.
        if (state.aborted) return;
        // Otherwise only a body over maxHttpBufferSize rejects; the protocol then ends the session too.
        send({ status: 413, body: JSON.stringify({ code: EioCode.BAD_REQUEST, message: `Payload Too Large: the limit is ${limit} bytes` }), type: 'json' });
        void this.run(home, { op: 'kill', sid, reason: 'polling body over maxHttpBufferSize' }).catch(() => {});
      },
    );
  }

  // ---- WebSocket

  private registerWs(app: TemplatedApp): void {
    const engine = this;
    app.ws<WsData>(this.opts.path, guardBehavior({
      // Headroom over maxPayload, so a larger message gets a proper close, 1009 with a reason, as
      // socket.io's ws server gives; only one far larger is cut by uWS itself (no close frame).
      maxPayloadLength: Math.min(this.opts.maxPayload * 4, this.opts.maxPayload + 4 * 1024 * 1024),
      // Engine.IO's own ping/pong keeps the connection and detects dead peers.
      idleTimeout: 0,
      sendPingsAutomatically: false,
      maxBackpressure: this.opts.maxBackpressure,
      closeOnBackpressureLimit: false,

      upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t) {
        const query = new URLSearchParams(req.getQuery() ?? '');
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        const origin = engine.corsOrigin(req.getHeader('origin'), req.getHeader('host'));
        const handshake = snapshotHandshake(res, req, query);
        const refuse = (code: number, status?: number) => {
          const a = answer(code, status);
          res.cork(() => res.writeStatus(statusLine(a.status)).writeHeader('content-type', 'application/json').end(a.body, true));
        };
        if (origin === null) {
          countRefusal('origin');
          return refuse(EioCode.FORBIDDEN);
        }
        if (query.get('EIO') !== '4') return refuse(EioCode.UNSUPPORTED_PROTOCOL_VERSION);
        if (query.get('transport') !== 'websocket') return refuse(EioCode.UNKNOWN_TRANSPORT);
        // Always upgraded here, inside uWS's handler: an upgrade completed after an await can be closed
        // by uWS right after it opens (v20.51's cork() misreads the reallocated socket; upstream
        // uWebSockets PR #1929). The session's home thread is asked about a probe once it is open.
        const upgrade = (data: WsData) => res.upgrade<WsData>(data, key, protocol.split(',')[0]?.trim() ?? '', extensions, context);
        const sid = query.get('sid');
        if (sid === null) {
          if (engine.ctx.draining) return refuse(EioCode.BAD_REQUEST, 503);
          const refused = engine.admit(handshake.address);
          if (refused) {
            res.cork(() => res.writeStatus(statusLine(refused.status)).writeHeader('content-type', 'application/json').end(refused.body, true));
            return;
          }
          return upgrade({ handshake, admitted: true });
        }
        const home = engine.homeOf(sid);
        if (home < 0) return refuse(EioCode.UNKNOWN_SID);
        // A session held here is asked at once, so an unknown sid gets the reference server's 400.
        const here = home === engine.ctx.thread ? engine.probeHere(sid) : undefined;
        if (here === 'unknown') return refuse(EioCode.UNKNOWN_SID);
        upgrade({ handshake, probe: { sid, home, answer: here } });
      },

      open(ws) {
        const data = ws.getUserData();
        if (data.probe) {
          const probe = data.probe;
          // A probe that never completes must not stay open (nor keep the session in its probing state).
          probe.timer = setTimeout(() => {
            if (!data.gone && data.probe === probe) ws.end(1002, 'upgrade timeout');
          }, engine.opts.upgradeTimeout);
          data.early = [];
          if (probe.answer) return engine.probeAnswered(ws, data, probe, probe.answer);
          engine.run(probe.home, { op: 'probe', sid: probe.sid }).then(
            (ok) => engine.probeAnswered(ws, data, probe, ok === true ? 'accepted' : ok === 'unknown' ? 'unknown' : 'busy'),
            () => engine.probeAnswered(ws, data, probe, 'unknown'),
          );
          return;
        }
        const s = engine.create('websocket', data.handshake, ws);
        data.session = s;
        ws.send(engine.openPacket(s.sid, []), false);
      },

      message(ws, message, isBinary) {
        const data = ws.getUserData();
        if (message.byteLength > engine.opts.maxPayload) {
          data.tooBig = true;
          ws.end(1009, `message over maxHttpBufferSize (${engine.opts.maxPayload} bytes)`);
          return;
        }
        // uWS reuses the buffer after this callback; text is decoded to a string right away.
        const payload = isBinary ? new Uint8Array(message.slice(0)) : new Uint8Array(message);
        let packet: EioPacket;
        try {
          packet = decodeEioPacket(payload, isBinary);
        } catch (err) {
          engine.ctx.log.debug(`socket.io websocket: ${(err as Error).message}`);
          if (data.session) data.session.close('parse error', false);
          else ws.end(1002, 'parse error');
          return;
        }
        if (data.session) {
          try {
            data.session.onPacket(packet);
          } catch (err) {
            engine.ctx.log.debug(`socket.io ${data.session.sid}: ${(err as Error).message}`);
            data.session.close('parse error', false);
          }
          return;
        }
        if (data.moving) {
          (data.early ??= []).push(packet);
          return;
        }
        if (!data.probe) return;
        if (data.probe.accepted) return engine.onProbePacket(ws, data, packet);
        // Before the home thread answered: a client sends one ping probe here, so a few is plenty.
        if (data.early!.length < 8) data.early!.push(packet);
        else ws.end(1002, 'too many packets before the probe was accepted');
      },

      dropped(ws) {
        // uWS skipped a message for this socket because its buffer is full: the client would have a
        // gap it cannot see, so it is disconnected (and reconnects). Deferred: closing a socket from
        // inside uWS's publish loop, where this runs, crashes uWS (see transports/websocket.ts).
        const data = ws.getUserData();
        if (data.dropped) return;
        data.dropped = true;
        metrics().inc('rt_slow_consumer_drops_total');
        setImmediate(() => {
          if (!data.gone) data.session?.close('slow consumer', false);
        });
      },

      close(ws) {
        const data = ws.getUserData();
        data.gone = true;
        if (data.probe) {
          clearTimeout(data.probe.timer);
          // Not yet accepted: probeAnswered releases it when the answer comes.
          if (data.probe.accepted) void engine.run(data.probe.home, { op: 'unprobe', sid: data.probe.sid }).catch(() => {});
          data.probe = undefined;
        }
        data.session?.transportClosed(data.tooBig ? TOO_BIG_CLOSE : 'transport close');
        data.session = undefined;
      },
    }));
  }

  /**
   * The home thread's answer to a probe. Like the reference server, a WebSocket for a session that cannot
   * take it (already upgraded, or another probe is on) is accepted, then closed; an unknown sid too.
   */
  private probeAnswered(ws: WebSocket<WsData>, data: WsData, probe: NonNullable<WsData['probe']>, answer: ProbeAnswer): void {
    if (data.gone || data.probe !== probe) {
      // The socket closed while asking; a probe the session took must be released.
      if (answer === 'accepted') void this.run(probe.home, { op: 'unprobe', sid: probe.sid }).catch(() => {});
      return;
    }
    if (answer !== 'accepted') {
      clearTimeout(probe.timer);
      data.probe = undefined;
      data.early = undefined;
      ws.end(1008, answer === 'unknown' ? 'Session ID unknown' : 'session already upgraded');
      return;
    }
    probe.accepted = true;
    const early = data.early!.splice(0);
    data.early = undefined;
    for (const p of early) {
      if (data.gone || data.probe !== probe) return;
      this.onProbePacket(ws, data, p);
    }
  }

  private onProbePacket(ws: WebSocket<WsData>, data: WsData, p: EioPacket): void {
    const probe = data.probe!;
    if (p.type === 'ping' && p.data === 'probe') {
      ws.send('3probe', false);
      void this.run(probe.home, { op: 'probed', sid: probe.sid }).catch(() => {});
      return;
    }
    if (p.type !== 'upgrade') {
      this.ctx.log.debug(`socket.io ${probe.sid}: ${p.type} packet on an upgrade probe; closing it`);
      ws.end(1002, 'expected the upgrade packet');
      return;
    }
    const at = arrivalStamp();
    clearTimeout(probe.timer);
    data.probe = undefined;
    if (probe.home === this.ctx.thread) {
      const s = this.sessions.get(probe.sid);
      if (!s || s.closed || !s.probing) {
        this.ctx.log.debug(`socket.io ${probe.sid}: upgrade refused (${!s ? 'unknown' : s.closed ? 'closed' : 'no probe'})`);
        ws.end(1002, 'session not upgradable');
        return;
      }
      data.session = s;
      s.switchTo(ws);
      return;
    }
    data.moving = true;
    this.adopting.set(probe.sid, []);
    this.ctx.hub.forward<Migrated | null>(probe.home, this.opts.route, { op: 'migrate', sid: probe.sid, at } satisfies EioOp).then(
      (m) => this.adopt(ws, data, probe, m),
      (err: Error) => {
        this.ctx.log.debug(`socket.io ${probe.sid}: move from thread ${probe.home} failed: ${err.message}`);
        this.adopting.delete(probe.sid);
        data.moving = false;
        try {
          ws.end(1011, 'session could not be moved');
        } catch {
          /* gone */
        }
      },
    );
  }

  /** Rebuilds a session that moved here with the upgrade's WebSocket. */
  private adopt(ws: WebSocket<WsData>, data: WsData, probe: { sid: string; home: number }, m: Migrated | null): void {
    data.moving = false;
    const relayed = this.adopting.get(probe.sid) ?? [];
    this.adopting.delete(probe.sid);
    if (!m) {
      this.ctx.log.debug(`socket.io ${probe.sid}: thread ${probe.home} would not hand the session over`);
      if (!data.gone) ws.end(1002, 'session not upgradable');
      return;
    }
    const s = new EioSession(this, probe.sid, 'websocket', m.handshake);
    s.admitted = m.admitted;
    s.ws = ws;
    this.sessions.get(s.sid)?.close('replaced', false);
    this.sessions.set(s.sid, s);
    // Restored even when the socket is already gone, so the move completes (the old thread is told to
    // let go) and the connection then ends through the one normal path.
    s.listener = this.owner.restore(s, m.state, probe.home);
    if (data.gone) {
      s.transportClosed('transport close');
      return;
    }
    data.session = s;
    s.write(m.frames);
    s.write(relayed);
    s.startHeartbeat();
    for (const p of data.early ?? []) {
      if (s.closed) break;
      try {
        s.onPacket(p);
      } catch {
        s.close('parse error', false);
      }
    }
    data.early = undefined;
  }
}
