/**
 * A connection as the hub sees it, whatever its transport. Transports subclass it; the hub only needs
 * its identity, its codec, a way to send already-encoded bytes, and a way to close it.
 */
import type { WebSocket } from 'uWebSockets.js';
import type { Encoded, WireCodec } from '../protocol/codecs.js';
import type { JwtClaims } from '../auth/jwt.js';
import type { ConnRef } from './messages.js';
import type { Publication } from '../protocol/native.js';
import type { TokenExpiry } from '../security/token-expiry.js';
import type { ConnKind } from './instruments.js';

export abstract class Client {
  /** Socket id: `<thread>.<unique>` (see hash.ts). */
  readonly id: string;
  readonly transport: string;
  codec: WireCodec;
  user?: string;
  info?: unknown;
  grants?: string[];
  /** Token expiry (seconds since epoch), when authenticated with an expiring token. */
  expiresAt?: number;
  /** The expiresAt a fresh token was asked for (see security/token-expiry.ts). */
  refreshAskedFor?: number;
  /** Wheel bucket of the thread's TokenExpiry holding this client. */
  expiryBucket?: number;
  /** The thread's expiry wheel, set when the hub adds the client. */
  expiry?: TokenExpiry;
  /**
   * Channels the connection is in. Created on its first subscribe: an empty Set costs ~150 B of heap,
   * the largest part of an idle connection (bench/memory.ts). Only the hub changes it (joinChannel,
   * leaveChannel).
   */
  private channelSet?: Set<string>;
  /** Channels with a subscribe request in flight, so a duplicate is refused rather than raced. */
  /** Created on first subscribe: most connections never need it, and idle ones should stay small. */
  pendingChannels?: Set<string>;
  /**
   * The native protocol's subscribe or unsubscribe of each channel still running, so that the next
   * one of the same channel waits for it (transports/channel-order.ts). Made when one is first in flight.
   */
  nativeChannelOps?: Map<string, Promise<void>>;
  closed = false;
  /** Labels the hub counts the connection under (rt_connections), so it is uncounted under the same ones. */
  kind?: ConnKind;
  /**
   * Set when the client rides a uWS WebSocket whose frames are exactly the codec's output: the hub
   * then delivers through uWS topics (one native publish per shard) instead of per-client sends.
   */
  ws?: WebSocket<unknown>;

  /**
   * Whether the connection's transport is a WebSocket (the metrics' `transport` label). A Socket.IO
   * socket is bound to its WebSocket only after its CONNECT packet is sent, but is on one from the start.
   */
  get onWebSocket(): boolean {
    return this.ws !== undefined;
  }
  /**
   * Identity a single subscription was authorized with when it is not the connection's own: a token
   * in that subscribe request, or the backend's auth endpoint vouching for that one channel.
   */
  channelIdentity?: Map<string, ChannelIdentity>;
  /**
   * Hidden channels (runtime/hidden-channels.ts) the connection is in or joining, and how it is in
   * them: `quiet` subscriptions only register it at the owner (a member that receives nothing), `sink`
   * ones deliver through sendEncoded rather than a uWS topic, so the transport sees each event. They
   * do not count against --max-channels-per-connection: their own limits bound them.
   */
  hidden?: Map<string, 'quiet' | 'sink'>;
  /**
   * The `data` each subscription was made with, when it had some: a replaced owner shard authorizes the
   * connection again (an actor's `authorize` reads it). Bounded by --max-payload per subscribe and
   * --max-channels-per-connection.
   */
  subscribeData?: Map<string, unknown>;
  /**
   * Set when the connection ends in a way its client may come back from (a Socket.IO session saved for
   * recovery): its presence memberships stay this long (ms) before the others see it leave.
   */
  presenceGraceMs?: number;

  constructor(id: string, transport: string, codec: WireCodec) {
    this.id = id;
    this.transport = transport;
    this.codec = codec;
  }

  get channels(): ReadonlySet<string> {
    return this.channelSet ?? NO_CHANNELS;
  }

  /** For the hub: records that the connection joined `channel`. */
  joinChannel(channel: string): void {
    (this.channelSet ??= new Set()).add(channel);
  }

  /** For the hub: forgets `channel`; false when the connection was not in it. */
  leaveChannel(channel: string): boolean {
    this.subscribeData?.delete(channel);
    return this.channelSet?.delete(channel) ?? false;
  }

  /** For the hub: the connection closed, it is in no channel. */
  leaveAll(): void {
    this.channelSet = undefined;
    this.subscribeData = undefined;
  }

  /** Sends bytes already encoded with this client's codec. */
  abstract sendEncoded(data: Encoded): void;

  /**
   * A publication of one of its channels that this connection was left out of (a `socket_id`, its own
   * whisper). A transport whose clients resume from the position they last saw (SSE's event id) moves
   * it past the publication, or a resume would deliver it after all.
   */
  excludedFrom?(pub: Publication): void;

  /** A channel actor removed this connection from `channel` (transports forget what they kept for it). */
  onKicked?(channel: string): void;

  /**
   * Ends a connection whose socket buffered more than --max-backpressure, the transport's way (see
   * transports/slow-consumer.ts); transports without it are not swept.
   */
  endSlowConsumer?(): void;

  /** Closes the connection, telling the client why and whether to reconnect. */
  abstract disconnect(code: number, reason: string, reconnect: boolean): void;

  authenticate(claims: JwtClaims): void {
    this.user = String(claims.sub);
    this.info = claims.user_info;
    this.grants = claims.channels;
    this.expiresAt = claims.exp;
    this.expiry?.schedule(this);
  }

  /**
   * The token expired: ask the client for a fresh one before `deadline` (seconds since epoch). Native
   * transports send `{ "op": "refresh", "deadline" }`; Socket.IO emits `token:expiring`.
   */
  tokenExpiring(_deadline: number): void {}

  /** No fresh token in time: close, telling the client why (Socket.IO overrides how). */
  tokenExpired(code: number, reason: string): void {
    this.disconnect(code, reason, true);
  }

  /** Who this connection is, as the owner of `channel` should see it (see channelIdentity). */
  connRef(channel?: string): ConnRef {
    const r: ConnRef = { id: this.id, transport: this.transport };
    const o = channel === undefined ? undefined : this.channelIdentity?.get(channel);
    const user = o?.user ?? this.user;
    const info = o && o.info !== undefined ? o.info : this.info;
    const grants = o?.grants ?? this.grants;
    if (user !== undefined) r.user = user;
    if (info !== undefined) r.info = info;
    if (grants !== undefined) r.grants = grants;
    if (o?.granted) r.granted = channel;
    if (o?.observer) r.observer = true;
    return r;
  }
}

const NO_CHANNELS: ReadonlySet<string> = new Set<string>();

export interface ChannelIdentity {
  user?: string;
  info?: unknown;
  grants?: string[];
  /** The connection's shard already authorized the subscription (auth endpoint): the owner need not check grants. */
  granted?: boolean;
  /** Subscribed to a presence channel to see its members come and go, without being one. */
  observer?: boolean;
  /**
   * When `user` was vouched for, in seconds: the token's `iat`, or the time the auth endpoint answered.
   * A revocation of the user at or after it (Hub.isRevoked) voids this identity, e.g. in a saved
   * Socket.IO session.
   */
  issuedAt?: number;
}

/** Close codes (4000–4999 are ours; see docs/protocol.md). */
export const CloseCode = {
  /** Server shutting down or restarting: reconnect (to any host) and resume. */
  SHUTDOWN: 1012,
  /** The shard serving this connection crashed and is being replaced: reconnect and resume. */
  RESTART: 1011,
  /** A frame over --max-payload. */
  MESSAGE_TOO_BIG: 1009,
  BAD_REQUEST: 4000,
  UNAUTHORIZED: 4001,
  /** Too slow to keep up: reconnect and resume from the last offset. */
  SLOW_CONSUMER: 4008,
  /** The connection kept sending past its rate limit after being told: do not reconnect at once. */
  RATE_LIMITED: 4029,
  /** The token expired and no fresh one came within --token-grace: reconnect with a new token. */
  TOKEN_EXPIRED: 4010,
  /** Disconnected by the backend (API). */
  DISCONNECTED: 4011,
  /**
   * Redis bridge: publications on one of the connection's channels were lost (Redis restarted without
   * persistence, or history no longer covers a gap). Reconnect and resume: the resume answers
   * `recovered: false` for that channel, so the client reloads its state.
   */
  RESYNC: 4012,
} as const;
