/**
 * The custom channel actor API (docs/actors.md). A user file default-exports `defineActor({...})`;
 * the owner shard runs one instance per matching channel, one message at a time.
 */
import { RtError } from '../errors.js';
import type { Member } from '../protocol/native.js';
import type { PublishSource } from '../runtime/messages.js';

/** The connection behind a subscription or a client message. */
export interface Subscriber {
  /** Socket id (`<thread>.<unique>`). */
  readonly socketId: string;
  /** User id from the connection's token (`sub`), if it presented one. */
  readonly userId?: string;
  /** `user_info` from the token, or what `authorize` returned. */
  readonly userInfo?: unknown;
  /** Transport the connection uses: 'ws', 'socket.io', 'sse', 'poll', 'memory'. */
  readonly transport?: string;
}

export interface OutgoingMessage {
  event: string;
  data: unknown;
}

export interface ActorContext<S = unknown> {
  /** The channel this actor instance owns. */
  readonly channel: string;
  /** Per-channel state, created by `init` and kept for the actor's life. */
  state: S;
  /** Publishes to every subscriber of this channel (kept in history, with an offset). */
  broadcast(event: string, data: unknown): number;
  /** Members of a presence channel. */
  members(): Member[];
  /** Number of connections subscribed, across all shards. */
  subscriberCount(): number;
}

export interface ActorDefinition<S = unknown> {
  /** Channel names this actor serves: exact names or `*` globs, or regular expressions. */
  match: string | RegExp | ReadonlyArray<string | RegExp>;
  /** History kept for resume; defaults to the server's --history-size / --history-ttl. */
  history?: { size?: number; ttlSeconds?: number };
  /** Whether clients may publish on the channel (overrides --client-publish). */
  clientPublish?: boolean;
  /** Creates the state of a new channel. */
  init?(channel: string): S;
  /**
   * Decides whether a connection may subscribe. Return false or throw an ActorError to refuse; return
   * `{ info }` to set the member's presence info. Replaces the token check for private-/presence- channels.
   */
  authorize?(ctx: ActorContext<S>, who: Subscriber, data: unknown): boolean | { info?: unknown } | Promise<boolean | { info?: unknown }>;
  /** A connection subscribed. */
  onJoin?(ctx: ActorContext<S>, who: Subscriber): void | Promise<void>;
  /** A connection unsubscribed or disconnected. */
  onLeave?(ctx: ActorContext<S>, who: Subscriber): void | Promise<void>;
  /**
   * A client published. Return nothing to publish the message as is, a message to publish that instead,
   * or null to drop it (the client gets a `publish_refused` error). Throw an ActorError to refuse with your own code.
   */
  onMessage?(ctx: ActorContext<S>, msg: OutgoingMessage, from: Subscriber): OutgoingMessage | null | void | Promise<OutgoingMessage | null | void>;
  /** The backend published (HTTP API, Redis, server code): transform, or return null to refuse. */
  onPublish?(ctx: ActorContext<S>, msg: OutgoingMessage, source: PublishSource): OutgoingMessage | null | void | Promise<OutgoingMessage | null | void>;
  /** The channel is idle (no subscribers, history expired) and its actor is being removed. */
  onStop?(ctx: ActorContext<S>): void;
}

/** Identity function that gives an actor file its types. */
export function defineActor<S = unknown>(def: ActorDefinition<S>): ActorDefinition<S> {
  return def;
}

/** Throw from an actor hook to refuse with a code and message the client sees. */
export class ActorError extends RtError {
  constructor(code: string, message: string) {
    super(code, message, 403);
    this.name = 'ActorError';
  }
}
