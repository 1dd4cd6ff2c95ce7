/**
 * Native clients' `{ "op": "rpc", "event", "data" }` requests, answered by the request handlers of
 * namespace '/' (src/actors/handlers.ts) — the same handlers Socket.IO clients reach with emit.
 */
import { replyValueOf, runHandler, type Connection } from '../actors/handlers.js';
import { RtError } from '../errors.js';
import { assertChannel, assertEvent } from '../protocol/native.js';
import { CloseCode, type Client } from '../runtime/client.js';
import type { ThreadContext } from '../runtime/context.js';

const connections = new WeakMap<Client, Connection>();

function connectionOf(ctx: ThreadContext, client: Client): Connection {
  let conn = connections.get(client);
  if (conn) return conn;
  const hub = ctx.hub;
  const data: Record<string, unknown> = {};
  conn = {
    socketId: client.id,
    get userId() {
      return client.user;
    },
    get userInfo() {
      return client.info;
    },
    auth: {},
    transport: client.transport,
    namespace: '/',
    handshake: { headers: {}, query: {}, address: '' },
    data,
    channels: () => [...client.channels],
    emit: (event, ...args) => {
      if (!client.closed) client.sendEncoded(client.codec.user(assertEvent(event), args.length === 1 ? args[0] : args));
    },
    emitWithAck: () => Promise.reject(new RtError('unsupported', 'native clients do not acknowledge server events; use emit', 400)),
    publish: (channel, event, d, opts) => hub.publish(assertChannel(channel), assertEvent(event), d, 'server', undefined, opts?.excludeSelf ? client.id : undefined),
    publishToUser: (user, event, d) => hub.publishToUser(String(user), assertEvent(event), d),
    disconnect: (reason) => client.disconnect(CloseCode.DISCONNECTED, reason ?? 'disconnected by the server', false),
  };
  connections.set(client, conn);
  return conn;
}

/** Runs the handler for `event`; resolves with its answer, rejects with a coded RtError. */
export function handleRpc(ctx: ThreadContext, client: Client, event: string, data: unknown): Promise<unknown> {
  const fn = ctx.handlers?.handler('/', event);
  if (!fn) return Promise.reject(new RtError('no_handler', `no handler for event ${event}`, 404));
  return runHandler(fn, connectionOf(ctx, client), [data], (m, e) => ctx.log.error(m, e), ctx.config.actorHookTimeout * 1000).then(replyValueOf);
}
