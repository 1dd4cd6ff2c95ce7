/**
 * The backend's HTTP API (DESIGN.md "HTTP API"): publish, batch, channel queries, user disconnect.
 * Every answer is JSON; every refusal is `{ "error": { "code", "message" } }` with a 4xx/5xx status.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { RtError, toErrorBody } from '../errors.js';
import { APP_SEPARATOR, appSuffixOf, USER_ID_SEPARATOR_RULE } from '../runtime/app-scope.js';
import { assertChannel, assertDistinctChannels, assertEvent } from '../protocol/native.js';
import type { ThreadContext } from '../runtime/context.js';
import { bridged } from '../bridge/setup.js';
import { CORS_PREFLIGHT_HEADERS, corsHeaders, originAllowed } from '../security/origins.js';
import { sameSecret } from '../security/same-secret.js';
import { API_KEY_FAILURES_PER_SECOND } from '../security/shared-limits.js';
import { beginRequest, errorStatus, JsonText, parseJsonBody, readBody, requestIp, sendError, sendJson, snapshot, track, queryParam, type Req } from './http.js';
import { countApiRequest } from './api-routes.js';
import { registerOperatorApi } from './operator-api.js';
import { JsonData } from '../protocol/encoded-payload.js';
import { getAndHead, headSafe } from './head.js';
import { didYouMean } from '../config/suggest.js';
import { logInternal } from '../log.js';

const MAX_CHANNELS_PER_PUBLISH = 100;
const MAX_BATCH = 1000;
/** Seconds a client refused with `overloaded` (503) is told to wait before retrying. */
const OVERLOADED_RETRY_AFTER_S = 1;

/**
 * Checks the API key. `operator` routes (the dashboard's: stats, tap, channel queries, publish) also
 * take --dashboard-token when the dashboard is on.
 */
export function checkApiKey(ctx: ThreadContext, req: Req, res: HttpResponse, operator = false): void {
  const h = req.headers['authorization'] ?? '';
  const m = /^Bearer\s+(.+)$/i.exec(h);
  const given = m ? m[1]!.trim() : queryParam(req.query, 'api_key');
  if (!given) {
    // `Authorization: <key>` or `Basic …` reads as "missing" otherwise, with the header right there.
    const why = h ? 'the Authorization header is not "Bearer <api key>"' : 'missing API key';
    throw new RtError('unauthorized', `${why}: send "Authorization: Bearer <api key>"`, 401);
  }
  if (sameSecret(given, ctx.apiKey)) return;
  const { dashboard, dashboardToken } = ctx.config;
  if (operator && dashboard && dashboardToken && sameSecret(given, dashboardToken)) return;
  // Guessing is slowed per address (the right key is never counted, so nobody is locked out); the
  // address is read only here, as it costs a copy uWS makes for each call.
  const ip = requestIp(res, req);
  if (!ctx.limits.apiKeyFailure(ip)) {
    throw new RtError('rate_limited', `more than ${API_KEY_FAILURES_PER_SECOND} wrong API keys per second from ${ip}: wait a second`, 429);
  }
  throw new RtError('unauthorized', 'wrong API key', 401);
}

interface PublishSpec {
  channels?: string[];
  user?: string;
  event: string;
  data: unknown;
  socketId?: string;
}

const MESSAGE_FIELDS = ['channel', 'channels', 'user', 'event', 'data', 'socket_id'];

function parsePublish(body: unknown, where = 'body'): PublishSpec {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new RtError('bad_request', `${where} must be a JSON object`);
  const b = body as Record<string, unknown>;
  // A misspelt optional field would be dropped without a word: `socketId` for `socket_id` echoes the
  // message to its sender.
  for (const k in b) {
    if (!MESSAGE_FIELDS.includes(k)) {
      throw new RtError('bad_request', `${where}: unknown field ${JSON.stringify(k.slice(0, 64))}${didYouMean(k, MESSAGE_FIELDS, (f) => `"${f}"`)}; a message has ${MESSAGE_FIELDS.join(', ')}`);
    }
  }
  const event = assertEventField(b.event, where);
  if (!('data' in b)) throw new RtError('bad_request', `${where}: "data" is required (use null for none)`);
  const targets = ['channel', 'channels', 'user'].filter((k) => b[k] !== undefined);
  if (targets.length !== 1) throw new RtError('bad_request', `${where}: give exactly one of "channel", "channels" or "user"`);
  let socketId: string | undefined;
  if (b.socket_id !== undefined && b.socket_id !== null) {
    if (typeof b.socket_id !== 'string' || b.socket_id.length > 64) throw new RtError('bad_request', `${where}: "socket_id" must be a string of at most 64 characters`);
    socketId = b.socket_id;
  }
  if (b.user !== undefined) {
    if ((typeof b.user !== 'string' && typeof b.user !== 'number') || String(b.user).length === 0 || String(b.user).length > 200) {
      throw new RtError('bad_request', `${where}: "user" must be a string or number of 1-200 characters`);
    }
    // JSON.parse rounded it (12345678901234567891 and …892 both read 12345678901234567000): it would
    // reach another user's connections. A backend sends such ids as strings.
    if (typeof b.user === 'number' && !Number.isSafeInteger(b.user)) {
      throw new RtError('bad_request', `${where}: "user" ${b.user} is not an integer below 2^53, so JSON parsing may have changed it into another user's id: send it as a string`);
    }
    // Another Pusher app's users are reached through that app's own HTTP API, with its credentials.
    if (String(b.user).includes(APP_SEPARATOR)) throw new RtError('bad_request', `${where}: "user": ${USER_ID_SEPARATOR_RULE}`);
    return { user: String(b.user), event, data: b.data, socketId };
  }
  let channels: unknown[];
  if (b.channel !== undefined) channels = [b.channel];
  else if (Array.isArray(b.channels)) channels = b.channels;
  else throw new RtError('bad_request', `${where}: "channels" must be an array of channel names`);
  if (channels.length === 0 || channels.length > MAX_CHANNELS_PER_PUBLISH) throw new RtError('bad_request', `${where}: "channels" must hold 1 to ${MAX_CHANNELS_PER_PUBLISH} names`);
  const names = channels.map((c) => assertChannelField(c, where));
  assertDistinctChannels(names, `${where}: `);
  return { channels: names, event, data: b.data, socketId };
}

function assertEventField(v: unknown, where: string): string {
  if (v === undefined) throw new RtError('bad_request', `${where}: "event" is required`);
  try {
    return assertEvent(v);
  } catch (err) {
    throw new RtError('bad_request', `${where}: ${(err as Error).message}`);
  }
}

function assertChannelField(v: unknown, where: string): string {
  try {
    return assertChannel(v);
  } catch (err) {
    throw new RtError('invalid_channel', `${where}: ${(err as Error).message}`);
  }
}

/**
 * What publish and batch both answer (docs/http-api.md, PublishAnswer in openapi.ts):
 * `{"ok":true,"count":…,"offsets":{…}}`, `count` messages accepted, and the stream offset each channel's
 * last one got (user messages have no stream, so they add no offset). As JSON text, written out:
 * JSON.stringify of the answer object was 4 % of the CPU of
 * `POST /api/publish` in a profile (0.43 µs against 0.13 in a microbenchmark; it looks up toJSON on
 * every object); only the channel names need escaping.
 */
function publishAnswer(count: number, offsets: Record<string, number>): JsonText {
  let text = '{"ok":true,"count":' + count + ',"offsets":{';
  let first = true;
  for (const ch in offsets) {
    text += (first ? '' : ',') + JSON.stringify(ch) + ':' + offsets[ch];
    first = false;
  }
  return new JsonText(text + '}}');
}

/** Publishes one message; records the channels' offsets into `offsets`. */
async function publish(ctx: ThreadContext, spec: PublishSpec, offsets: Record<string, number>): Promise<void> {
  if (spec.user !== undefined) {
    await ctx.hub.publishToUser(spec.user, spec.event, spec.data, spec.socketId);
    return;
  }
  // Parsed from JSON: it moves on as its text, encoded once here (see encoded-payload.ts).
  const data = JsonData.of(spec.data) ?? spec.data;
  const results = await Promise.all(spec.channels!.map((ch) => ctx.hub.publish(ch, spec.event, data, 'api', undefined, spec.socketId)));
  spec.channels!.forEach((ch, i) => (offsets[ch] = results[i]!.offset));
}

/**
 * All published: the publishAnswer, offsets merged in batch order (a channel's last message wins).
 * Otherwise the first failure's code and status, and a message saying which messages failed and that
 * the others were published (they were: a batch is not a transaction).
 */
function batchAnswer(results: PromiseSettledResult<unknown>[], offsets: Record<string, number>[]): JsonText {
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [{ i, err: r.reason as unknown }] : []));
  if (failed.length === 0) return publishAnswer(results.length, Object.assign({}, ...offsets) as Record<string, number>);
  const first = failed[0]!;
  // Rethrown as an RtError below, which sendError does not log as a fault: log the cause here.
  logInternal(first.err, 'a batch publish');
  const body = toErrorBody(first.err);
  const status = first.err instanceof RtError ? first.err.status : 500;
  const which = failed.length <= 10 ? failed.map((f) => `messages[${f.i}]`).join(', ') : `messages[${first.i}] and ${failed.length - 1} others`;
  throw new RtError(body.code, `${which} not published (${body.message}); the other ${results.length - failed.length} of ${results.length} were published`, status);
}

type Handler = (ctx: ThreadContext, req: Req, res: HttpResponse, state: { aborted: boolean }) => Promise<unknown>;

/** Browser calls of the API must come from an allowed origin; server-to-server calls send no Origin. */
export function checkOrigin(ctx: ThreadContext, req: Req): Record<string, string> {
  const origin = req.headers['origin'];
  if (!originAllowed(origin, req.headers['host'], ctx.config.allowedOrigins)) {
    throw new RtError('origin_not_allowed', `origin ${String(origin).slice(0, 100)} is not allowed; add it to --allowed-origins`, 403);
  }
  return corsHeaders(origin);
}

/**
 * Wraps a handler: snapshot, origin and key checks, rate limit, in-flight accounting, error answers.
 * `needsKey`: true for the API key, 'operator' for the API key or the dashboard token.
 */
/** A path that exists, asked with a method it does not answer (RFC 9110 405: Allow lists the ones it does). */
export class MethodNotAllowed extends RtError {
  constructor(method: string, path: string, readonly allow: string) {
    super('method_not_allowed', `${method.toUpperCase()} is not a method of ${path}: it answers ${allow}`, 405);
  }
}

export function route(ctx: ThreadContext, params: number, needsKey: boolean | 'operator', h: Handler) {
  return (res: HttpResponse, httpReq: HttpRequest) => {
    const state = track(res);
    let req: Req;
    try {
      req = snapshot(res, httpReq, params);
    } catch (err) {
      countApiRequest(ctx.metrics, httpReq.getUrl(), errorStatus(err));
      return sendError(res, state, err);
    }
    let cors: Record<string, string> = {};
    const end = beginRequest(ctx.inflight, res, state, () => cors);
    (async () => {
      cors = checkOrigin(ctx, req);
      if (needsKey) {
        checkApiKey(ctx, req, res, needsKey === 'operator');
        if (!ctx.limits.apiRequest()) throw new RtError('rate_limited', `more than ${ctx.config.apiRateLimit} API requests per second`, 429);
      }
      const body = await h(ctx, req, res, state);
      countApiRequest(ctx.metrics, req.url, 200);
      sendJson(res, state, 200, body, cors);
    })()
      .catch((err) => {
        countApiRequest(ctx.metrics, req.url, errorStatus(err));
        // An overloaded thread: tell the client when to come back (RFC 9110 Retry-After).
        const headers = (err as { code?: unknown })?.code === 'overloaded' ? { ...cors, 'retry-after': String(OVERLOADED_RETRY_AFTER_S) } : cors;
        sendError(res, state, err, err instanceof MethodNotAllowed ? { ...headers, allow: err.allow } : headers);
      })
      .finally(end);
  };
}

async function jsonBody(ctx: ThreadContext, req: Req, res: HttpResponse, state: { aborted: boolean }): Promise<unknown> {
  // The content-type is not checked: backends send JSON under many labels (curl's default is a form type).
  return parseJsonBody(await readBody(res, req.headers['content-length'], ctx.config.maxPayload, state, 'text'));
}

export function registerHttpApi(app: TemplatedApp, ctx: ThreadContext): void {
  app.post(
    '/api/publish',
    route(ctx, 0, 'operator', async (c, req, res, state) => {
      const body = await jsonBody(c, req, res, state);
      const offsets: Record<string, number> = {};
      await publish(c, parsePublish(body), offsets);
      return publishAnswer(1, offsets);
    }),
  );

  app.post(
    '/api/batch',
    route(ctx, 0, true, async (c, req, res, state) => {
      const body = (await jsonBody(c, req, res, state)) as { messages?: unknown };
      if (!body || typeof body !== 'object' || !Array.isArray(body.messages)) throw new RtError('bad_request', 'body must be { "messages": [ … ] }');
      // As for a message's fields (parsePublish): what is misspelt is refused, not ignored.
      for (const k in body) if (k !== 'messages') throw new RtError('bad_request', `body: unknown field ${JSON.stringify(k.slice(0, 64))}; a batch has "messages" only`);
      if (body.messages.length === 0 || body.messages.length > MAX_BATCH) throw new RtError('bad_request', `"messages" must hold 1 to ${MAX_BATCH} messages`);
      // Validate all before publishing any, so a bad batch publishes nothing.
      const specs = body.messages.map((m, i) => parsePublish(m, `messages[${i}]`));
      // All sent at once: the rings are FIFO per pair of threads and an owner's mailbox takes them in
      // arrival order, so messages on one channel keep the batch's order without waiting for each other.
      const offsets = specs.map(() => ({}) as Record<string, number>);
      const results = await Promise.allSettled(specs.map((s, i) => publish(c, s, offsets[i]!)));
      return batchAnswer(results, offsets);
    }),
  );

  getAndHead(
    app,
    '/api/channels',
    route(ctx, 0, 'operator', async (c, req) => {
      const prefix = queryParam(req.query, 'prefix');
      // Other Pusher apps' channels share the hub under suffixed names (app-scope.ts): /api/* is the
      // default app's, and such a name could not be queried back through /api/channels/:name.
      const channels = (await c.hub.channels(prefix)).filter((ch) => appSuffixOf(ch.name) === '');
      return { channels };
    }),
  );

  getAndHead(
    app,
    '/api/channels/:name',
    route(ctx, 1, 'operator', async (c, req) => {
      const name = assertChannelField(req.params[0], 'path');
      const info = await c.hub.channel(name);
      info.owner ??= { host: c.config.hostId, shard: c.hub.ownerOf(name), placement: bridged(c.config) ? 'per-host' : 'local' };
      return info;
    }),
  );

  getAndHead(
    app,
    '/api/channels/:name/users',
    route(ctx, 1, 'operator', async (c, req) => {
      const name = assertChannelField(req.params[0], 'path');
      if (!name.startsWith('presence-')) throw new RtError('bad_request', 'users are listed for presence- channels only');
      const { members } = await c.hub.presence(name);
      // `user_id`, as presence members are everywhere else (protocol, Socket.IO, Pusher).
      return { users: members.map((m) => ({ user_id: m.user_id, user_info: m.user_info })) };
    }),
  );

  app.post(
    '/api/users/:id/disconnect',
    route(ctx, 1, true, async (c, req) => {
      const user = req.params[0]!;
      if (!user) throw new RtError('bad_request', 'user id is required');
      if (user.includes(APP_SEPARATOR)) throw new RtError('bad_request', USER_ID_SEPARATOR_RULE);
      await c.hub.kick(user);
      return { ok: true };
    }),
  );

  // CORS preflight for browser calls (e.g. an admin page publishing with a key).
  app.options('/api/*', (res, httpReq) => {
    const state = track(res);
    const req = snapshot(res, httpReq);
    try {
      const cors = checkOrigin(ctx, req);
      if (state.aborted) return;
      state.aborted = true;
      res.cork(() => {
        res.writeStatus('204 No Content');
        for (const [k, v] of Object.entries({ ...cors, ...CORS_PREFLIGHT_HEADERS })) res.writeHeader(k, v);
        res.end();
      });
    } catch (err) {
      sendError(res, state, err);
    }
  });

  registerOperatorApi(app, ctx);
}

/**
 * The shard's catch-all (src/runtime/shard.ts) for an /api/ path no route took: its refusal (405 or 404)
 * with the API's CORS headers, counted in rt_http_requests_total like any API answer.
 */
export function apiRefusal(ctx: ThreadContext, refusal: RtError): (res: HttpResponse, req: HttpRequest) => void {
  return route(ctx, 0, false, async () => {
    throw refusal;
  });
}
