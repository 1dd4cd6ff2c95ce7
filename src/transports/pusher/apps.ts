/**
 * Pusher apps: who may connect at /app/<key> and call /apps/<id>/…, with what secret and limits.
 * The first app is the default one: its channels are the channels every other transport sees. Other
 * apps' channels get an internal suffix, so `news` of app B is a different channel (its own actor,
 * history and presence) from `news` of app A. The suffix starts with a space, which no client of any
 * transport can put in a channel name, so nobody reaches another app's channel by spelling it.
 */
import { ConfigError, optionName } from '../../config/load.js';
import type { ServerConfig } from '../../config/schema.js';
import { APP_SEPARATOR } from '../../runtime/app-scope.js';
import { originPatternProblem } from '../../security/origins.js';

export interface WebhookTarget {
  url: string;
  /** Pusher event names to send (channel_occupied, …); all when absent. */
  eventTypes?: string[];
}

export interface PusherApp {
  /** Position in the app list (the same on every shard): the app's cell in AppConnections. */
  index: number;
  id: string;
  key: string;
  secret: string;
  /** Internal channel-name suffix ('' for the default app). */
  suffix: string;
  /** Browser origins allowed to connect to this app (besides --allowed-origins); empty = the global rule only. */
  allowedOrigins: string[];
  /** Clients may send `client-` events on private and presence channels. */
  enableClientMessages: boolean;
  /** Client events one connection may send per second (Pusher's limit is 10). */
  maxClientEventsPerSecond: number;
  /** Largest event payload (`data`) accepted from a client or the HTTP API, in bytes (Pusher: 10 KB). */
  maxEventPayload: number;
  /** Channels one event may be triggered on through the HTTP API (Pusher: 100). */
  maxEventChannels: number;
  /** Events one batch_events call may carry (Pusher: 10). */
  maxBatchSize: number;
  /** Open connections this app may have on this host, across its shards; 0 = no limit of its own. */
  maxConnections: number;
  /**
   * Distinct user ids a signed-in user's watchlist may name; the rest are not watched (docs/pusher.md,
   * watchlist events). 0 turns watchlist events off for the app: sign-in then costs no online channel.
   */
  maxWatchlistSize: number;
  /**
   * Subscribers of this app's non-presence channels receive `pusher_internal:subscription_count` when
   * the channel's subscriber count changes (throttled; docs/pusher.md). Off by default, as on Pusher.
   */
  subscriptionCountEvents: boolean;
  webhooks: WebhookTarget[];
}

export const APP_DEFAULTS = {
  enableClientMessages: true,
  maxClientEventsPerSecond: 10,
  maxEventPayload: 10 * 1024,
  maxEventChannels: 100,
  maxBatchSize: 10,
  maxConnections: 0,
  maxWatchlistSize: 100,
  subscriptionCountEvents: false,
} as const;

export const WEBHOOK_EVENTS = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed', 'client_event', 'cache_miss'] as const;

const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const KEY_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/** Separator of the internal suffix: a space, which validChannelName refuses everywhere else. */
const SEP = APP_SEPARATOR;

export function internalName(app: PusherApp, channel: string): string {
  return app.suffix ? channel + app.suffix : channel;
}

/**
 * A user id of `app` as the hub indexes it: users are per app, like channels. Undefined for an id
 * holding the separator: the default app has no suffix, so its user `42 @admin` would be app admin's
 * user 42, reachable (sendToUser, terminate_connections, sign-in) with the default app's credentials.
 */
export function internalUser(app: PusherApp, id: string): string | undefined {
  return id.includes(SEP) ? undefined : id + app.suffix;
}

export { USER_ID_SEPARATOR_RULE } from '../../runtime/app-scope.js';

/** The channel name a Pusher client of the channel's app knows. */
export function externalName(internal: string): string {
  const i = internal.indexOf(SEP);
  return i < 0 ? internal : internal.slice(0, i);
}

/** Whether an internal channel name belongs to `app`. */
export function belongsTo(app: PusherApp, internal: string): boolean {
  if (app.suffix) return internal.endsWith(app.suffix);
  return !internal.includes(SEP);
}

function fail(key: string, msg: string): never {
  throw new ConfigError(key, msg);
}

/** How `id`, `key` and `secret` are named in errors: `<app>.id` in pusherApps, the option as set for the flags' app. */
type FieldNames = Record<'id' | 'key' | 'secret', { name: string; key: string }>;

function str(v: unknown, field: { name: string; key: string }, re: RegExp, what: string): string {
  if (typeof v !== 'string' && typeof v !== 'number') fail(field.key, `${field.name} must be a string (${what})`);
  const s = String(v);
  if (!re.test(s)) fail(field.key, `${field.name} ${JSON.stringify(s).slice(0, 80)} is not valid: ${what}`);
  return s;
}

/** `min` is 1 for limits where 0 would refuse every event (0 does not mean "no limit" there). */
function posInt(v: unknown, def: number, where: string, max: number, min = 0): number {
  if (v === undefined) return def;
  if (!Number.isInteger(v) || (v as number) < min || (v as number) > max) fail('pusherApps', `${where} must be an integer from ${min} to ${max}`);
  return v as number;
}

function parseApp(raw: unknown, w: string, index: number, names?: FieldNames): PusherApp {
  const isDefault = index === 0;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) fail('pusherApps', `${w} must be an object { id, key, secret, … }`);
  const o = raw as Record<string, unknown>;
  const known = new Set(['id', 'key', 'secret', 'allowedOrigins', 'enableClientMessages', 'maxClientEventsPerSecond', 'maxEventPayload', 'maxEventChannels', 'maxBatchSize', 'maxConnections', 'maxWatchlistSize', 'subscriptionCountEvents', 'webhooks']);
  for (const k of Object.keys(o)) if (!known.has(k)) fail('pusherApps', `${w}: unknown key "${k}"; known keys: ${[...known].join(', ')}`);
  const field = (f: 'id' | 'key' | 'secret') => names?.[f] ?? { name: `${w}.${f}`, key: 'pusherApps' };
  const id = str(o.id, field('id'), ID_RE, '1-64 letters, digits, _ . -');
  const key = str(o.key, field('key'), KEY_RE, '1-128 letters, digits, _ . -');
  if (typeof o.secret !== 'string' || o.secret.length < 8) fail(field('secret').key, `${field('secret').name} must be a string of at least 8 characters`);
  let allowedOrigins: string[] = [];
  if (o.allowedOrigins !== undefined) {
    if (!Array.isArray(o.allowedOrigins) || !o.allowedOrigins.every((x) => typeof x === 'string')) fail('pusherApps', `${w}.allowedOrigins must be a list of origins`);
    allowedOrigins = o.allowedOrigins as string[];
    for (const entry of allowedOrigins) {
      const problem = originPatternProblem(entry);
      if (problem) fail('pusherApps', `${w}.allowedOrigins: ${problem}`);
    }
  }
  if (o.enableClientMessages !== undefined && typeof o.enableClientMessages !== 'boolean') fail('pusherApps', `${w}.enableClientMessages must be true or false`);
  if (o.subscriptionCountEvents !== undefined && typeof o.subscriptionCountEvents !== 'boolean') fail('pusherApps', `${w}.subscriptionCountEvents must be true or false`);
  const webhooks: WebhookTarget[] = [];
  if (o.webhooks !== undefined) {
    if (!Array.isArray(o.webhooks)) fail('pusherApps', `${w}.webhooks must be a list of { url, eventTypes? }`);
    o.webhooks.forEach((h: unknown, j: number) => {
      const hw = `${w}.webhooks[${j}]`;
      const hook = (h && typeof h === 'object' ? h : {}) as { url?: unknown; eventTypes?: unknown };
      let u: URL | undefined;
      try {
        u = new URL(String(hook.url));
      } catch {
        u = undefined;
      }
      if (typeof hook.url !== 'string' || !u || (u.protocol !== 'http:' && u.protocol !== 'https:')) fail('pusherApps', `${hw}.url must be an http(s) URL`);
      try {
        // Sent decoded as basic auth (webhooks.ts): a '%' that is no escape threw there, in every shard.
        decodeURIComponent(u.username);
        decodeURIComponent(u.password);
      } catch {
        fail('pusherApps', `${hw}.url: its user name or password has a '%' that is not a percent-escape: write '%' as %25`);
      }
      let eventTypes: string[] | undefined;
      if (hook.eventTypes !== undefined) {
        if (!Array.isArray(hook.eventTypes) || !hook.eventTypes.every((e) => (WEBHOOK_EVENTS as readonly unknown[]).includes(e))) {
          fail('pusherApps', `${hw}.eventTypes must list some of ${WEBHOOK_EVENTS.join(', ')}`);
        }
        eventTypes = hook.eventTypes as string[];
      }
      webhooks.push(eventTypes ? { url: hook.url, eventTypes } : { url: hook.url });
    });
  }
  return {
    index,
    id,
    key,
    secret: o.secret,
    suffix: isDefault ? '' : `${SEP}${id}`,
    allowedOrigins,
    enableClientMessages: (o.enableClientMessages as boolean | undefined) ?? APP_DEFAULTS.enableClientMessages,
    maxClientEventsPerSecond: posInt(o.maxClientEventsPerSecond, APP_DEFAULTS.maxClientEventsPerSecond, `${w}.maxClientEventsPerSecond`, 1_000_000),
    maxEventPayload: posInt(o.maxEventPayload, APP_DEFAULTS.maxEventPayload, `${w}.maxEventPayload`, 64 * 1024 * 1024, 1),
    maxEventChannels: posInt(o.maxEventChannels, APP_DEFAULTS.maxEventChannels, `${w}.maxEventChannels`, 10_000, 1),
    maxBatchSize: posInt(o.maxBatchSize, APP_DEFAULTS.maxBatchSize, `${w}.maxBatchSize`, 10_000, 1),
    maxConnections: posInt(o.maxConnections, APP_DEFAULTS.maxConnections, `${w}.maxConnections`, 100_000_000),
    maxWatchlistSize: posInt(o.maxWatchlistSize, APP_DEFAULTS.maxWatchlistSize, `${w}.maxWatchlistSize`, 1000),
    subscriptionCountEvents: (o.subscriptionCountEvents as boolean | undefined) ?? APP_DEFAULTS.subscriptionCountEvents,
    webhooks,
  };
}

/**
 * The configured apps, validated: the flags/env app first (if any), then the `pusherApps` list. Empty
 * means the gateway is off. Throws a ConfigError naming the bad key.
 */
export function resolveApps(cfg: ServerConfig): PusherApp[] {
  const raws: unknown[] = [];
  const single = [cfg.pusherAppId, cfg.pusherKey, cfg.pusherSecret];
  if (single.some(Boolean)) {
    if (!single.every(Boolean)) {
      const missing = (['pusherAppId', 'pusherKey', 'pusherSecret'] as const).find((k) => !cfg[k])!;
      fail(missing, 'the Pusher gateway needs --pusher-app-id, --pusher-key and --pusher-secret together (or PUSHER_APP_ID, PUSHER_APP_KEY, PUSHER_APP_SECRET)');
    }
    const app: Record<string, unknown> = { id: cfg.pusherAppId, key: cfg.pusherKey, secret: cfg.pusherSecret };
    // The one per-app option with a flag of its own: it is opt-in, and the flags' app is the common case.
    if (cfg.pusherSubscriptionCountEvents) app.subscriptionCountEvents = true;
    raws.push(app);
  }
  if (!Array.isArray(cfg.pusherApps)) fail('pusherApps', `${optionName(cfg, 'pusherApps')} must be a list of { id, key, secret, … } objects`);
  raws.push(...cfg.pusherApps);
  const fromFlags = raws.length - cfg.pusherApps.length;
  // The flags' app is named by its options as the user set them (--pusher-secret, RT_PUSHER_SECRET,
  // pusherSecret in the config file), not as an app of a list the user never wrote.
  const named = (key: 'pusherAppId' | 'pusherKey' | 'pusherSecret') => ({ name: optionName(cfg, key), key });
  const flagNames: FieldNames = { id: named('pusherAppId'), key: named('pusherKey'), secret: named('pusherSecret') };
  const apps = raws.map((r, i) =>
    i < fromFlags ? parseApp(r, 'the --pusher-* app', i, flagNames) : parseApp(r, `${optionName(cfg, 'pusherApps', { where: false })}[${i - fromFlags}]`, i),
  );
  const ids = new Set<string>();
  const keys = new Set<string>();
  for (const a of apps) {
    if (ids.has(a.id)) fail('pusherApps', `two Pusher apps have the id ${a.id}`);
    if (keys.has(a.key)) fail('pusherApps', `two Pusher apps have the key ${a.key}`);
    ids.add(a.id);
    keys.add(a.key);
  }
  return apps;
}

/** How many Pusher apps the configuration has (0 when none, or when it is invalid: the start then fails anyway). */
export function pusherAppCount(cfg: ServerConfig): number {
  try {
    return resolveApps(cfg).length;
  } catch {
    return 0;
  }
}

export class AppRegistry {
  private readonly byKey = new Map<string, PusherApp>();
  private readonly byId = new Map<string, PusherApp>();
  constructor(readonly apps: readonly PusherApp[]) {
    for (const a of apps) {
      this.byKey.set(a.key, a);
      this.byId.set(a.id, a);
    }
  }
  get enabled(): boolean {
    return this.apps.length > 0;
  }
  withKey(key: string): PusherApp | undefined {
    return this.byKey.get(key);
  }
  withId(id: string): PusherApp | undefined {
    return this.byId.get(id);
  }
  /** The app an internal channel name belongs to. */
  ofChannel(internal: string): PusherApp | undefined {
    const i = internal.indexOf(SEP);
    return i < 0 ? this.apps[0] : this.byId.get(internal.slice(i + SEP.length));
  }
}
