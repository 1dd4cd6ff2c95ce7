/**
 * `pusher:subscribe` and `pusher:unsubscribe`: Pusher's channel authorization (HMAC of
 * `socket_id:channel[:channel_data]`), or the channel actor's own `authorize`, then the hub's
 * subscribe; the answer is `pusher_internal:subscription_succeeded` (with the member list on presence
 * channels) or `pusher:subscription_error`. Cache channels replay their last event or send
 * `pusher:cache_miss`.
 */
import { countRefusal, refusalReason } from '../../runtime/instruments.js';
import { channelKind } from '../../auth/channels.js';
import { RtError, toErrorBody, valueType } from '../../errors.js';
import type { ChannelIdentity } from '../../runtime/client.js';
import type { SubscribeResult } from '../../runtime/messages.js';
import { externalName, internalName } from './apps.js';
import type { PusherClient } from './client.js';
import { frame, PUSHER_CODEC } from './codec.js';
import type { PusherGateway } from './gateway.js';
import { verifyChannelAuth } from './signature.js';
import { inChannelOrder } from '../channel-order.js';
import { threadLogger } from '../../log.js';
import { signedUserId } from '../../auth/user-id.js';

/** Pusher's channel names: up to 164 of `A-Z a-z 0-9 _ - = @ , . ;` (and `#server-to-user-…`). */
const CHANNEL_RE = /^[A-Za-z0-9_\-=@,.;]{1,164}$/;
const USER_CHANNEL = '#server-to-user-';

/** Pusher's four kinds: public, private, encrypted (whose cached event is the ciphertext) and presence. */
export function isCacheChannel(name: string): boolean {
  return name.startsWith('cache-') || name.startsWith('private-cache-') || name.startsWith('private-encrypted-cache-') || name.startsWith('presence-cache-');
}

export function isEncryptedChannel(name: string): boolean {
  return name.startsWith('private-encrypted-');
}

export function validPusherChannel(name: unknown): name is string {
  return typeof name === 'string' && CHANNEL_RE.test(name);
}

function subscriptionError(client: PusherClient, channel: string, status: number, error: string, code?: string): void {
  // Logged as auth.failed with its code and detail, like the other protocols' refusals (deployment.md, Logs).
  if (status === 401 || status === 403) countRefusal({ code: code && refusalReason(code) === 'auth' ? code : status === 401 ? 'unauthorized' : 'forbidden', message: error });
  client.send(frame('pusher:subscription_error', { type: 'AuthError', error, status }, channel));
}

interface Member {
  user_id: string;
  user_info?: unknown;
}

/** Parses presence `channel_data`: a JSON object with a non-empty `user_id` (string or number). */
function parseChannelData(raw: unknown): Member | string {
  if (typeof raw !== 'string') return 'presence channels need channel_data (a JSON string with user_id)';
  if (raw.length > 10_000) return 'channel_data is larger than 10000 bytes';
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return 'channel_data is not valid JSON';
  }
  const o = v && typeof v === 'object' ? (v as { user_id?: unknown; user_info?: unknown }) : undefined;
  // A 64-bit integer id keeps its digits (user-id.ts): rounded, two users would be one member.
  const id = o === undefined ? undefined : signedUserId(o.user_id, raw, ['user_id']);
  if (id === undefined) return 'channel_data must hold a user_id (a non-empty string or number)';
  return o!.user_info === undefined ? { user_id: id } : { user_id: id, user_info: o!.user_info };
}

export function subscribe(gw: PusherGateway, client: PusherClient, data: unknown): void {
  const d = (data && typeof data === 'object' ? data : {}) as { channel?: unknown; auth?: unknown; channel_data?: unknown };
  const channel = d.channel;
  if (typeof channel === 'string' && channel.startsWith(USER_CHANNEL)) return subscribeUserChannel(client, channel);
  if (!validPusherChannel(channel)) {
    client.send(frame('pusher:error', { code: null, message: 'pusher:subscribe needs data.channel: 1-164 characters of A-Z a-z 0-9 _ - = @ , . ;' }));
    return;
  }
  const internal = internalName(client.app, channel);
  inOrder(client, internal, () => {
    try {
      return subscribeNow(gw, client, channel, internal, d);
    } catch (err) {
      // A bug, logged by inOrder: the client still hears how its subscription ended.
      if (!client.closed) subscriptionError(client, channel, 500, 'Internal error');
      throw err;
    }
  });
}

export function unsubscribe(gw: PusherGateway, client: PusherClient, data: unknown): void {
  const channel = (data && typeof data === 'object' ? (data as { channel?: unknown }).channel : undefined);
  if (typeof channel === 'string' && channel.startsWith(USER_CHANNEL)) return;
  if (!validPusherChannel(channel)) {
    client.send(frame('pusher:error', { code: null, message: 'pusher:unsubscribe needs data.channel' }));
    return;
  }
  const internal = internalName(client.app, channel);
  inOrder(client, internal, () => {
    if (client.closed) return;
    if (gw.ctx.hub.unsubscribe(client, internal)) client.channelIdentity?.delete(internal);
  });
}

/** Runs a connection's subscribe or unsubscribe of one channel after the ones it sent before (channel-order.ts). */
function inOrder(client: PusherClient, internal: string, op: () => Promise<void> | void): void {
  // The Map is made when one is first in flight: idle connections stay small.
  inChannelOrder((client.pending ??= new Map()), internal, op, (err) => threadLogger().error(`pusher ${client.socketId}: a channel operation on ${internal} failed`, err));
}

function subscribeNow(gw: PusherGateway, client: PusherClient, channel: string, internal: string, d: { auth?: unknown; channel_data?: unknown }): Promise<void> | void {
  if (client.closed) return;
  // Already subscribed: nothing to do, and the subscription's identity (its presence member, the
  // user_id of its client events) must stay the one it was let in with.
  if (client.channels.has(internal)) return;
  const app = client.app;
  const kind = channelKind(channel);
  let identity: ChannelIdentity | undefined;
  let actorData: unknown;
  if (kind !== 'public') {
    let member: Member | undefined;
    if (kind === 'presence') {
      const m = parseChannelData(d.channel_data);
      if (typeof m === 'string') {
        // A custom actor may authorize without channel_data (e.g. a signed-in user); else it is needed.
        if (!gw.actorAuthorizes(internal) || d.channel_data !== undefined) return subscriptionError(client, channel, 400, m);
      } else member = m;
    }
    const signed = verifyChannelAuth(app, client.socketId, channel, d.auth, kind === 'presence' ? (d.channel_data as string | undefined) : undefined);
    if (signed) identity = member ? { user: member.user_id, info: member.user_info, granted: true } : { granted: true };
    else if (gw.actorAuthorizes(internal)) {
      // The actor decides; it sees the claimed member (unverified) and the raw auth in `data`.
      if (member) identity = { user: member.user_id, info: member.user_info };
      actorData = { auth: d.auth, channel_data: d.channel_data };
    } else {
      // The auth is shown as sent only when it is a string: String() of {"toString":1} throws.
      const why = d.auth === undefined ? `Auth value for subscription to ${channel} is missing` : `Invalid signature: Expected HMAC SHA256 hex digest of ${client.socketId}:${channel}${kind === 'presence' ? ':<channel_data>' : ''}, but got ${typeof d.auth === 'string' ? d.auth.slice(0, 100) : `a value of type ${valueType(d.auth)}`}`;
      return subscriptionError(client, channel, 401, why);
    }
  }
  if (identity) (client.channelIdentity ??= new Map()).set(internal, identity);
  return gw.ctx.hub
    .subscribe(client, internal, undefined, actorData, (res) => {
      client.send(frame('pusher_internal:subscription_succeeded', succeededData(res), channel));
    })
    .then(
      (res) => {
        if (isCacheChannel(channel)) replayCache(gw, client, channel, internal, res);
      },
      (err) => {
        client.channelIdentity?.delete(internal);
        if (client.closed) return;
        const e = toErrorBody(err);
        if (e.code === 'already_subscribed') return;
        const status = err instanceof RtError ? err.status : 500;
        subscriptionError(client, channel, status, e.message, e.code);
      },
    );
}

function succeededData(res: SubscribeResult): string {
  if (!res.members) return '{}';
  const ids: string[] = [];
  // Keyed by user ids clients choose: on a plain object `__proto__` would set the prototype, not a key.
  const hash: Record<string, unknown> = Object.create(null);
  for (const m of res.members) {
    ids.push(m.user_id);
    hash[m.user_id] = m.user_info ?? null;
  }
  return JSON.stringify({ presence: { ids, hash, count: ids.length } });
}

/** The last event of a cache channel, or pusher:cache_miss (see docs/pusher.md for how long it is kept). */
function replayCache(gw: PusherGateway, client: PusherClient, channel: string, internal: string, res: SubscribeResult): void {
  const miss = (): void => {
    if (client.closed || !client.channels.has(internal)) return;
    client.send(frame('pusher:cache_miss', {}, channel));
    gw.hooks?.cacheMiss(client.app, internal);
  };
  if (res.offset === 0) return miss();
  gw.ctx.hub.history(internal, { epoch: res.epoch, offset: res.offset - 1 }, 1).then((h) => {
    const last = h.pubs[0];
    if (!last) return miss();
    // A newer publication reaches this subscriber live: one made since the subscribe, which this thread
    // may already have delivered while the history was read. `last` replayed after it would leave the
    // client holding a stale "last event".
    const seen = gw.ctx.hub.position(internal);
    if ((h.epoch === res.epoch && h.offset > res.offset) || (seen?.epoch === res.epoch && seen.offset > res.offset)) return;
    if (!client.closed && client.channels.has(internal)) client.sendEncoded(PUSHER_CODEC.pub(last));
  }, miss);
}

/** pusher-js subscribes to `#server-to-user-<id>` after sign-in; deliveries to the user arrive on it. */
function subscribeUserChannel(client: PusherClient, channel: string): void {
  if (client.user === undefined || channel !== USER_CHANNEL + externalName(client.user)) {
    return subscriptionError(client, channel, 403, `sign in as user ${channel.slice(USER_CHANNEL.length, USER_CHANNEL.length + 100)} before subscribing to ${channel.slice(0, 120)}`);
  }
  client.send(frame('pusher_internal:subscription_succeeded', '{}', channel));
}
