// pusher-js (the real client, Node build) against the server, signing channel auth and user sign-in
// with the official `pusher` server SDK, as a Laravel/Node backend would. Plus a raw Pusher-protocol
// socket for frames pusher-js would never send.
import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import WebSocket from 'ws';
import { Inbox } from './inbox.js';
import { api } from './server.js';

export const APP = { id: '1001', key: 'app-key', secret: 'app-secret-0123456789' };
export const APP_B = { id: '2002', key: 'b-key', secret: 'b-secret-0123456789' };

type T = { teardown(fn: () => unknown): void };

export function sdk(port: number, app = APP, extra: Record<string, unknown> = {}): PusherServer {
  return new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port: String(port), useTLS: false, ...extra } as never);
}

export interface ClientOpts {
  app?: typeof APP;
  /** Presence member this client's backend vouches for. */
  member?: { user_id: string; user_info?: unknown };
  /** Signed-in user (pusher:signin). */
  user?: { id: string; user_info?: unknown };
  /** Return a wrong signature instead. */
  badAuth?: boolean;
  encryptionMasterKeyBase64?: string;
}

export function pusherClient(t: T, port: number, o: ClientOpts = {}): Pusher {
  const app = o.app ?? APP;
  const backend = sdk(port, app, o.encryptionMasterKeyBase64 ? { encryptionMasterKeyBase64: o.encryptionMasterKeyBase64 } : {});
  const p = new Pusher(app.key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      transport: 'ajax',
      endpoint: '/unused',
      customHandler: (params: { socketId: string; channelName: string }, cb: (err: Error | null, data: any) => void) => {
        const r = params.channelName.startsWith('presence-')
          ? backend.authorizeChannel(params.socketId, params.channelName, o.member ?? { user_id: 'anon' })
          : backend.authorizeChannel(params.socketId, params.channelName);
        if (o.badAuth) r.auth = `${app.key}:${'0'.repeat(64)}`;
        cb(null, r);
      },
    },
    userAuthentication: {
      transport: 'ajax',
      endpoint: '/unused',
      customHandler: (params: { socketId: string }, cb: (err: Error | null, data: any) => void) => {
        cb(null, backend.authenticateUser(params.socketId, o.user ?? { id: 'nobody' }));
      },
    },
  } as never);
  t.teardown(() => p.disconnect());
  return p;
}

export function connected(p: Pusher, timeoutMs = 5000): Promise<string> {
  if (p.connection.state === 'connected') return Promise.resolve(p.connection.socket_id);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pusher-js stayed ${p.connection.state}`)), timeoutMs);
    p.connection.bind('connected', () => {
      clearTimeout(timer);
      resolve(p.connection.socket_id);
    });
  });
}

/** Subscribes and resolves once subscription_succeeded arrived (with its data), rejects on subscription_error. */
export function subscribed(p: Pusher, name: string, timeoutMs = 5000): Promise<{ channel: any; data: any }> {
  const ch = p.subscribe(name);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no subscription answer for ${name}`)), timeoutMs);
    ch.bind('pusher:subscription_succeeded', (data: unknown) => {
      clearTimeout(timer);
      resolve({ channel: ch, data });
    });
    ch.bind('pusher:subscription_error', (err: unknown) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`subscription_error on ${name}: ${JSON.stringify(err)}`), { detail: err }));
    });
  });
}

/** The first `event` on a channel-like emitter (optionally matching pred). */
export function nextOn<V = any>(emitter: { bind(ev: string, fn: (...a: any[]) => void): unknown; unbind(ev: string, fn: (...a: any[]) => void): unknown }, event: string, pred: (v: V) => boolean = () => true, timeoutMs = 5000): Promise<V> {
  return new Promise((resolve, reject) => {
    const fn = (v: V) => {
      if (!pred(v)) return;
      clearTimeout(timer);
      emitter.unbind(event, fn);
      resolve(v);
    };
    const timer = setTimeout(() => {
      emitter.unbind(event, fn);
      reject(new Error(`timed out waiting for ${event}`));
    }, timeoutMs);
    emitter.bind(event, fn);
  });
}

/** A raw socket speaking the Pusher protocol, for hostile input and exact frames. */
export class RawPusher {
  readonly ws: WebSocket;
  private readonly inbox = new Inbox<any>((frames) => `timed out waiting for a frame; got: ${JSON.stringify(frames.slice(-5))}`);
  readonly frames = this.inbox.items;
  closed?: { code: number; reason: string };
  private closeWaiters: ((c: { code: number; reason: string }) => void)[] = [];

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('message', (data) => {
      this.inbox.add(JSON.parse(data.toString()));
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      for (const w of this.closeWaiters) w(this.closed);
    });
    this.ws.on('error', () => {});
  }

  static async open(t: T, url: string): Promise<RawPusher> {
    const c = new RawPusher(url);
    t.teardown(() => c.ws.close());
    await new Promise<void>((resolve, reject) => {
      c.ws.once('open', () => resolve());
      c.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
    return c;
  }

  send(v: unknown): void {
    this.ws.send(typeof v === 'string' || Buffer.isBuffer(v) ? v : JSON.stringify(v));
  }

  next(pred: (f: any) => boolean, timeoutMs = 5000): Promise<any> {
    return this.inbox.next(pred, timeoutMs);
  }

  event(name: string, timeoutMs?: number): Promise<any> {
    return this.next((f) => f.event === name, timeoutMs);
  }

  waitClose(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    if (this.closed) return Promise.resolve(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('socket not closed')), timeoutMs);
      this.closeWaiters.push((c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
  }
}

export const pusherOptions = (extra: Record<string, unknown> = {}) => ({ pusherAppId: APP.id, pusherKey: APP.key, pusherSecret: APP.secret, ...extra });

/** The next `event` on a pusher-js channel with the metadata pusher-js passes beside the data. */
export function nextWithMeta(ch: any, event: string, timeoutMs = 5000): Promise<{ data: any; meta: any }> {
  return new Promise((resolve, reject) => {
    const fn = (data: any, meta: any) => {
      clearTimeout(timer);
      ch.unbind(event, fn);
      resolve({ data, meta });
    };
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), timeoutMs);
    ch.bind(event, fn);
  });
}

/** Pusher connections per shard, from /metrics. */
export async function pusherConnectionsPerShard(http: string): Promise<number[]> {
  const text = (await api(http, '/metrics')).body as string;
  const per = new Map<string, number>();
  for (const m of text.matchAll(/^rt_connections\{([^}]*)\} (\d+)/gm)) {
    if (!m[1]!.includes('protocol="pusher"')) continue;
    const shard = /shard="([^"]+)"/.exec(m[1]!)?.[1] ?? /thread="([^"]+)"/.exec(m[1]!)?.[1] ?? '?';
    per.set(shard, (per.get(shard) ?? 0) + Number(m[2]));
  }
  return [...per.values()];
}

/** Every `pusher:subscription_count` a pusher-js channel receives, in order. */
export function subscriptionCounts(channel: any): number[] {
  const seen: number[] = [];
  channel.bind('pusher:subscription_count', (d: { subscription_count: number }) => seen.push(d.subscription_count));
  return seen;
}
