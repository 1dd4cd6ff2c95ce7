/**
 * The Pusher protocol gateway (DESIGN.md "Pusher protocol"; user guide: docs/pusher.md): the WebSocket
 * at /app/<key> and the signed HTTP API at /apps/<id>/…, registered on every shard when at least one
 * Pusher app is configured.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import type { ServerConfig } from '../../config/schema.js';
import { ActorRegistry, loadActors } from '../../actors/registry.js';
import type { ThreadContext } from '../../runtime/context.js';
import { AppRegistry, resolveApps } from './apps.js';
import { PusherGateway } from './gateway.js';
import { registerPusherApi } from './http-api.js';
import { registerPusherSocket } from './socket.js';
import { startWebhooks, type Webhooks } from './webhooks.js';

/** Validates the Pusher settings on the main thread so a mistake fails the start, naming the key. */
export function checkPusherConfig(cfg: ServerConfig): void {
  resolveApps(cfg);
}

/** Registers the routes; returns the webhooks (observer of channel lifecycle, flush on stop), if any app has them. */
export async function registerPusher(app: TemplatedApp, ctx: ThreadContext): Promise<Pick<Webhooks, 'observe' | 'flush'> | undefined> {
  const apps = new AppRegistry(resolveApps(ctx.config));
  if (!apps.enabled) return undefined;
  const gw = new PusherGateway(ctx, apps, new ActorRegistry(await loadActors(ctx.config.actors)));
  const webhooks = startWebhooks(gw);
  gw.hooks = webhooks?.hooks;
  registerPusherSocket(app, gw);
  registerPusherApi(app, gw);
  return webhooks ? { observe: (e) => webhooks.observe(e), flush: (ms) => webhooks.flush(ms) } : undefined;
}
