/**
 * Sessions of the HTTP transports: long-polling sessions and SSE streams. A session lives on the
 * thread that opened it, and its id (`<thread>.<random>`) says which: any shard that receives a request
 * for it (a poll, frames POSTed by the client, a DELETE) runs the operation there through the mesh
 * ('poll' forward route). The id is a bearer secret — unlike the socket id, which backends see and
 * pass around for `socket_id` exclusion, so it cannot be the socket id.
 */
import { connKind, countRefusal } from '../runtime/instruments.js';
import { randomBytes } from 'node:crypto';
import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { RtError } from '../errors.js';
import { tooDeep, validateClientFrame, type ClientFrame } from '../protocol/native.js';
import { jsonNestsDeeper, MAX_JSON_DEPTH } from '../protocol/json-depth.js';
import type { Client } from '../runtime/client.js';
import type { ThreadContext } from '../runtime/context.js';
import { CloseCode } from '../runtime/client.js';
import { CORS_PREFLIGHT_HEADERS, corsHeaders, originAllowed } from '../security/origins.js';
import { admissionError } from '../security/admission.js';
import { MAX_RATE_STRIKES, rateRefusal, type TokenBucket } from '../security/token-bucket.js';
import { errorReply, handleFrame, type Reply } from './native-session.js';
import { beginRequest, queryParam, readBody, requestToken, sendError, sendJson, snapshot, track, type Req } from './http.js';
import { payloadSize } from '../protocol/payload-size.js';

/** What a poll answers: every frame after the acknowledged sequence number, and the number to ack next. */
export interface PollResult {
  seq: number;
  frames: string[];
}

export interface Session {
  readonly sid: string;
  readonly client: Client;
  /** Frames the client POSTed; replies go down the session's own stream. */
  receive(frames: ClientFrame[]): void;
  /** Long-polling only. */
  poll?(ack: number): PollResult | Promise<PollResult>;
  /** The client closed the session (DELETE). */
  end(): void;
  /** Periodic upkeep: keep-alives, idle expiry. */
  tick(now: number): void;
}

/** A POST may carry several frames (the client batches what it queued while a POST was in flight). */
export const MAX_FRAMES_PER_POST = 100;

/** Per thread: module state is per worker. */
const sessions = new Map<string, Session>();

export function newSid(thread: number): string {
  return `${thread}.${randomBytes(16).toString('base64url')}`;
}

export function addSession(s: Session): void {
  sessions.set(s.sid, s);
}

export function removeSession(sid: string): void {
  sessions.delete(sid);
}

function unknownSession(): RtError {
  return new RtError('unknown_session', 'no such session (it expired, was closed, or its shard restarted): open a new one', 404);
}

/**
 * Requests forwarded to another thread, watched for that thread dying: its sessions died with it,
 * and a held poll would otherwise wait out the whole mesh timeout (longer than the hold) before the
 * client learns it must reconnect.
 */
interface Watch { thread: number; restarts: number; reject: (e: RtError) => void }
const watches = new Set<Watch>();

function peerGone(ctx: ThreadContext, w: Watch): boolean {
  return ctx.stats.get(w.thread, 'alive') === 0 || ctx.stats.get(w.thread, 'restarts') !== w.restarts;
}

function watchPeer<T>(ctx: ThreadContext, thread: number, p: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const w: Watch = { thread, restarts: ctx.stats.get(thread, 'restarts'), reject };
    watches.add(w);
    p.then(
      (v) => {
        watches.delete(w);
        resolve(v);
      },
      (e) => {
        watches.delete(w);
        reject(e);
      },
    );
  });
}

const SID_RE = /^(\d{1,3})\.[A-Za-z0-9_-]{22}$/;

/** The thread a session lives on, from its id; a malformed or impossible id is an unknown session. */
export function sidThread(sid: string | undefined, shards: number): number {
  const m = sid === undefined ? null : SID_RE.exec(sid);
  if (!m) {
    if (sid === undefined || sid === '') throw new RtError('bad_request', 'missing "sid" query parameter (the session id from the welcome frame)');
    throw unknownSession();
  }
  const t = Number(m[1]);
  if (t >= shards) throw unknownSession();
  return t;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A POST body: one native frame, or an array of them, as JSON. All are checked before any runs. */
export function decodeFrames(body: Uint8Array | string): ClientFrame[] {
  let text: string;
  if (typeof body === 'string') text = body;
  else {
    try {
      text = utf8.decode(body);
    } catch {
      throw new RtError('bad_frame', 'body is not valid UTF-8');
    }
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new RtError('bad_json', 'body is not valid JSON: send a frame object or an array of frames');
  }
  // An array of frames is one level more, so each frame may nest as deep as over a WebSocket.
  if (jsonNestsDeeper(text, Array.isArray(v) ? MAX_JSON_DEPTH + 1 : MAX_JSON_DEPTH)) throw tooDeep(Array.isArray(v) ? 'a frame' : 'frame');
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0 || list.length > MAX_FRAMES_PER_POST) throw new RtError('bad_request', `a POST carries 1 to ${MAX_FRAMES_PER_POST} frames`);
  return list.map((f, i) => {
    try {
      return validateClientFrame(f);
    } catch (err) {
      const e = err as RtError;
      throw new RtError(e.code, list.length > 1 ? `frame ${i}: ${e.message}` : e.message, e.status);
    }
  });
}

/**
 * Runs frames for a session's client, under the same per-connection limits as a WebSocket's frames;
 * `send` writes a reply down the session's stream.
 */
export function runFrames(ctx: ThreadContext, client: Client & { bucket?: TokenBucket }, frames: ClientFrame[], send: (r: Reply) => void): void {
  const { config } = ctx;
  for (const f of frames) {
    if (client.closed) return;
    ctx.metrics.inc('rt_messages_in_total', connKind(client) as unknown as Record<string, string>);
    const refused = rateRefusal(client, config);
    if (refused) {
      send(errorReply(f.ref, new RtError('rate_limited', `more than ${config.rateLimit} messages per second; slow down`, 429)));
      if (refused.strikes >= MAX_RATE_STRIKES) return client.disconnect(CloseCode.RATE_LIMITED, 'rate limit exceeded repeatedly', false);
      continue;
    }
    if (f.op === 'publish' && payloadSize(f.data, config.maxWhisperSize) > config.maxWhisperSize) {
      send(errorReply(f.ref, new RtError('payload_too_large', `client publishes are limited to ${config.maxWhisperSize} bytes`, 413)));
      continue;
    }
    handleFrame(ctx, client, f, send);
  }
}


/**
 * The checks a new session passes, as a WebSocket upgrade does: draining, token required, and the
 * host-wide connection limits; throws the refusal. Once admitted, the caller must call
 * ctx.limits.release(ip) when the session ends.
 */
export function admitSession(ctx: ThreadContext, ip: string, token: string | undefined): void {
  if (ctx.draining) throw new RtError('unavailable', 'server is shutting down; reconnect', 503);
  if (!token && ctx.config.requireAuth) throw new RtError('unauthorized', 'this server requires a token to connect: pass ?token=<JWT>', 401);
  const admitted = ctx.limits.admit(ip);
  if (admitted !== 'ok') throw admissionError(admitted, ip, ctx.config);
}

/** The token of a session-opening request: `token` query parameter or `Authorization: Bearer`. */
export function tokenOf(r: Req): string | undefined {
  return requestToken(r.query, r.headers['authorization'] ?? '');
}

/**
 * `send` carries the frames to a session on this thread, or their JSON `text` to one on another: a
 * ring frame is msgpack, which does not carry every JSON object as it is (msgpackr renames a
 * `__proto__` key `__proto_`), so a publication's data would change with the shard the POST reached.
 */
type Op = { k: 'send'; sid: string; frames: ClientFrame[] } | { k: 'send'; sid: string; text: string } | { k: 'poll'; sid: string; ack: number } | { k: 'close'; sid: string };

function runLocal(op: Op): unknown {
  if (!op || typeof op !== 'object' || typeof op.sid !== 'string') throw new RtError('bad_request', 'malformed session operation');
  const s = sessions.get(op.sid);
  if (!s) throw unknownSession();
  switch (op.k) {
    case 'send':
      s.receive('text' in op ? decodeFrames(op.text) : op.frames);
      return { ok: true };
    case 'poll':
      if (!s.poll) throw new RtError('bad_request', 'this session is an SSE stream: it cannot be polled', 400);
      return s.poll(op.ack);
    case 'close':
      s.end();
      return { ok: true };
    default:
      throw new RtError('bad_request', 'unknown session operation');
  }
}

const started = new WeakSet<ThreadContext>();

/** Forward route and upkeep timer, once per thread whichever HTTP transport asks first. */
export function enableSessions(ctx: ThreadContext): void {
  if (started.has(ctx)) return;
  started.add(ctx);
  ctx.hub.onForward('poll', (body: Op) => runLocal(body));
  const { sseKeepalive, pollSessionTimeout } = ctx.config;
  const tickMs = Math.max(10, Math.min(1000, (sseKeepalive * 1000) / 4, (pollSessionTimeout * 1000) / 4));
  const timer = setInterval(() => {
    const now = Date.now();
    for (const w of watches) {
      if (!peerGone(ctx, w)) continue;
      watches.delete(w);
      w.reject(unknownSession());
    }
    for (const s of [...sessions.values()]) {
      try {
        s.tick(now);
      } catch (err) {
        ctx.log.error(`session ${s.client.id}: upkeep failed:`, err);
      }
    }
  }, tickMs);
  timer.unref();
}

/** Runs a session operation on the session's thread and resolves with its answer. */
export function onSession<T>(ctx: ThreadContext, sid: string | undefined, op: Op, timeoutMs?: number): Promise<T> {
  const thread = sidThread(sid, ctx.hub.shards);
  const p = thread === ctx.thread ? new Promise<T>((resolve) => resolve(runLocal(op) as T)) : watchPeer(ctx, thread, ctx.hub.forward<T>(thread, 'poll', op, timeoutMs));
  return p.catch((err: RtError) => {
    // Errors crossing the mesh lose their HTTP status: give the session-specific one back.
    if (err?.code === 'unknown_session') throw unknownSession();
    throw err;
  });
}

/**
 * CORS headers for an allowed request; throws the 403 for a refused origin (--allowed-origins, as for
 * WebSocket upgrades). Refusing outright rather than omitting the headers keeps a foreign page from
 * opening sessions the browser would then merely hide from it.
 */
export function corsOrThrow(ctx: ThreadContext, req: Req): Record<string, string> {
  const origin = req.headers['origin'];
  if (!originAllowed(origin, req.headers['host'], ctx.config.allowedOrigins)) {
    throw new RtError('origin_not_allowed', `origin ${String(origin).slice(0, 100)} is not allowed; add it to --allowed-origins`, 403);
  }
  return corsHeaders(origin);
}

/**
 * POST <path>?sid=…: frames from the client to its session (long-polling or SSE, wherever it lives),
 * and DELETE <path>?sid=…: the client closes its session. Replies travel down the session's stream;
 * the POST itself answers once the frames were handed over, in order.
 */
export function registerSessionRoutes(app: TemplatedApp, ctx: ThreadContext, path: string, getMethods: string): void {
  const wrap = (body: (res: HttpResponse, r: ReturnType<typeof snapshot>, state: { aborted: boolean }, headers: Record<string, string>) => Promise<unknown>) =>
    (res: HttpResponse, req: Parameters<Parameters<TemplatedApp['post']>[1]>[1]) => {
      const state = track(res);
      const r = snapshot(res, req);
      const headers: Record<string, string> = { 'cache-control': 'no-store' };
      const end = beginRequest(ctx.inflight, res, state, () => headers);
      (async () => {
        Object.assign(headers, corsOrThrow(ctx, r));
        const answer = await body(res, r, state, headers);
        sendJson(res, state, 200, answer, headers);
      })()
        .catch((err) => sendError(res, state, err, headers))
        .finally(end);
    };

  app.post(
    path,
    wrap(async (res, r, state) => {
      const sid = queryParam(r.query, 'sid');
      const thread = sidThread(sid, ctx.hub.shards); // a bad id is refused before the body is read
      const body = await readBody(res, r.headers['content-length'], ctx.config.maxPayload, state);
      // Checked here, so that a malformed frame is answered 400 (statuses do not cross the mesh).
      const frames = decodeFrames(body);
      await onSession(ctx, sid, thread === ctx.thread ? { k: 'send', sid: sid!, frames } : { k: 'send', sid: sid!, text: body.toString('utf8') });
      return { ok: true, accepted: frames.length };
    }),
  );

  app.del(
    path,
    wrap(async (_res, r) => {
      const sid = queryParam(r.query, 'sid');
      await onSession(ctx, sid, { k: 'close', sid: sid! });
      return { ok: true };
    }),
  );

  app.options(path, (res, req) => {
    const origin = req.getHeader('origin') || undefined;
    const allowed = originAllowed(origin, req.getHeader('host'), ctx.config.allowedOrigins);
    res.cork(() => {
      if (!allowed) {
        countRefusal('origin');
        res.writeStatus('403 Forbidden').writeHeader('content-type', 'application/json');
        res.end(JSON.stringify({ error: { code: 'origin_not_allowed', message: 'origin not allowed; add it to --allowed-origins' } }));
        return;
      }
      res.writeStatus('204 No Content');
      const headers = { ...corsHeaders(origin), ...CORS_PREFLIGHT_HEADERS, 'access-control-allow-methods': `${getMethods}, POST, DELETE, OPTIONS` };
      for (const [k, v] of Object.entries(headers)) res.writeHeader(k, v);
      res.end();
    });
  });
}
