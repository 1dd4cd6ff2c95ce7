/**
 * The Socket.IO gateway at /socket.io/ (Engine.IO v4 + Socket.IO v5), registered on every shard.
 * docs/socketio.md is the user guide.
 */
import type { TemplatedApp } from 'uWebSockets.js';
import { ConfigError, optionName } from '../../config/load.js';
import type { ServerConfig } from '../../config/schema.js';
import { loadHandlers, validNamespace } from '../../actors/handlers.js';
import { ActorRegistry, loadActors } from '../../actors/registry.js';
import type { ThreadContext } from '../../runtime/context.js';
import { Engine, SOCKETIO_PATH, type EngineOptions } from './engine.js';
import { echoOwner } from './echo.js';
import { SioGateway } from './gateway.js';

const TRANSPORTS = ['polling', 'websocket'];

/** Checks the gateway's settings and handler files once, on the main thread, so a mistake fails the start. */
export async function checkSocketIoConfig(cfg: ServerConfig): Promise<void> {
  for (const n of cfg.socketioNamespaces) {
    if (!validNamespace(n)) throw new ConfigError('socketioNamespaces', `invalid namespace ${JSON.stringify(n)} in ${optionName(cfg, 'socketioNamespaces')}: it must start with "/" and hold printable ASCII without commas`);
  }
  if (cfg.socketioTransports.length === 0 || !cfg.socketioTransports.every((t) => TRANSPORTS.includes(t))) {
    throw new ConfigError('socketioTransports', `${optionName(cfg, 'socketioTransports')} must list one or both of ${TRANSPORTS.join(', ')}`);
  }
  const echo = cfg.engineioEchoPath;
  if (echo && (!/^\/[\x21-\x7e]*\/$/.test(echo) || echo === SOCKETIO_PATH || echo.startsWith('/api/'))) {
    throw new ConfigError('engineioEchoPath', `${optionName(cfg, 'engineioEchoPath')} must be a path starting and ending with "/" other than ${SOCKETIO_PATH} and /api/…, e.g. "/engine.io/", not ${JSON.stringify(echo)}`);
  }
  if (cfg.authEndpoint) {
    let u: URL | undefined;
    try {
      u = new URL(cfg.authEndpoint);
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new ConfigError('authEndpoint', `${optionName(cfg, 'authEndpoint')} must be an http(s) URL, not ${JSON.stringify(cfg.authEndpoint)}`);
    // fetch refuses a URL with credentials: every private subscribe failed, and its error, sent to the
    // client, quoted the URL with the password. The client's own headers are what the endpoint gets.
    if (u.username || u.password) {
      throw new ConfigError('authEndpoint', `${optionName(cfg, 'authEndpoint')} must not hold a user name or password (user:password@): it is called with the client's own headers (cookie, Authorization, X-CSRF-TOKEN)`);
    }
  }
  try {
    await loadHandlers(cfg.actors);
  } catch (err) {
    throw new ConfigError('actors', (err as Error).message);
  }
}

export async function registerSocketIo(app: TemplatedApp, ctx: ThreadContext): Promise<void> {
  const cfg = ctx.config;
  const handlers = await loadHandlers(cfg.actors);
  ctx.handlers = handlers;
  const actors = new ActorRegistry(await loadActors(cfg.actors));
  const pingInterval = Math.round(cfg.socketioPingInterval * 1000);
  const pingTimeout = Math.round(cfg.socketioPingTimeout * 1000);
  const gateway = new SioGateway(ctx, {
    parser: cfg.socketioParser,
    namespaces: new Set(['/', ...cfg.socketioNamespaces, ...handlers.namespaces()]),
    handlers,
    actors,
    connectTimeout: Math.round(cfg.socketioConnectTimeout * 1000),
    ackTimeout: 10_000,
    recoveryMs: Math.round(cfg.socketioRecovery * 1000),
    presenceGraceMs: Math.round(Math.min(cfg.socketioPresenceGrace, cfg.socketioRecovery) * 1000),
  });
  const engineOpts: EngineOptions = {
      path: SOCKETIO_PATH,
      route: 'eio',
      pingInterval,
      pingTimeout,
      maxPayload: cfg.socketioMaxHttpBufferSize,
      polling: cfg.socketioTransports.includes('polling'),
      websocket: cfg.socketioTransports.includes('websocket'),
      allowedOrigins: cfg.allowedOrigins,
      maxBuffered: Math.max(cfg.maxBackpressure, cfg.socketioMaxHttpBufferSize),
      maxBackpressure: cfg.maxBackpressure,
      upgradeTimeout: 10_000,
      ghostTtl: Math.max(60_000, pingInterval + pingTimeout),
  };
  const engine = new Engine(ctx, engineOpts, gateway);
  gateway.engine = engine;
  engine.register(app);
  if (cfg.engineioEchoPath) new Engine(ctx, { ...engineOpts, path: cfg.engineioEchoPath, route: 'eio-echo' }, echoOwner).register(app);
}
