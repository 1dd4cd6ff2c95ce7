// pusher-js clients signed in with a watchlist (the `pusher` SDK's authenticateUser, as a backend
// would), recording what pusher-js hands to user.watchlist.bind('online' | 'offline'), and a sentinel
// for "nothing else arrived" (test/pusher-watchlist*.test.ts).
import type Pusher from 'pusher-js';
import { APP, connected, nextOn, pusherClient, sdk } from './pusher.js';
import { Inbox } from './inbox.js';

type T = { teardown(fn: () => unknown): void };

export type Ev = { name: string; user_ids: string[] };

/** Every watchlist event pusher-js hands to user.watchlist.bind('online' | 'offline'), in order. */
export class Watcher {
  private readonly inbox = new Inbox<Ev>((events) => `no watchlist event; got ${JSON.stringify(events)}`);
  readonly events = this.inbox.items;
  constructor(readonly p: Pusher) {
    for (const name of ['online', 'offline']) {
      (p as any).user.watchlist.bind(name, (e: Ev) => this.inbox.add({ name: e.name, user_ids: [...e.user_ids] }));
    }
  }
  /** The first event (already seen or still to come) matching pred; it is consumed. */
  next(pred: (e: Ev) => boolean, timeoutMs = 10_000): Promise<Ev> {
    return this.inbox.next(pred, timeoutMs);
  }
}

export const is = (name: string, ...ids: string[]) => (e: Ev) => e.name === name && [...e.user_ids].sort().join() === [...ids].sort().join();

/** A pusher-js client signed in as `id` with `watchlist`, connected, with its watchlist events recorded. */
export async function signIn(t: T, port: number, id: string, watchlist?: unknown, app = APP): Promise<Watcher> {
  const user: Record<string, unknown> = { id };
  if (watchlist !== undefined) user.watchlist = watchlist;
  const p = pusherClient(t, port, { app, user: user as never });
  const w = new Watcher(p);
  await connected(p);
  p.signin();
  return w;
}

/** Waits until the user's connection received the sentinel sent through the backend after everything before it. */
export async function sentinel(port: number, w: Watcher, userId: string, app = APP): Promise<void> {
  const got = nextOn((w.p as any).user, 'sentinel');
  await sdk(port, app).sendToUser(userId, 'sentinel', {});
  await got;
}

