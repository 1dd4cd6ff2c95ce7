/**
 * One shard: a worker thread with its own uWS app serving every transport, the channel actors it owns,
 * and its ends of the ring mesh. The supervisor runs each shard in a thread of its own (workers/shard.ts);
 * a crashed shard's thread exits and its replacement is a new thread.
 */
import { TokenExpiry } from '../security/token-expiry.js';
import { ProxyTrust, setTrustedProxies } from '../security/client-ip.js';
import type { MessagePort } from 'node:worker_threads';
import uWS from 'uWebSockets.js';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { createJwtVerifier, verifierOptions, JwtError, type JwtClaims, type JwtErrorCode } from '../auth/jwt.js';
import type { ServerConfig } from '../config/schema.js';
import { configureLogs, createLogger, setThreadLogger } from '../log.js';
import { ActorHost } from '../actors/actor-host.js';
import { ReplayCollector } from '../actors/replay-collector.js';
import type { ChannelLifecycle } from '../actors/channel-actor.js';
import { newActorStats } from '../actors/channel-actor.js';
import { ActorRegistry, loadActors } from '../actors/registry.js';
import { adoptActorModules } from '../actors/actor-modules.js';
import type { CompiledModules } from '../actors/module-compiler.js';
import { CloseCode } from './client.js';
import type { ThreadContext } from './context.js';
import { Hub } from './hub.js';
import { MeshEndpoint, meshOptions, type MeshLayout } from './mesh.js';
import type { Notice } from './messages.js';
import type { Publication } from '../protocol/native.js';
import { SharedStats } from './stats.js';
import { bindThreadMetrics, Metrics } from './metrics.js';
import type { FamilyName } from './metric-families.js';
import { STATS_MS, startThreadSampler } from './thread-sampler.js';
import { recordRunningCode } from './running-code.js';
import { AppConnections, SharedLimits } from '../security/shared-limits.js';
import { pusherAppCount } from '../transports/pusher/apps.js';
import { subscriptionCountPolicy } from '../transports/pusher/subscription-count.js';
import { registerWebSocket } from '../transports/websocket.js';
import { apiRefusal, MethodNotAllowed, registerHttpApi } from '../transports/http-api.js';
import { recordRoutes, RouteTable } from '../transports/routes.js';
import { registerHealth } from '../transports/health.js';
import { registerDashboard } from '../transports/dashboard.js';
import { registerSse } from '../transports/sse.js';
import { registerPolling } from '../transports/polling.js';
import { registerClientBundle } from '../transports/client-bundle.js';
import { registerSocketIo } from '../transports/socketio/index.js';
import { registerPusher } from '../transports/pusher/index.js';
import { sendError, sendJson, track } from '../transports/http.js';
import { RtError } from '../errors.js';
import { bridged, historyPolicy, shardNodeId, startShardBridge } from '../bridge/setup.js';
import { headSafe } from '../transports/head.js';

export type AcceptMode = 'descriptor' | 'reuseport';

export interface ShardTask {
  shard: number;
  layout: MeshLayout;
  config: ServerConfig;
  apiKey: string;
  stats: SharedArrayBuffer;
  /** The host's metrics registry (Metrics.alloc). */
  metrics: SharedArrayBuffer;
  limits: SharedArrayBuffer;
  /** Per-Pusher-app connection counts (AppConnections.alloc). */
  appConnections: SharedArrayBuffer;
  mode: AcceptMode;
  /** Port to listen on in reuseport mode (already resolved if the config said 0). */
  port: number;
  control: MessagePort;
  /** This thread replaces a shard that died: the other threads will replay its channels' subscribers. */
  replacement?: boolean;
  /** With --redis: this thread's node id (shardNodeId). */
  node?: string;
  /**
   * With --redis, in a replacement: the dead thread's node, kept alive by the supervisor until this
   * thread retires it after the replay (RedisBroker.retire), then says so ('retired').
   */
  deadNode?: string;
  /**
   * The webhook-watched channels the shard this one replaces had occupied, with their members, as the
   * supervisor last heard (ShardEvent 'lifecycle'): those nobody re-registers are vacated after the replay.
   */
  orphans?: OrphanChannel[];
  /** The --actors folder's modules as the main thread compiled them (actor-modules.ts). */
  actorModules?: CompiledModules;
  /** Which actor hook each shard is running (running-code.ts), for the supervisor's stuck-shard report. */
  runningCode: SharedArrayBuffer;
}

/** Time a stopping shard keeps, out of its deadline, to release its placed actors' leases and close Redis. */
const RELEASE_MS = 500;

/** A channel a dead shard owned and had occupied (ShardTask.orphans). */
export interface OrphanChannel {
  ch: string;
  members: string[];
}

/** Messages from a shard to the supervisor. */
export type ShardEvent =
  | { type: 'ready'; descriptor?: unknown; port?: number }
  /** A webhook-watched channel this shard owns changed (kept by the supervisor for a replacement's orphans). */
  | { type: 'lifecycle'; e: ChannelLifecycle }
  /** The dead thread's node (ShardTask.deadNode) is retired, or could not be: stop keeping it alive. */
  | { type: 'retired' }
  | { type: 'drained' }
  | { type: 'gcDone'; heapUsed: number }
  | { type: 'fatal'; message: string }
  /** An uncaught error: the shard is closing its app and its thread will exit. */
  | { type: 'crashing'; message: string };

/** Messages from the supervisor to a shard. */
export type ShardCommand = { type: 'drain'; timeoutMs: number } | { type: 'stop'; timeoutMs: number } | { type: 'crash' } | { type: 'gc' };

export async function runShard(task: ShardTask): Promise<void> {
  const { shard, config } = task;
  configureLogs({ format: config.logFormat, rate: config.logRate });
  const log = createLogger(config.logLevel, `shard ${shard}`);
  setThreadLogger(log);
  const stats = new SharedStats(task.stats, task.layout.shards + 1);
  // Bound before anything records: the hub, transports and actors write to this thread's block.
  const metrics = new Metrics(task.metrics, task.layout.shards + 1, shard);
  metrics.resetGauges();
  bindThreadMetrics(metrics);
  const mesh = new MeshEndpoint(task.layout, shard, meshOptions(config));
  if (config.actors && task.actorModules) adoptActorModules(config.actors, task.actorModules);
  recordRunningCode(task.runningCode, shard);
  const loaded = await loadActors(config.actors);
  const threads = task.layout.shards + 1;
  // Set once the Pusher gateway registered (webhooks watch the channels this shard owns; with Redis,
  // the cluster-wide transitions this shard's broker decides).
  let observer: ((e: ChannelLifecycle) => void) | undefined;
  // The broker's first heartbeat may sweep a dead node (this host's previous run) before the gateway is
  // registered: what that sweep decided is held until then (bounded), not lost.
  let early: ChannelLifecycle[] | undefined = [];
  const observe = (e: ChannelLifecycle): void => {
    if (observer) observer(e);
    else if (early && early.length < 10_000) early.push(e);
  };
  // Redis bridge (--redis): undefined in the embedded default.
  // Channels whose subscribers are told the subscriber count (Pusher apps' subscriptionCountEvents).
  const countWanted = subscriptionCountPolicy(config);
  const bridge = await startShardBridge(config, shard, task.node ?? shardNodeId(config, shard), mesh, log, stats, observe, countWanted);
  // With Redis, custom actors run once cluster-wide (src/bridge/placement.ts).
  const registry = new ActorRegistry(bridge ? bridge.place(loaded) : loaded);
  const actorStats = newActorStats();
  const compute = (taskName: string, input: unknown): Promise<unknown> => hub.forward<unknown>(mainThread, 'actor-compute', { task: taskName, input }, 60_000);
  const host = new ActorHost(registry, {
    threads,
    clientPublish: config.clientPublish,
    historySize: config.historySize,
    historyTtlMs: config.historyTtl * 1000,
    maxPresenceMembers: config.maxPresenceMembers,
    historyFor: historyPolicy(config),
    deliver: (t, pub, ex, at) => mesh.notify(t, pubNotice(pub, ex, at)),
    deliverMany: (ts, pub, ex, at) => mesh.notifyMany(ts, pubNotice(pub, ex, at)),
    presence: (t, kind, ch, m, ex) => mesh.notify(t, ex ? { t: kind, ch, m, ex } : { t: kind, ch, m }),
    push: (t, ch, to, ev, data, js) => mesh.notify(t, js === undefined ? { t: 'push!', ch, to, ev, data } : { t: 'push!', ch, to, ev, js }),
    kick: (t, ch, to, reason) => mesh.notify(t, { t: 'kick!', ch, to, reason }),
    countWanted,
    count: (t, ch, n) => mesh.notify(t, { t: 'count!', ch, n }),
    compute,
    log: (msg, err) => (err === undefined ? log.warn(msg) : log.error(msg, err)),
    hookTimeoutMs: config.actorHookTimeout * 1000,
    mailboxSize: config.actorMailboxSize,
    stats: actorStats,
    // A publish whose fan-out would go to an overloaded thread is refused before it is accepted.
    admit: (t) => {
      if (mesh.overloaded(t)) throw mesh.refusal(t);
    },
    observe: (e) => observer?.(e),
    ...bridge?.actorEnv,
  });

  // Webhook-watched channels the dead shard had occupied and no thread re-registered: everyone in them
  // was on the dead shard, and nobody else will say they left (the supervisor kept them: ShardTask.orphans).
  const vacateOrphans = (): void => {
    for (const { ch, members } of task.orphans ?? []) {
      if (host.has(ch)) continue;
      for (const user of members) observe({ t: 'member_removed', ch, user });
      observe({ t: 'vacated', ch });
    }
  };
  // After this shard replaced a dead one: the members other threads still know but nobody re-registered leave.
  const replays = new ReplayCollector({
    threads,
    timeoutMs: config.requestTimeout * 1000,
    owns: (ch) => hub.ownerOf(ch) === shard,
    begun: () => host.expectReplay(),
    done: (seen) => {
      const reconciled = host.reconcileReplay(seen);
      // With Redis the dead thread's node is retired instead: its sweep decides, cluster-wide, which
      // channels went empty and which members left.
      if (!bridge) return vacateOrphans();
      if (!task.deadNode) return;
      const dead = task.deadNode;
      // After every actor has registered the replayed subscriptions and compared its members: a member
      // still connected on a survivor is then held by this node too, and does not leave.
      void reconciled
        .then(() => bridge.broker.retire(dead))
        .then(
          (n) => log.debug(`retired the dead thread's node ${dead} from ${n} channel(s)`),
          (err) => log.warn(`could not retire the dead thread's node ${dead} (it is swept once its heartbeat expires): ${(err as Error).message}`),
        )
        .finally(() => task.control.postMessage({ type: 'retired' } satisfies ShardEvent));
    },
    warn: (msg) => log.warn(msg, { event: 'shard.replay' }),
  });
  // From the first request on, not from the 'restarted' notice: a publish queued for the dead thread
  // may be read first, and must not start a channel's stream before its subscribers say where it was.
  if (task.replacement) replays.begin();

  // With TLS each shard terminates it; the main thread's acceptor only hands over the raw socket.
  const app: TemplatedApp = config.tlsCert
    ? uWS.SSLApp({ cert_file_name: config.tlsCert, key_file_name: config.tlsKey, passphrase: config.tlsPassphrase || undefined })
    : uWS.App();
  const hub: Hub = new Hub({
    mesh,
    app,
    maxChannelsPerConnection: config.maxChannelsPerConnection,
    writeDelayMs: config.writeDelay,
    bridge: bridge?.hub,
    ownerRequest: (_from, req) => host.handle(req),
    ownerNotice: (from, n) => {
      if (n.t === 'unsub') host.unsubscribe(n.ch, n.conn.id, n.g);
      else if (n.t === 'regrant') host.regrant(n.ch, n.conn);
      else if (n.t === 'stayed') for (const [ch, user] of n.m) host.endGrace(ch, user);
      else if (n.t === 'restarted') {
        host.dropThread(n.peer);
        if (n.peer === shard) replays.begin();
      } else if (n.t === 'replayed') replays.report(from, n);
    },
  });
  // Placed actors (--redis) push, kick and compute through this shard wherever their activation runs.
  bridge?.attach({ push: (ch, ids, ev, data, js) => host.relayPush(ch, ids, ev, data, js), kick: (ch, id, reason) => host.relayKick(ch, id, reason), compute: (task, input) => compute(task, input).finally(() => actorStats.computed++), stats: actorStats });
  setTrustedProxies(new ProxyTrust(config.trustProxy));
  hub.expiry = new TokenExpiry(config.tokenGrace);
  const verifier = createJwtVerifier(verifierOptions(config));
  const mainThread = task.layout.shards;
  // HS256 and broken tokens are decided at once; only public-key math leaves the thread.
  const verifyToken = (token: string): JwtClaims | Promise<JwtClaims> => {
    const now = verifier.verifyNow(token);
    if (now !== undefined) return now;
    if (!config.jwtPublicKey) return verifier.verify(token);
    return hub
      .forward<{ claims?: JwtClaims; error?: { code: JwtErrorCode; message: string } }>(mainThread, 'verify', { token }, 10_000)
      .then((r) => {
        if (r.error) throw new JwtError(r.error.code, r.error.message);
        return r.claims!;
      });
  };
  // The tick also keeps this worker's event loop alive: a waitAsync alone does not (NOTES.md).
  const sampler = startThreadSampler(metrics, { keepAlive: true });
  const ctx: ThreadContext = {
    thread: shard,
    config,
    hub,
    sharedStore: bridge?.store,
    verifier,
    verifyToken,
    apiKey: task.apiKey,
    stats,
    metrics,
    sampler,
    log,
    draining: false,
    inflight: new Set(),
    limits: new SharedLimits(task.limits, config),
  };
  ctx.limits.apps = new AppConnections(task.appConnections, pusherAppCount(config), shard);

  // Every route the transports register is written in `routes`, which the catch-all below answers from.
  const routes = new RouteTable();
  const routed = recordRoutes(app, routes);
  if (config.transports.includes('ws')) registerWebSocket(routed, ctx);
  registerHttpApi(routed, ctx);
  registerHealth(routed, ctx);
  registerDashboard(routed, ctx);
  registerSse(routed, ctx);
  registerPolling(routed, ctx);
  registerClientBundle(routed, ctx);
  await registerSocketIo(routed, ctx);
  const pusher = await registerPusher(routed, ctx);
  // One host: the supervisor keeps which watched channels this shard has occupied, and their members,
  // for the shard that replaces it if it dies (vacateOrphans). With Redis the survivors' brokers do.
  if (pusher && !bridge) {
    observer = (e) => {
      if (pusher.observe(e)) task.control.postMessage({ type: 'lifecycle', e } satisfies ShardEvent);
    };
  } else observer = pusher?.observe;
  if (observer) for (const e of early!) observer(e);
  early = undefined;
  // The one catch-all of every transport: a known path asked with a method it does not answer is 405
  // with Allow (from `routes`), any other path 404. /api/ paths answer through the API's wrapper, which
  // adds its CORS headers and counts them in rt_http_requests_total.
  app.any(
    '/*',
    headSafe((res, req) => {
      const url = req.getUrl();
      const method = req.getMethod().toUpperCase();
      const api = url.startsWith('/api/') ? 'API ' : url.startsWith('/apps/') ? 'Pusher API ' : '';
      const refusal = routes.refusal(method, url) ?? new RtError('not_found', `no ${api}route ${method} ${url}${transportOff(config.transports, url)}`, 404);
      if (url.startsWith('/api/')) return apiRefusal(ctx, refusal)(res, req);
      const headers: Record<string, string> = refusal instanceof MethodNotAllowed ? { allow: refusal.allow } : refusal.status === 426 ? { upgrade: 'websocket' } : {};
      sendError(res, track(res), refusal, headers);
    }),
  );

  hub.start();
  // Before the port opens: a token revoked on any host, before this one started, is refused here too.
  if (bridge) for (const [user, at] of await bridge.broker.revocations()) hub.revoke(user, at);

  // Counters this thread keeps as running totals of its own (a fresh thread's start at 0): only their
  // increase since the last sample is added, so a replaced shard's counters carry on from the dead one's
  // instead of going back to 0 (Prometheus reads a drop as a reset and counts the whole total again).
  const fed = new Map<FamilyName, number>();
  const feed = (name: FamilyName, total: number): void => {
    const grew = total - (fed.get(name) ?? 0);
    if (grew > 0) metrics.inc(name, undefined, grew);
    fed.set(name, total);
  };
  const publishStats = () => {
    stats.set(shard, 'connections', hub.connections);
    stats.set(shard, 'channels', host.size);
    stats.set(shard, 'delivered', hub.stats.delivered);
    stats.set(shard, 'published', hub.stats.published);
    stats.set(shard, 'ringQueuedBytes', mesh.queuedBytes());
    stats.set(shard, 'overloadRefused', mesh.refused);
    stats.set(shard, 'overloadedPeers', mesh.overloadedPeers());
    stats.set(shard, 'subscriptions', hub.stats.subscriptions);
    stats.set(shard, 'heapUsed', process.memoryUsage().heapUsed);
    metrics.set('rt_channels', undefined, host.size);
    metrics.set('rt_subscriptions', undefined, hub.stats.subscriptions);
    metrics.set('rt_ring_queued_bytes', undefined, mesh.queuedBytes());
    metrics.set('rt_http_requests_in_flight', undefined, ctx.inflight.size);
    feed('rt_overloaded_refusals_total', mesh.refused);
    metrics.set('rt_overloaded_peers', undefined, mesh.overloadedPeers());
    if (bridge) {
      // The bridge's link state and bookkeeping are gauges in the shared stats; its counters are fed
      // from this thread's broker (the shared stats still hold a dead shard's totals after a restart).
      metrics.set('rt_redis_up', undefined, stats.get(shard, 'redisUp'));
      feed('rt_redis_invalid_messages_total', bridge.broker.stats.invalid);
      feed('rt_redis_recovered_total', bridge.broker.stats.recovered);
      feed('rt_redis_resyncs_total', bridge.broker.stats.resyncs);
      feed('rt_redis_errors_total', bridge.broker.stats.errors);
      metrics.set('rt_redis_tracked_channels', undefined, stats.get(shard, 'redisTracked'));
    }
    feed('rt_actor_hook_failures_total', actorStats.failures);
    feed('rt_actor_restarts_total', actorStats.restarts);
    feed('rt_actor_compute_tasks_total', actorStats.computed);
  };
  // Once now, before 'alive': a scrape right after start would otherwise read the gauges' zeros (Redis
  // down) until the first tick.
  publishStats();
  sampler.every(STATS_MS, publishStats);
  // The supervisor reports a shard stuck when this stops moving (--stuck-shard-timeout); before 'alive'.
  const beat = () => stats.set(shard, 'tickAt', Date.now());
  beat();
  sampler.every(0, beat);
  stats.set(shard, 'alive', 1);
  metrics.set('rt_up', undefined, 1);

  let listenSocket: us_listen_socket | null = null;
  const post = (e: ShardEvent) => task.control.postMessage(e);

  let finish!: () => void;
  let fail!: (err: Error) => void;
  const done = new Promise<void>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });

  /**
   * A bug that escapes to the top of this thread is a crash of the shard. Letting the thread die with
   * uWS handles open aborts the whole process (Node asserts on open handles at loop close), so the shard
   * tears itself down instead, then its thread exits; the supervisor starts a fresh shard in a new thread.
   */
  let crashing = false;
  const onUncaught = (err: unknown) => {
    // Once only: a further error thrown while the shard tears down (a timer of the failing code, say)
    // would otherwise end the thread at once, its uWS handles still open, and abort the process.
    if (crashing) return;
    crashing = true;
    log.error('uncaught error; shard is being replaced:', err);
    post({ type: 'crashing', message: err instanceof Error ? err.message : String(err) });
    sampler.stop();
    host.close();
    replays.close();
    // Not graceful: this node holds the survivors' entries of its channels too. The supervisor keeps it
    // alive until the replacement has registered them again and retires it (ShardTask.deadNode).
    void bridge?.close(false);
    stats.set(shard, 'alive', 0);
    if (listenSocket) uWS.us_listen_socket_close(listenSocket);
    // Before the mesh closes: what a transport hands to other shards as its clients leave (Socket.IO
    // sessions saved for recovery) still gets out.
    try {
      for (const c of [...hub.clients.values()]) c.disconnect(CloseCode.RESTART, 'shard restarting: reconnect and resume', true);
    } catch {
      /* the state may be what broke; the sockets are force-closed below anyway */
    }
    mesh.close();
    setTimeout(() => {
      app.close();
      task.control.close();
      process.off('uncaughtException', onUncaught);
      process.exit = exit;
      fail(err instanceof Error ? err : new Error(String(err)));
    }, 50);
  };
  process.on('uncaughtException', onUncaught);
  // process.exit() in a worker ends its thread on the spot, uWS handles open: the whole process aborts
  // (SIGABRT), or, for a request read from another thread's ring, the replacement reads that request
  // again (the dead thread never published how far it read) and runs it once more. Called by an actor,
  // a handler or a library of theirs, it is a crash of this shard like an uncaught error: the caller's
  // code stops there (the throw), the shard tears down outside of whatever callback made the call.
  const exit = process.exit;
  process.exit = ((code?: number | string | null) => {
    const err = new Error(`process.exit(${code ?? ''}) called in shard ${shard}: a shard's thread cannot exit by itself, so the shard is replaced instead`);
    setImmediate(() => onUncaught(err));
    throw err;
  }) as typeof process.exit;

  task.control.on('message', async (cmd: ShardCommand) => {
    if (cmd.type === 'gc') {
      // Only with --expose-gc (benchmarks measuring memory per connection).
      (globalThis as { gc?: () => void }).gc?.();
      publishStats();
      post({ type: 'gcDone', heapUsed: process.memoryUsage().heapUsed });
    } else if (cmd.type === 'crash') {
      // Test hook (createServer().crashShard): an uncaught error kills the thread like a real bug would.
      setImmediate(() => {
        throw new Error(`shard ${shard} crashed on request`);
      });
    } else if (cmd.type === 'drain') {
      ctx.draining = true;
      if (listenSocket) {
        uWS.us_listen_socket_close(listenSocket);
        listenSocket = null;
      }
      // In-flight requests get the whole --shutdown-timeout; 'stop' answers any left after it.
      const deadline = Date.now() + cmd.timeoutMs;
      while (ctx.inflight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      post({ type: 'drained' });
    } else if (cmd.type === 'stop') {
      const stopBy = Date.now() + cmd.timeoutMs;
      for (const cutOff of [...ctx.inflight]) cutOff();
      hub.flushHeld();
      for (const c of [...hub.clients.values()]) c.disconnect(CloseCode.SHUTDOWN, 'server shutting down: reconnect and resume', true);
      await mesh.flushed(Math.min(cmd.timeoutMs, 2000));
      // Let uWS write the close frames before the app goes away.
      await new Promise((r) => setTimeout(r, 50));
      await host.stopAll();
      // Members on this host leave now, not when its heartbeat expires. Placed actors' running turns
      // get what is left of the deadline, less time to release their leases: a turn outlasting it
      // must not leave the thread ended holding them, its channels waiting out --lease-ttl.
      await bridge?.close(true, Math.min(2000, Math.max(0, stopBy - Date.now() - RELEASE_MS)));
      // The webhooks those leaves fired (member_removed, channel_vacated) leave before the thread does.
      await pusher?.flush(1000);
      sampler.stop();
      host.close();
    replays.close();
      stats.set(shard, 'alive', 0);
      mesh.close();
      app.close();
      task.control.close();
      process.off('uncaughtException', onUncaught);
      process.exit = exit;
      finish();
    }
  });

  if (task.mode === 'descriptor') {
    post({ type: 'ready', descriptor: (app as unknown as { getDescriptor(): unknown }).getDescriptor() });
  } else {
    const onListen = (s: us_listen_socket | false) => {
      if (!s) {
        post({ type: 'fatal', message: `shard ${shard} could not listen on port ${task.port}` });
        return;
      }
      listenSocket = s;
      post({ type: 'ready', port: uWS.us_socket_local_port(s as never) });
    };
    if (config.host) app.listen(config.host, task.port, onListen);
    else app.listen(task.port, onListen);
  }
  log.debug('started');
  await done;
}

function pubNotice(pub: Publication, ex: string | undefined, at: number | undefined): Notice {
  const n: Extract<Notice, { t: 'pub!' }> = { t: 'pub!', pub };
  if (ex) n.ex = ex;
  if (at !== undefined) n.at = at;
  return n;
}

/** Why a native transport's path is not served: it was left out of --transports (said, not just 404). */
function transportOff(served: readonly string[], url: string): string {
  const t = url === '/ws' ? 'ws' : url === '/sse' ? 'sse' : url === '/poll' ? 'polling' : undefined;
  return t && !served.includes(t) ? `: the ${t} transport is off (--transports=${served.join(',')})` : '';
}
