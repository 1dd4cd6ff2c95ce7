/**
 * Pusher's HTTP API at /apps/<id>/…, signed with the app secret (signature.ts): trigger, batch
 * trigger, channel queries, presence users and terminate_connections. What it publishes goes through
 * the channel actors like any backend publish, so Socket.IO, native and SSE subscribers of the same
 * channel get it too. Errors are `{ "error": { "code", "message } }` with Pusher's wording in message.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { channelKind } from '../../auth/channels.js';
import { RtError } from '../../errors.js';
import { beginRequest, errorStatus, parseJsonBody, readBody, sendError, sendJson, snapshot, track, queryParam, queryParams, type Req } from '../http.js';
import { countApiRequest } from '../api-routes.js';
import { belongsTo, externalName, internalName, internalUser, USER_ID_SEPARATOR_RULE, type PusherApp } from './apps.js';
import { fromWireData } from './codec.js';
import type { PusherGateway } from './gateway.js';
import { ApiAuthError, verifyApiRequest } from './signature.js';
import { validPusherChannel } from './subscriptions.js';
import { JsonData } from '../../protocol/encoded-payload.js';
import { getAndHead } from '../head.js';
import { reservedEvent } from '../../client/reserved-events.js';
import { isEventName } from '../../protocol/native.js';

const USER_CHANNEL = '#server-to-user-';
const SOCKET_ID_RE = /^\d+\.\d+$/;

interface Call {
  gw: PusherGateway;
  app: PusherApp;
  req: Req;
  body: Buffer;
}

type Handler = (c: Call) => Promise<unknown>;

function route(gw: PusherGateway, params: number, bodyLimit: number, h: Handler) {
  const { ctx } = gw;
  return (res: HttpResponse, httpReq: HttpRequest) => {
    const state = track(res);
    // The raw path is what the SDK signed (params are decoded separately by snapshot).
    const path = httpReq.getUrl();
    let req: Req;
    try {
      req = snapshot(res, httpReq, params);
    } catch (err) {
      countApiRequest(ctx.metrics, path, errorStatus(err));
      return sendError(res, state, err);
    }
    const end = beginRequest(ctx.inflight, res, state);
    (async () => {
      const body = req.method === 'post' ? await readBody(res, req.headers['content-length'], bodyLimit, state) : Buffer.alloc(0);
      const app = gw.apps.withId(req.params[0]!);
      if (!app) throw new RtError('not_found', `Unknown app id ${req.params[0]!.slice(0, 64)}`, 404);
      try {
        verifyApiRequest(app, req.method, path, req.query, body);
      } catch (err) {
        if (err instanceof ApiAuthError) throw new RtError('unauthorized', err.message, 401);
        throw err;
      }
      if (!ctx.limits.apiRequest()) throw new RtError('rate_limited', `more than ${ctx.config.apiRateLimit} API requests per second`, 429);
      const answer = await h({ gw, app, req, body });
      countApiRequest(ctx.metrics, req.url, 200);
      sendJson(res, state, 200, answer);
    })()
      .catch((err) => {
        countApiRequest(ctx.metrics, req.url, errorStatus(err));
        sendError(res, state, err);
      })
      .finally(end);
  };
}

interface EventSpec {
  name: string;
  data: unknown;
  channels: string[];
  socketId?: string;
  info: string[];
}

function parseInfo(v: unknown, where: string): string[] {
  if (v === undefined || v === null || v === '') return [];
  if (typeof v !== 'string') throw new RtError('bad_request', `${where}: "info" must be a comma-separated string`);
  const out = v.split(',').map((s) => s.trim()).filter(Boolean);
  for (const i of out) if (i !== 'user_count' && i !== 'subscription_count' && i !== 'cache') throw new RtError('bad_request', `${where}: unknown info attribute ${i.slice(0, 40)}; use user_count, subscription_count`);
  return out;
}

function parseEvent(app: PusherApp, v: unknown, where: string, batch: boolean): EventSpec {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new RtError('bad_request', `${where} must be a JSON object`);
  const b = v as Record<string, unknown>;
  if (typeof b.name !== 'string' || b.name.length === 0 || b.name.length > 200) throw new RtError('bad_request', `${where}: "name" must be an event name of 1-200 characters`);
  // As POST /api/publish and Laravel's Redis broadcasts: a control character would reach SSE subscribers mangled.
  if (!isEventName(b.name)) throw new RtError('bad_request', `${where}: "name" must not hold control characters`);
  const reserved = reservedEvent(b.name);
  if (reserved) throw new RtError('bad_request', `${where}: ${reserved}`);
  if (b.data === undefined) throw new RtError('bad_request', `${where}: "data" is required`);
  const size = typeof b.data === 'string' ? Buffer.byteLength(b.data) : Buffer.byteLength(JSON.stringify(b.data));
  if (size > app.maxEventPayload) throw new RtError('payload_too_large', `${where}: event data is ${size} bytes, over the ${app.maxEventPayload}-byte limit`, 413);
  let channels: unknown[];
  if (b.channel !== undefined) channels = [b.channel];
  else if (!batch && Array.isArray(b.channels)) channels = b.channels;
  else throw new RtError('bad_request', `${where}: give "channel"${batch ? '' : ' or "channels"'}`);
  if (channels.length === 0 || channels.length > app.maxEventChannels) throw new RtError('bad_request', `${where}: "channels" must hold 1 to ${app.maxEventChannels} names`);
  for (const ch of channels) {
    const ok = typeof ch === 'string' && (ch.startsWith(USER_CHANNEL) ? ch.length > USER_CHANNEL.length && ch.length <= USER_CHANNEL.length + 200 : validPusherChannel(ch));
    if (!ok) throw new RtError('invalid_channel', `${where}: invalid channel name ${JSON.stringify(ch).slice(0, 80)}`);
    if (ch.startsWith(USER_CHANNEL) && internalUser(app, ch.slice(USER_CHANNEL.length)) === undefined) throw new RtError('invalid_channel', `${where}: invalid channel name ${JSON.stringify(ch).slice(0, 80)}: ${USER_ID_SEPARATOR_RULE}`);
  }
  let socketId: string | undefined;
  if (b.socket_id !== undefined && b.socket_id !== null) {
    if (typeof b.socket_id !== 'string' || !SOCKET_ID_RE.test(b.socket_id) || b.socket_id.length > 64) throw new RtError('bad_request', `${where}: invalid socket_id`);
    socketId = b.socket_id;
  }
  // A channel named twice gets the event once: the answer's `channels` info is keyed by name, and a
  // backend that built its list with duplicates meant each channel, not each entry.
  const names = [...new Set(channels as string[])];
  return { name: b.name, data: typeof b.data === 'string' ? fromWireData(b.data) : b.data, channels: names, socketId, info: parseInfo(b.info, where) };
}

async function trigger(gw: PusherGateway, app: PusherApp, e: EventSpec): Promise<Record<string, Record<string, number>> | undefined> {
  const { hub } = gw.ctx;
  // It moves on as JSON text (see encoded-payload.ts): the text that came, or the value encoded once here.
  const data = e.data instanceof JsonData ? e.data : (JsonData.of(e.data) ?? e.data);
  await Promise.all(
    e.channels.map((ch) =>
      ch.startsWith(USER_CHANNEL)
        ? hub.publishToUser(internalUser(app, ch.slice(USER_CHANNEL.length))!, e.name, e.data, e.socketId)
        : hub.publish(internalName(app, ch), e.name, data, 'api', undefined, e.socketId),
    ),
  );
  if (e.info.length === 0) return undefined;
  // Keyed by channel names, which may be `__proto__` (see succeededData in subscriptions.ts).
  const out: Record<string, Record<string, number>> = Object.create(null);
  for (const ch of e.channels) {
    if (ch.startsWith(USER_CHANNEL)) continue;
    out[ch] = infoOf(await hub.channel(internalName(app, ch)), ch, e.info);
  }
  return out;
}

function infoOf(i: { subscribers: number; presence?: number }, ch: string, want: string[]): Record<string, number> {
  const o: Record<string, number> = {};
  if (want.includes('subscription_count')) o.subscription_count = i.subscribers;
  if (want.includes('user_count') && channelKind(ch) === 'presence') o.user_count = i.presence ?? 0;
  return o;
}

function json(c: Call): unknown {
  // The SDKs label JSON bodies application/json; the type is not enforced (as in /api).
  return parseJsonBody(c.body);
}

/** The parameters of a trigger that Pusher's HTTP API reference lets a POST give in its query string. */
const EVENT_QUERY_PARAMS = ['name', 'data', 'channel', 'channels[]', 'socket_id', 'info'] as const;

/**
 * The event of `POST /apps/<id>/events`: Pusher's reference says POST parameters "MAY be submitted in
 * the query string but SHOULD be submitted in the POST body", arrays as `channels[]=a&channels[]=b`.
 * So an empty body reads them from the (signed) query string. It does not say which wins when both
 * carry them, so that is refused rather than one silently ignored (a dropped socket_id would echo the
 * event to the very connection it was meant to skip).
 */
function eventOf(c: Call): { event: unknown; where: string } {
  const params = queryParams(c.req.query);
  const given = EVENT_QUERY_PARAMS.filter((k) => params.has(k));
  if (c.body.length > 0) {
    if (given.length > 0) throw new RtError('bad_request', `event parameters both in the body and in the query string (${given.join(', ')}): send them in one place`);
    return { event: json(c), where: 'body' };
  }
  if (given.length === 0) throw new RtError('bad_request', 'no event: send a JSON body { "name", "data", "channel" | "channels" }, or the query parameters name, data and channel or channels[]');
  if (params.has('channels')) throw new RtError('bad_request', 'query: several channels are written channels[]=a&channels[]=b (one: channel=a)');
  const event: Record<string, unknown> = {};
  for (const k of ['name', 'data', 'channel', 'socket_id', 'info'] as const) if (params.has(k)) event[k] = params.get(k);
  if (params.has('channels[]')) event.channels = params.getAll('channels[]');
  return { event, where: 'query' };
}

export function registerPusherApi(uapp: TemplatedApp, gw: PusherGateway): void {
  const bodyLimit = Math.max(gw.ctx.config.maxPayload, ...gw.apps.apps.map((a) => a.maxEventPayload * Math.max(1, a.maxBatchSize) * 1.5 + 16 * 1024));

  uapp.post(
    '/apps/:id/events',
    route(gw, 1, bodyLimit, async (c) => {
      const { event, where } = eventOf(c);
      const channels = await trigger(gw, c.app, parseEvent(c.app, event, where, false));
      return channels ? { channels } : {};
    }),
  );

  uapp.post(
    '/apps/:id/batch_events',
    route(gw, 1, bodyLimit, async (c) => {
      const body = json(c) as { batch?: unknown };
      if (!body || typeof body !== 'object' || !Array.isArray(body.batch)) throw new RtError('bad_request', 'body must be { "batch": [ … ] }');
      if (body.batch.length === 0 || body.batch.length > c.app.maxBatchSize) throw new RtError('bad_request', `"batch" must hold 1 to ${c.app.maxBatchSize} events`);
      // All validated before any is published: a bad batch publishes nothing.
      const specs = body.batch.map((e, i) => parseEvent(c.app, e, `batch[${i}]`, true));
      const infos: Record<string, number>[] = [];
      // In order, so events of one batch on one channel keep their order.
      for (const s of specs) {
        const r = await trigger(gw, c.app, s);
        infos.push(r ? (r[s.channels[0]!] ?? {}) : {});
      }
      return specs.some((s) => s.info.length > 0) ? { batch: infos } : {};
    }),
  );

  getAndHead(
    uapp,
    '/apps/:id/channels',
    route(gw, 1, 0, async (c) => {
      const prefix = queryParam(c.req.query, 'filter_by_prefix') ?? '';
      const info = parseInfo(queryParam(c.req.query, 'info'), 'query');
      if (info.includes('user_count') && !prefix.startsWith('presence-')) throw new RtError('bad_request', 'info=user_count is only allowed with filter_by_prefix=presence-');
      const all = await gw.ctx.hub.channels(prefix || undefined);
      const channels: Record<string, Record<string, number>> = Object.create(null);
      for (const i of all) {
        if (!belongsTo(c.app, i.name) || i.subscribers === 0) continue;
        const name = externalName(i.name);
        channels[name] = infoOf(i, name, info);
      }
      return { channels };
    }),
  );

  getAndHead(
    uapp,
    '/apps/:id/channels/:name',
    route(gw, 2, 0, async (c) => {
      const name = c.req.params[1]!;
      if (!validPusherChannel(name)) throw new RtError('invalid_channel', `invalid channel name ${JSON.stringify(name).slice(0, 80)}`);
      const info = parseInfo(queryParam(c.req.query, 'info'), 'query');
      if (info.includes('user_count') && channelKind(name) !== 'presence') throw new RtError('bad_request', 'info=user_count is only allowed for presence channels');
      const i = await gw.ctx.hub.channel(internalName(c.app, name));
      return { occupied: i.subscribers > 0, ...infoOf(i, name, info) };
    }),
  );

  getAndHead(
    uapp,
    '/apps/:id/channels/:name/users',
    route(gw, 2, 0, async (c) => {
      const name = c.req.params[1]!;
      if (!validPusherChannel(name) || channelKind(name) !== 'presence') throw new RtError('bad_request', 'users are listed for presence- channels only');
      const { members } = await gw.ctx.hub.presence(internalName(c.app, name));
      return { users: members.map((m) => ({ id: m.user_id })) };
    }),
  );

  uapp.post(
    '/apps/:id/users/:user/terminate_connections',
    route(gw, 2, bodyLimit, async (c) => {
      const user = c.req.params[1]!;
      if (!user || user.length > 200) throw new RtError('bad_request', 'user id must be 1-200 characters');
      const internal = internalUser(c.app, user);
      if (internal === undefined) throw new RtError('bad_request', USER_ID_SEPARATOR_RULE);
      await gw.ctx.hub.kick(internal);
      return {};
    }),
  );

}
