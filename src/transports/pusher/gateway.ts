/** What the Pusher transports of one shard share: the apps, the actor registry, webhooks and timings. */
import type { ActorRegistry } from '../../actors/registry.js';
import type { ThreadContext } from '../../runtime/context.js';
import type { AppRegistry, PusherApp } from './apps.js';
import type { PusherClient } from './client.js';

/** Events the socket reports for webhooks (src/transports/pusher/webhooks.ts); channel lifecycle comes from the actors. */
export interface PusherHooks {
  clientEvent(app: PusherApp, internal: string, event: string, data: unknown, client: PusherClient): void;
  cacheMiss(app: PusherApp, internal: string): void;
}

export class PusherGateway {
  /** Seconds of silence after which pusher-js pings (sent in connection_established). */
  readonly activityTimeout: number;
  hooks?: PusherHooks;

  constructor(
    readonly ctx: ThreadContext,
    readonly apps: AppRegistry,
    private readonly actors: ActorRegistry,
  ) {
    // Half the idle timeout, so a client's ping always arrives before uWS would call the socket idle.
    this.activityTimeout = Math.max(1, Math.min(120, Math.floor(ctx.config.idleTimeout / 2)));
  }

  /** Whether the channel's actor has its own `authorize`, which then replaces the signature check. */
  actorAuthorizes(internal: string): boolean {
    return this.actors.definitionFor(internal).authorize !== undefined;
  }
}
