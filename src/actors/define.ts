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

/** Event names to the type of their data. `Record<string, unknown>` (the default) accepts anything. */
export type EventMap = Record<string, unknown>;

/** One message of an event map: a union over its events, so `msg.event` narrows `msg.data`. */
export type MessageOf<E extends object> = { [K in keyof E & string]: { event: K; data: E[K] } }[keyof E & string];

export interface OutgoingMessage {
  event: string;
  data: unknown;
}

/** What `onJoin` may return: `reply` goes to the joiner in its subscribe reply (and Socket.IO ack). */
export interface JoinResult {
  reply?: unknown;
}

/**
 * What `onMessage` may return besides a message to publish: `{ reply }` answers the sender (publish
 * reply `data`, Socket.IO ack) and publishes nothing; `{ event, data, reply }` publishes and answers.
 */
export interface MessageReply<Out extends object = EventMap> {
  reply: unknown;
  event?: keyof Out & string;
  data?: unknown;
}

/** Why an actor stops: its channel went idle, the server shuts down, or its hooks kept failing. */
export type StopReason = 'idle' | 'shutdown' | 'failed';

/**
 * Timers that arrive through the actor's mailbox as `onTimer(ctx, name, data)`, like any message.
 * Names are the actor's own; setting a name again replaces that timer. Cleared when the actor stops.
 */
export interface ActorTimers {
  /** Once, after `ms` milliseconds. */
  after(name: string, ms: number, data?: unknown): void;
  /** Every `ms` milliseconds until cancelled; a tick still waiting in the mailbox is not queued twice. */
  every(name: string, ms: number, data?: unknown): void;
  /** Cancels a timer; false when there was none. */
  cancel(name: string): boolean;
  has(name: string): boolean;
}

/** The outcome of `ctx.compute`, delivered through the mailbox to `onComputed`. */
export type ComputeResult =
  | { task: string; tag?: string; ok: true; value: unknown }
  | { task: string; tag?: string; ok: false; error: { code: string; message: string } };

export interface ActorContext<S = unknown, Out extends object = EventMap> {
  /** The channel this actor instance owns. */
  readonly channel: string;
  /** Per-channel state, created by `init` and kept for the actor's life. Keep it plain data. */
  state: S;
  /** The actor's clock in milliseconds since the epoch (controllable in rt-actors/testing). */
  now(): number;
  /**
   * Publishes to every subscriber of this channel (kept in history, with an offset); returns the offset.
   * With --redis, 0 in an actor without onMessage (its clients' publishes go straight to Redis, so the
   * offset is not known in the hook).
   */
  broadcast<K extends keyof Out & string>(event: K, data: Out[K]): number;
  /** Sends to one subscriber of this channel only: not kept in history, no offset. False when it is not subscribed. */
  push<K extends keyof Out & string>(socketId: string, event: K, data: Out[K]): boolean;
  /** Sends to every connection of one user subscribed to this channel; returns how many. */
  pushUser<K extends keyof Out & string>(userId: string, event: K, data: Out[K]): number;
  /** Removes one subscriber from the channel; its client is told `reason`. False when it is not subscribed. */
  kick(socketId: string, reason?: string): boolean;
  /** Timers delivered through the mailbox to `onTimer`. */
  readonly timers: ActorTimers;
  /**
   * Runs `<task>.task.ts` (or .js) of the actors folder on the compute pool (piscina) with `input`;
   * the result comes back through the mailbox to `onComputed`. Fails with `overloaded` when too many are in flight.
   */
  compute(task: string, input: unknown, tag?: string): void;
  /** Members of a presence channel. */
  members(): Member[];
  /** The connections subscribed to this channel. */
  subscribers(): Subscriber[];
  /** Number of connections subscribed, across all shards. */
  subscriberCount(): number;
}

type Awaitable<T> = T | Promise<T>;

/**
 * How the message a hook is deciding on will be delivered if it is published: `exclude` is the socket id
 * that will not get it — the sender of a Pusher client event, a publisher's `exclude_self`, or the
 * `socket_id` of an HTTP API publish. Applies to the message returned by the hook, not to `ctx.broadcast`.
 */
export interface PublishDelivery {
  exclude?: string;
}

export interface ActorDefinition<S = unknown, In extends object = EventMap, Out extends object = EventMap> {
  /** Channel names this actor serves: exact names or `*` globs, or regular expressions. */
  match: string | RegExp | ReadonlyArray<string | RegExp>;
  /** History kept for resume; defaults to the server's --history-size / --history-ttl. */
  history?: { size?: number; ttlSeconds?: number };
  /** Whether clients may publish on the channel (overrides --client-publish); false refuses whispers and Pusher client events too. */
  clientPublish?: boolean;
  /** Creates the state of a new channel (and again, fresh, after the actor is restarted). */
  init?(channel: string): S;
  /**
   * Decides whether a connection may subscribe. Return false or throw an ActorError to refuse; return
   * `{ info }` to set the member's presence info. Replaces the token check for private-/presence- channels.
   */
  authorize?(ctx: ActorContext<S, Out>, who: Subscriber, data: unknown): Awaitable<boolean | { info?: unknown }>;
  /**
   * A connection is joining: runs before it is registered, so throwing refuses the join and leaves no
   * trace. Return `{ reply }` to answer the joiner in its subscribe reply.
   */
  onJoin?(ctx: ActorContext<S, Out>, who: Subscriber, data: unknown): Awaitable<void | JoinResult>;
  /** A connection unsubscribed, disconnected or was kicked. */
  onLeave?(ctx: ActorContext<S, Out>, who: Subscriber): Awaitable<void>;
  /**
   * A client published. Return nothing to publish the message as is, a message to publish that instead,
   * `{ reply }` to answer the sender without publishing (`{ event, data, reply }` does both), or null to
   * drop it (`publish_refused`). Throw an ActorError to refuse with your own code. `delivery` says who
   * will not receive what is published (see PublishDelivery).
   */
  onMessage?(ctx: ActorContext<S, Out>, msg: MessageOf<In>, from: Subscriber, delivery?: PublishDelivery): Awaitable<MessageOf<Out> | MessageReply<Out> | null | void>;
  /** The backend published (HTTP API, Redis, server code): transform, or return null to refuse. */
  onPublish?(ctx: ActorContext<S, Out>, msg: OutgoingMessage, source: PublishSource, delivery?: PublishDelivery): Awaitable<OutgoingMessage | null | void>;
  /** A timer set with `ctx.timers` fired. */
  onTimer?(ctx: ActorContext<S, Out>, name: string, data: unknown): Awaitable<void>;
  /** A `ctx.compute` task finished. */
  onComputed?(ctx: ActorContext<S, Out>, result: ComputeResult): Awaitable<void>;
  /** The actor is being removed (`reason`); its timers are already cleared. */
  onStop?(ctx: ActorContext<S, Out>, reason: StopReason): Awaitable<void>;
}

/** Identity function that gives an actor file its types: `defineActor<State, InEvents, OutEvents>({ … })`. */
export function defineActor<S = unknown, In extends object = EventMap, Out extends object = EventMap>(def: ActorDefinition<S, In, Out>): ActorDefinition<S, In, Out> {
  return def;
}

/** Throw from an actor hook to refuse with a code and message the client sees. Not counted as a failure. */
export class ActorError extends RtError {
  constructor(code: string, message: string) {
    super(code, message, 403);
    this.name = 'ActorError';
  }
}

/** Any definition, whatever its type parameters (what the runtime handles). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyActorDefinition = ActorDefinition<any, any, any>;
