/**
 * Operator endpoints beside the HTTP API: GET /api/stats (the host's figures as JSON), GET /api/tap
 * (a channel's live messages as newline-delimited JSON, for the dashboard's inspector) and
 * GET /api/openapi.json (the API's description). Stats and tap take the API key or the dashboard token.
 */
import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { RtError, toErrorBody } from '../errors.js';
import { JSON_CODEC, type Encoded } from '../protocol/codecs.js';
import { assertChannel } from '../protocol/native.js';
import { Client } from '../runtime/client.js';
import { countRefusal } from '../runtime/instruments.js';
import type { ThreadContext } from '../runtime/context.js';
import { checkApiKey, checkOrigin, route } from './http-api.js';
import { errorStatus, queryParam, sendError, snapshot, statusLine, track } from './http.js';
import { countApiRequest } from './api-routes.js';
import { openApiDocument } from './openapi.js';
import { collectStats } from './stats-api.js';
import { getAndHead } from './head.js';
import { logInternal } from '../log.js';

/** Who the inspector is, as the channel's actor sees it (a presence channel lists it as a member). */
export const TAP_USER = 'rt-dashboard';
const TAP_KEEPALIVE_MS = 15_000;

/**
 * A read-only subscriber whose deliveries go down an HTTP response, one native JSON frame per line.
 * Subscribed with the operator's authority, so private channels can be inspected too.
 */
class TapClient extends Client {
  private unconfirmed = 0;
  private ended = false;
  private readonly keepalive: NodeJS.Timeout;

  constructor(
    private readonly ctx: ThreadContext,
    private readonly res: HttpResponse,
    private readonly state: { aborted: boolean },
  ) {
    super(ctx.hub.nextSocketId(), 'tap', JSON_CODEC);
    this.keepalive = setInterval(() => this.line('{"op":"ping"}'), TAP_KEEPALIVE_MS);
  }

  sendEncoded(data: Encoded): void {
    this.line(typeof data === 'string' ? data : Buffer.from(data).toString('utf8'));
  }

  line(text: string): void {
    if (this.ended || this.state.aborted) return;
    const ok = this.write(text);
    // An inspector that stopped reading is cut off rather than buffered for without limit.
    this.unconfirmed = ok ? 0 : this.unconfirmed + Buffer.byteLength(text) + 1;
    if (this.unconfirmed > this.ctx.config.maxBackpressure) {
      // Counted as every other subscriber cut off for this is (close 4008), so the operator sees it.
      countRefusal('slow_consumer');
      this.disconnect(4008, 'slow consumer', true);
    }
  }

  private write(text: string): boolean {
    let ok = true;
    this.res.cork(() => (ok = this.res.write(text + '\n')));
    return ok;
  }

  disconnect(code: number, reason: string, reconnect: boolean): void {
    if (this.ended) return;
    this.ended = true;
    // Written past the backpressure check: for an inspector cut off as slow, that check would find it
    // still over the limit and disconnect it again, recursing until the shard's stack overflowed.
    if (!this.state.aborted) this.write(JSON.stringify({ op: 'disconnect', code, reason, reconnect }));
    this.cleanup();
    if (!this.state.aborted) {
      this.state.aborted = true;
      this.res.cork(() => this.res.end());
    }
  }

  cleanup(): void {
    this.ended = true;
    clearInterval(this.keepalive);
    this.ctx.hub.remove(this);
  }
}

function tap(ctx: ThreadContext) {
  return (res: HttpResponse, httpReq: Parameters<Parameters<TemplatedApp['get']>[1]>[1]) => {
    const state = track(res);
    const req = snapshot(res, httpReq);
    let cors: Record<string, string> = {};
    let channel: string;
    try {
      cors = checkOrigin(ctx, req);
      checkApiKey(ctx, req, res, true);
      if (ctx.draining) throw new RtError('unavailable', 'server is shutting down', 503);
      const name = queryParam(req.query, 'channel');
      if (name === undefined) throw new RtError('bad_request', 'give the channel to inspect: /api/tap?channel=<name>');
      channel = assertChannel(name);
    } catch (err) {
      // Counted as every other API route counts its refusals: a key guessed at /api/tap shows too.
      countApiRequest(ctx.metrics, req.url, errorStatus(err));
      sendError(res, state, err, cors);
      return;
    }
    ctx.metrics.inc('rt_http_requests_total', { route: '/api/tap', status: '200' });
    const client = new TapClient(ctx, res, state);
    client.channelIdentity = new Map([[channel, { user: TAP_USER, info: { dashboard: true }, granted: true }]]);
    res.onAborted(() => {
      state.aborted = true;
      client.cleanup();
    });
    res.cork(() => {
      res.writeStatus(statusLine(200)).writeHeader('content-type', 'application/x-ndjson; charset=utf-8');
      res.writeHeader('cache-control', 'no-store').writeHeader('x-accel-buffering', 'no');
      for (const [k, v] of Object.entries(cors)) res.writeHeader(k, v);
    });
    ctx.hub.add(client);
    client.line(JSON.stringify({ op: 'tap', channel }));
    ctx.hub.subscribe(client, channel).then(
      (r) => client.line(JSON.stringify({ op: 'subscribed', channel, offset: r.offset, ...(r.members ? { members: r.members } : {}) })),
      (err) => {
        logInternal(err, 'an operator command');
        client.line(JSON.stringify({ op: 'error', error: toErrorBody(err) }));
        client.disconnect(4003, 'subscription refused', false);
      },
    );
  };
}

export function registerOperatorApi(app: TemplatedApp, ctx: ThreadContext): void {
  getAndHead(app, '/api/stats', route(ctx, 0, 'operator', async (c) => collectStats(c)));
  app.get('/api/tap', tap(ctx));
  // The description is public, like the docs it mirrors: it holds no data.
  getAndHead(app, '/api/openapi.json', route(ctx, 0, false, async () => openApiDocument()));
}
