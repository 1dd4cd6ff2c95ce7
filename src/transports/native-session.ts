/**
 * The native protocol's operations, for any transport that speaks it (WebSocket, long-polling).
 * Returns the reply body; the transport encodes and sends it.
 */
import { countRefusal } from '../runtime/instruments.js';
import { JwtError, type JwtClaims } from '../auth/jwt.js';
import { RtError, toErrorBody } from '../errors.js';
import { resumedFor, wirePublication, type ClientFrame } from '../protocol/native.js';
import type { Client } from '../runtime/client.js';
import type { ThreadContext } from '../runtime/context.js';
import { handleRpc } from './native-rpc.js';
import { JsonData } from '../protocol/encoded-payload.js';
import { inChannelOrder } from './channel-order.js';
import { logInternal } from '../log.js';

export type Reply = Record<string, unknown>;

/** An error reply to a frame; refusals among them (rate limit, auth, caps, malformed) are counted. */
export function errorReply(ref: number | undefined, err: unknown, doing = 'a native frame'): Reply {
  countRefusal(err);
  logInternal(err, doing);
  const r: Reply = { op: 'reply', ok: false, error: toErrorBody(err) };
  if (ref !== undefined) r.ref = ref;
  return r;
}

function ok(ref: number | undefined, body: Reply = {}): Reply {
  const r: Reply = { op: 'reply', ok: true, ...body };
  if (ref !== undefined) r.ref = ref;
  return r;
}

function adopt(ctx: ThreadContext, client: Client, claims: JwtClaims): void {
  if (ctx.hub.isRevoked(String(claims.sub), claims.iat)) throw new RtError('token_revoked', 'this token was revoked; get a new one', 401);
  if (client.user !== undefined && client.user !== String(claims.sub)) {
    throw new RtError('forbidden', 'a connection cannot change user; reconnect instead', 403);
  }
  const fresh = client.user === undefined;
  client.authenticate(claims);
  // A session authenticated before it joined the hub is indexed by hub.add (and never, if it is dropped first).
  if (fresh && ctx.hub.clients.has(client.id)) ctx.hub.indexUser(client);
  // A fresh token replaces the grants: channels the old one granted and this one does not are left.
  if (!fresh) ctx.hub.regrant(client);
}

function asTokenError(err: unknown): unknown {
  return err instanceof JwtError ? new RtError(err.code, err.message, 401) : err;
}

/** Authenticates a connection with a token; synchronous unless the token is verified off-thread. */
export function authenticate(ctx: ThreadContext, client: Client, token: string): void | Promise<void> {
  let claims: JwtClaims | Promise<JwtClaims>;
  try {
    claims = ctx.verifyToken(token);
  } catch (err) {
    throw asTokenError(err);
  }
  if (claims instanceof Promise) return claims.then((c) => adopt(ctx, client, c), (err) => Promise.reject(asTokenError(err)));
  adopt(ctx, client, claims);
}

/** Runs a subscribe or unsubscribe of `channel` after the ones the connection sent before it (channel-order.ts). */
function inOrder(client: Client, channel: string, op: () => Promise<void> | void, fail: (err: unknown) => void): void {
  const chains = (client.nativeChannelOps ??= new Map());
  inChannelOrder(chains, channel, op, fail);
  // An operation that finished at once left nothing to wait for: a connection that needs no Map keeps none.
  if (chains.size === 0) client.nativeChannelOps = undefined;
}

/**
 * Handles one frame. `send` is called with replies; for subscribe it is called synchronously before
 * the client joins the channel, so the reply (with resumed publications) precedes live messages.
 */
export function handleFrame(ctx: ThreadContext, client: Client, f: ClientFrame, send: (r: Reply) => void): void {
  const fail = (err: unknown) => {
    const doing = `native op ${String(f.op).slice(0, 40)}`;
    if (!client.closed) send(errorReply(f.ref, err, doing));
    else logInternal(err, doing);
  };
  try {
    switch (f.op) {
      case 'ping':
        return send(ok(f.ref, { pong: true }));
      case 'auth': {
        const done = authenticate(ctx, client, f.token);
        if (done instanceof Promise) done.then(() => send(ok(f.ref, { user: client.user })), fail);
        else send(ok(f.ref, { user: client.user }));
        return;
      }
      // A subscribe goes to the channel's owner, maybe on another thread, and an unsubscribe sent right
      // behind it would find nothing to leave yet (and the subscribe then stick): in channel order,
      // subscribe, unsubscribe, subscribe leave the connection subscribed, as sent.
      case 'subscribe':
        return inOrder(
          client,
          f.channel,
          () => {
            if (client.closed) return;
            return ctx.hub
              .subscribe(client, f.channel, f.since, f.data, (res) => {
                const body: Reply = { channel: f.channel, offset: res.offset, epoch: res.epoch };
                if (res.recovered !== undefined) {
                  body.recovered = res.recovered;
                  body.publications = resumedFor(res.pubs ?? [], client.id, f.as).map(wirePublication);
                }
                if (res.members) body.members = res.members;
                if (res.data !== undefined) body.data = res.data;
                send(ok(f.ref, body));
              })
              .then(() => {}, fail);
          },
          fail,
        );
      case 'unsubscribe':
        return inOrder(
          client,
          f.channel,
          () => {
            if (client.closed) return;
            if (!ctx.hub.unsubscribe(client, f.channel)) throw new RtError('not_subscribed', `not subscribed to ${f.channel}`);
            send(ok(f.ref, { channel: f.channel }));
          },
          fail,
        );
      case 'publish':
        ctx.hub
          // A JSON client's payload moves on as its text (see encoded-payload.ts); a msgpack one's may hold binaries.
          .publish(f.channel, f.event, client.codec.binary ? f.data : (JsonData.of(f.data) ?? f.data), 'client', client, f.exclude_self ? client.id : undefined)
          .then((r) => {
            const body: Reply = { channel: f.channel };
            if (r.offset !== undefined) body.offset = r.offset;
            if (r.data !== undefined) body.data = r.data;
            send(ok(f.ref, body));
          }, fail);
        return;
      // In channel order too: sent right behind the channel's subscribe, they wait for it, as sent.
      case 'presence':
        return inOrder(
          client,
          f.channel,
          () => {
            if (!client.channels.has(f.channel)) throw new RtError('not_subscribed', `subscribe to ${f.channel} to see its presence`, 403);
            return ctx.hub.presence(f.channel).then((r) => send(ok(f.ref, { channel: f.channel, members: r.members })), fail);
          },
          fail,
        );
      case 'history':
        return inOrder(
          client,
          f.channel,
          () => {
            if (!client.channels.has(f.channel)) throw new RtError('not_subscribed', `subscribe to ${f.channel} to read its history`, 403);
            return ctx.hub
              .history(f.channel, f.since, f.limit)
              .then((r) => send(ok(f.ref, { channel: f.channel, offset: r.offset, epoch: r.epoch, recovered: r.recovered, publications: r.pubs.map(wirePublication) })), fail);
          },
          fail,
        );
      case 'rpc':
        handleRpc(ctx, client, f.event, f.data).then((data) => {
          try {
            send(ok(f.ref, { data: data ?? null }));
          } catch (err) {
            // A handler's answer the connection's encoding cannot carry (a BigInt, a cycle) threw here, in a
            // promise callback, and ended the shard; the transports encode before writing, so nothing was
            // sent yet. Answered as the Socket.IO ack answers it.
            fail(new RtError('bad_reply', `the request handler's answer cannot be sent: ${(err as Error)?.message ?? String(err)}`, 500));
          }
        }, fail);
        return;
    }
  } catch (err) {
    fail(err);
  }
}
