/**
 * Pusher watchlist events (docs/pusher.md, "Watchlist events"). A signed-in connection joins its
 * user's hidden online channel as a member (runtime/hidden-channels.ts): presence there is the user's
 * online status, one join and one leave per user across shards and hosts, swept with a dead host. A
 * watcher observes the online channel of each id in its signed `watchlist` without becoming a member,
 * and this file turns those joins and leaves into `pusher_internal:watchlist_events`.
 */
import { toErrorBody } from '../../errors.js';
import { onlineChannel } from '../../runtime/hidden-channels.js';
import type { PusherClient } from './client.js';
import { errorFrame, frame } from './codec.js';
import type { PusherGateway } from './gateway.js';

/** The longest user id accepted in a watchlist: the same bound as a signed-in user's own id. */
const MAX_ID_LENGTH = 200;

export type ParsedWatchlist = { ids: string[]; dropped: number } | { error: string };

/**
 * The signed `watchlist`: absent, or a list of non-empty strings or integers. Duplicates count once; the user's own
 * id is left out (its own connection is proof it is online); past `max` distinct ids the rest are
 * dropped and counted, so the client can be told. Anything else is refused as a whole.
 */
export function parseWatchlist(raw: unknown, max: number, self: string): ParsedWatchlist {
  if (raw === undefined || raw === null) return { ids: [], dropped: 0 };
  if (!Array.isArray(raw)) return { error: 'watchlist refused: user_data.watchlist must be a list of user ids (strings or integers)' };
  const ids = new Set<string>();
  const extra = new Set<string>();
  for (const entry of raw) {
    // Integers (Laravel's ids) count as their text, as the signed-in user's own id does (socket.ts).
    const v = typeof entry === 'number' && Number.isSafeInteger(entry) ? String(entry) : entry;
    if (typeof v !== 'string' || v.length === 0 || v.length > MAX_ID_LENGTH) {
      return { error: `watchlist refused: every entry of user_data.watchlist must be a user id (a string of 1-${MAX_ID_LENGTH} characters, or an integer below 2^53)` };
    }
    if (v === self || ids.has(v)) continue;
    if (ids.size < max) ids.add(v);
    else extra.add(v);
  }
  return { ids: [...ids], dropped: extra.size };
}

type WatchlistEvent = { name: 'online' | 'offline'; user_ids: string[] };

function eventsFrame(events: WatchlistEvent[]): string {
  return frame('pusher_internal:watchlist_events', JSON.stringify({ events }));
}

/**
 * One connection's view of its watched users. The status each user was last reported with is kept, so
 * a change is sent once however it reaches this shard (a join seen both in the subscribe answer and as
 * an event, a Redis reconnect re-registering members), and nothing is sent before the first snapshot.
 */
export class Watchlist {
  private readonly status = new Map<string, boolean>();
  private started = false;

  /** `ids`: the watched users, in the watchlist's order (which the first report keeps). */
  constructor(private readonly send: (text: string) => void, private readonly ids: readonly string[]) {}

  /** A watched user's online channel answered: whether the user is online now. Precedes its events. */
  known(user: string, online: boolean): void {
    this.status.set(user, online);
  }

  /** A join (`online`) or leave of a watched user's online channel, whose only member is that user. */
  changed(user: string, online: boolean): void {
    const was = this.status.get(user);
    this.status.set(user, online);
    if (this.started && was !== online) this.send(eventsFrame([{ name: online ? 'online' : 'offline', user_ids: [user] }]));
  }

  /** The first report: who is online and who is not, once every watched channel answered. */
  start(): void {
    this.started = true;
    const online: string[] = [];
    const offline: string[] = [];
    for (const user of this.ids) {
      const on = this.status.get(user);
      // Unknown: its channel could not be watched (the client was told why).
      if (on !== undefined) (on ? online : offline).push(user);
    }
    const events: WatchlistEvent[] = [];
    if (online.length) events.push({ name: 'online', user_ids: online });
    if (offline.length) events.push({ name: 'offline', user_ids: offline });
    if (events.length) this.send(eventsFrame(events));
  }
}

/**
 * After a first sign-in: the connection makes `user` online, and watches the ids of its signed
 * `watchlist`. Failures are told as `pusher:error` (code null) and keep the connection and sign-in.
 */
export function startWatchlist(gw: PusherGateway, client: PusherClient, user: string, raw: unknown): void {
  const app = client.app;
  if (app.maxWatchlistSize === 0) return;
  const hub = gw.ctx.hub;
  const identities = (client.channelIdentity ??= new Map());
  const warn = (msg: string): void => {
    if (!client.closed) client.send(errorFrame(null, msg));
  };

  const own = onlineChannel(user, app.suffix);
  identities.set(own, { user, granted: true });
  const online = hub.subscribe(client, own, undefined, undefined, undefined, 'quiet').then(
    () => undefined,
    (err) => {
      identities.delete(own);
      warn(`watchlist: this connection could not be marked online (${toErrorBody(err).message}); watchers do not see it`);
    },
  );

  const parsed = parseWatchlist(raw, app.maxWatchlistSize, user);
  if ('error' in parsed) return warn(parsed.error);
  if (parsed.dropped > 0) warn(`watchlist trimmed: ${parsed.dropped} user ids past this app's limit of ${app.maxWatchlistSize} are not watched`);
  if (parsed.ids.length === 0) return;
  // Watching starts once this connection counts as online, so the first report also tells the client
  // that its own user is visible to its watchers.
  void online.then(() => watch(gw, client, parsed.ids, warn));
}

function watch(gw: PusherGateway, client: PusherClient, ids: string[], warn: (msg: string) => void): void {
  if (client.closed) return;
  const app = client.app;
  const hub = gw.ctx.hub;
  const identities = (client.channelIdentity ??= new Map());
  const list = new Watchlist((text) => client.send(text), ids);
  client.watchlist = list;
  const failed: string[] = [];
  const watches = ids.map((id) => {
    const ch = onlineChannel(id, app.suffix);
    identities.set(ch, { observer: true, granted: true });
    const snapshot = (res: { members?: { user_id: string }[] }): void => list.known(id, res.members?.some((m) => m.user_id === id) ?? false);
    return hub.subscribe(client, ch, undefined, undefined, snapshot, 'sink').then(
      () => undefined,
      (err) => {
        identities.delete(ch);
        failed.push(`${id.slice(0, 40)}: ${toErrorBody(err).message}`);
      },
    );
  });
  void Promise.all(watches).then(() => {
    if (client.closed) return;
    list.start();
    if (failed.length) warn(`watchlist: ${failed.length} watched users cannot be followed for now (${failed.slice(0, 3).join('; ')})`);
  });
}
