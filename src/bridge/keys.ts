/**
 * Every Redis name rt-actors uses, in one place (docs/scaling.md lists them). A channel's keys and its
 * pub/sub channel share one hash tag, `{<channel>}`, so on a Redis Cluster they live in one slot: the
 * publish script can touch the offset, the stream and the shard channel atomically, and SPUBLISH
 * traffic spreads over the cluster by channel.
 */
export class Keys {
  /**
   * Prefix of pub/sub channel names. Redis pub/sub ignores the database: two deployments told apart by
   * it alone (redis://r/1, redis://r/2) heard each other's publications, user messages and disconnects.
   */
  private readonly bus: string;

  constructor(readonly ns: string, readonly laravelPrefix: string, db = 0) {
    this.bus = db ? `${ns}@${db}` : ns;
  }

  private tag(ch: string): string {
    return `${this.ns}:{${ch}}`;
  }
  /** Hash: `o` last offset, `e` epoch. */
  meta(ch: string): string {
    return this.tag(ch) + ':m';
  }
  /** Stream of publications: fields `o` (offset) and `m` (msgpack body). */
  stream(ch: string): string {
    return this.tag(ch) + ':s';
  }
  /** Hash `<node>|<user>` → presence info (JSON), one entry per host holding the user. */
  members(ch: string): string {
    return this.tag(ch) + ':p';
  }
  /** Hash user → number of nodes holding the user: the cluster-wide "is present" count. */
  users(ch: string): string {
    return this.tag(ch) + ':u';
  }
  /** Hash node → subscriber count on that node. */
  counts(ch: string): string {
    return this.tag(ch) + ':n';
  }
  /** Marks one backend message as sequenced (see ingest in docs/scaling.md). */
  claim(ch: string, id: string): string {
    return this.tag(ch) + ':d:' + id;
  }
  /**
   * Hash `h` holder, `e` fencing epoch: the lease of the one activation of a placed channel's actor.
   * Expires unless its holder renews it.
   */
  lease(ch: string): string {
    return this.tag(ch) + ':l';
  }
  /** The channel's fencing counter: grows by one for every new lease holder, never reused. */
  fence(ch: string): string {
    return this.tag(ch) + ':f';
  }
  /** A placed actor's persisted state (msgpack), written only by the lease holder. */
  state(ch: string): string {
    return this.tag(ch) + ':a';
  }
  /** The channel's own pub/sub channel (SPUBLISH on a cluster, PUBLISH otherwise). */
  pubsub(ch: string): string {
    return `${this.bus}:{${ch}}:c`;
  }
  /** A node's inbox: requests forwarded to the placed actors it runs, and replies to its own requests. */
  inbox(node: string): string {
    return `${this.bus}:{${node}}:in`;
  }
  /** Where a Laravel backend publishes for this channel. */
  laravel(ch: string): string {
    return this.laravelPrefix + ch;
  }
  /** Cluster-wide control messages: messages to users, user disconnects. */
  get control(): string {
    return `${this.bus}:ctl`;
  }
  /** Hash user → when its tokens were revoked (seconds): read by every host at (re)connect. */
  get revoked(): string {
    return `${this.ns}:revoked`;
  }
  /** Set of node ids that registered. */
  get nodes(): string {
    return `${this.ns}:nodes`;
  }
  /** A node's heartbeat (expires when the node stops refreshing it). */
  node(id: string): string {
    return `${this.ns}:node:${id}`;
  }
  /** Channels where a node holds presence entries or counts, for the sweeper. */
  nodeChannels(id: string): string {
    return `${this.ns}:node:${id}:ch`;
  }
  /** Sorted set channel → last time a node reported subscribers of it. */
  get index(): string {
    return `${this.ns}:channels`;
  }
  /**
   * Sorted set channel → earliest due time (epoch ms) of a placed actor's persisted timers: every node
   * scans it, so a channel whose owner died or stopped is activated again in time for its timers even
   * where no host has subscribers of it (placement.ts, revive).
   */
  get timers(): string {
    return `${this.ns}:timers`;
  }
  /**
   * Hash node → since when (epoch ms) it was found without a heartbeat by a node that saw Redis fail
   * lately (sweeping, or checking a placed actor's subscribers): shared, so whichever node looks next
   * counts from the first sighting (redis-broker.ts, presumedDead).
   */
  get missing(): string {
    return `${this.ns}:nodes:missing`;
  }
  /** Held by the node sweeping dead nodes during one heartbeat interval. */
  get sweepLock(): string {
    return `${this.ns}:sweep`;
  }
}

/** CRC16-XMODEM (polynomial 0x1021), the checksum Redis Cluster maps keys to slots with. */
function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The cluster slot of a key or shard channel, honouring `{hash tags}` as Redis does. */
export function slotOf(name: string): number {
  const open = name.indexOf('{');
  if (open >= 0) {
    const close = name.indexOf('}', open + 1);
    if (close > open + 1) name = name.slice(open + 1, close);
  }
  return crc16(Buffer.from(name)) % 16384;
}
