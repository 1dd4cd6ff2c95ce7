/**
 * The few helpers call sites use to feed the metrics registry: refusals by reason (mapped from the
 * stable error codes clients see), and the transport/protocol labels of a connection or a codec.
 */
import { performance } from 'node:perf_hooks';
import type { WireCodec } from '../protocol/codecs.js';
import type { Client } from './client.js';
import type { RefusalReason } from './metric-families.js';
import { metrics } from './metrics.js';
import { threadLogger } from '../log.js';

/** Error codes that are refusals, and under which reason they count. Other errors are not refusals. */
const REASON_OF_CODE: Record<string, RefusalReason> = {
  rate_limited: 'rate_limit',
  connection_rate_limited: 'rate_limit',
  unauthorized: 'auth',
  forbidden: 'auth',
  token_revoked: 'auth',
  origin_not_allowed: 'origin',
  too_many_connections: 'connection_limit',
  too_many_connections_from_ip: 'connection_limit',
  app_over_quota: 'connection_limit',
  too_many_channels: 'channel_limit',
  payload_too_large: 'payload_too_large',
  message_too_big: 'payload_too_large',
  bad_frame: 'malformed',
  bad_json: 'malformed',
  unknown_op: 'malformed',
  overloaded: 'overloaded',
  slow_consumer: 'slow_consumer',
};

/**
 * The code a refusal counted by its reason alone is logged with (the one clients of the native protocol
 * are answered with): operators filter refusal lines by code, so none may lack one.
 */
const CODE_OF_REASON: Record<RefusalReason, string> = {
  rate_limit: 'rate_limited',
  auth: 'unauthorized',
  origin: 'origin_not_allowed',
  connection_limit: 'too_many_connections',
  channel_limit: 'too_many_channels',
  payload_too_large: 'payload_too_large',
  malformed: 'bad_frame',
  overloaded: 'overloaded',
  slow_consumer: 'slow_consumer',
};

export function refusalReason(code: string | undefined): RefusalReason | undefined {
  if (code === undefined) return undefined;
  // Every token problem (token_expired, token_malformed, token_bad_signature, …) is an auth refusal.
  return REASON_OF_CODE[code] ?? (code.startsWith('token_') ? 'auth' : undefined);
}

/** Counts a refusal: a reason, or an error whose code maps to one (other errors are ignored). */
export function countRefusal(what: RefusalReason | { code?: unknown } | unknown): void {
  // A bare string must be a reason itself; a code goes in { code } so it is mapped.
  const reason =
    typeof what === 'string' ? (what as RefusalReason) : refusalReason(typeof (what as { code?: unknown })?.code === 'string' ? (what as { code: string }).code : undefined);
  if (!reason) return;
  metrics().inc('rt_refusals_total', { reason });
  const log = threadLogger();
  if (log.enabled('debug')) {
    const e = what as { code?: unknown; message?: unknown };
    const code = typeof e?.code === 'string' ? e.code : CODE_OF_REASON[reason];
    const fields = { event: reason === 'auth' ? 'auth.failed' : 'refusal', reason, code, detail: typeof e?.message === 'string' ? e.message : undefined };
    log.debug(reason === 'auth' ? 'auth failure' : `refused: ${reason}`, fields);
  }
}

export interface ConnKind {
  transport: string;
  protocol: string;
}

const kind = (transport: string, protocol: string): ConnKind => Object.freeze({ transport, protocol });
/** One label pair per kind, shared: the hub keeps each connection's (a copy per connection was 40 B of heap). */
const KINDS = {
  ws: kind('websocket', 'native'),
  sse: kind('sse', 'native'),
  poll: kind('polling', 'native'),
  memory: kind('memory', 'native'),
  tap: kind('tap', 'native'),
  socketioWs: kind('websocket', 'socketio'),
  socketioPolling: kind('polling', 'socketio'),
  pusherWs: kind('websocket', 'pusher'),
  pusherOther: kind('other', 'pusher'),
  otherWs: kind('websocket', 'other'),
  other: kind('other', 'other'),
};

/** Transport and protocol labels of a connection (Client.transport names the gateway). */
export function connKind(c: Client): ConnKind {
  switch (c.transport) {
    case 'ws':
    case 'sse':
    case 'poll':
    case 'memory':
    case 'tap':
      return KINDS[c.transport];
    case 'socket.io':
      return c.onWebSocket ? KINDS.socketioWs : KINDS.socketioPolling;
    default:
      if (c.transport.startsWith('pusher')) return c.ws ? KINDS.pusherWs : KINDS.pusherOther;
      return c.ws ? KINDS.otherWs : KINDS.other;
  }
}

/** Labels of the sockets subscribed to a codec's uWS topics (only WebSocket clients use topics). */
export function codecKind(codec: WireCodec): ConnKind {
  const protocol = codec.name === 'json' || codec.name === 'msgpack' ? 'native' : codec.name.startsWith('socket.io') ? 'socketio' : codec.name.startsWith('pusher') ? 'pusher' : 'other';
  return { transport: 'websocket', protocol };
}

/** Milliseconds since the epoch with sub-millisecond resolution, comparable between threads. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}
