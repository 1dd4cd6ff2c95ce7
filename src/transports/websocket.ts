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
import { queryParam, statusLine } from './http.js';
import { originAllowed } from '../security/origins.js';
import { admissionError } from '../security/admission.js';
import { clientAddress } from '../security/client-ip.js';
import { MAX_RATE_STRIKES, TokenBucket } from '../security/token-bucket.js';
import { endDroppedSocket } from './slow-consumer.js';
import { countRefusal } from '../runtime/instruments.js';

interface SocketData {
  client?: WsClient;
  format: WireFormat;
  /** Claims of the token verified at upgrade, adopted in open(). */
  claims?: JwtClaims;
  ip: string;
  /** Set once uWS reported the close: the socket must not be touched after that. */
  gone?: boolean;
}


/** Bad frames tolerated before the connection is closed: a buggy client gets errors, a hostile one is cut off. */
const MAX_BAD_FRAMES = 20;

export class WsClient extends Client {
  badFrames = 0;
  bucket?: TokenBucket;
  constructor(id: string, format: WireFormat, readonly socket: WebSocket<SocketData>) {
    super(id, 'ws', format === 'json' ? JSON_CODEC : MSGPACK_CODEC);
    this.ws = socket as WebSocket<unknown>;
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
  if (offered.includes('rt-actors.json')) return { format: q ?? 'json', protocol: 'rt-actors.json' };
  return { format: q ?? 'json', protocol: '' };
}

/** How often sockets are checked for a send buffer over --max-backpressure. */
const SLOW_SWEEP_MS = 100;

export function registerWebSocket(app: TemplatedApp, ctx: ThreadContext): void {
  const { config, hub } = ctx;
  const sweep = setInterval(() => {
    for (const c of hub.clients.values()) {
      if (c instanceof WsClient && !c.closed && c.socket.getBufferedAmount() > config.maxBackpressure) {
        c.closed = true;
        countRefusal('slow_consumer');
        c.socket.end(CloseCode.SLOW_CONSUMER, 'slow consumer: reconnect and resume');
      }
    }
  }, SLOW_SWEEP_MS);
  sweep.unref();
  const messagesIn = ctx.metrics.series('rt_messages_in_total', { transport: 'websocket', protocol: 'native' });
  app.ws<SocketData>('/ws', {
    // uWS drops a connection without a close frame past its own limit; give ourselves headroom so a
    // moderately oversized frame gets a proper 1009 close with a reason, and only absurd ones are cut.
    maxPayloadLength: config.maxPayload * 4,
    idleTimeout: config.idleTimeout,
    sendPingsAutomatically: true,
    // uWS drops messages past its limit, and a close frame queued behind a full buffer is dropped too.
    // So the real limit (--max-backpressure) is enforced by the sweep below, which closes a slow socket
    // while its close frame still fits; uWS's own limit, 8× higher, is the backstop for bursts that
    // outrun the sweep (then the client sees an abrupt close, still never a silent gap).
    maxBackpressure: config.maxBackpressure * 8,
    closeOnBackpressureLimit: false,

    upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t) {
      const query = req.getQuery() ?? '';
      const key = req.getHeader('sec-websocket-key');
      const protocols = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const auth = req.getHeader('authorization');
      const origin = req.getHeader('origin');
      const host = req.getHeader('host');
      const ip = clientAddress(res.getRemoteAddressAsText(), (h) => req.getHeader(h));
      const refuse = (status: number, err: RtError): void => {
        countRefusal(err);
        res.cork(() => {
          res.writeStatus(statusLine(status)).writeHeader('content-type', 'application/json').end(JSON.stringify({ error: err.toJSON() }));
        });
      };
      if (ctx.draining) return refuse(503, new RtError('unavailable', 'server is shutting down; reconnect'));
      const choice = chooseFormat(query, protocols);
      if (choice instanceof RtError) return refuse(400, choice);
      if (!originAllowed(origin || undefined, host, config.allowedOrigins)) {
        return refuse(403, new RtError('origin_not_allowed', `origin ${origin.slice(0, 100)} is not allowed; add it to --allowed-origins`, 403));
      }
      const token = queryParam(query, 'token') ?? (auth.startsWith('Bearer ') ? auth.slice(7) : undefined);
      let aborted = false;
      const accept = (claims?: JwtClaims): void => {
        if (aborted) return;
        if (claims && hub.isRevoked(String(claims.sub), claims.iat)) return refuse(401, new RtError('token_revoked', 'this token was revoked; get a new one', 401));
        const admitted = ctx.limits.admit(ip);
        if (admitted !== 'ok') {
          const err = admissionError(admitted, ip, config);
          return refuse(err.status, err);
        }
        res.cork(() => {
          res.upgrade<SocketData>({ format: choice.format, claims, ip }, key, choice.protocol, extensions, context);
        });
      };
      const badToken = (err: unknown): void => {
        if (!aborted) refuse(401, new RtError((err as { code?: string }).code ?? 'unauthorized', (err as Error).message, 401));
      };
      // Tokens are checked before upgrading so a refusal is a plain HTTP status the client can see.
      if (token === undefined) {
        if (config.requireAuth) return refuse(401, new RtError('unauthorized', 'this server requires a token to connect: pass ?token=<JWT>', 401));
        return accept();
      }
      let verdict: JwtClaims | Promise<JwtClaims>;
      try {
        verdict = ctx.verifyToken(token);
      } catch (err) {
        return badToken(err);
      }
      if (!(verdict instanceof Promise)) return accept(verdict);
      // Verified off-thread: uWS needs to know the response may outlive this call.
      res.onAborted(() => (aborted = true));
      verdict.then(accept, badToken);
    },

    open(ws) {
      const data = ws.getUserData();
      const client = new WsClient(hub.nextSocketId(), data.format, ws);
      if (config.rateLimit > 0) client.bucket = new TokenBucket(config.rateLimit, config.rateBurst);
      data.client = client;
      if (data.claims) {
        client.authenticate(data.claims);
        data.claims = undefined;
      }
      hub.add(client);
      client.send({ op: 'welcome', socket_id: client.id, user: client.user ?? null, heartbeat: config.idleTimeout, protocol: 1 });
    },

    message(ws, message, isBinary) {
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
        if (++client.badFrames >= MAX_BAD_FRAMES) client.disconnect(CloseCode.BAD_REQUEST, 'too many malformed frames', false);
        return;
      }
      if (client.bucket && !client.bucket.take()) {
        client.send(errorReply(frame.ref, new RtError('rate_limited', `more than ${config.rateLimit} messages per second; slow down`, 429)));
        if (client.bucket.strikes >= MAX_RATE_STRIKES) client.disconnect(CloseCode.RATE_LIMITED, 'rate limit exceeded repeatedly', false);
        return;
      }
      if (frame.op === 'publish' && message.byteLength > config.maxWhisperSize) {
        client.send(errorReply(frame.ref, new RtError('payload_too_large', `client publishes are limited to ${config.maxWhisperSize} bytes`, 413)));
        return;
      }
      handleFrame(ctx, client, frame, (r: Reply) => client.send(r));
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
  });
}

