/**
 * A Pusher connection as the hub sees it: a uWS WebSocket whose frames are the Pusher codec's output,
 * so deliveries reach it through the `p` topics. It knows two ids: the hub's (`id`, which names its
 * thread) and the one its client and backend know (`socketId`, Pusher's `\d+.\d+` shape, which the
 * server SDKs check); the hub resolves the latter through its aliases for `socket_id` exclusion.
 */
import { randomInt } from 'node:crypto';
import type { WebSocket } from 'uWebSockets.js';
import type { Encoded } from '../../protocol/codecs.js';
import { Client, CloseCode } from '../../runtime/client.js';
import type { TokenBucket } from '../../security/token-bucket.js';
import { externalName, type PusherApp } from './apps.js';
import { errorFrame, PUSHER_CODEC, USER_MARK, WATCH_MARK } from './codec.js';
import type { Watchlist } from './watchlist.js';

export interface PusherSocketData {
  client?: PusherClient;
  app?: PusherApp;
  ip: string;
  /** Counted in the host's connection limits (released on close). */
  admitted: boolean;
  /** Counted in its app's maxConnections (released on close). */
  appCounted?: boolean;
  /** Set when the connection is refused: open() sends this pusher:error and closes. */
  refusal?: { code: number; message: string };
  gone?: boolean;
}

/** Pusher close codes (see docs/pusher.md): 4000–4099 do not reconnect, 4100 back off, 4200 reconnect now. */
export const PusherClose = {
  APP_NOT_FOUND: 4001,
  OVER_QUOTA: 4004,
  NO_PROTOCOL: 4008,
  UNSUPPORTED_PROTOCOL: 4007,
  UNAUTHORIZED: 4009,
  OVER_CAPACITY: 4100,
  RECONNECT: 4200,
  CLOSED_AFTER_INACTIVITY: 4202,
  REFUSED: 4300,
  RATE_LIMITED: 4301,
} as const;

// Socket ids are `<number>.<number>`: a random per-thread part and a counter keep them unique across
// threads, restarts and hosts (a collision needs the same 31-bit draw and the same counter).
const idBase = randomInt(1, 2 ** 31);
let idSeq = 0;
export function nextPusherSocketId(): string {
  return `${idBase}.${++idSeq}`;
}

export class PusherClient extends Client {
  readonly socketId = nextPusherSocketId();
  badFrames = 0;
  /** Every inbound frame (--rate-limit). */
  bucket?: TokenBucket;
  /** Client events (the app's maxClientEventsPerSecond), made on the first one. */
  clientEvents?: TokenBucket;
  /**
   * Per channel (internal name), the subscribe or unsubscribe still taking effect: the connection's next
   * one for that channel waits for it (subscriptions.ts, inOrder).
   * Made when one is first in flight: an empty Map is ~150 B, and idle connections should stay small.
   */
  pending?: Map<string, Promise<void>>;
  /** The signed-in user's watched users (watchlist events), when its sign-in named any. */
  watchlist?: Watchlist;

  constructor(id: string, readonly app: PusherApp, socket: WebSocket<PusherSocketData>) {
    super(id, 'pusher', PUSHER_CODEC);
    this.ws = socket as WebSocket<unknown>;
  }

  /** The same socket as `ws`, typed with this transport's data (one field, not two). */
  get socket(): WebSocket<PusherSocketData> {
    return this.ws as WebSocket<PusherSocketData>;
  }

  sendEncoded(data: Encoded): void {
    if (this.closed) return;
    if (typeof data === 'string' && data.startsWith(WATCH_MARK)) {
      this.watchlist?.changed(data.slice(2), data[1] === '+');
      return;
    }
    if (typeof data === 'string' && data.startsWith(USER_MARK)) {
      if (this.user === undefined) return;
      data = `{"channel":${JSON.stringify(`#server-to-user-${externalName(this.user)}`)},${data.slice(2)}`;
    }
    this.socket.send(data, false);
  }

  send(text: string): void {
    if (!this.closed) this.socket.send(text, false);
  }

  /** From the hub (shutdown, crash, kick, resync) in Pusher's terms: a pusher:error, then the close code. */
  disconnect(code: number, reason: string, reconnect: boolean): void {
    if (this.closed) return;
    let pcode: number;
    if (reconnect) pcode = PusherClose.RECONNECT;
    else if (code === CloseCode.SLOW_CONSUMER) pcode = PusherClose.RECONNECT;
    else if (code === CloseCode.RATE_LIMITED) pcode = PusherClose.RATE_LIMITED;
    else pcode = PusherClose.UNAUTHORIZED;
    this.close(pcode, reason);
  }

  override endSlowConsumer(): void {
    this.close(PusherClose.RECONNECT, 'slow consumer: reconnect');
  }

  close(code: number, message: string): void {
    if (this.closed) return;
    this.send(errorFrame(code, message));
    this.closed = true;
    this.socket.end(code, message.slice(0, 120));
  }
}
