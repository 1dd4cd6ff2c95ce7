/**
 * Native WebSocket transport at /ws: JSON text frames, or msgpack binary frames with `?format=msgpack`
 * (or the `rt-actors.msgpack` subprotocol). Deliveries reach these sockets through uWS topics.
 */
import type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_socket_context_t } from 'uWebSockets.js';
import { JSON_CODEC, MSGPACK_CODEC, type Encoded } from '../protocol/codecs.js';
import { decodeClientFrame, encodeFrame, FrameError, type WireFormat } from '../protocol/native.js';
import { Client, CloseCode } from '../runtime/client.js';
import type { ThreadContext } from '../runtime/context.js';
import { RtError, toErrorBody } from '../errors.js';
import { errorReply, handleFrame, type Reply } from './native-session.js';
import type { JwtClaims } from '../auth/jwt.js';
import { guardBehavior, queryParam, requestToken, sendError, sendJson, statusLine, track } from './http.js';
import { getAndHead } from './head.js';
import { corsHeaders, originAllowed } from '../security/origins.js';
import { admissionError } from '../security/admission.js';
import { clientAddress, forwardingHeader } from '../security/client-ip.js';
import { MAX_RATE_STRIKES, rateRefusal, type TokenBucket } from '../security/token-bucket.js';
import { endDroppedSocket, sweepSlowConsumers, uwsBackpressureLimit } from './slow-consumer.js';
import { countRefusal } from '../runtime/instruments.js';
import { payloadSize } from '../protocol/payload-size.js';
import { logInternal } from '../log.js';

interface SocketData {
  client?: WsClient;
  format: WireFormat;
  /** Claims of the token verified at upgrade, adopted in open(). */
  claims?: JwtClaims;
  /** A token whose check had not answered at upgrade (RS256/ES256): the socket is admitted when it does. */
  pending?: Promise<JwtClaims>;
  /** Frames that arrived while `pending` was unsettled, handled in order once admitted. */
  early?: { message: ArrayBuffer; isBinary: boolean }[];
  ip: string;
  /** Set once uWS reported the close: the socket must not be touched after that. */
  gone?: boolean;
}


/** Bad frames tolerated before the connection is closed: a buggy client gets errors, a hostile one is cut off. */
const MAX_BAD_FRAMES = 20;
/** Frames held while a token is still being checked after the upgrade. */
const MAX_EARLY_FRAMES = 32;

function tokenError(err: unknown): RtError {
  return new RtError((err as { code?: string }).code ?? 'unauthorized', (err as Error).message, 401);
}

function revokedError(): RtError {
  return new RtError('token_revoked', 'this token was revoked; get a new one', 401);
}

/** Answers an upgrade request with the error's status and body instead of upgrading it. */
function refuse(res: HttpResponse, err: RtError): void {
  countRefusal(err);
  res.cork(() => {
    res.writeStatus(statusLine(err.status)).writeHeader('content-type', 'application/json').end(JSON.stringify({ error: err.toJSON() }));
  });
}

/**
 * Refuses a socket that was upgraded before its token had been checked: the refusal an upgrade would
 * have answered with HTTP 401 comes as an error frame, then close 4001 with the error code as reason.
 */
function refuseOpen(ws: WebSocket<SocketData>, err: RtError): void {
  const data = ws.getUserData();
  countRefusal(err);
  data.pending = undefined;
  data.early = undefined;
  ws.send(encodeFrame({ op: 'error', error: err.toJSON() }, data.format), data.format === 'msgpack');
  ws.end(CloseCode.UNAUTHORIZED, err.code);
}

export class WsClient extends Client {
  badFrames = 0;
  bucket?: TokenBucket;
  constructor(id: string, format: WireFormat, socket: WebSocket<SocketData>) {
    super(id, 'ws', format === 'json' ? JSON_CODEC : MSGPACK_CODEC);
    this.ws = socket as WebSocket<unknown>;
  }
  /** The same socket as `ws`, typed with this transport's data (one field, not two: idle connections stay small). */
  get socket(): WebSocket<SocketData> {
    return this.ws as WebSocket<SocketData>;
  }
  get format(): WireFormat {
    return this.codec === JSON_CODEC ? 'json' : 'msgpack';
  }
  sendEncoded(data: Encoded): void {
    if (!this.closed) this.socket.send(data, typeof data !== 'string');
  }
  send(frame: object): void {
    this.sendEncoded(encodeFrame(frame, this.format));
  }
  override endSlowConsumer(): void {
    this.closed = true;
    this.socket.end(CloseCode.SLOW_CONSUMER, 'slow consumer: reconnect and resume');
  }
  override tokenExpiring(deadline: number): void {
    this.send({ op: 'refresh', deadline });
  }
  disconnect(code: number, reason: string, reconnect: boolean): void {
    if (this.closed) return;
    this.send({ op: 'disconnect', code, reason, reconnect });
    this.closed = true;
    this.socket.end(code, reason.slice(0, 120));
  }
}

function chooseFormat(query: string, protocols: string): { format: WireFormat; protocol: string } | RtError {
  const offered = protocols.split(',').map((p) => p.trim()).filter(Boolean);
  const q = queryParam(query, 'format');
  if (q !== undefined && q !== 'json' && q !== 'msgpack') return new RtError('bad_request', `format must be json or msgpack, not ${JSON.stringify(q).slice(0, 40)}`);
  if (offered.includes('rt-actors.msgpack') && q !== 'json') return { format: 'msgpack', protocol: 'rt-actors.msgpack' };
  // Not with ?format=msgpack: the answer would confirm JSON and then speak msgpack. The query wins, as
  // it does over rt-actors.msgpack, and no subprotocol is confirmed.
  if (offered.includes('rt-actors.json') && q !== 'msgpack') return { format: 'json', protocol: 'rt-actors.json' };
  return { format: q ?? 'json', protocol: '' };
}

export function registerWebSocket(app: TemplatedApp, ctx: ThreadContext): void {
  const { config, hub } = ctx;
  sweepSlowConsumers(ctx);
  const messagesIn = ctx.metrics.series('rt_messages_in_total', { transport: 'websocket', protocol: 'native' });
  const onMessage = (ws: WebSocket<SocketData>, message: ArrayBuffer, isBinary: boolean): void => {
    const client = ws.getUserData().client!;
    messagesIn.inc();
    if (message.byteLength > config.maxPayload) {
      client.closed = true;
      countRefusal('payload_too_large');
      ws.end(CloseCode.MESSAGE_TOO_BIG, `message too big: limit is ${config.maxPayload} bytes`);
      return;
    }
    let frame;
    try {
      frame = decodeClientFrame(message, isBinary);
    } catch (err) {
      if (!(err instanceof FrameError && err.ref !== undefined)) countRefusal(err);
      client.send(err instanceof FrameError && err.ref !== undefined ? errorReply(err.ref, err) : { op: 'error', error: toErrorBody(err) });
      logInternal(err, 'decoding a frame');
      if (++client.badFrames >= MAX_BAD_FRAMES) client.disconnect(CloseCode.BAD_REQUEST, 'too many malformed frames', false);
      return;
    }
    const refused = rateRefusal(client, config);
    if (refused) {
      client.send(errorReply(frame.ref, new RtError('rate_limited', `more than ${config.rateLimit} messages per second; slow down`, 429)));
      if (refused.strikes >= MAX_RATE_STRIKES) client.disconnect(CloseCode.RATE_LIMITED, 'rate limit exceeded repeatedly', false);
      return;
    }
    // The frame's size bounds its payload's: only a frame over the limit needs its payload measured.
    if (frame.op === 'publish' && message.byteLength > config.maxWhisperSize && payloadSize(frame.data, config.maxWhisperSize) > config.maxWhisperSize) {
      client.send(errorReply(frame.ref, new RtError('payload_too_large', `client publishes are limited to ${config.maxWhisperSize} bytes`, 413)));
      return;
    }
    handleFrame(ctx, client, frame, (r: Reply) => client.send(r));
  };

  /**
   * What is checked before a socket is upgraded, read from the request (uWS lets it be read only
   * inside the handler): the server is not draining, the format, the origin, the token (verified, or
   * still being verified: RS256/ES256) and whether it was revoked.
   */
  const preflight = (req: HttpRequest): RtError | { choice: { format: WireFormat; protocol: string }; claims?: JwtClaims; pending?: Promise<JwtClaims> } => {
    const query = req.getQuery() ?? '';
    const auth = req.getHeader('authorization');
    const origin = req.getHeader('origin');
    if (ctx.draining) return new RtError('unavailable', 'server is shutting down; reconnect', 503);
    const choice = chooseFormat(query, req.getHeader('sec-websocket-protocol'));
    if (choice instanceof RtError) return choice;
    if (!originAllowed(origin || undefined, req.getHeader('host'), config.allowedOrigins)) {
      return new RtError('origin_not_allowed', `origin ${origin.slice(0, 100)} is not allowed; add it to --allowed-origins`, 403);
    }
    const token = requestToken(query, auth);
    if (token === undefined && config.requireAuth) return new RtError('unauthorized', 'this server requires a token to connect: pass ?token=<JWT>', 401);
    if (token === undefined) return { choice };
    let verdict: JwtClaims | Promise<JwtClaims>;
    try {
      verdict = ctx.verifyToken(token);
    } catch (err) {
      return tokenError(err);
    }
    if (verdict instanceof Promise) return { choice, pending: verdict };
    if (hub.isRevoked(String(verdict.sub), verdict.iat)) return revokedError();
    return { choice, claims: verdict };
  };

  // GET /ws without an upgrade (uWS passes it on from the WebSocket route): the answer the upgrade
  // would have had, as a status a client can read. A browser's or Node's WebSocket hides the status of
  // a refused upgrade, so a client whose socket never opened asks here why (src/client/transports.ts):
  // a refused token (401) then stops its retries instead of repeating them forever.
  getAndHead(app, '/ws', (res, req) => {
    const state = track(res);
    // A connection attempt as far as --connection-rate-per-ip goes: probing tokens here is no cheaper.
    const ip = clientAddress(res.getRemoteAddressAsText(), (h) => forwardingHeader(req, h));
    if (!ctx.limits.attempt(ip)) return sendError(res, state, admissionError('connection_rate_limited', ip, config));
    let checked: ReturnType<typeof preflight>;
    try {
      checked = preflight(req);
    } catch (err) {
      // A query that does not percent-decode (`?token=%ZZ`) throws its 400. The upgrade has guardBehavior
      // around it; thrown out of this plain GET's handler, it replaced the shard.
      return sendError(res, state, err);
    }
    // A browser page reads the answer only with CORS headers, given to the origins the upgrade allows.
    const cors = checked instanceof RtError && checked.code === 'origin_not_allowed' ? {} : corsHeaders(req.getHeader('origin') || undefined);
    if (checked instanceof RtError) return sendError(res, state, checked, cors);
    const upgradeRequired = (): void =>
      sendJson(res, state, 426, { error: { code: 'upgrade_required', message: 'GET /ws is the WebSocket endpoint: connect with a WebSocket client (this request would have been accepted)' } }, { ...cors, upgrade: 'websocket' });
    if (!checked.pending) return upgradeRequired();
    checked.pending.then(
      (claims) => (hub.isRevoked(String(claims.sub), claims.iat) ? sendError(res, state, revokedError(), cors) : upgradeRequired()),
      (err: unknown) => sendError(res, state, tokenError(err), cors),
    );
  });

  app.ws<SocketData>('/ws', guardBehavior({
    // uWS drops a connection without a close frame past its own limit; give ourselves headroom so a
    // moderately oversized frame gets a proper 1009 close with a reason, and only absurd ones are cut.
    maxPayloadLength: config.maxPayload * 4,
    idleTimeout: config.idleTimeout,
    sendPingsAutomatically: true,
    // uWS drops messages past its limit, and a close frame queued behind a full buffer is dropped too.
    // So the real limit (--max-backpressure) is enforced by the sweep below, which closes a slow socket
    // while its close frame still fits; uWS's own limit, much higher (uwsBackpressureLimit), is the backstop for bursts that
    // outrun the sweep (then the client sees an abrupt close, still never a silent gap).
    maxBackpressure: uwsBackpressureLimit(config.maxBackpressure),
    closeOnBackpressureLimit: false,

    upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t) {
      const key = req.getHeader('sec-websocket-key');
      const extensions = req.getHeader('sec-websocket-extensions');
      const ip = clientAddress(res.getRemoteAddressAsText(), (h) => forwardingHeader(req, h));
      const checked = preflight(req);
      if (checked instanceof RtError) return refuse(res, checked);
      const { choice, claims, pending } = checked;
      const admitted = ctx.limits.admit(ip);
      if (admitted !== 'ok') {
        pending?.catch(() => {});
        return refuse(res, admissionError(admitted, ip, config));
      }
      // Always upgraded here, inside uWS's handler: an upgrade completed after an await can be closed by
      // uWS right after it opens (v20.51's cork() misreads the reallocated socket; upstream uWebSockets
      // PR #1929). So a token still being checked is refused after the upgrade, with the same error.
      // uWS copies these onto the socket object, each property a slot: only the ones set.
      const data: SocketData = { format: choice.format, ip };
      if (claims) data.claims = claims;
      if (pending) data.pending = pending;
      res.upgrade<SocketData>(data, key, choice.protocol, extensions, context);
    },

    open(ws) {
      const data = ws.getUserData();
      const client = new WsClient(hub.nextSocketId(), data.format, ws);
      data.client = client;
      const admit = (claims: JwtClaims | undefined): void => {
        if (claims) client.authenticate(claims);
        hub.add(client);
        client.send({ op: 'welcome', socket_id: client.id, user: client.user ?? null, heartbeat: config.idleTimeout, max_payload: config.maxPayload, protocol: 1 });
      };
      if (!data.pending) {
        admit(data.claims);
        if (data.claims) data.claims = undefined;
        return;
      }
      data.early = [];
      data.pending.then(
        (claims) => {
          if (data.gone) return;
          if (hub.isRevoked(String(claims.sub), claims.iat)) return refuseOpen(ws, revokedError());
          data.pending = undefined;
          admit(claims);
          for (const m of data.early!.splice(0)) onMessage(ws, m.message, m.isBinary);
          data.early = undefined;
        },
        (err: unknown) => {
          if (!data.gone) refuseOpen(ws, tokenError(err));
        },
      );
    },

    message(ws, message, isBinary) {
      const data = ws.getUserData();
      if (data.pending) {
        // Copied: uWS reuses the buffer after this callback.
        if (data.early!.length < MAX_EARLY_FRAMES) data.early!.push({ message: message.slice(0), isBinary });
        else refuseOpen(ws, new RtError('rate_limited', `more than ${MAX_EARLY_FRAMES} frames before the token was checked`, 429));
        return;
      }
      onMessage(ws, message, isBinary);
    },

    dropped(ws) {
      // The client has a gap it cannot see: it reconnects and resumes from its last offset.
      endDroppedSocket(ws, CloseCode.SLOW_CONSUMER, 'slow consumer: reconnect and resume');
    },

    close(ws) {
      const data = ws.getUserData();
      data.gone = true;
      ctx.limits.release(data.ip);
      const client = data.client;
      if (client) hub.remove(client);
    },
  }));
}

