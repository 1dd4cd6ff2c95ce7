/**
 * The Pusher Channels WebSocket at `/app/<key>?protocol=7` (protocols 5–8 are accepted: they differ
 * only in what this server never sends). Frames are JSON `{ event, channel?, data }`; see
 * docs/pusher.md for what is supported. Bad input gets a `pusher:error` and loses nothing; a client
 * that keeps sending garbage is closed with 4300.
 */
import { countRefusal } from '../../runtime/instruments.js';
import type { RefusalReason } from '../../runtime/metric-families.js';
import type { HttpRequest, HttpResponse, TemplatedApp, us_socket_context_t } from 'uWebSockets.js';
import { channelKind } from '../../auth/channels.js';
import { toErrorBody } from '../../errors.js';
import { originAllowed } from '../../security/origins.js';
import { admissionError } from '../../security/admission.js';
import { clientAddress, forwardingHeader } from '../../security/client-ip.js';
import { MAX_RATE_STRIKES, rateRefusal, TokenBucket } from '../../security/token-bucket.js';
import { guardBehavior, pathParam, queryParam } from '../http.js';
import { endDroppedSocket, sweepSlowConsumers, uwsBackpressureLimit } from '../slow-consumer.js';
import { internalName, internalUser, USER_ID_SEPARATOR_RULE } from './apps.js';
import { PusherClient, PusherClose, type PusherSocketData } from './client.js';
import { errorFrame, frame } from './codec.js';
import type { PusherGateway } from './gateway.js';
import { verifyUserAuth } from './signature.js';
import { startWatchlist } from './watchlist.js';
import { isEncryptedChannel, subscribe, unsubscribe, validPusherChannel } from './subscriptions.js';
import { JsonData } from '../../protocol/encoded-payload.js';
import { isEventName } from '../../protocol/native.js';
import { jsonNestsDeeper, MAX_JSON_DEPTH } from '../../protocol/json-depth.js';
import { signedUserId } from '../../auth/user-id.js';
import { logInternal } from '../../log.js';

/** Malformed frames tolerated before the connection is closed (a buggy client gets errors, a hostile one is cut off). */
const MAX_BAD_FRAMES = 20;
const textDecoder = new TextDecoder('utf-8', { fatal: true });
/** Signed user data of pusher:signin, in characters: an id, user_info and a watchlist fit well within it. */
const MAX_USER_DATA = 10_000;

export function registerPusherSocket(uapp: TemplatedApp, gw: PusherGateway): void {
  const { ctx } = gw;
  const { config, hub } = ctx;
  sweepSlowConsumers(ctx);
  const messagesIn = ctx.metrics.series('rt_messages_in_total', { transport: 'websocket', protocol: 'pusher' });

  uapp.ws<PusherSocketData>('/app/:key', guardBehavior({
    maxPayloadLength: config.maxPayload * 4,
    idleTimeout: config.idleTimeout,
    sendPingsAutomatically: true,
    maxBackpressure: uwsBackpressureLimit(config.maxBackpressure),
    closeOnBackpressureLimit: false,

    upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t) {
      const key = req.getParameter(0) ?? '';
      const query = req.getQuery() ?? '';
      const wsKey = req.getHeader('sec-websocket-key');
      const protocols = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const origin = req.getHeader('origin');
      const host = req.getHeader('host');
      const ip = clientAddress(res.getRemoteAddressAsText(), (h) => forwardingHeader(req, h));
      const data: PusherSocketData = { ip, admitted: false };
      // Refusals are told in Pusher's terms (pusher:error + close code) over the socket, which is the
      // only place pusher-js reads them; so the upgrade itself always succeeds.
      let app;
      try {
        app = gw.apps.withKey(pathParam(key));
      } catch {
        // A key that does not even decode (`%ZZ`) is an unknown key.
      }
      let protocol: string | undefined;
      let badQuery: string | undefined;
      try {
        protocol = queryParam(query, 'protocol');
      } catch (err) {
        // Told over the socket like the other refusals: a thrown 400 would fail the upgrade unread.
        badQuery = (err as Error).message;
      }
      if (!app) data.refusal = { code: PusherClose.APP_NOT_FOUND, message: `App key ${key.slice(0, 64)} does not exist` };
      else if (badQuery !== undefined) data.refusal = { code: PusherClose.UNSUPPORTED_PROTOCOL, message: badQuery };
      else if (protocol === undefined) data.refusal = { code: PusherClose.NO_PROTOCOL, message: 'No protocol version supplied: connect to /app/<key>?protocol=7' };
      else if (!/^[5-8]$/.test(protocol)) data.refusal = { code: PusherClose.UNSUPPORTED_PROTOCOL, message: `Unsupported protocol version ${protocol.slice(0, 10)}: 5 to 8 are supported` };
      else if (ctx.draining) data.refusal = { code: PusherClose.RECONNECT, message: 'server is shutting down: reconnect' };
      else if (!originAllowed(origin || undefined, host, app.allowedOrigins.length ? [...app.allowedOrigins, ...config.allowedOrigins] : config.allowedOrigins)) {
        countRefusal('origin');
        data.refusal = { code: PusherClose.UNAUTHORIZED, message: `Origin ${origin.slice(0, 100)} is not allowed to connect to this app` };
      } else {
        const admitted = ctx.limits.admit(ip);
        if (admitted !== 'ok') {
          countRefusal({ code: admitted });
          data.refusal = { code: PusherClose.OVER_CAPACITY, message: `Over capacity: ${admissionError(admitted, ip, config).message}` };
        } else if (app.maxConnections > 0 && !ctx.limits.apps?.admit(app.index, app.maxConnections)) {
          // The app's own quota (maxConnections, per host): Pusher's 4004, after which pusher-js does not reconnect.
          ctx.limits.release(ip);
          data.refusal = { code: PusherClose.OVER_QUOTA, message: `Application is over connection quota (${app.maxConnections} connections on this host)` };
          countRefusal({ code: 'app_over_quota', message: data.refusal.message });
        } else {
          data.admitted = true;
          data.appCounted = app.maxConnections > 0;
        }
      }
      data.app = app;
      res.cork(() => {
        res.upgrade<PusherSocketData>(data, wsKey, protocols.split(',')[0]?.trim() ?? '', extensions, context);
      });
    },

    open(ws) {
      const data = ws.getUserData();
      if (data.refusal) {
        ws.send(errorFrame(data.refusal.code, data.refusal.message), false);
        ws.end(data.refusal.code, data.refusal.message.slice(0, 120));
        return;
      }
      const app = data.app!;
      const client = new PusherClient(hub.nextSocketId(), app, ws);
      data.client = client;
      hub.add(client);
      hub.aliases.set(client.socketId, client);
      client.send(frame('pusher:connection_established', JSON.stringify({ socket_id: client.socketId, activity_timeout: gw.activityTimeout })));
    },

    message(ws, message, isBinary) {
      const client = ws.getUserData().client;
      if (!client || client.closed) return;
      messagesIn.inc();
      const bad = (msg: string, reason: RefusalReason = 'malformed'): void => {
        countRefusal(reason);
        client.send(errorFrame(null, msg));
        if (++client.badFrames >= MAX_BAD_FRAMES) client.close(PusherClose.REFUSED, 'too many malformed messages');
      };
      if (message.byteLength > config.maxPayload) return bad(`Message too big: the limit is ${config.maxPayload} bytes`, 'payload_too_large');
      if (isBinary) return bad('Binary frames are not part of the Pusher protocol: send JSON text');
      const refused = rateRefusal(client, config);
      if (refused) {
        countRefusal('rate_limit');
        client.send(errorFrame(PusherClose.RATE_LIMITED, `More than ${config.rateLimit} messages per second: slow down`));
        if (refused.strikes >= MAX_RATE_STRIKES) client.close(PusherClose.RATE_LIMITED, 'rate limit exceeded repeatedly');
        return;
      }
      let msg: { event?: unknown; channel?: unknown; data?: unknown };
      let text: string;
      try {
        text = textDecoder.decode(message);
        msg = JSON.parse(text);
      } catch {
        return bad('Invalid message format: expected a JSON object { "event", "data" }');
      }
      if (jsonNestsDeeper(text)) return bad(`Invalid message format: nested deeper than ${MAX_JSON_DEPTH} levels of arrays and objects`);
      if (!msg || typeof msg !== 'object' || typeof msg.event !== 'string') return bad('Invalid message format: expected a JSON object with a string "event"');
      const event = msg.event;
      switch (event) {
        case 'pusher:ping':
          return client.send(frame('pusher:pong', {}));
        case 'pusher:pong':
          return;
        case 'pusher:subscribe':
          return subscribe(gw, client, msg.data);
        case 'pusher:unsubscribe':
          return unsubscribe(gw, client, msg.data);
        case 'pusher:signin':
          return signin(gw, client, msg.data);
      }
      if (event.startsWith('client-')) return clientEvent(gw, client, event, msg.channel, msg.data);
      bad(`Unsupported event received on socket: ${event.slice(0, 100)}`);
    },

    dropped(ws) {
      endDroppedSocket(ws, PusherClose.RECONNECT, 'slow consumer: reconnect');
    },

    close(ws) {
      const data = ws.getUserData();
      data.gone = true;
      if (data.admitted) ctx.limits.release(data.ip);
      if (data.appCounted) ctx.limits.apps?.release(data.app!.index);
      const client = data.client;
      if (client) {
        hub.aliases.delete(client.socketId);
        hub.remove(client);
      }
    },
  }));
}

/**
 * `client-…` events: on private and presence channels the sender is subscribed to (not on encrypted
 * ones, whose payloads the server cannot check), or on any channel whose actor has onMessage, within
 * the app's size and rate limits, never echoed to the sender. They go through the channel actor like
 * any client publish.
 */
function clientEvent(gw: PusherGateway, client: PusherClient, event: string, channel: unknown, data: unknown): void {
  const app = client.app;
  const refuse = (message: string, code: number | null = null): void => client.send(errorFrame(code, message));
  if (!app.enableClientMessages) return refuse('Client events are not enabled for this app');
  if (!validPusherChannel(channel)) return refuse('Client event needs a channel');
  if (event.length > 200) return refuse('Event name is longer than 200 characters');
  // The rule of every other way in (native publish, Socket.IO whisper, HTTP API): a control character
  // reached native and Socket.IO subscribers as it came, and SSE ones with its line breaks made spaces.
  if (!isEventName(event)) return refuse('Client event rejected: the event name holds a control character');
  if (isEncryptedChannel(channel)) return refuse('Client events are not supported on encrypted channels');
  const internal = internalName(app, channel);
  if (!client.channels.has(internal)) return refuse(`Client event rejected: not subscribed to ${channel}`);
  // The limit is on `data`, counted as the HTTP API counts it: a string's UTF-8 bytes, else its JSON,
  // which is made once here and is also what is published.
  const json = JsonData.of(data);
  if (utf8Over(typeof data === 'string' ? data : (json?.text ?? ''), app.maxEventPayload)) return refuse(`Client event rejected: data larger than ${app.maxEventPayload} bytes`);
  // The bucket is made on the first client event, as the --rate-limit one is (rateRefusal): most connections never send one.
  const perSecond = app.maxClientEventsPerSecond;
  const bucket = perSecond > 0 ? (client.clientEvents ??= new TokenBucket(perSecond, perSecond)) : undefined;
  if (bucket && !bucket.take()) return refuse('Client event rejected due to rate limit', PusherClose.RATE_LIMITED);
  // Sent as a whisper: the channel's actor decides when it has onMessage (on public channels too, as
  // for every other transport); otherwise the owner applies Pusher's rule (private and presence only).
  const isPublic = channelKind(channel) === 'public';
  gw.ctx.hub.publish(internal, event, json ?? data, 'client', client, client.id, true).then(
    () => gw.hooks?.clientEvent(app, internal, event, data, client),
    (err) => {
      // Only accepted client events count against the app's rate: the owner's refusal (a public
      // channel, an actor's onMessage, --client-publish=none) gives the token back. It is taken first
      // all the same, so that events in flight can never pass the limit together.
      bucket?.give();
      logInternal(err, 'a Pusher client event');
      if (client.closed) return;
      const body = toErrorBody(err);
      if (isPublic && body.code === 'forbidden') refuse(`Client events are only allowed on private and presence channels, not ${channel}`);
      else refuse(`Client event rejected: ${body.message}`);
    },
  );
}

/** Whether `s` is more than `limit` bytes in UTF-8; its length decides without a scan unless it is near (1 to 3 bytes per UTF-16 unit). */
function utf8Over(s: string, limit: number): boolean {
  if (s.length > limit) return true;
  if (s.length * 3 <= limit) return false;
  return Buffer.byteLength(s) > limit;
}

/**
 * `pusher:signin`: the backend signed `socket_id::user::user_data`. The connection then belongs to the
 * user: deliveries to the user reach it, and terminate_connections closes it. A bad signature closes
 * the connection with 4009, as Pusher does. The first sign-in also starts the user's online status and
 * its watchlist (watchlist.ts).
 */
function signin(gw: PusherGateway, client: PusherClient, data: unknown): void {
  const d = (data && typeof data === 'object' ? data : {}) as { auth?: unknown; user_data?: unknown };
  if (typeof d.user_data === 'string' && d.user_data.length > MAX_USER_DATA) return client.close(PusherClose.UNAUTHORIZED, `user_data is longer than ${MAX_USER_DATA} characters`);
  if (typeof d.user_data !== 'string' || !verifyUserAuth(client.app, client.socketId, d.user_data, d.auth)) {
    return client.close(PusherClose.UNAUTHORIZED, 'Invalid signature for pusher:signin');
  }
  let user: { id?: unknown; user_info?: unknown; watchlist?: unknown };
  try {
    user = JSON.parse(d.user_data);
  } catch {
    return client.close(PusherClose.UNAUTHORIZED, 'user_data is not valid JSON');
  }
  // Laravel signs `['id' => $user->id]`, an integer: the user is its digits, as presence's user_id is.
  const id = signedUserId(user?.id, d.user_data, ['id']);
  if (id === undefined) return client.close(PusherClose.UNAUTHORIZED, 'user_data must hold an id (a non-empty string or number)');
  const internal = internalUser(client.app, id);
  if (internal === undefined) return client.close(PusherClose.UNAUTHORIZED, `user_data id refused: ${USER_ID_SEPARATOR_RULE}`);
  if (client.user !== undefined && client.user !== internal) return client.close(PusherClose.UNAUTHORIZED, 'a connection cannot change user; reconnect instead');
  const first = client.user === undefined;
  if (first) {
    // Users are per app too: user 1 of app B is not user 1 of the default app.
    client.user = internal;
    client.info = user.user_info;
    gw.ctx.hub.indexUser(client);
  }
  client.send(frame('pusher:signin_success', { user_data: d.user_data }));
  // A repeated sign-in (same user) keeps the connection's first watchlist.
  if (first) startWatchlist(gw, client, id, user.watchlist);
}

