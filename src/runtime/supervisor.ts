/**
 * The main thread: builds the ring mesh, starts one worker thread per shard, hands accepted sockets to
 * shards (uWS app descriptors, or SO_REUSEPORT where the build lacks them), replaces a crashed shard with
 * a fresh thread, and shuts down in two phases (drain in-flight requests everywhere, then close
 * connections). piscina is the pool of CPU-heavy tasks (token verification), not the shards' launcher.
 */
import { MessageChannel, Worker, type MessagePort, type ResourceLimits } from 'node:worker_threads';
import { createServer as createNetServer } from 'node:net';
import { Piscina } from 'piscina';
import { startActorCompute, type ActorComputePool } from '../actors/compute-pool.js';
import { compiledModules } from '../actors/actor-modules.js';
import uWS from 'uWebSockets.js';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { ServerConfig } from '../config/schema.js';
import { configureLogs, createLogger, setThreadLogger, type Logger } from '../log.js';
import { Hub } from './hub.js';
import type { HubBridge } from '../bridge/broker.js';
import { bridged, shardNodeId, type NodeKeeper } from '../bridge/setup.js';
import { createMeshLayout, MeshEndpoint, meshOptions, type MeshLayout } from './mesh.js';
import type { AcceptMode, ShardCommand, ShardEvent, ShardTask } from './shard.js';
import type { ChannelLifecycle } from '../actors/channel-actor.js';
import { SharedStats } from './stats.js';
import { allocRunningCode, runningCode } from './running-code.js';
import { bindThreadMetrics, Metrics } from './metrics.js';
import { STATS_MS, startThreadSampler, type ThreadSampler } from './thread-sampler.js';
import { AppConnections, SharedLimits } from '../security/shared-limits.js';
import { pusherAppCount } from '../transports/pusher/apps.js';
import { ListenError } from '../errors.js';
import { headSafe } from '../transports/head.js';
import { ConfigError } from '../config/load.js';

interface AcceptorApp extends TemplatedApp {
  addChildAppDescriptor(d: unknown): void;
  removeChildAppDescriptor(d: unknown): void;
}

interface ShardSlot {
  control?: MessagePort;
  descriptor?: unknown;
  /** The shard's thread; a replacement is always a new Worker, so nothing of the old one survives. */
  worker?: Worker;
  /** Settles when the thread has exited. */
  running?: Promise<void>;
  /** The thread has exited (running settled). */
  exited?: boolean;
  /** When the shard's last tick before it got stuck was (epoch ms); 0 while it is not stuck. */
  stuckSince: number;
  restarts: number;
  /**
   * The webhook-watched channels this slot's shard has occupied, with their members (ShardEvent
   * 'lifecycle'): kept across its restarts, handed to a replacement as its orphans.
   */
  occupied: Map<string, Set<string>>;
  /** With --redis: the node id of the shard's current thread (ShardTask.node). */
  node?: string;
  /** With --redis, after a crash: stops keeping the dead thread's node alive (NodeKeeper.hold). */
  release?: () => void;
}

const START_TIMEOUT_MS = 30_000;

/** Keeps a shard's occupied channels and their members up to date with one of its lifecycle events. */
function trackLifecycle(occupied: Map<string, Set<string>>, e: ChannelLifecycle): void {
  if (!('user' in e)) {
    if (e.t === 'vacated') occupied.delete(e.ch);
    else if (!occupied.has(e.ch)) occupied.set(e.ch, new Set());
  } else if (e.t === 'member_added') {
    let members = occupied.get(e.ch);
    if (!members) occupied.set(e.ch, (members = new Set()));
    members.add(e.user);
  } else {
    occupied.get(e.ch)?.delete(e.user);
  }
}
/** How often the supervisor looks for stuck shards (--stuck-shard-timeout). */
const STUCK_CHECK_MS = 500;
/** Least time shutdown gives shards to tell their clients to reconnect, after the drain. */
const GOODBYE_MS = 1000;

/** Whether this uWS build can hand sockets between apps (NOTES.md: not declared in its types). */
export function descriptorsSupported(): boolean {
  const app = uWS.App() as unknown as Partial<AcceptorApp> & { getDescriptor?: unknown; close(): void };
  const ok = typeof app.getDescriptor === 'function' && typeof app.addChildAppDescriptor === 'function';
  app.close();
  return ok;
}

/**
 * Binds `port` once without SO_REUSEPORT and releases it: with SO_REUSEPORT the shards would otherwise
 * share a port that another server already uses, silently. Port 0 picks a free port. uWS reports a
 * failed listen without a reason, so this is also where a --host typo is told apart from a busy port.
 */
async function claimPort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', (err: NodeJS.ErrnoException) => reject(listenFailure(host, port, err)));
    s.listen(port, host || undefined, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A failed bind as the CLI reports it: the port (exit 3), or a --host that cannot be bound here (exit 2). */
function listenFailure(host: string, port: number, err: NodeJS.ErrnoException): Error {
  const where = `cannot listen on ${host || '*'}:${port}`;
  switch (err.code) {
    case 'EADDRINUSE':
      return new ListenError(`${where}: the port is in use`);
    case 'EACCES':
      return new ListenError(`${where}: not permitted (ports below 1024 need privileges)`);
    case 'EADDRNOTAVAIL':
      return new ConfigError('host', `invalid --host "${host}": not an address of this machine (${err.code}); give one of its addresses, or leave it empty for all interfaces`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAI_NONAME':
      return new ConfigError('host', `invalid --host "${host}": it does not resolve to an address (${err.code}); give an IP address or a resolvable name, or leave it empty for all interfaces`);
    default:
      return new ListenError(`${where}: ${err.message}`);
  }
}

export class Supervisor {
  readonly config: ServerConfig;
  readonly apiKey: string;
  readonly log: Logger;
  readonly mode: AcceptMode;
  readonly layout: MeshLayout;
  readonly stats: SharedStats;
  /** Which actor hook each shard is running (running-code.ts). */
  private readonly runningCode: SharedArrayBuffer;
  /** The host's metrics registry; this instance writes the main thread's block. */
  readonly metrics: Metrics;
  private sampler?: ThreadSampler;
  readonly limits = SharedLimits.alloc();
  /** Open connections per Pusher app across the shards (its maxConnections); see AppConnections. */
  readonly appConnections: SharedArrayBuffer;
  private readonly pusherApps: number;
  readonly hub: Hub;
  port = 0;
  /** CPU-heavy work off the shards (asymmetric token verification); shards reach it through the mesh. */
  private compute?: Piscina;
  /** Actors' ctx.compute tasks (src/actors/compute-pool.ts). */
  private actorCompute?: ActorComputePool;
  private acceptor?: AcceptorApp;
  private listenSocket?: us_listen_socket;
  private readonly slots: ShardSlot[];
  private stopping = false;
  /** When watchShards last ran (epoch ms). */
  private lastWatch = Date.now();
  private fatal?: (err: Error) => void;
  /**
   * A shard's V8 young generation, capped (--shard-young-generation): left to V8 it grows to 48 MB while
   * a burst of connections opens, their records surviving the first scavenges, and those pages stay in
   * the RSS long after (2026-11-28: 2.4 KB per idle connection against 1.2 KB with 24 MB).
   */
  private get resourceLimits(): ResourceLimits | undefined {
    const bytes = this.config.shardYoungGeneration;
    return bytes > 0 ? { maxYoungGenerationSizeMb: bytes / (1024 * 1024) } : undefined;
  }

  /**
   * `bridge`: the main thread's view of the Redis bridge (cluster-wide queries), when --redis is set.
   * `execArgv`: Node options for every thread this starts (undefined: Node's default, this process's).
   * `keeper`: with --redis, keeps a crashed shard's node alive until its replacement retires it.
   */
  constructor(config: ServerConfig, apiKey: string, bridge?: HubBridge, private readonly execArgv?: string[], private readonly keeper?: NodeKeeper) {
    this.config = config;
    this.apiKey = apiKey;
    configureLogs({ format: config.logFormat, rate: config.logRate });
    this.log = createLogger(config.logLevel, 'main');
    setThreadLogger(this.log);
    const canDescribe = descriptorsSupported();
    if (config.acceptor === 'descriptor' && !canDescribe) throw new Error('--acceptor=descriptor: this uWebSockets.js build has no app descriptors; use reuseport or auto');
    // Handing sockets to TLS (SSLApp) shards through descriptors crashes this uWS build when apps are
    // closed and recreated (seen in tests), so TLS uses SO_REUSEPORT.
    const tls = !!config.tlsCert;
    if (config.acceptor === 'descriptor' && tls) throw new Error('--acceptor=descriptor cannot be combined with TLS in this build; use auto or reuseport');
    this.mode = config.acceptor === 'auto' ? (canDescribe && !tls ? 'descriptor' : 'reuseport') : config.acceptor;
    this.layout = createMeshLayout(config.workers, config.ringSize);
    this.stats = new SharedStats(SharedStats.alloc(config.workers + 1), config.workers + 1);
    this.runningCode = allocRunningCode(config.workers);
    this.stats.set(config.workers, 'startedAt', Date.now());
    this.metrics = new Metrics(Metrics.alloc(config.workers + 1), config.workers + 1, config.workers);
    // The main thread's own writes (in-memory clients, restarts) go to its block of this host.
    bindThreadMetrics(this.metrics);
    this.slots = Array.from({ length: config.workers }, () => ({ restarts: 0, stuckSince: 0, occupied: new Map<string, Set<string>>() }));
    this.pusherApps = pusherAppCount(config);
    this.appConnections = AppConnections.alloc(this.pusherApps, config.workers);
    // The main thread is a mesh member too (index = workers), so in-process clients and server-side
    // publishes use the same path as shards.
    this.hub = new Hub({ mesh: new MeshEndpoint(this.layout, config.workers, meshOptions(config)), maxChannelsPerConnection: config.maxChannelsPerConnection, bridge });
  }

  async start(): Promise<void> {
    const { config } = this;
    this.hub.start();
    if (config.jwtPublicKey) {
      this.compute = new Piscina({
        filename: new URL('../../workers/compute.js', import.meta.url).href,
        name: 'default',
        minThreads: 1,
        maxThreads: Math.max(1, Math.floor(config.workers / 2)),
        idleTimeout: 30_000,
        execArgv: this.execArgv,
        workerData: { publicKey: config.jwtPublicKey, audience: config.jwtAudience, issuer: config.jwtIssuer },
      });
      const compute = this.compute;
      this.hub.onForward('verify', (body: { token: string }) => compute.run(body));
    }
    this.actorCompute = startActorCompute(config, this.hub, this.execArgv);

    if (this.mode === 'descriptor') {
      // Check the port is free (and the host one of this machine's) before the shards start: uWS would
      // only say that its listen failed, and only once every shard is up. Without a host the acceptor
      // then listens exclusively, which also covers a server that takes the port in between.
      // Port 0 is resolved here too: uSockets sets SO_REUSEADDR only on a fixed port, and the
      // connections of a listener without it hold its port in TIME_WAIT for a minute after close, so
      // an embedding app could not start again on `server.port` (tests, hot reload).
      this.port = await claimPort(config.host, config.port);
      const app = uWS.App() as AcceptorApp;
      this.acceptor = app;
      // Sockets accepted while no shard's app is attached (start-up, all shards down) are served by
      // this app itself. Without a route uWS answers 404 and keeps the connection alive, so an HTTP
      // client's keep-alive pool would go on getting 404s from it after the shards are up: answer 503
      // and close instead, so the client retries on a fresh connection.
      app.any(
        '/*',
        headSafe((res) => {
          res.cork(() => {
            res.writeStatus('503 Service Unavailable').writeHeader('content-type', 'application/json').writeHeader('retry-after', '1');
            res.end(JSON.stringify({ error: { code: 'unavailable', message: 'server starting or restarting; retry' } }), true);
          });
        }),
      );
    } else {
      this.port = await claimPort(config.host, config.port);
    }

    const failed = new Promise<never>((_, reject) => (this.fatal = reject));
    failed.catch(() => {});
    await Promise.race([Promise.all(this.slots.map((_, i) => this.startShard(i))), failed]);
    this.fatal = undefined;
    // Listen only once every shard's app is attached, so the first connections already reach a shard.
    if (this.mode === 'descriptor') this.port = await this.listenAcceptor(this.port);
    this.stats.set(config.workers, 'alive', 1);
    this.metrics.set('rt_up', undefined, 1);
    this.sampler = startThreadSampler(this.metrics, {
      more: () => this.metrics.set('rt_subscriptions', undefined, this.hub.stats.subscriptions),
    });
    this.sampler.every(STATS_MS, () => this.publishStats());
    if (config.stuckShardTimeout > 0) this.sampler.every(STUCK_CHECK_MS, () => this.watchShards());
    this.log.info(`acceptor mode: ${this.mode === 'descriptor' ? 'uWS app descriptors (main thread accepts, shards serve)' : 'SO_REUSEPORT (each shard listens)'}`);
  }

  private async listenAcceptor(port: number): Promise<number> {
    const { config } = this;
    // With --port 0 the claimed port may have been taken by someone else since: pick another.
    for (let attempt = 1; ; attempt++) {
      const bound = this.bindAcceptor(port);
      if (bound || config.port !== 0 || attempt === 3) {
        if (bound) return port;
        throw new ListenError(`cannot listen on ${config.host || '*'}:${config.port}: the port is in use, or not permitted`);
      }
      port = await claimPort(config.host, 0);
    }
  }

  /** uWS listens synchronously: the callback has run when listen returns. */
  private bindAcceptor(port: number): boolean {
    const { config } = this;
    const app = this.acceptor!;
    const cb = (s: us_listen_socket | false) => {
      if (s) this.listenSocket = s;
    };
    // Exclusive: a second server on the same port must fail loudly, not share it silently.
    if (config.host) app.listen(config.host, port, cb);
    else app.listen(port, uWS.ListenOptions?.LIBUS_LISTEN_EXCLUSIVE_PORT ?? 1, cb);
    return this.listenSocket !== undefined;
  }

  /**
   * Starts shard `i` in a new thread. A shard is not a pool task: a task's replacement would run in the
   * same thread and inherit the dead shard's module-level state (sessions, SSE streams, actor modules)
   * and every timer nobody cleared. The thread exits when the shard stops or crashes (after closing its
   * uWS handles: a thread that dies holding them aborts the process), and its exit is the signal.
   */
  private startShard(i: number): Promise<void> {
    const slot = this.slots[i]!;
    // Whatever a replaced shard still counted (it died without closing its sockets) is gone.
    AppConnections.forgetShard(this.appConnections, this.pusherApps, i);
    const { port1, port2 } = new MessageChannel();
    slot.control = port1;
    const deadNode = slot.restarts > 0 ? slot.node : undefined;
    slot.node = bridged(this.config) ? shardNodeId(this.config, i) : undefined;
    const task: ShardTask = {
      shard: i,
      layout: this.layout,
      config: this.config,
      apiKey: this.apiKey,
      stats: this.stats.sab,
      metrics: this.metrics.sab,
      limits: this.limits,
      appConnections: this.appConnections,
      mode: this.mode,
      port: this.port,
      control: port2,
      replacement: slot.restarts > 0,
      node: slot.node,
      deadNode,
      orphans: slot.restarts > 0 ? [...slot.occupied].map(([ch, members]) => ({ ch, members: [...members] })) : undefined,
      actorModules: this.config.actors ? compiledModules(this.config.actors) : undefined,
      runningCode: this.runningCode,
    };
    let worker: Worker;
    try {
      worker = new Worker(new URL('../../workers/shard.js', import.meta.url), { workerData: task, transferList: [port2], execArgv: this.execArgv, resourceLimits: this.resourceLimits });
    } catch (err) {
      // Refused before any thread started (an execArgv Node does not allow in a worker): no control
      // channel, or it would hold the process open and stop() would wait on it for a drain reply.
      port1.close();
      port2.close();
      slot.control = undefined;
      return Promise.reject(err);
    }
    slot.worker = worker;
    let error: Error | null = null;
    let dying = false;
    worker.on('error', (err) => (error ??= err));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`shard ${i} did not start within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
      port1.on('message', (e: ShardEvent) => {
        if (e.type === 'ready') {
          clearTimeout(timer);
          if (e.descriptor !== undefined) {
            slot.descriptor = e.descriptor;
            this.acceptor!.addChildAppDescriptor(e.descriptor);
          }
          resolve();
        } else if (e.type === 'fatal') {
          clearTimeout(timer);
          reject(new Error(e.message));
        } else if (e.type === 'retired') {
          slot.release?.();
          slot.release = undefined;
        } else if (e.type === 'lifecycle') {
          // What a crashing shard's teardown decides (its sockets closing) never leaves it: its webhook
          // queue dies with the thread. Left as it was, so the replacement reports those channels.
          if (!dying) trackLifecycle(slot.occupied, e.e);
        } else if (e.type === 'crashing') {
          dying = true;
          error = new Error(e.message);
          // Stop handing it sockets now, before its app closes.
          this.detach(i);
        }
      });
      slot.exited = false;
      slot.running = new Promise<void>((exited) =>
        worker.once('exit', (code) => {
          slot.exited = true;
          exited();
          if (slot.worker !== worker) return;
          slot.worker = undefined;
          clearTimeout(timer);
          const err = error ?? (code === 0 ? null : new Error(`thread exited with code ${code}`));
          this.shardEnded(i, err);
          reject(err ?? new Error(`shard ${i} exited during start`));
        }),
      );
    });
  }

  private detach(i: number): void {
    const slot = this.slots[i]!;
    if (slot.descriptor !== undefined && this.acceptor) {
      this.acceptor.removeChildAppDescriptor(slot.descriptor);
      slot.descriptor = undefined;
    }
  }

  private shardEnded(i: number, err: Error | null): void {
    const slot = this.slots[i]!;
    // Stop handing sockets to an app that no longer exists.
    this.detach(i);
    this.stats.set(i, 'alive', 0);
    this.unstuck(i);
    // The shard's block is written by the shard; marking it down here is the one exception (it is gone).
    new Metrics(this.metrics.sab, this.metrics.threads, i).set('rt_up', undefined, 0);
    slot.control?.close();
    // Gone with its thread: stop() must not wait for this shard's drain reply. A shard that died during
    // start left a closed port here, and stop() then waited on it with nothing keeping the process alive:
    // the process exited 0, the failed start never reported.
    slot.control = undefined;
    if (this.stopping) return;
    this.log.error(`shard ${i} ${err ? `crashed: ${err.message}` : 'exited unexpectedly'}`, { event: 'shard.crashed', shard: i, ...(err ? { err } : {}) });
    if (this.fatal) return this.fatal(err ?? new Error(`shard ${i} exited during start`));
    if (!this.config.restartShards) return;
    slot.restarts++;
    this.stats.set(i, 'restarts', slot.restarts);
    // The survivors' subscriptions of its channels are still registered under the dead thread's node:
    // swept while the replacement starts, their members would leave and join again. The replacement
    // retires it once they are registered under its own node. A replacement that died before doing so
    // leaves the older node to expire, as a dead host's would.
    slot.release?.();
    slot.release = slot.node ? this.keeper?.hold(slot.node) : undefined;
    this.startShard(i).then(
      () => {
        // Counted once the new thread serves: the metric says "replaced", and a failed start is logged.
        this.metrics.inc('rt_shard_restarts_total');
        this.log.info(`shard ${i} replaced by a new thread (restart #${slot.restarts})`, { event: 'shard.restarted', shard: i, restarts: slot.restarts });
        // Everyone forgets the dead thread's connections and re-subscribes theirs with the new owner.
        this.hub.mesh.broadcast({ t: 'restarted', peer: i }, true);
      },
      (e: Error) => {
        this.log.error(`shard ${i} could not be restarted: ${e.message}`, { event: 'shard.restart_failed', shard: i });
        slot.release?.();
        slot.release = undefined;
      },
    );
  }

  /**
   * A shard whose housekeeping tick (every 20–200 ms) has not run for --stuck-shard-timeout is stuck:
   * a synchronous loop in an actor hook, most likely. Nothing can interrupt it (a thread holding uWS
   * sockets cannot be ended without aborting the process), so the supervisor says so, once, naming
   * what it runs; /health answers 503 `degraded` while it lasts, and a shard that moves again is
   * reported back.
   */
  private watchShards(): void {
    const limit = this.config.stuckShardTimeout * 1000;
    const now = Date.now();
    // The whole process stood still (SIGSTOP, a suspended VM): every thread resumes at once, and this
    // check may run before the shards' ticks. Not a stuck shard; look again next time.
    const since = now - this.lastWatch;
    this.lastWatch = now;
    if (since > limit) return;
    let stuck = 0;
    this.slots.forEach((slot, i) => {
      const tickAt = this.stats.get(i, 'tickAt');
      if (this.stopping || this.stats.get(i, 'alive') !== 1 || now - tickAt <= limit) {
        if (slot.stuckSince) {
          this.log.notice(`shard ${i} is moving again after ${((tickAt - slot.stuckSince) / 1000).toFixed(1)} s stuck`, { event: 'shard.resumed', shard: i, seconds: (tickAt - slot.stuckSince) / 1000 });
          this.unstuck(i);
        }
        return;
      }
      stuck++;
      if (slot.stuckSince) return;
      slot.stuckSince = tickAt;
      this.stats.set(i, 'stuck', 1);
      const running = this.running(i, now);
      this.log.error(
        `shard ${i} is stuck: its event loop has not turned for ${((now - tickAt) / 1000).toFixed(1)} s, ${running.text}. ` +
          'Its connections and the channels it owns get no service until it returns; /health answers 503 meanwhile. ' +
          'A synchronous hook cannot be interrupted: fix it (or move the work to ctx.compute) and restart the server (which aborts, exit status 134, if the shard still holds connections then: they cannot be closed)',
        { event: 'shard.stuck', shard: i, seconds: (now - tickAt) / 1000, ...running.fields },
      );
    });
    this.metrics.set('rt_stuck_shards', undefined, stuck);
  }

  private unstuck(i: number): void {
    this.slots[i]!.stuckSince = 0;
    this.stats.set(i, 'stuck', 0);
  }

  /**
   * What shard `i` runs, read once from its slot: for the message ("running onMessage of actor … for
   * channel … (for 12.3 s)", or that no hook is running) and for the log's fields.
   */
  private running(i: number, now: number): { text: string; fields: Record<string, unknown> } {
    const r = runningCode(this.runningCode, i);
    if (!r) return { text: 'in no actor hook or request handler (another long synchronous task, or a very long GC pause)', fields: {} };
    return {
      text: `running ${r.label}${r.channel ? ` for channel ${r.channel}` : ''} (for ${((now - r.since) / 1000).toFixed(1)} s)`,
      fields: { running: r.label, channel: r.channel },
    };
  }

  /** The main thread's own row in /metrics (its in-process clients and server.publish() use the mesh too). */
  private publishStats(): void {
    const me = this.config.workers;
    const mesh = this.hub.mesh;
    this.stats.set(me, 'ringQueuedBytes', mesh.queuedBytes());
    this.stats.set(me, 'overloadRefused', mesh.refused);
    this.stats.set(me, 'overloadedPeers', mesh.overloadedPeers());
    this.metrics.set('rt_ring_queued_bytes', undefined, mesh.queuedBytes());
    this.metrics.set('rt_overloaded_refusals_total', undefined, mesh.refused);
    this.metrics.set('rt_overloaded_peers', undefined, mesh.overloadedPeers());
  }

  private command(i: number, cmd: ShardCommand): void {
    this.slots[i]?.control?.postMessage(cmd);
  }

  /** Kills a shard as an uncaught error would (tests of crash recovery). */
  crashShard(i: number): void {
    this.command(i, { type: 'crash' });
  }

  /** Full GC in every thread when the process runs with --expose-gc; resolves with the heap in use. */
  async collectGarbage(): Promise<number> {
    (globalThis as { gc?: () => void }).gc?.();
    const heaps = await Promise.all(
      this.slots.map(
        (slot, i) =>
          new Promise<number>((resolve) => {
            if (!slot.control) return resolve(0);
            const timer = setTimeout(() => resolve(0), 5000);
            const on = (e: ShardEvent) => {
              if (e.type !== 'gcDone') return;
              clearTimeout(timer);
              slot.control!.off('message', on);
              resolve(e.heapUsed);
            };
            slot.control.on('message', on);
            this.command(i, { type: 'gc' });
          }),
      ),
    );
    return heaps.reduce((a, b) => a + b, process.memoryUsage().heapUsed);
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.sampler?.stop();
    for (const slot of this.slots) slot.release?.();
    const timeoutMs = this.config.shutdownTimeout * 1000;
    const deadline = Date.now() + timeoutMs;
    if (this.listenSocket) {
      uWS.us_listen_socket_close(this.listenSocket);
      this.listenSocket = undefined;
    }
    // Phase 1: no new connections anywhere; in-flight API requests finish while every owner still runs.
    await this.everyShard({ type: 'drain', timeoutMs }, 'drained', timeoutMs);
    this.log.debug('shutdown: shards drained');
    // Phase 2: tell clients to reconnect elsewhere, flush rings, exit, in what is left of the deadline;
    // the goodbyes get at least GOODBYE_MS even when the drain used it all.
    const left = Math.max(deadline - Date.now(), GOODBYE_MS);
    this.slots.forEach((_, i) => this.command(i, { type: 'stop', timeoutMs: left }));
    await Promise.race([Promise.allSettled(this.slots.map((s) => s.running)), new Promise((r) => setTimeout(r, left).unref())]);
    this.log.debug('shutdown: shards stopped');
    this.hub.mesh.close();
    this.acceptor?.close();
    // A shard that did not finish in time is ended anyway (its app is closed by then, or it is stuck).
    // A stuck one still holds its sockets: ending it aborts the process. Say why first.
    const now = Date.now();
    this.slots.forEach((slot, i) => {
      if (slot.worker && !slot.exited && now - this.stats.get(i, 'tickAt') > 1000) {
        // Counted by the shard as they open and close: it cannot have closed any since it got stuck.
        const held = this.metrics.list('rt_connections', true).reduce((n, c) => n + (c.thread === i ? c.value : 0), 0);
        const outcome = held > 0 ? `It holds ${held} client connection${held === 1 ? '' : 's'}, and a thread holding open sockets cannot be ended cleanly: the process aborts (exit status 134)` : 'It holds no client connection, so it is ended where it stands (an HTTP keep-alive connection still open on it would abort the process, exit status 134)';
        const running = this.running(i, now);
        this.log.error(`shard ${i} did not stop within --shutdown-timeout: it is stuck, ${running.text}. ${outcome}`, { event: 'shard.stuck_at_exit', shard: i, connections: held, ...running.fields });
      }
    });
    await Promise.all(this.slots.map((s) => s.worker?.terminate()));
    await this.compute?.destroy();
    await this.actorCompute?.destroy();
    this.log.debug('shutdown: threads ended');
  }

  private everyShard(cmd: ShardCommand, reply: ShardEvent['type'], timeoutMs: number): Promise<unknown> {
    return Promise.race([
      Promise.all(
        this.slots.map(
          (slot, i) =>
            new Promise<void>((resolve) => {
              if (!slot.control) return resolve();
              slot.control.on('message', (e: ShardEvent) => e.type === reply && resolve());
              this.command(i, cmd);
            }),
        ),
      ),
      // unref: a deadline that lost the race must not keep the process alive for its full length.
      new Promise((r) => setTimeout(r, timeoutMs).unref()),
    ]);
  }
}
