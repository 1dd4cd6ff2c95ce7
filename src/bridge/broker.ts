/**
 * The broker seam between channel actors and whatever carries a channel beyond one host. Without one
 * (the embedded default) an actor keeps its offsets, history and presence in memory; with one, the
 * broker is the authority for the channel's sequence, history, presence and counts, and the actor only
 * relays what its channel's subscription brings to the local threads.
 *
 * Names follow Centrifuge's split: a Broker carries publications and history, presence rides along.
 */
import type { Member, Publication, StreamPosition } from '../protocol/native.js';
import type { ChannelInfo } from '../runtime/messages.js';
import type { Fence } from './lease.js';

/** How much of a channel's stream is kept for resume. */
export interface HistoryBounds {
  size: number;
  ttlMs: number;
}

/** Publication body as it travels through the broker. */
export interface BrokerMessage {
  event: string;
  /** May be a carrier of its encoded payload (encoded-payload.ts): JSON text then travels as such. */
  data: unknown;
  /** Socket id excluded from delivery on every host. */
  exclude?: string;
  /** The sender's user on a presence channel's client event (Publication.user). */
  user?: string;
}

/** What a channel's subscription delivers to the actor that owns it on this host. */
export interface ChannelSink {
  /** A sequenced publication, in the channel's total order (gaps are possible after a reconnect). */
  publication(pub: Publication, epoch: string, exclude: string | undefined): void;
  /** A cluster-wide presence change: the first connection of a user joined, or its last one left. */
  presence(kind: 'join!' | 'leave!', member: Member, exclude: string | undefined): void;
  /**
   * A message a backend published without a sequence (Laravel's broadcaster), already parsed. Every
   * host subscribed to the channel receives it; publishing it with `claim` sequences it exactly once.
   */
  ingest(msg: BrokerMessage, claim: string): void;
  /** The broker's connections came back: re-register what the actor holds and look for a gap. */
  recover(): void;
  /**
   * The channel's subscriber count on every host changed to `total` (sent only for channels whose count
   * is announced: RedisBrokerOptions.countWanted), in the order the changes happened.
   */
  count(total: number): void;
}

export interface HistorySlice {
  pubs: Publication[];
  /** False when some publication after the requested offset is no longer kept. */
  recovered: boolean;
  /** When each of `pubs` was written (epoch ms, by the broker's clock). */
  times?: number[];
}

export interface BrokerStats {
  /** Backend messages that could not be parsed (logged and dropped). */
  invalid: number;
  /** Publications fetched from history to fill a gap in a subscription. */
  recovered: number;
  /** Times a channel's local subscribers were told to resync (gap not recoverable, or stream reset). */
  resyncs: number;
  /** Broker operations that failed (Redis unreachable, timeouts). */
  errors: number;
}

export interface Broker {
  /** This participant's id in cluster-wide state (one per shard incarnation). */
  readonly node: string;
  readonly stats: BrokerStats;
  /** Whether the broker can currently reach its backend. */
  readonly up: boolean;
  /** Subscribes the channel on this host and returns its current position (after the subscription took). */
  attach(channel: string, sink: ChannelSink, bounds: HistoryBounds): Promise<StreamPosition>;
  /** Stops this host's subscription to the channel. */
  detach(channel: string): void;
  /**
   * Sequences a publication cluster-wide (next offset, history, fan-out to every host). With `claim`,
   * only the first caller presenting that claim publishes; the others get null. With `fence`, the
   * publish happens only while that lease is still held (else it fails with code `moved`).
   */
  publish(channel: string, msg: BrokerMessage, bounds: HistoryBounds, claim?: string, fence?: Fence): Promise<StreamPosition | null>;
  /**
   * The channel's current position. With `delivered` (what this host relayed): if Redis is behind it
   * under the same epoch — a failover lost writes whose offsets will be reused — a new epoch starts.
   */
  position(channel: string, bounds: HistoryBounds, delivered?: StreamPosition): Promise<StreamPosition>;
  /** Publications with offsets in (after, upTo], oldest first, at most `limit`. */
  history(channel: string, after: number, upTo: number | undefined, limit: number, bounds: HistoryBounds): Promise<HistorySlice>;
  /** The last `limit` publications kept. */
  latest(channel: string, limit: number, bounds: HistoryBounds): Promise<Publication[]>;
  /** This host now has a connection of `user` in a presence channel. */
  join(channel: string, user: string, info: unknown, exclude: string | undefined): Promise<void>;
  /** This host's last connection of `user` left. */
  leave(channel: string, user: string): Promise<void>;
  /**
   * This host is shutting down while `user` is in its presence grace (it may be recovered elsewhere):
   * its share of the member is kept for `ms` more without this host, then left as a dead node's is.
   */
  holdMember?(channel: string, user: string, info: unknown, ms: number): Promise<void>;
  /** Members on every host. */
  members(channel: string): Promise<Member[]>;
  /** Forgets this host's members of the channel that are not in `keep` (leaves lost in an outage). */
  prune(channel: string, keep: ReadonlySet<string> | ReadonlyMap<string, unknown>): Promise<void>;
  /**
   * This host's number of subscribers of the channel (0 forgets it). `held`: this host still holds
   * presence entries of the channel (members in their grace), which a sweep after its death must find.
   * `announce`: publish the total (when announced at all) even if this write left it unchanged.
   */
  count(channel: string, subscribers: number, held?: boolean, announce?: boolean): Promise<void>;
  close(): Promise<void>;
}

/** Cluster-wide answers and messages the hub needs instead of asking local owners. */
export interface HubBridge {
  channel(name: string): Promise<ChannelInfo>;
  channels(prefix?: string): Promise<ChannelInfo[]>;
  presence(name: string): Promise<{ members: Member[] }>;
  /** Every connection of a user on every host. */
  publishToUser(user: string, event: string, data: unknown, exclude?: string, js?: string): Promise<void>;
  /** Disconnects every connection of a user on every host. */
  kick(user: string): Promise<void>;
  /** Tells every host that these presence memberships were recovered (see the `stayed` notice). */
  stayed(m: [string, string][]): Promise<void>;
}
