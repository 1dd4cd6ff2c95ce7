/**
 * Pusher webhooks, per app: channel_occupied / channel_vacated and member_added / member_removed, and
 * client_event and cache_miss (from the connections of this shard). The lifecycle events come, on one
 * host, from the channel actors this shard owns (once per host whatever shard the connections are on);
 * with the Redis bridge, from this shard's broker, which reports the cluster-wide transitions its Redis
 * writes decided atomically (src/bridge/scripts.ts COUNT, JOIN, LEAVE, SWEEP) — so a channel occupied
 * on two hosts is occupied once, and a dead host's channels are vacated by the survivor that sweeps it.
 * Events are batched for a
 * short window and POSTed as Pusher does: `{ time_ms, events }` with `X-Pusher-Key` and
 * `X-Pusher-Signature` (HMAC-SHA256 of the body with the app secret). A failed delivery is retried
 * with exponential backoff; sending never blocks the shard (fetch is asynchronous, queues are bounded).
 */
import type { ChannelLifecycle } from '../../actors/channel-actor.js';
import { urlForLog, type Logger } from '../../log.js';
import { isHiddenChannel } from '../../runtime/hidden-channels.js';
import { externalName, type AppRegistry, type PusherApp, type WebhookTarget } from './apps.js';
import type { PusherClient } from './client.js';
import { wireData } from './codec.js';
import type { PusherGateway, PusherHooks } from './gateway.js';
import { sign } from './signature.js';

/** How long events are gathered before one POST. */
export const WEBHOOK_BATCH_MS = 250;
/** Events per POST at most. */
const MAX_EVENTS_PER_POST = 100;
/** Retries of a failed POST, 1 s apart and doubling (1, 2, 4, 8, 16, 32 s). */
const RETRIES = 6;
const TIMEOUT_MS = 10_000;
/** Events waiting for one endpoint at most; past it the oldest are dropped (and logged). */
const MAX_QUEUED = 10_000;

type WebhookEvent = Record<string, unknown> & { name: string };

/**
 * Where a webhook URL POSTs, and how it is named in the log. Credentials in the URL
 * (`https://user:pass@app.example/hook`, the usual way to protect a webhook route with basic auth) go in
 * an Authorization header, as curl and Guzzle send them: fetch refuses such a URL outright. The log
 * names the endpoint without them and without its query, which often carries a token too.
 */
export function webhookDestination(url: string): { url: string; authorization?: string; shown: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { url, shown: '(an invalid webhook URL)' };
  }
  const shown = urlForLog(u);
  if (!u.username && !u.password) return { url, shown };
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  u.username = '';
  u.password = '';
  return { url: u.href, authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`, shown };
}

class Endpoint {
  private queue: WebhookEvent[] = [];
  private timer?: NodeJS.Timeout;
  private dropped = 0;
  private readonly dest: ReturnType<typeof webhookDestination>;

  constructor(private readonly app: PusherApp, private readonly target: WebhookTarget, private readonly log: Logger) {
    this.dest = webhookDestination(target.url);
  }

  wants(name: string): boolean {
    return !this.target.eventTypes || this.target.eventTypes.includes(name);
  }

  push(e: WebhookEvent): void {
    if (this.queue.length >= MAX_QUEUED) {
      this.queue.shift();
      if (this.dropped++ % 1000 === 0) this.log.warn(`pusher webhooks: ${this.dest.shown} is not keeping up; oldest events dropped`);
    }
    this.queue.push(e);
    this.timer ??= setTimeout(() => this.flush(), WEBHOOK_BATCH_MS);
  }

  /** Sends what is queued now; resolves when each POST's first attempt ended (retries go on after). */
  flush(): Promise<unknown> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const posts: Promise<void>[] = [];
    while (this.queue.length > 0) {
      const events = this.queue.splice(0, MAX_EVENTS_PER_POST);
      posts.push(this.post(JSON.stringify({ time_ms: Date.now(), events }), 0));
    }
    return Promise.allSettled(posts);
  }

  private async post(body: string, attempt: number): Promise<void> {
    let why: string;
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json', 'x-pusher-key': this.app.key, 'x-pusher-signature': sign(this.app.secret, body) };
      if (this.dest.authorization) headers.authorization = this.dest.authorization;
      const res = await fetch(this.dest.url, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(TIMEOUT_MS),
        redirect: 'manual',
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) return;
      why = `HTTP ${res.status}`;
    } catch (err) {
      // The driver's message may quote the URL (credentials, query): the log names it as `shown`.
      why = (err as Error).message.split(this.target.url).join(this.dest.shown).split(this.dest.url).join(this.dest.shown);
    }
    if (attempt >= RETRIES) {
      this.log.warn(`pusher webhooks: giving up on a batch for ${this.dest.shown} after ${attempt + 1} attempts (${why})`);
      return;
    }
    const delay = 1000 * 2 ** attempt;
    setTimeout(() => void this.post(body, attempt + 1), delay).unref();
  }
}

export interface Webhooks {
  hooks: PusherHooks;
  /** Reports a lifecycle event; true when the channel's app has webhooks (an app's channel, not hidden). */
  observe(e: ChannelLifecycle): boolean;
  /**
   * On a graceful stop: sends what is still gathered at once and waits (at most `ms`) for those POSTs,
   * so the vacated/member_removed events of the subscribers this host drops still leave.
   */
  flush(ms: number): Promise<void>;
}

/** Undefined when no app has webhooks. */
export function startWebhooks(gw: PusherGateway): Webhooks | undefined {
  const apps: AppRegistry = gw.apps;
  const byApp = new Map<PusherApp, Endpoint[]>();
  for (const app of apps.apps) if (app.webhooks.length) byApp.set(app, app.webhooks.map((w) => new Endpoint(app, w, gw.ctx.log)));
  if (byApp.size === 0) return undefined;
  const emit = (app: PusherApp | undefined, e: WebhookEvent): void => {
    if (!app) return;
    for (const ep of byApp.get(app) ?? []) if (ep.wants(e.name)) ep.push(e);
  };
  return {
    async flush(ms) {
      let timer: NodeJS.Timeout | undefined;
      const all = [...byApp.values()].flat().map((ep) => ep.flush());
      await Promise.race([Promise.allSettled(all), new Promise((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
    },
    observe(e) {
      // The server's own channels (a user's online channel for watchlists) are not the app's channels.
      if (isHiddenChannel(e.ch)) return false;
      const app = apps.ofChannel(e.ch);
      if (!app || !byApp.has(app)) return false;
      const channel = externalName(e.ch);
      if ('user' in e) emit(app, { name: e.t, channel, user_id: externalUser(e.user, app) });
      else emit(app, { name: `channel_${e.t}`, channel });
      return true;
    },
    hooks: {
      clientEvent(app, internal, event, data, client: PusherClient) {
        const e: WebhookEvent = { name: 'client_event', channel: externalName(internal), event, data: wireData(data), socket_id: client.socketId };
        const user = client.channelIdentity?.get(internal)?.user;
        if (user !== undefined && internal.startsWith('presence-')) e.user_id = user;
        emit(app, e);
      },
      cacheMiss(app, internal) {
        emit(app, { name: 'cache_miss', channel: externalName(internal) });
      },
    },
  };
}

function externalUser(user: string, app: PusherApp): string {
  return app.suffix && user.endsWith(app.suffix) ? user.slice(0, -app.suffix.length) : user;
}
