/**
 * The one configuration schema. Every option has a camelCase key (config file, createServer), a
 * kebab-case CLI flag and an RT_* environment variable derived from it, a type, a default and a doc line.
 * Precedence: CLI flags > environment > config file > defaults (see load.ts).
 */
import { availableCpus } from './cpus.js';

export type OptionType = 'int' | 'string' | 'bool' | 'enum' | 'list' | 'duration' | 'bytes' | 'workers' | 'json';

export interface OptionSpec {
  readonly key: keyof ServerConfig;
  readonly type: OptionType;
  readonly default: unknown;
  readonly doc: string;
  readonly choices?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  /** Hidden from --help (internal or test-only knobs). */
  readonly hidden?: boolean;
  /** Environment variable, when it is not the one derived from the key (see envOf). */
  readonly env?: string;
  /** Further environment variables accepted for this option, after `env` (e.g. the PUSHER_APP_* names). */
  readonly envAliases?: readonly string[];
  /** Options of which one must be set for this one to have any effect (a warning at start otherwise). */
  readonly needs?: readonly (keyof ServerConfig)[];
  /** The native transport (--transports) this option belongs to: without it, a warning at start. */
  readonly needsTransport?: 'ws' | 'sse' | 'polling';
}

export interface ServerConfig {
  /** TCP port for every transport. */
  port: number;
  /** Interface to bind; empty string binds all interfaces (IPv4 and IPv6). */
  host: string;
  /** Number of shard worker threads; 'auto' = one per core. */
  workers: number;
  /** Key required by the HTTP API (Authorization: Bearer …). Generated and printed once when empty. */
  apiKey: string;
  /** HS256 secret for connection tokens. */
  jwtSecret: string;
  /** PEM public key (or path to one) for RS256/ES256 connection tokens. */
  jwtPublicKey: string;
  /** Accepted `aud` claims (any of them); empty accepts tokens without checking `aud`. */
  jwtAudience: string[];
  /** Accepted `iss` claims (any of them); empty skips the check. */
  jwtIssuer: string[];
  /** JSON Web Key Set URL of an identity provider; RS256/ES256 keys chosen by the token's `kid`. */
  jwksUrl: string;
  /** Least time between two JWKS re-fetches caused by an unknown `kid`, in seconds. */
  jwksCooldown: number;
  /** Seconds a connection whose token expired has to send a fresh one before it is closed with 4010. */
  tokenGrace: number;
  /** Folder of custom channel actors (.ts/.js/.mjs), loaded at start. */
  actors: string;
  /** Deadline of an actor hook that returns a promise, in seconds. */
  actorHookTimeout: number;
  /** Operations that may wait in one channel actor's mailbox before it answers `overloaded`. */
  actorMailboxSize: number;
  /** Threads of the compute pool running actors' `ctx.compute` tasks (0: half the workers, at least 1). */
  actorComputeThreads: number;
  /** Messages kept per channel for resume. 0 disables history. */
  historySize: number;
  /** How long history entries (and an idle channel's actor) live, in seconds. */
  historyTtl: number;
  /** Largest accepted message from a client or HTTP body, in bytes. */
  maxPayload: number;
  /** Channels one connection may be subscribed to at once. */
  maxChannelsPerConnection: number;
  /** Seconds of silence after which a connection is considered dead (uWS sends pings automatically). */
  idleTimeout: number;
  /** Bytes buffered for one slow subscriber before it is told and disconnected. */
  maxBackpressure: number;
  /** Milliseconds a shard may hold publications so that a subscriber gets several in one socket write (0: off). */
  writeDelay: number;
  /** Who may publish from a client connection: none, subscribers of private/presence channels, or any subscriber. */
  clientPublish: 'none' | 'private' | 'all';
  /** Socket hand-off between threads: uWS app descriptors, SO_REUSEPORT, or detect. */
  acceptor: 'auto' | 'descriptor' | 'reuseport';
  /** Bytes of each inter-thread ring queue's data area. */
  ringSize: number;
  /** Bytes queued locally for one peer thread (its ring full) above which new requests to it are refused as `overloaded`. */
  ringQueueHigh: number;
  /** Bytes queued for a refusing peer below which it accepts new requests again. */
  ringQueueLow: number;
  /** Seconds a request to another thread waits for its answer before failing with `timeout`. */
  requestTimeout: number;
  /** Log verbosity. */
  logLevel: 'error' | 'warn' | 'info' | 'debug';
  /** Log line format: readable text, or one JSON object per line. */
  logFormat: 'text' | 'json';
  /** Lines per second per kind of frequent event (connections, subscriptions, refusals) and thread; 0 = unlimited. */
  logRate: number;
  /** Config file (JSON) to read; only meaningful on the command line or in the environment. */
  config: string;
  /** Seconds to wait for clients and queues to drain on SIGTERM before exiting anyway. */
  shutdownTimeout: number;
  /** Restart a crashed shard automatically. */
  restartShards: boolean;
  /** Seconds a shard's event loop may stand still before it is reported stuck (0: never). */
  stuckShardTimeout: number;
  /** Most memory each shard's V8 young generation may take, in bytes (0: V8's default). */
  shardYoungGeneration: number;
  // Security and limits
  /** Browser origins allowed besides the server's own host ('*' = any). */
  allowedOrigins: string[];
  /** TLS certificate (PEM file); with tlsKey, serves wss:// and https:// on the same port. */
  tlsCert: string;
  /** TLS private key (PEM file). */
  tlsKey: string;
  /** Passphrase of the TLS private key. */
  tlsPassphrase: string;
  /** Messages per second one connection may send (token bucket refill rate); 0 = unlimited. */
  rateLimit: number;
  /** Burst size of the per-connection token bucket. */
  rateBurst: number;
  /** Open connections per host (all shards); 0 = unlimited. */
  maxConnections: number;
  /** Proxies (addresses, CIDRs, loopback/private/linklocal) whose X-Forwarded-For / X-Real-IP name the client. */
  trustProxy: string[];
  /** Open connections per client IP (all shards); 0 = unlimited. */
  maxConnectionsPerIp: number;
  /** New connections per second per client IP (all shards); 0 = unlimited. */
  connectionRatePerIp: number;
  /** HTTP API requests per second per API key (all shards); 0 = unlimited. */
  apiRateLimit: number;
  /** Refuse connections without a valid token. */
  requireAuth: boolean;
  /** Members per presence channel. */
  maxPresenceMembers: number;
  /** Largest client publish / whisper payload, in bytes (after decoding). */
  maxWhisperSize: number;
  // Socket.IO gateway
  /** Backend endpoint that authorizes private-/presence- subscriptions (e.g. Laravel's /broadcasting/auth); empty = not used. */
  authEndpoint: string;
  /** Engine.IO heartbeat: seconds between the server's pings. */
  socketioPingInterval: number;
  /** Engine.IO heartbeat: seconds to wait for the client's pong before closing. */
  socketioPingTimeout: number;
  /** Largest Engine.IO message or polling body, in bytes (announced to clients as maxPayload). */
  socketioMaxHttpBufferSize: number;
  /** Socket.IO packet format: the default JSON parser or socket.io-msgpack-parser. */
  socketioParser: 'json' | 'msgpack';
  /** Namespaces clients may connect to, besides '/' and those declared by request handler files. */
  socketioNamespaces: string[];
  /** Engine.IO transports offered. */
  socketioTransports: string[];
  /** Seconds a new Engine.IO session may take to join a namespace before it is closed. */
  socketioConnectTimeout: number;
  /** How the CONNECT payload's `auth.token` is taken: auto (a JWT when it looks like one and JWT verification is configured), jwt (always), off (never). */
  socketioAuthToken: 'auto' | 'jwt' | 'off';
  /** Connection state recovery: seconds a disconnected Socket.IO client may take to come back and get what it missed (0 = off). */
  socketioRecovery: number;
  /** Seconds a presence member whose Socket.IO connection dropped (recoverably) stays before it leaves; capped by socketioRecovery. */
  socketioPresenceGrace: number;
  /** Path of a raw Engine.IO endpoint that echoes every message (for protocol conformance tests); empty = off. */
  engineioEchoPath: string;
  // SSE and long-polling
  /** Transports served besides the HTTP API and Socket.IO: any of ws, sse, polling. */
  transports: string[];
  /** Seconds a long-poll request is held open when there is nothing to send. */
  pollTimeout: number;
  /** Seconds a long-polling session may go without a poll request before it is closed. */
  pollSessionTimeout: number;
  /** Seconds between SSE keep-alive comments (at most 15, as DESIGN.md promises). */
  sseKeepalive: number;
  // Redis bridge
  /** Redis URL (redis://, rediss://), or a comma-separated list of Redis Cluster nodes; empty = single host. */
  redis: string;
  /** Treat `redis` as Redis Cluster seed node(s): keys by hash tag, sharded pub/sub (SSUBSCRIBE/SPUBLISH). */
  redisCluster: boolean;
  /** Prefix of the Redis channels a Laravel backend PUBLISHes to (Laravel's redis `prefix`, e.g. 'laravel_database_'). */
  redisPrefix: string;
  /** Prefix of every key and pub/sub channel rt-actors itself creates in Redis; separates deployments sharing one Redis. */
  redisNamespace: string;
  /** Seconds a placed actor's lease lasts without renewal: how long a dead owner's channels wait. */
  leaseTtl: number;
  /** This host's id in the cluster (placement, /health); generated at start when empty. */
  hostId: string;
  /** Redis Sentinel addresses (host:port); when set, the bridge asks them for the current master. */
  redisSentinels: string[];
  /** The master name the sentinels monitor. */
  redisSentinelName: string;
  /** Per-channel-pattern history bounds, `pattern=size/ttl`, e.g. 'chat-*=500/1h'; first match wins. */
  historyPatterns: string[];
  /** Seconds after which a silent host's presence members and subscriber counts are removed. */
  presenceTtl: number;
  // Pusher protocol gateway (src/transports/pusher)
  /** Id of the Pusher app served at /app/<key> and /apps/<id>/…; with key and secret, turns the gateway on. */
  pusherAppId: string;
  /** Key of that Pusher app (what pusher-js and Laravel's PUSHER_APP_KEY name). */
  pusherKey: string;
  /** Secret of that Pusher app: signs channel auth, user sign-in and HTTP API calls. */
  pusherSecret: string;
  /** Several Pusher apps (config file): objects with id, key, secret and per-app options; see docs/pusher.md. */
  pusherApps: unknown[];
  /** The flags' app sends `pusher_internal:subscription_count` events (its `subscriptionCountEvents`). */
  pusherSubscriptionCountEvents: boolean;
  // Operator dashboard
  /** Serve the live dashboard at /dashboard. */
  dashboard: boolean;
  /** Credential the dashboard asks for; empty = the API key. */
  dashboardToken: string;
}

const cores = availableCpus;

export const OPTIONS: readonly OptionSpec[] = [
  { key: 'port', type: 'int', default: 6001, min: 0, max: 65535, doc: 'TCP port serving every transport (0 = pick a free port)' },
  { key: 'host', type: 'string', default: '', doc: 'interface to bind; empty binds all interfaces' },
  { key: 'workers', type: 'workers', default: 'auto', min: 1, max: 256, doc: "shard worker threads: a number or 'auto' (one per core this process may use, within a container's or cgroup's CPU limit)" },
  { key: 'apiKey', type: 'string', default: '', doc: 'HTTP API key; generated and printed once at start when empty' },
  { key: 'jwtSecret', type: 'string', default: '', doc: 'HS256 secret that signs connection tokens' },
  { key: 'jwtPublicKey', type: 'string', default: '', doc: 'PEM public key, or a path to one, for RS256/ES256 tokens' },
  { key: 'jwtAudience', type: 'list', default: [], needs: ['jwtSecret', 'jwtPublicKey', 'jwksUrl'], doc: "accepted 'aud' claims, e.g. 'rt-actors' or your API identifier; empty skips the check" },
  { key: 'jwtIssuer', type: 'list', default: [], needs: ['jwtSecret', 'jwtPublicKey', 'jwksUrl'], doc: "accepted 'iss' claims, e.g. 'https://example.eu.auth0.com/'; empty skips the check" },
  { key: 'jwksUrl', type: 'string', default: '', doc: "identity provider's JWKS URL (Auth0, Keycloak, Cognito…): RS256/ES256 keys fetched, cached and rotated by 'kid'" },
  { key: 'jwksCooldown', type: 'duration', default: 30, min: 0, max: 3600, needs: ['jwksUrl'], doc: "least time between two JWKS re-fetches triggered by a token with an unknown 'kid'" },
  { key: 'tokenGrace', type: 'duration', default: 60, min: 1, max: 86400, doc: "after a connection's token expires it is asked for a fresh one (native 'refresh' frame, Socket.IO 'token:expiring'); without one within this time it is closed with 4010" },
  { key: 'actors', type: 'string', default: '', doc: 'folder of custom channel actors and request handlers (.ts, .mts, .js, .mjs)' },
  { key: 'actorHookTimeout', type: 'duration', default: 5, min: 0.01, max: 3600, doc: "deadline of an actor hook that returns a promise; past it the operation fails with actor_timeout, e.g. '5s'" },
  { key: 'actorMailboxSize', type: 'int', default: 1000, min: 1, max: 1_000_000, doc: "operations that may wait in one channel actor's mailbox; beyond it they fail with overloaded" },
  { key: 'actorComputeThreads', type: 'int', default: 0, min: 0, max: 256, doc: "threads of the pool running actors' ctx.compute tasks (0: half the workers, at least 1)" },
  { key: 'historySize', type: 'int', default: 100, min: 0, max: 1_000_000, doc: 'messages kept per channel for resume (0 disables)' },
  { key: 'historyTtl', type: 'duration', default: 300, min: 1, doc: "lifetime of history entries, e.g. '300', '5m', '1h'" },
  { key: 'maxPayload', type: 'bytes', default: 64 * 1024, min: 256, max: 64 * 1024 * 1024, doc: "largest accepted client message, HTTP body or Laravel Redis broadcast, e.g. '64kb', '1mb' (the Pusher HTTP API takes bodies up to 1.5 × maxEventPayload × maxBatchSize + 16 KB of its largest app when that is more: a full batch_events)" },
  { key: 'maxChannelsPerConnection', type: 'int', default: 100, min: 1, max: 100_000, doc: 'channels one connection may join' },
  { key: 'idleTimeout', type: 'duration', default: 60, min: 8, max: 960, doc: 'seconds of silence before a connection is closed; pings are sent automatically (uWS checks in 4 s steps, so a silent connection may close up to 4 s early)' },
  { key: 'maxBackpressure', type: 'bytes', default: 1024 * 1024, min: 1024, doc: 'bytes buffered for a slow subscriber before it is disconnected' },
  { key: 'writeDelay', type: 'int', default: 0, min: 0, max: 1000, doc: 'milliseconds a shard may hold a publication that arrives within this long of its previous delivery, so that each subscriber gets several in one socket write: less CPU per delivery on busy channels for at most this much added latency (publications further apart go out at once); 0 = off' },
  { key: 'clientPublish', type: 'enum', default: 'private', choices: ['none', 'private', 'all'], doc: 'who may publish from a client (native publish): nobody, subscribers of private-/presence- channels, any subscriber; none also refuses Socket.IO/Echo whispers and Pusher client events, which otherwise follow their own rule (client- events on private-/presence- channels)' },
  { key: 'acceptor', type: 'enum', default: 'auto', choices: ['auto', 'descriptor', 'reuseport'], doc: 'how sockets reach shards: uWS app descriptors, SO_REUSEPORT, or detect' },
  { key: 'ringSize', type: 'bytes', default: 1024 * 1024, min: 4096, max: 1024 * 1024 * 1024, doc: 'data bytes of each inter-thread ring queue' },
  { key: 'ringQueueHigh', type: 'bytes', default: 4 * 1024 * 1024, min: 4096, max: 1024 * 1024 * 1024, doc: "high water mark of the local queue a thread keeps for a peer whose ring is full: above it, new requests to that peer (publishes, subscribes) fail fast with 'overloaded' (HTTP 503 + Retry-After); deliveries already accepted are never refused" },
  { key: 'ringQueueLow', type: 'bytes', default: 1024 * 1024, min: 0, max: 1024 * 1024 * 1024, doc: 'low water mark: a peer that was refusing accepts new requests again once its queue is below this; must be less than --ring-queue-high' },
  { key: 'requestTimeout', type: 'duration', default: 15, min: 0.1, max: 3600, doc: "seconds a request to another thread (publish, subscribe, query) waits for its answer before failing with 'timeout'" },
  { key: 'logLevel', type: 'enum', default: 'info', choices: ['error', 'warn', 'info', 'debug'], doc: 'log verbosity' },
  { key: 'logFormat', type: 'enum', default: 'text', choices: ['text', 'json'], doc: 'log lines (all on stderr): readable text, or one JSON object per line (time, level, thread, shard, msg, fields)' },
  { key: 'logRate', type: 'int', default: 50, min: 0, max: 1_000_000, doc: 'at most this many lines per second per kind of frequent event (per log `event`: conn.open, conn.close, refusals…) and thread, then one "suppressed K" line; 0 = unlimited' },
  { key: 'config', type: 'string', default: '', doc: 'JSON config file (keys as in this list, camelCase)' },
  { key: 'shutdownTimeout', type: 'duration', default: 10, min: 0, max: 86400, doc: 'seconds in-flight requests may take on SIGTERM/SIGINT before they are answered 503 and clients are told to reconnect (which takes under a second more)' },
  { key: 'restartShards', type: 'bool', default: true, doc: 'replace a crashed shard automatically' },
  { key: 'shardYoungGeneration', type: 'bytes', default: 24 * 1024 * 1024, min: 0, max: 1024 * 1024 * 1024, doc: "most memory each shard's V8 young generation (new, short-lived objects) may take, e.g. '24mb'. V8 grows it up to 48 MB while many connections open at once and keeps the pages: 24 MB halves the idle memory per connection for a few more scavenges under heavy fan-out (docs/benchmarks.md); 0 = V8's default (or NODE_OPTIONS' --max-semi-space-size)" },
  { key: 'stuckShardTimeout', type: 'duration', default: 10, min: 0, max: 3600, doc: "seconds a shard's event loop may stand still (a synchronous loop in an actor hook) before it is logged as stuck, naming the hook, and /health answers 503; 0 = never" },
  // Security and limits
  { key: 'allowedOrigins', type: 'list', default: [], doc: "browser origins allowed besides the server's own host, e.g. 'https://app.example.com,https://*.example.com' ('*' = any)" },
  { key: 'tlsCert', type: 'string', default: '', doc: 'TLS certificate chain (PEM file); with --tls-key serves wss:// and https:// on the same port' },
  { key: 'tlsKey', type: 'string', default: '', doc: 'TLS private key (PEM file)' },
  { key: 'tlsPassphrase', type: 'string', default: '', needs: ['tlsCert'], doc: 'passphrase of the TLS private key' },
  { key: 'rateLimit', type: 'int', default: 100, min: 0, max: 1_000_000, doc: 'messages per second one connection may send (token bucket); 0 = unlimited' },
  { key: 'rateBurst', type: 'int', default: 200, min: 1, max: 1_000_000, doc: 'burst size of the per-connection token bucket' },
  { key: 'maxConnections', type: 'int', default: 100_000, min: 0, doc: 'open connections per host, all shards; 0 = unlimited' },
  { key: 'trustProxy', type: 'list', default: [], doc: "reverse proxies whose X-Forwarded-For / X-Real-IP give the client address: IPs, CIDRs or loopback, private, linklocal, e.g. '10.0.0.0/8,loopback'; from other peers those headers are ignored" },
  { key: 'maxConnectionsPerIp', type: 'int', default: 10_000, min: 0, doc: 'open connections per client IP, all shards; 0 = unlimited' },
  { key: 'connectionRatePerIp', type: 'int', default: 1000, min: 0, doc: 'new connections per second per client IP, all shards; 0 = unlimited' },
  { key: 'apiRateLimit', type: 'int', default: 10_000, min: 0, doc: 'HTTP API requests per second per API key, all shards; 0 = unlimited' },
  { key: 'requireAuth', type: 'bool', default: false, doc: 'refuse connections that do not present a valid token' },
  { key: 'maxPresenceMembers', type: 'int', default: 10_000, min: 1, doc: 'members per presence channel' },
  { key: 'maxWhisperSize', type: 'bytes', default: 16 * 1024, min: 16, doc: "largest client publish / whisper payload, e.g. '16kb'" },
  // Socket.IO gateway
  { key: 'authEndpoint', type: 'string', default: '', doc: "backend URL that authorizes private-/presence- channels, called with the client's headers (e.g. http://app.test/broadcasting/auth)" },
  { key: 'socketioPingInterval', type: 'duration', default: 25, min: 0.05, max: 3600, doc: "Socket.IO heartbeat: time between the server's pings, e.g. '25s'" },
  { key: 'socketioPingTimeout', type: 'duration', default: 20, min: 0.05, max: 3600, doc: "Socket.IO heartbeat: time to wait for the client's pong, e.g. '20s'" },
  { key: 'socketioMaxHttpBufferSize', type: 'bytes', default: 1_000_000, min: 1024, max: 64 * 1024 * 1024, doc: 'largest Socket.IO message or polling body (sent to clients as maxPayload)' },
  { key: 'socketioParser', type: 'enum', default: 'json', choices: ['json', 'msgpack'], doc: 'Socket.IO parser: json (default) or msgpack (socket.io-msgpack-parser)' },
  { key: 'socketioNamespaces', type: 'list', default: ['/'], doc: "Socket.IO namespaces to accept besides those of request handler files, e.g. '/,/chat'" },
  { key: 'socketioTransports', type: 'list', default: ['polling', 'websocket'], doc: 'Socket.IO transports offered: polling, websocket' },
  { key: 'socketioConnectTimeout', type: 'duration', default: 45, min: 0.05, max: 3600, doc: 'Socket.IO: time a new session may take to join a namespace before it is closed, e.g. \'45s\'' },
  { key: 'socketioAuthToken', type: 'enum', default: 'auto', choices: ['auto', 'jwt', 'off'], doc: 'Socket.IO CONNECT auth.token: auto = verified as a JWT when it looks like one and a JWT secret/key is set, else passed to handlers untouched; jwt = always verified; off = never read' },
  { key: 'socketioRecovery', type: 'duration', default: 120, min: 0, max: 86400, doc: 'Socket.IO connection state recovery window: a client back within it gets what it missed and its channels (0 = off)' },
  { key: 'socketioPresenceGrace', type: 'duration', default: 15, min: 0, max: 86400, doc: 'Socket.IO: a presence member whose connection dropped stays this long (at most the recovery window) before the others see it leave; recovered in time, nobody sees it leave or join again (0 = at once)' },
  { key: 'engineioEchoPath', type: 'string', default: '', doc: "raw Engine.IO endpoint echoing every message, for protocol conformance tests, e.g. '/engine.io/' (empty = off)" },
  // SSE and long-polling
  { key: 'transports', type: 'list', default: ['ws', 'sse', 'polling'], choices: ['ws', 'sse', 'polling'], doc: "native transports served: any of ws, sse, polling, e.g. 'sse,polling' where WebSockets must stay off" },
  { key: 'pollTimeout', type: 'duration', default: 25, min: 0.05, max: 300, needsTransport: 'polling', doc: "how long a long-poll request waits for messages before answering empty, e.g. '25s'" },
  { key: 'pollSessionTimeout', type: 'duration', default: 30, min: 0.05, max: 3600, needsTransport: 'polling', doc: 'a long-polling session with no poll request for this long is closed' },
  { key: 'sseKeepalive', type: 'duration', default: 15, min: 0.05, max: 15, needsTransport: 'sse', doc: 'seconds between SSE keep-alive comments (at most 15)' },
  // Redis bridge
  { key: 'redis', type: 'string', default: '', env: 'RT_REDIS_URL', doc: "Redis that bridges several hosts, e.g. 'redis://10.0.0.5:6379' (a comma-separated list of nodes means a Redis Cluster); empty runs one host alone" },
  { key: 'redisCluster', type: 'bool', default: false, doc: 'the --redis node(s) are a Redis Cluster: sharded pub/sub (SSUBSCRIBE/SPUBLISH), keys grouped by channel hash tag' },
  { key: 'redisPrefix', type: 'string', default: '', needs: ['redis', 'redisSentinels'], doc: "prefix of the Redis channels a Laravel backend publishes to (its redis 'prefix' option, e.g. 'laravel_database_')" },
  { key: 'redisNamespace', type: 'string', default: 'rt', needs: ['redis', 'redisSentinels'], doc: "prefix of rt-actors' own Redis keys and channels; give deployments sharing one Redis different ones" },
  { key: 'historyPatterns', type: 'list', default: [], doc: "history bounds per channel pattern, 'pattern=size/ttl', e.g. 'chat-*=500/1h,ticker.*=10/30s' (first match wins)" },
  { key: 'leaseTtl', type: 'duration', default: 10, min: 0.3, max: 3600, needs: ['redis', 'redisSentinels'], doc: "with --redis: lease of a custom actor's one activation in the cluster, renewed every third of it; a dead owner's actors move after at most this long, e.g. '10s'" },
  { key: 'hostId', type: 'string', default: '', doc: "this host's id in the cluster, shown in /health and in channel placement (letters, digits, '.', '_', '-'); empty: hostname plus a random suffix, new at every start" },
  { key: 'redisSentinels', type: 'list', default: [], doc: "Redis Sentinel addresses, e.g. '10.0.0.5:26379,10.0.0.6:26379': every bridge connection follows the master they name (--redis then only carries credentials, db and TLS)" },
  { key: 'redisSentinelName', type: 'string', default: 'mymaster', needs: ['redisSentinels'], doc: 'with --redis-sentinels: the master name the sentinels monitor' },
  { key: 'pusherAppId', type: 'string', default: '', envAliases: ['PUSHER_APP_ID'], doc: 'Pusher protocol: app id (with --pusher-key and --pusher-secret turns on /app/<key> and /apps/<id>/…; PUSHER_APP_ID is read too)' },
  { key: 'pusherKey', type: 'string', default: '', envAliases: ['PUSHER_APP_KEY'], doc: 'Pusher protocol: app key, as pusher-js and Laravel Echo are given it (PUSHER_APP_KEY is read too)' },
  { key: 'pusherSecret', type: 'string', default: '', envAliases: ['PUSHER_APP_SECRET'], doc: 'Pusher protocol: app secret that signs channel auth and HTTP API calls (PUSHER_APP_SECRET is read too)' },
  { key: 'pusherSubscriptionCountEvents', type: 'bool', default: false, needs: ['pusherAppId'], doc: 'Pusher protocol: subscribers of the --pusher-app-id app\'s non-presence channels get pusher_internal:subscription_count events (throttled to one per second per channel); in pusherApps, the per-app key subscriptionCountEvents' },
  { key: 'pusherApps', type: 'json', default: [], doc: 'Pusher protocol: several apps, a JSON list of { id, key, secret, … } (usually in the config file; see docs/pusher.md); the first is the default app. Per-app limits include maxConnections (open connections of that app on this host, across its shards; 0 = none) and maxWatchlistSize (user ids a signed-in user may watch, default 100; 0 = watchlist events off)' },
  { key: 'presenceTtl', type: 'duration', default: 15, min: 0.5, max: 3600, needs: ['redis', 'redisSentinels'], doc: "with --redis: a host silent for this long is presumed dead; its members leave and its subscribers stop counting, e.g. '15s'" },
  // Operator dashboard
  { key: 'dashboard', type: 'bool', default: false, doc: 'serve the live operator dashboard at /dashboard (login with the API key or --dashboard-token)' },
  { key: 'dashboardToken', type: 'string', default: '', needs: ['dashboard'], doc: 'credential for the dashboard and its /api/stats and /api/tap feeds, instead of the API key (it may also publish and read channels)' },
];

export const DEFAULT_WORKERS = cores;

export function flagOf(key: string): string {
  return key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export function envOf(key: string): string {
  const override = OPTIONS.find((o) => o.key === key)?.env;
  return override ?? 'RT_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
}

export function specByFlag(flag: string): OptionSpec | undefined {
  return OPTIONS.find((o) => flagOf(o.key) === flag);
}
