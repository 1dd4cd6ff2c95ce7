/**
 * Long-polling at /poll, speaking the native protocol's JSON frames (docs/transports.md):
 *
 *   GET    /poll[?token=…]        opens a session; answers at once with the welcome frame
 *   GET    /poll?sid=…&ack=<seq>  held until frames are pending or --poll-timeout passes
 *   POST   /poll?sid=…            a frame or an array of frames from the client
 *   DELETE /poll?sid=…            closes the session
 *
 * A poll answers `{"seq":<n>,"frames":[…]}` with every frame after `ack`; the client sends `n` as its
 * next `ack`. Frames stay queued until acknowledged, so an answer lost on the way (a proxy cut the
 * request, the tab froze) is sent again by the next poll: no gap, and the queue is what bounds memory.
 * Sessions live on one thread; requests landing on another shard are forwarded there (sessions.ts).
 */
import { countRefusal } from '../runtime/instruments.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { JSON_CODEC, type Encoded } from '../protocol/codecs.js';
import type { ClientFrame } from '../protocol/native.js';
import { Client, CloseCode } from '../runtime/client.js';
import type { ThreadContext } from '../runtime/context.js';
import { RtError } from '../errors.js';
import { authenticate, type Reply } from './native-session.js';
import { queryParam, queryParams, requestIp, sendError, snapshot, statusLine } from './http.js';
import { addSession, admitSession, corsOrThrow, enableSessions, newSid, onSession, registerSessionRoutes, removeSession, runFrames, tokenOf, type PollResult, type Session } from './sessions.js';
import type { TokenBucket } from '../security/token-bucket.js';

export class PollClient extends Client implements Session {
  readonly sid: string;
  readonly client = this;
  private frames: { seq: number; text: string; bytes: number }[] = [];
  /** UTF-8 bytes of `frames`, as --max-backpressure counts them (a string's length would count a '€' as 1 of its 3). */
  private bytes = 0;
  private nextSeq = 0;
  private acked = 0;
  /** The highest seq an answer has carried: a client cannot have received more. */
  private delivered = 0;
  private waiter?: { resolve: (r: PollResult) => void; timer: NodeJS.Timeout };
  private flushQueued = false;
  /** Last time a poll was held or answered: an abandoned session stops showing up. */
  private lastSeen = Date.now();
  /** The server ended the session; it stays only until the client has fetched the disconnect frame. */
  private ended = false;
  private readonly holdMs: number;
  private readonly idleMs: number;
  private readonly limit: number;
  bucket?: TokenBucket;
  /** Set once counted against the connection limits (released exactly once, in cleanup). */
  admittedIp?: string;

  constructor(private readonly ctx: ThreadContext) {
    super(ctx.hub.nextSocketId(), 'poll', JSON_CODEC);
    this.sid = newSid(ctx.thread);
    this.holdMs = ctx.config.pollTimeout * 1000;
    this.idleMs = ctx.config.pollSessionTimeout * 1000;
    this.limit = ctx.config.maxBackpressure;
  }

  sendEncoded(data: Encoded): void {
    this.push(data as string);
  }

  send(frame: object): void {
    this.push(JSON.stringify(frame));
  }

  override tokenExpiring(deadline: number): void {
    this.send({ op: 'refresh', deadline });
  }

  private push(text: string): void {
    if (this.ended) return;
    // The backlog already waiting is what tells a slow client, not the size of the frame that comes: a
    // single large reply (a resume of many publications) must reach the client, or every reconnect
    // would ask for it again and be cut off again.
    if (this.bytes > this.limit) {
      // The client fetches slower than its channels produce: drop the backlog and say so; it
      // reconnects and resumes every channel from the last offset it did receive.
      this.frames = [];
      this.bytes = 0;
      countRefusal('slow_consumer');
      this.finish(CloseCode.SLOW_CONSUMER, 'slow consumer: reconnect and resume', true);
      return;
    }
    const bytes = Buffer.byteLength(text);
    this.frames.push({ seq: ++this.nextSeq, text, bytes });
    this.bytes += bytes;
    if (this.waiter && !this.flushQueued) {
      // Whatever else arrives in this turn (a whole mesh drain) rides in the same answer.
      this.flushQueued = true;
      setImmediate(() => {
        this.flushQueued = false;
        this.flush();
      });
    }
  }

  private result(): PollResult {
    if (this.frames.length === 0) return { seq: this.acked, frames: [] };
    const seq = this.frames[this.frames.length - 1]!.seq;
    this.delivered = seq;
    return { seq, frames: this.frames.map((f) => f.text) };
  }

  private flush(): void {
    const w = this.waiter;
    if (!w) return;
    this.waiter = undefined;
    clearTimeout(w.timer);
    this.lastSeen = Date.now();
    w.resolve(this.result());
  }

  poll(ack: number): PollResult | Promise<PollResult> {
    this.lastSeen = Date.now();
    // Acknowledging frames no answer carried would drop them unseen: a client bug, told rather than obeyed.
    if (ack > this.delivered) throw new RtError('bad_request', `ack ${ack} is past the last frame this session sent (${this.delivered})`, 400);
    if (ack > this.acked) {
      let drop = 0;
      while (drop < this.frames.length && this.frames[drop]!.seq <= ack) this.bytes -= this.frames[drop++]!.bytes;
      if (drop > 0) this.frames.splice(0, drop);
      this.acked = Math.min(ack, this.nextSeq);
    }
    // A newer poll supersedes a held one (its client gave up on it, or a proxy retried).
    this.flush();
    if (this.frames.length > 0) return this.result();
    if (this.ended) {
      this.cleanup();
      throw new RtError('unknown_session', 'session closed by the server: open a new one', 404);
    }
    return new Promise<PollResult>((resolve) => {
      this.waiter = { resolve, timer: setTimeout(() => this.flush(), this.holdMs) };
    });
  }

  receive(frames: ClientFrame[]): void {
    // Kept only for a poll to take its disconnect frame: frames sent now would never run nor be answered.
    if (this.ended) throw new RtError('unknown_session', 'session closed by the server: poll for its disconnect frame, then open a new one', 404);
    this.lastSeen = Date.now();
    runFrames(this.ctx, this, frames, (r: Reply) => this.send(r));
  }

  disconnect(code: number, reason: string, reconnect: boolean): void {
    this.finish(code, reason, reconnect);
  }

  private finish(code: number, reason: string, reconnect: boolean): void {
    if (this.ended) return;
    this.send({ op: 'disconnect', code, reason, reconnect });
    this.ended = true;
    this.ctx.hub.remove(this);
    // Ended: it stays only to hand over its disconnect frame, so it no longer counts as a connection.
    // Counted until it idled out, it kept the client's reconnect refused for --poll-session-timeout
    // where --max-connections-per-ip was reached (the client library sends no DELETE after a farewell).
    this.releaseSlot();
    this.flush();
  }

  private releaseSlot(): void {
    if (this.admittedIp !== undefined) {
      this.ctx.limits.release(this.admittedIp);
      this.admittedIp = undefined;
    }
  }

  /** DELETE from the client. */
  end(): void {
    this.ended = true;
    this.cleanup();
    this.flush();
  }

  private cleanup(): void {
    this.ended = true;
    this.releaseSlot();
    removeSession(this.sid);
    this.ctx.hub.remove(this);
  }

  tick(now: number): void {
    if (!this.waiter && now - this.lastSeen > this.idleMs) {
      this.ctx.log.debug(`polling session ${this.id} abandoned: closed`);
      this.cleanup();
    }
  }
}

function answer(res: HttpResponse, state: { aborted: boolean }, r: PollResult, headers: Record<string, string>): void {
  if (state.aborted) return;
  state.aborted = true;
  res.cork(() => {
    res.writeStatus(statusLine(200)).writeHeader('content-type', 'application/json').writeHeader('cache-control', 'no-store');
    for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
    // Frames are already JSON text: splice them in rather than parse and re-serialize.
    res.end(`{"seq":${r.seq},"frames":[${r.frames.join(',')}]}`);
  });
}

export function registerPolling(app: TemplatedApp, ctx: ThreadContext): void {
  if (!ctx.config.transports.includes('polling')) return;
  enableSessions(ctx);
  const { hub, config } = ctx;

  app.get('/poll', (res: HttpResponse, req: HttpRequest) => {
    const r = snapshot(res, req);
    const state = { aborted: false };
    res.onAborted(() => {
      state.aborted = true;
    });
    let headers: Record<string, string> = {};
    try {
      headers = corsOrThrow(ctx, r);
      const q = queryParams(r.query);
      const sid = q.get('sid') ?? undefined;
      if (sid === undefined) {
        const token = tokenOf(r);
        const ip = requestIp(res, r);
        admitSession(ctx, ip, token);
        const c = new PollClient(ctx);
        c.admittedIp = ip;
        const open = (): void => {
          if (state.aborted) return c.end();
          hub.add(c);
          addSession(c);
          c.send({ op: 'welcome', socket_id: c.id, session: c.sid, user: c.user ?? null, heartbeat: config.pollTimeout, max_payload: config.maxPayload, protocol: 1 });
          answer(res, state, c.poll(0) as PollResult, headers);
        };
        const refused = (err: unknown): void => {
          c.end();
          sendError(res, state, err, headers);
        };
        let authed: void | Promise<void>;
        try {
          authed = token ? authenticate(ctx, c, token) : undefined;
        } catch (err) {
          return refused(err);
        }
        if (authed instanceof Promise) authed.then(open, refused);
        else open();
        return;
      }
      const ackRaw = queryParam(r.query, 'ack') ?? '0';
      if (!/^\d{1,15}$/.test(ackRaw)) throw new RtError('bad_request', '"ack" must be the non-negative integer "seq" of the last answer');
      // The mesh timeout outlasts the hold, so a held poll is answered by its session, not cut short.
      onSession<PollResult>(ctx, sid, { k: 'poll', sid, ack: Number(ackRaw) }, config.pollTimeout * 1000 + 10_000).then(
        (result) => answer(res, state, result, headers),
        (err) => sendError(res, state, err, headers),
      );
    } catch (err) {
      sendError(res, state, err, headers);
    }
  });

  registerSessionRoutes(app, ctx, '/poll', 'GET');
}
