/**
 * The memory transport: a client inside the server's own process (main thread) — for the embedding
 * application and its tests. It goes through the same owner actors and rings as any socket.
 */
import { JSON_CODEC, type Encoded } from '../protocol/codecs.js';
import type { Member, Publication, StreamPosition } from '../protocol/native.js';
import { RtError } from '../errors.js';
import { Client } from '../runtime/client.js';
import type { Hub } from '../runtime/hub.js';
import type { PublishResult, SubscribeResult } from '../runtime/messages.js';

export interface MemoryIdentity {
  /** User id, as a token's `sub` would give. */
  user?: string;
  /** Presence info. */
  info?: unknown;
  /** Channel patterns this client may join (like a token's `channels` claim). */
  channels?: string[];
}

export interface MemoryEvents {
  message: (m: { channel?: string; event: string; data: unknown; offset?: number }) => void;
  join: (m: { channel: string; member: Member }) => void;
  leave: (m: { channel: string; member: Member }) => void;
  disconnect: (d: { code: number; reason: string }) => void;
  /** The channel's actor removed this client from `channel`. */
  kicked: (m: { channel: string; reason: string }) => void;
}

export class MemoryClient extends Client {
  private readonly listeners: { [K in keyof MemoryEvents]: Set<MemoryEvents[K]> } = {
    message: new Set(),
    join: new Set(),
    leave: new Set(),
    disconnect: new Set(),
    kicked: new Set(),
  };

  constructor(private readonly hub: Hub, identity: MemoryIdentity = {}) {
    super(hub.nextSocketId(), 'memory', JSON_CODEC);
    if (identity.user !== undefined) this.authenticate({ sub: identity.user, user_info: identity.info, channels: identity.channels });
    hub.add(this);
  }

  on<K extends keyof MemoryEvents>(event: K, cb: MemoryEvents[K]): this {
    this.listenersOf(event).add(cb);
    return this;
  }

  off<K extends keyof MemoryEvents>(event: K, cb: MemoryEvents[K]): this {
    this.listenersOf(event).delete(cb);
    return this;
  }

  /** JavaScript callers are not stopped by the types: an unknown name is an error that lists the known ones. */
  private listenersOf<K extends keyof MemoryEvents>(event: K): Set<MemoryEvents[K]> {
    if (!Object.hasOwn(this.listeners, event)) {
      throw new RtError('bad_argument', `unknown event ${JSON.stringify(event)}: a memory client emits ${Object.keys(this.listeners).join(', ')}`);
    }
    return this.listeners[event];
  }

  /** Deliveries arrive encoded like a JSON WebSocket frame, so this client sees exactly what sockets see. */
  sendEncoded(data: Encoded): void {
    const f = JSON.parse(typeof data === 'string' ? data : Buffer.from(data).toString()) as Record<string, any>;
    if (f.op === 'message') for (const cb of this.listeners.message) cb({ channel: f.channel, event: f.event, data: f.data, offset: f.offset });
    else if (f.op === 'join') for (const cb of this.listeners.join) cb({ channel: f.channel, member: f.member });
    else if (f.op === 'leave') for (const cb of this.listeners.leave) cb({ channel: f.channel, member: f.member });
    else if (f.op === 'kicked') for (const cb of this.listeners.kicked) cb({ channel: f.channel, reason: f.reason });
  }

  subscribe(channel: string, opts: { since?: StreamPosition; data?: unknown } = {}): Promise<SubscribeResult & { pubs?: Publication[] }> {
    if (this.closed) return Promise.reject(new Error('client closed'));
    return this.hub.subscribe(this, channel, opts.since, opts.data, (res) => {
      // Resumed publications are delivered before live ones, as for sockets.
      for (const p of res.pubs ?? []) for (const cb of this.listeners.message) cb({ channel: p.channel, event: p.event, data: p.data, offset: p.offset });
    });
  }

  unsubscribe(channel: string): boolean {
    return this.hub.unsubscribe(this, channel);
  }

  /** Resolves with the publication's offset and the channel actor's reply (`data`), if it replied. */
  publish(channel: string, event: string, data: unknown, opts: { excludeSelf?: boolean } = {}): Promise<PublishResult> {
    return this.hub.publish(channel, event, data, 'client', this, opts.excludeSelf ? this.id : undefined);
  }

  presence(channel: string): Promise<Member[]> {
    return this.hub.presence(channel).then((r) => r.members);
  }

  disconnect(code = 1000, reason = 'closed'): void {
    if (this.closed) return;
    this.hub.remove(this);
    for (const cb of this.listeners.disconnect) cb({ code, reason });
  }

  close(): void {
    this.disconnect();
  }
}
