/**
 * Everything threads say to each other through the rings. Keys are short because every byte is copied
 * through a ring for every frame; the doc comments give the long names.
 */
import type { Member, Publication, StreamPosition } from '../protocol/native.js';

/** Who is behind a subscription: enough for presence, authorization and exclusion on the owner shard. */
export interface ConnRef {
  /** Socket id, `<thread>.<unique>`: the thread index tells the owner which shard delivers to it. */
  id: string;
  /** User id (JWT `sub`), when the connection is authenticated. */
  user?: string;
  /** Presence info (JWT `user_info`, or what an authorizer returned). */
  info?: unknown;
  /** Channel patterns the connection's token grants. */
  grants?: string[];
  /** Transport name, for custom actors and metrics. */
  transport?: string;
  /**
   * Set to the channel name when the connection's shard already authorized this subscription (the
   * backend's auth endpoint answered yes): the owner skips the token-grant check for that channel.
   */
  granted?: string;
  /**
   * On a presence channel: the subscriber receives joins and leaves but is not a member (it is not
   * listed, counted in presence or announced). Watchers of a user's online channel subscribe so.
   */
  observer?: true;
}

/** Requests are answered with a Reply carrying the same `id`. */
export type Request =
  /** Subscribe a connection to a channel owned by the receiver. */
  | { t: 'sub'; ch: string; conn: ConnRef; since?: StreamPosition; data?: unknown; replay?: boolean }
  /** Publish to a channel owned by the receiver; `from` is set for client publishes. */
  | { t: 'pub'; ch: string; ev: string; data: unknown; from?: ConnRef; ex?: string; src: PublishSource; at?: number; w?: 1 }
  | { t: 'presence'; ch: string }
  /** `times`: the answer also gives when each publication was made (HistoryAnswer.times). */
  | { t: 'history'; ch: string; since?: StreamPosition; limit?: number; times?: 1 }
  | { t: 'channels'; prefix?: string }
  /**
   * A request for a session that lives on the receiving thread (long-polling, Engine.IO polling):
   * sessions are pinned to the thread in their id, and any shard forwards requests there.
   */
  | { t: 'fwd'; route: string; body: unknown }
  | { t: 'channel'; ch: string };

export type PublishSource = 'api' | 'client' | 'server' | 'redis';

/** One-way messages. */
export type Notice =
  | { t: 'unsub'; ch: string; conn: ConnRef; g?: number }
  /** The connection authenticated again (a fresh token): its owner checks the subscription against the new grants. */
  | { t: 'regrant'; ch: string; conn: ConnRef }
  /** A publication for the receiving thread's local subscribers of `pub.channel`; `ex` excludes a socket id. */
  | { t: 'pub!'; pub: Publication; ex?: string; at?: number }
  /** Presence change for the thread's subscribers of `ch`; `ex` (Redis bridge) skips the socket that caused it. */
  | { t: 'join!'; ch: string; m: Member; ex?: string }
  | { t: 'leave!'; ch: string; m: Member; ex?: string }
  /** The subscriber count of `ch` (cluster-wide with Redis), for the thread's subscribers that asked for it. */
  | { t: 'count!'; ch: string; n: number }
  /** Redis bridge: the thread's subscribers of `ch` missed publications that cannot be recovered. */
  | { t: 'resync!'; ch: string }
  /**
   * A message for every connection of a user, on every thread. `js`: `data`'s JSON text as the publisher
   * sent it (the Pusher HTTP API), which Pusher frames carry as it came.
   */
  | { t: 'user!'; user: string; ev: string; data: unknown; ex?: string; js?: string }
  /** Disconnect every connection of a user (API: POST /api/users/:id/disconnect). */
  | { t: 'kick'; user: string; at?: number }
  /**
   * Redis bridge: a Socket.IO session was recovered (on some host) with these presence memberships
   * (`m`: [channel, user] pairs). A host whose actor keeps one of them in its grace (a dropped
   * connection, see ChannelActor.unsubscribe) lets it go now, silently: the recovering host holds it.
   */
  | { t: 'stayed'; m: [string, string][] }
  /** Redis bridge: a revocation kept in Redis, read at (re)connect: refuse the user's older tokens, disconnect nobody. */
  | { t: 'revoke'; user: string; at: number }
  /** A channel actor's private message to some of its subscribers on the receiving thread: no offset, no history. */
  /**
   * A channel actor's private message. `js`: `data`'s JSON text, as the actor's push was checked (then
   * `data` is absent): sent as it was when pushed, whichever thread the subscriber is on.
   */
  | { t: 'push!'; ch: string; to: string[]; ev: string; data?: unknown; js?: string }
  /** A channel actor removed one subscriber (`to`) from its channel; its client is told `reason`. */
  | { t: 'kick!'; ch: string; to: string; reason: string }
  /** Thread `peer` was replaced: forget its subscriptions, resend ours for the channels it owns. */
  | { t: 'restarted'; peer: number }
  /**
   * To a replaced owner, after the sender's replayed subscriptions (rings are FIFO): the members the
   * sender's clients were told about on that owner's presence channels. Members nobody registers again
   * left with the dead thread, and the owner announces their leave (src/actors/replay-collector.ts).
   */
  | { t: 'replayed'; seen: SeenPresence[] };

/** The members a thread's clients know on one presence channel. */
export interface SeenPresence {
  ch: string;
  m: Member[];
}

export interface SubscribeResult {
  /** Current stream position of the channel. */
  offset: number;
  epoch: string;
  /** Set when `since` was given: whether every missed publication is in `pubs`. */
  recovered?: boolean;
  pubs?: Publication[];
  /** Members, for presence channels. */
  members?: Member[];
  /** Info the authorizer attached to this member (presence). */
  info?: unknown;
  /** The channel actor's join reply (onJoin returned `{ reply }`). */
  data?: unknown;
}

/** What a publish answers: the publication's offset (none when the actor only replied) and the actor's reply. */
export interface PublishResult {
  offset?: number;
  data?: unknown;
}

export interface ChannelInfo {
  name: string;
  subscribers: number;
  presence?: number;
  offset: number;
  /** Where the channel's actor runs (see docs/scaling.md, placement). */
  owner?: ChannelOwner;
}

/**
 * `local`: no Redis, the one activation on this host. `per-host`: with Redis, a channel without a
 * custom actor, activated on each host that has subscribers (the host and shard shown are the answering
 * host's). `leased`: one activation cluster-wide, held under a lease with fencing `epoch` (host and
 * shard null while none is running).
 */
export interface ChannelOwner {
  /** Null for a placed channel with no activation right now (the next event starts one). */
  host: string | null;
  shard: number | null;
  placement: 'local' | 'per-host' | 'leased';
  epoch?: number;
}

export type Envelope =
  | { k: 'q'; id: number; b: Request }
  | { k: 'r'; id: number; ok: true; v: unknown }
  | { k: 'r'; id: number; ok: false; e: { code: string; message: string; status: number } }
  | { k: 'n'; b: Notice };

/** A `history` request's answer. */
export type HistoryAnswer = {
  pubs: Publication[];
  recovered: boolean;
  offset: number;
  epoch: string;
  /** When asked for: when each of `pubs` was published (epoch ms; 0 where unknown). */
  times?: number[];
};
