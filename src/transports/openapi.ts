/**
 * The OpenAPI 3.1 description of the HTTP API, served at GET /api/openapi.json. docs/http-api.md is
 * its readable twin; test/openapi.test.ts validates real answers of every endpoint against it.
 */
import { createRequire } from 'node:module';

const version = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version;

const json = (schema: object, description: string) => ({ description, content: { 'application/json': { schema } } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const error = (description: string) => json(ref('Error'), description);

const AUTH_ERRORS = {
  '401': error('No API key, or a wrong one (`unauthorized`).'),
  '403': error('A browser Origin that is not allowed (`origin_not_allowed`).'),
  '429': error('More than --api-rate-limit requests per second (`rate_limited`).'),
};
const UNAVAILABLE = { '503': error('Shutting down, overloaded, or Redis unreachable (`unavailable`, `overloaded`).') };
const BAD_BODY = {
  '400': error('Invalid body: `bad_json`, `bad_request`, `invalid_channel`.'),
  '413': error('Body larger than --max-payload (`payload_too_large`).'),
};
const channelParam = { name: 'name', in: 'path', required: true, description: 'Channel name (URL-encoded).', schema: { type: 'string', minLength: 1, maxLength: 200 } };
const bearer = [{ apiKey: [] }];
const operator = [{ apiKey: [] }, { dashboardToken: [] }];

const MESSAGE = {
  type: 'object',
  description: 'One message: `event`, `data`, and exactly one target (`channel`, `channels` or `user`).',
  required: ['event', 'data'],
  additionalProperties: false,
  properties: {
    channel: { type: 'string', minLength: 1, maxLength: 200, examples: ['orders'] },
    channels: { type: 'array', items: { type: 'string', minLength: 1, maxLength: 200 }, minItems: 1, maxItems: 100 },
    user: { oneOf: [{ type: 'string', minLength: 1, maxLength: 200 }, { type: 'number' }], description: 'Every connection of this user id (token `sub`).' },
    event: { type: 'string', minLength: 1, maxLength: 200, examples: ['order.created'] },
    data: { description: 'Any JSON value (null for none).' },
    socket_id: { type: ['string', 'null'], maxLength: 64, description: 'A connection to leave out (the sender).' },
  },
};

export function openApiDocument(): object {
  return {
    openapi: '3.1.0',
    info: {
      title: 'rt-actors HTTP API',
      version,
      description: 'Publish to channels and users, query channels and presence, disconnect users, and read the health and figures of a host. Every error answers `{ "error": { "code", "message" } }`. See docs/http-api.md.',
    },
    components: {
      securitySchemes: {
        apiKey: { type: 'http', scheme: 'bearer', description: 'The API key (--api-key). `?api_key=` is accepted too, but keeps the key in logs.' },
        dashboardToken: { type: 'http', scheme: 'bearer', description: '--dashboard-token, with --dashboard: accepted by the operator routes (stats, tap, channel queries, publish).' },
      },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          additionalProperties: false,
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              additionalProperties: false,
              properties: { code: { type: 'string', pattern: '^[a-z_]+$' }, message: { type: 'string' } },
            },
          },
        },
        Message: MESSAGE,
        PublishAnswer: {
          type: 'object',
          required: ['ok', 'count', 'offsets'],
          additionalProperties: false,
          properties: {
            ok: { const: true },
            count: { type: 'integer', minimum: 1, description: 'Messages accepted.' },
            offsets: { type: 'object', additionalProperties: { type: 'integer', minimum: 1 }, description: "Each channel's stream offset after its last message (user messages have none)." },
          },
        },
        Channel: {
          type: 'object',
          required: ['name', 'subscribers', 'offset'],
          additionalProperties: false,
          properties: {
            name: { type: 'string' },
            subscribers: { type: 'integer', minimum: 0 },
            presence: { type: 'integer', minimum: 0, description: 'Distinct members (presence- channels only).' },
            offset: { type: 'integer', minimum: 0, description: 'Stream position: the offset of the last publication.' },
            owner: {
              type: 'object',
              required: ['host', 'shard', 'placement'],
              additionalProperties: false,
              description: "Where the channel's actor runs (GET /api/channels/:name only); see docs/scaling.md.",
              properties: {
                host: { type: ['string', 'null'], description: 'Host id (--host-id); null for a placed channel with no activation right now.' },
                shard: { type: ['integer', 'null'] },
                placement: { enum: ['local', 'per-host', 'leased'], description: '`local`: no Redis. `per-host`: every host relays it (the answering host shown). `leased`: one activation cluster-wide.' },
                epoch: { type: 'integer', minimum: 1, description: "Fencing epoch of the owner's lease (leased only)." },
              },
            },
          },
        },
        Member: {
          type: 'object',
          required: ['user_id'],
          additionalProperties: false,
          properties: { user_id: { type: 'string' }, user_info: { description: 'From the token or the authorizer.' } },
        },
        Ok: { type: 'object', required: ['ok'], additionalProperties: false, properties: { ok: { const: true } } },
        Health: {
          type: 'object',
          required: ['status', 'host', 'workers', 'connections', 'channels', 'uptime', 'shard'],
          additionalProperties: false,
          properties: {
            status: { enum: ['ok', 'degraded', 'draining'] },
            host: { type: 'string', description: 'This host id (--host-id, or the hostname plus a random suffix generated at start).' },
            workers: { type: 'object', required: ['total', 'alive', 'stuck'], additionalProperties: false, properties: { total: { type: 'integer' }, alive: { type: 'integer' }, stuck: { type: 'integer', description: 'Shards alive but standing still for longer than --stuck-shard-timeout.' } } },
            connections: { type: 'integer', minimum: 0 },
            channels: { type: 'integer', minimum: 0 },
            uptime: { type: 'integer', minimum: 0, description: 'Seconds.' },
            redis: { type: 'object', required: ['connected', 'shards'], additionalProperties: false, properties: { connected: { type: 'integer' }, shards: { type: 'integer' } } },
            shard: { type: 'integer', description: 'The shard that answered.' },
          },
        },
        Stats: {
          type: 'object',
          required: ['time', 'host', 'status', 'uptime', 'workers', 'threads', 'connections', 'messages', 'refusals', 'http', 'latency', 'topChannels', 'redis', 'process'],
          additionalProperties: false,
          properties: {
            time: { type: 'integer', description: 'Milliseconds since the epoch.' },
            host: { type: 'string', description: 'This host id (--host-id).' },
            status: { enum: ['ok', 'degraded', 'draining'] },
            uptime: { type: 'integer' },
            workers: { type: 'object', required: ['total', 'alive', 'stuck'], properties: { total: { type: 'integer' }, alive: { type: 'integer' }, stuck: { type: 'integer' } } },
            threads: {
              type: 'array',
              items: {
                type: 'object',
                required: ['thread', 'up', 'connections', 'subscriptions', 'channels', 'heapUsedBytes', 'eventLoopDelayP99Seconds', 'eventLoopUtilization'],
                additionalProperties: false,
                properties: {
                  thread: { type: 'string', description: 'Shard index, or "main".' },
                  up: { type: 'boolean' },
                  connections: { type: 'number', minimum: 0 },
                  subscriptions: { type: 'number', minimum: 0 },
                  channels: { type: 'number', minimum: 0 },
                  heapUsedBytes: { type: 'number', minimum: 0 },
                  eventLoopDelayP99Seconds: { type: 'number', minimum: 0 },
                  eventLoopUtilization: { type: 'number', minimum: 0, maximum: 1 },
                  redisUp: { type: 'boolean' },
                },
              },
            },
            connections: {
              type: 'object',
              required: ['total', 'byKind'],
              properties: {
                total: { type: 'number', minimum: 0 },
                byKind: { type: 'array', items: { type: 'object', required: ['transport', 'protocol', 'count'], properties: { transport: { type: 'string' }, protocol: { type: 'string' }, count: { type: 'number' } } } },
              },
            },
            messages: {
              type: 'object',
              required: ['in', 'out', 'published', 'delivered'],
              description: 'Totals since start; rates are differences between two answers.',
              properties: { in: { type: 'number' }, out: { type: 'number' }, published: { type: 'number' }, delivered: { type: 'number' } },
            },
            refusals: { type: 'object', additionalProperties: { type: 'number', minimum: 0 }, description: 'Refusals by reason (see docs/deployment.md).' },
            http: { type: 'array', items: { type: 'object', required: ['route', 'status', 'count'], properties: { route: { type: 'string' }, status: { type: 'string' }, count: { type: 'number' } } } },
            latency: {
              type: 'object',
              required: ['count', 'sumSeconds', 'p50Seconds', 'p99Seconds', 'buckets'],
              description: 'Publish → deliver latency since start (bucket upper bounds); `buckets` counts the publications delivered within each bound `le` (seconds), cumulatively, for the quantiles of a window.',
              properties: {
                count: { type: 'number' },
                sumSeconds: { type: 'number' },
                p50Seconds: { type: ['number', 'null'] },
                p99Seconds: { type: ['number', 'null'] },
                buckets: { type: 'array', items: { type: 'object', required: ['le', 'count'], properties: { le: { type: 'number' }, count: { type: 'number' } } } },
              },
            },
            topChannels: { type: 'array', maxItems: 10, items: ref('Channel') },
            redis: { type: 'object', required: ['enabled'], properties: { enabled: { type: 'boolean' }, connected: { type: 'integer' }, shards: { type: 'integer' } } },
            process: {
              type: 'object',
              required: ['residentBytes', 'cpuSeconds', 'openFds', 'maxFds'],
              properties: { residentBytes: { type: 'number' }, cpuSeconds: { type: 'number' }, openFds: { type: ['integer', 'null'] }, maxFds: { type: ['integer', 'null'] } },
            },
          },
        },
      },
    },
    security: bearer,
    paths: withHead({
      '/api/publish': {
        post: {
          summary: 'Publish one message to channels or to a user',
          security: operator,
          requestBody: { required: true, content: { 'application/json': { schema: ref('Message') } } },
          responses: { '200': json(ref('PublishAnswer'), 'Accepted: delivered to the current subscribers.'), ...BAD_BODY, ...AUTH_ERRORS, ...UNAVAILABLE },
        },
      },
      '/api/batch': {
        post: {
          summary: 'Publish several messages, in order; all are validated before any is published',
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { type: 'object', required: ['messages'], properties: { messages: { type: 'array', minItems: 1, maxItems: 1000, items: ref('Message') } } } } },
          },
          responses: { '200': json(ref('PublishAnswer'), 'Every message accepted.'), ...BAD_BODY, ...AUTH_ERRORS, ...UNAVAILABLE },
        },
      },
      '/api/channels': {
        get: {
          summary: 'Channels with at least one subscriber',
          security: operator,
          parameters: [{ name: 'prefix', in: 'query', required: false, schema: { type: 'string' }, description: 'Only channels whose name starts with this.' }],
          responses: {
            '200': json({ type: 'object', required: ['channels'], additionalProperties: false, properties: { channels: { type: 'array', items: ref('Channel') } } }, 'Sorted by name.'),
            ...AUTH_ERRORS,
            ...UNAVAILABLE,
          },
        },
      },
      '/api/channels/{name}': {
        get: {
          summary: 'One channel: subscribers, presence count, stream offset',
          security: operator,
          parameters: [channelParam],
          responses: { '200': json(ref('Channel'), 'A channel nobody is subscribed to answers zeros.'), '400': error('Invalid channel name (`invalid_channel`).'), ...AUTH_ERRORS, ...UNAVAILABLE },
        },
      },
      '/api/channels/{name}/users': {
        get: {
          summary: 'Members of a presence channel',
          security: operator,
          parameters: [channelParam],
          responses: {
            '200': json({ type: 'object', required: ['users'], additionalProperties: false, properties: { users: { type: 'array', items: ref('Member') } } }, 'One entry per user, however many connections it has.'),
            '400': error('Not a presence- channel (`bad_request`), or an invalid name (`invalid_channel`).'),
            ...AUTH_ERRORS,
            ...UNAVAILABLE,
          },
        },
      },
      '/api/users/{id}/disconnect': {
        post: {
          summary: "Disconnect every connection of a user and revoke the user's current tokens",
          description: 'Connections close with code 4011 (no reconnect hint). Tokens of this user issued at or before now (`iat`), and tokens without `iat`, are refused from then on: the user needs a fresh token.',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', minLength: 1 } }],
          responses: { '200': json(ref('Ok'), 'Done on every shard (every host with --redis).'), '400': error('Missing user id.'), ...AUTH_ERRORS, ...UNAVAILABLE },
        },
      },
      '/api/stats': {
        get: {
          summary: "The host's figures as JSON (what the dashboard shows)",
          security: operator,
          responses: { '200': json(ref('Stats'), 'Counters are totals since start.'), ...AUTH_ERRORS },
        },
      },
      '/api/tap': {
        get: {
          summary: "A channel's live messages, one JSON frame per line (the dashboard's inspector)",
          description: 'Streams `{"op":"tap"}`, `{"op":"subscribed","offset"}`, then every message as the native protocol\'s `{"op":"message",…}` frame, `{"op":"ping"}` every 15 s. Subscribes as user `rt-dashboard` with operator authority (a presence channel lists it).',
          security: operator,
          parameters: [{ name: 'channel', in: 'query', required: true, schema: { type: 'string' } }],
          responses: {
            '200': { description: 'A stream of frames.', content: { 'application/x-ndjson': { schema: { type: 'string' } } } },
            '400': error('No channel, or an invalid name.'),
            ...AUTH_ERRORS,
          },
        },
      },
      '/api/openapi.json': {
        get: { summary: 'This document', security: [], responses: { '200': json({ type: 'object', required: ['openapi', 'paths'] }, 'OpenAPI 3.1.') } },
      },
      '/health': {
        get: {
          summary: 'Health of the host, for load balancers',
          security: [],
          responses: { '200': json(ref('Health'), 'Every shard is alive.'), '503': json(ref('Health'), 'A shard is being replaced or is stuck (`degraded`), or the server is shutting down (`draining`).') },
        },
      },
      '/metrics': {
        get: {
          summary: 'Prometheus metrics (text format 0.0.4); see docs/deployment.md',
          security: [],
          responses: { '200': { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
    }),
  };
}

type Operation = { summary?: string; security?: unknown; parameters?: unknown; responses: Record<string, { description: string; content?: unknown }>; [more: string]: unknown };

/** Every GET but the streaming tap also answers HEAD (src/transports/head.ts): its status and headers, no body. */
function withHead(paths: Record<string, Record<string, Operation>>): Record<string, Record<string, Operation>> {
  for (const [path, ops] of Object.entries(paths)) {
    const get = ops['get'];
    if (!get || path === '/api/tap') continue;
    const responses = Object.fromEntries(Object.entries(get.responses).map(([status, r]) => [status, { description: r.description }]));
    ops['head'] = { summary: 'As GET, without a body', ...(get.security ? { security: get.security } : {}), ...(get.parameters ? { parameters: get.parameters } : {}), responses };
  }
  return paths;
}
