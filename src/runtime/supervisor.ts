/**
 * The main thread: builds the ring mesh, starts one shard per worker through piscina, hands accepted
 * sockets to shards (uWS app descriptors, or SO_REUSEPORT where the build lacks them), replaces crashed
 * shards, and shuts down in two phases (drain in-flight requests everywhere, then close connections).
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { createServer as createNetServer } from 'node:net';
import { Piscina } from 'piscina';
import uWS from 'uWebSockets.js';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import type { ServerConfig } from '../config/schema.js';
import { createLogger, type Logger } from '../log.js';
import { Hub } from './hub.js';
import type { HubBridge } from '../bridge/broker.js';
import { createMeshLayout, MeshEndpoint, type MeshLayout } from './mesh.js';
import type { AcceptMode, ShardCommand, ShardEvent, ShardTask } from './shard.js';
import { SharedStats } from './stats.js';
import { SharedLimits } from '../security/shared-limits.js';

interface AcceptorApp extends TemplatedApp {
  addChildAppDescriptor(d: unknown): void;
  removeChildAppDescriptor(d: unknown): void;
}

interface ShardSlot {
  control?: MessagePort;
  descriptor?: unknown;
  running?: Promise<void>;
  restarts: number;
}

const START_TIMEOUT_MS = 30_000;

/** Whether this uWS build can hand sockets between apps (NOTES.md: not declared in its types). */
export function descriptorsSupported(): boolean {
  const app = uWS.App() as unknown as Partial<AcceptorApp> & { getDescriptor?: unknown; close(): void };
  const ok = typeof app.getDescriptor === 'function' && typeof app.addChildAppDescriptor === 'function';
  app.close();
  return ok;
}

/**
 * Binds `port` once without SO_REUSEPORT and releases it: with SO_REUSEPORT the shards would otherwise
 * share a port that another server already uses, silently. Port 0 picks a free port.
 */
async function claimPort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`cannot listen on ${host || '*'}:${port}: ${err.code === 'EADDRINUSE' ? 'the port is in use' : err.message}`)),
    );
    s.listen(port, host || undefined, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export class Supervisor {
  readonly config: ServerConfig;
  readonly apiKey: string;
  readonly log: Logger;
  readonly mode: AcceptMode;
  readonly layout: MeshLayout;
  readonly stats: SharedStats;
  readonly limits = SharedLimits.alloc();
  readonly hub: Hub;
  port = 0;
  private pool?: Piscina;
  /** CPU-heavy work off the shards (asymmetric token verification); shards reach it through the mesh. */
  private compute?: Piscina;
  private acceptor?: AcceptorApp;
  private listenSocket?: us_listen_socket;
  private readonly slots: ShardSlot[];
  private stopping = false;
  private fatal?: (err: Error) => void;

  /** `bridge`: the main thread's view of the Redis bridge (cluster-wide queries), when --redis is set. */
  constructor(config: ServerConfig, apiKey: string, bridge?: HubBridge) {
    this.config = config;
    this.apiKey = apiKey;
    this.log = createLogger(config.logLevel, 'main');
    const canDescribe = descriptorsSupported();
    if (config.acceptor === 'descriptor' && !canDescribe) throw new Error('--acceptor=descriptor: this uWebSockets.js build has no app descriptors; use reuseport or auto');
    // Handing sockets to TLS (SSLApp) shards through descriptors crashes this uWS build when apps are
    // closed and recreated (seen in tests), so TLS uses SO_REUSEPORT.
    const tls = !!config.tlsCert;
    if (config.acceptor === 'descriptor' && tls) throw new Error('--acceptor=descriptor cannot be combined with TLS in this build; use auto or reuseport');
    this.mode = config.acceptor === 'auto' ? (canDescribe && !tls ? 'descriptor' : 'reuseport') : config.acceptor;
    this.layout = createMeshLayout(config.workers, config.ringSize);
    this.stats = new SharedStats(SharedStats.alloc(config.workers + 1), config.workers + 1);
    this.slots = Array.from({ length: config.workers }, () => ({ restarts: 0 }));
    // The main thread is a mesh member too (index = workers), so in-process clients and server-side
    // publishes use the same path as shards.
    this.hub = new Hub({ mesh: new MeshEndpoint(this.layout, config.workers), maxChannelsPerConnection: config.maxChannelsPerConnection, bridge });
  }

  async start(): Promise<void> {
    const { config } = this;
    this.hub.start();
    this.pool = new Piscina({
      filename: new URL('../../workers/shard.js', import.meta.url).href,
      name: 'default',
      minThreads: config.workers,
      maxThreads: config.workers,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      concurrentTasksPerWorker: 1,
      // Shards run their own event loops; piscina's synchronous Atomics.wait between tasks would block them.
      atomics: 'disabled',
    });
    this.pool.on('error', (err) => this.log.error('worker pool error:', err));
    if (config.jwtPublicKey) {
      this.compute = new Piscina({
        filename: new URL('../../workers/compute.js', import.meta.url).href,
        name: 'default',
        minThreads: 1,
        maxThreads: Math.max(1, Math.floor(config.workers / 2)),
        idleTimeout: 30_000,
        workerData: { publicKey: config.jwtPublicKey, audience: config.jwtAudience, issuer: config.jwtIssuer },
      });
      const compute = this.compute;
      this.hub.onForward('verify', (body: { token: string }) => compute.run(body));
    }

    if (this.mode === 'descriptor') {
      // uWS can only listen exclusively without a host; with one, check the port is free first.
      if (config.host && config.port !== 0) await claimPort(config.host, config.port);
      const app = uWS.App() as AcceptorApp;
      this.acceptor = app;
      // Sockets accepted while no shard's app is attached (start-up, all shards down) are served by
      // this app itself. Without a route uWS answers 404 and keeps the connection alive, so an HTTP
      // client's keep-alive pool would go on getting 404s from it after the shards are up: answer 503
      // and close instead, so the client retries on a fresh connection.
      app.any('/*', (res) => {
        res.cork(() => {
          res.writeStatus('503 Service Unavailable').writeHeader('content-type', 'application/json').writeHeader('retry-after', '1');
          res.end(JSON.stringify({ error: { code: 'unavailable', message: 'server starting or restarting; retry' } }), true);
        });
      });
    } else {
      this.port = await claimPort(config.host, config.port);
    }

    const failed = new Promise<never>((_, reject) => (this.fatal = reject));
    failed.catch(() => {});
    await Promise.race([Promise.all(this.slots.map((_, i) => this.startShard(i))), failed]);
    this.fatal = undefined;
    // Listen only once every shard's app is attached, so the first connections already reach a shard.
    if (this.mode === 'descriptor') this.port = await this.listenAcceptor();
    this.stats.set(config.workers, 'alive', 1);
    this.log.info(`acceptor mode: ${this.mode === 'descriptor' ? 'uWS app descriptors (main thread accepts, shards serve)' : 'SO_REUSEPORT (each shard listens)'}`);
  }

  private listenAcceptor(): Promise<number> {
    const { config } = this;
    const app = this.acceptor!;
    return new Promise<number>((resolve, reject) => {
      const cb = (s: us_listen_socket | false) => {
        if (!s) return reject(new Error(`cannot listen on ${config.host || '*'}:${config.port} (in use, or not permitted)`));
        this.listenSocket = s;
        resolve(uWS.us_socket_local_port(s as never));
      };
      // Exclusive: a second server on the same port must fail loudly, not share it silently.
      if (config.host) app.listen(config.host, config.port, cb);
      else app.listen(config.port, uWS.ListenOptions?.LIBUS_LISTEN_EXCLUSIVE_PORT ?? 1, cb);
    });
  }

  private startShard(i: number): Promise<void> {
    const slot = this.slots[i]!;
    const { port1, port2 } = new MessageChannel();
    slot.control = port1;
    const task: ShardTask = {
      shard: i,
      layout: this.layout,
      config: this.config,
      apiKey: this.apiKey,
      stats: this.stats.sab,
      limits: this.limits,
      mode: this.mode,
      port: this.port,
      control: port2,
    };
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
        }
      });
      slot.running = this.pool!.run(task, { transferList: [port2] }).then(
        () => this.shardEnded(i, null),
        (err: Error) => {
          clearTimeout(timer);
          this.shardEnded(i, err);
          reject(err);
        },
      );
    });
  }

  private shardEnded(i: number, err: Error | null): void {
    const slot = this.slots[i]!;
    if (slot.descriptor !== undefined && this.acceptor) {
      // Stop handing sockets to an app that no longer exists.
      this.acceptor.removeChildAppDescriptor(slot.descriptor);
      slot.descriptor = undefined;
    }
    this.stats.set(i, 'alive', 0);
    slot.control?.close();
    if (this.stopping) return;
    this.log.error(`shard ${i} ${err ? `crashed: ${err.message}` : 'exited unexpectedly'}`);
    if (this.fatal) return this.fatal(err ?? new Error(`shard ${i} exited during start`));
    if (!this.config.restartShards) return;
    slot.restarts++;
    this.stats.set(i, 'restarts', slot.restarts);
    this.startShard(i).then(
      () => {
        this.log.info(`shard ${i} replaced (restart #${slot.restarts})`);
        // Everyone forgets the dead thread's connections and re-subscribes theirs with the new owner.
        this.hub.mesh.broadcast({ t: 'restarted', peer: i }, true);
      },
      (e: Error) => this.log.error(`shard ${i} could not be restarted: ${e.message}`),
    );
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
    const timeoutMs = this.config.shutdownTimeout * 1000;
    if (this.listenSocket) {
      uWS.us_listen_socket_close(this.listenSocket);
      this.listenSocket = undefined;
    }
    // Phase 1: no new connections anywhere; in-flight API requests finish while every owner still runs.
    await this.everyShard('drain', 'drained', timeoutMs);
    this.log.debug('shutdown: shards drained');
    // Phase 2: tell clients to reconnect elsewhere, flush rings, exit.
    this.slots.forEach((_, i) => this.command(i, { type: 'stop', timeoutMs }));
    await Promise.race([Promise.allSettled(this.slots.map((s) => s.running)), new Promise((r) => setTimeout(r, timeoutMs + 1000).unref())]);
    this.log.debug('shutdown: shards stopped');
    this.hub.mesh.close();
    this.acceptor?.close();
    await this.pool?.destroy();
    await this.compute?.destroy();
    this.log.debug('shutdown: pool destroyed');
  }

  private everyShard(type: 'drain', reply: ShardEvent['type'], timeoutMs: number): Promise<unknown> {
    return Promise.race([
      Promise.all(
        this.slots.map(
          (slot, i) =>
            new Promise<void>((resolve) => {
              if (!slot.control) return resolve();
              slot.control.on('message', (e: ShardEvent) => e.type === reply && resolve());
              this.command(i, { type });
            }),
        ),
      ),
      // unref: a deadline that lost the race must not keep the process alive for its full length.
      new Promise((r) => setTimeout(r, timeoutMs).unref()),
    ]);
  }
}
