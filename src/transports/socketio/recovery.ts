/**
 * Socket.IO connection state recovery (socket.io 4.6+ `connectionStateRecovery`), over the channel
 * streams the native protocol resumes from.
 *
 * Socket.IO gives a client one `offset`: the last string argument of the last event it received. Our
 * publications have one position per channel, so the offset names a point in this thread's delivery
 * order instead — `<thread incarnation>~<delivery number>` — and each thread keeps, for the channels its
 * Socket.IO clients are in, the last TRAIL (delivery number, channel offset) pairs. When a session ends
 * for a reason the client comes back from, each socket's channels are saved with that trail
 * (a Snapshot); the reconnecting client's offset then gives, channel by channel, the last publication it
 * received, and the channels are subscribed again from there: the missed publications come from the
 * channel's history (memory, or Redis Streams with --redis), without duplicates, interleaved across
 * channels by publication time (publicationOrder), as socket.io's one stream replays them. When a
 * position cannot be known (trail overrun, unknown offset) or history no longer covers it, the client
 * gets a new session and `socket.recovered === false`.
 *
 * Saved sessions are kept on every shard of the host (a crashed shard's clients reconnect anywhere) for
 * the recovery window.
 */
import { randomBytes } from 'node:crypto';
import { Packr } from 'msgpackr';
import type { SharedStore } from '../../runtime/context.js';
import type { Publication } from '../../protocol/native.js';
import type { ChannelIdentity } from '../../runtime/client.js';
import type { Hub } from '../../runtime/hub.js';

/** Deliveries remembered per channel: how far behind its last received message a client may be. */
const TRAIL = 256;
/** Saved sessions one thread keeps at most (oldest dropped first). */
const MAX_RECORDS = 100_000;
const packr = new Packr({ useRecords: false });
/** A shard that does not answer within this (still starting, or busy) is not waited for: the client's connect must not time out. */
const TAKE_TIMEOUT_MS = 500;
const OFFSET_RE = /^(\d{1,4}\.[0-9a-f]{12})~(\d{1,15})$/;

class Trail {
  readonly seqs = new Float64Array(TRAIL);
  readonly offs = new Float64Array(TRAIL);
  n = 0;
  /** Delivery number of the newest entry overwritten (0 when none). */
  lost = 0;
  refs = 0;

  push(seq: number, offset: number): void {
    const i = this.n % TRAIL;
    if (this.n >= TRAIL) this.lost = this.seqs[i]!;
    this.seqs[i] = seq;
    this.offs[i] = offset;
    this.n++;
  }

  /** Entries after `seq`, oldest first. */
  after(seq: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const from = Math.max(0, this.n - TRAIL);
    for (let k = from; k < this.n; k++) {
      const i = k % TRAIL;
      if (this.seqs[i]! > seq) out.push([this.seqs[i]!, this.offs[i]!]);
    }
    return out;
  }
}

/** Where one socket stands in one channel on one thread (see Recovery.track). */
export interface ChannelTrack {
  epoch: string;
  /** Channel offset the client had before anything of this subscription reached it. */
  base: number;
  /** Delivery number when the socket joined the channel's live deliveries on this thread. */
  joinedAt: number;
  /** Publications sent to this socket alone before it joined (resumed ones), with their delivery numbers. */
  marks: Array<[number, number]>;
}

/** A channel of a saved socket, as seen from one thread incarnation. */
export interface Snapshot {
  inc: string;
  epoch: string;
  base: number;
  /** Publications in the socket's order: [delivery number, channel offset]. */
  entries: Array<[number, number]>;
  joinedAt: number;
  /** Deliveries after joinedAt were overwritten in the trail before the save. */
  lossy: boolean;
}

export interface SavedChannel {
  ch: string;
  data?: unknown;
  identity?: ChannelIdentity;
  snaps: Snapshot[];
}

/** A saved Socket.IO socket (one namespace of a session). */
export interface SavedSocket {
  pid: string;
  nsp: string;
  publicId: string;
  user?: string;
  info?: unknown;
  grants?: string[];
  expiresAt?: number;
  /** The `iat` of the token the user came with (see Hub.isRevoked). */
  issuedAt?: number;
  data: Record<string, unknown>;
  channels: SavedChannel[];
  /** The offset the client presented when the socket started afresh (see SioClient.staleOffset). */
  stale?: string;
  /** The next emitWithAck id: the socket taking the session numbers on from there (see SioConnection.connect). */
  nextAck?: number;
  /** Epoch ms after which it is no longer recoverable. */
  until: number;
}

type RecOp = { op: 'put'; rec: SavedSocket } | { op: 'take'; pid: string } | { op: 'del'; pid: string };

export class Recovery {
  /** This thread incarnation: a restarted shard never reuses delivery numbers of its predecessor. */
  readonly inc: string;
  seq = 0;
  private cached = '';
  private cachedSeq = -1;
  private readonly trails = new Map<string, Trail>();
  private readonly records = new Map<string, { rec: SavedSocket; timer: NodeJS.Timeout }>();
  /**
   * Sockets alive on this thread, by pid. A client may come back before the server noticed it was gone
   * (a polling client, a half-open TCP connection): its old socket is then ended and handed over.
   */
  private readonly live = new Map<string, () => SavedSocket>();
  private readonly readBack = new WeakSet<SavedSocket>();

  constructor(
    private readonly hub: Hub,
    /** Recovery window, ms. */
    readonly windowMs: number,
    /** With --redis: saved sessions also go there, so a client recovers on another host or after a restart. */
    private readonly shared?: SharedStore,
    private readonly log: (msg: string) => void = () => {},
  ) {
    this.inc = `${hub.thread}.${randomBytes(6).toString('hex')}`;
    hub.onDeliver = (pub) => this.delivered(pub);
    hub.onForward('sio-rec', (op: RecOp) => this.onOp(op));
  }

  private delivered(pub: Publication): void {
    const n = ++this.seq;
    const t = this.trails.get(pub.channel);
    if (t) t.push(n, pub.offset);
  }

  /** The offset string of the delivery being made now (appended to Socket.IO events). */
  offset(): string {
    if (this.cachedSeq !== this.seq) {
      this.cachedSeq = this.seq;
      this.cached = `${this.inc}~${this.seq}`;
    }
    return this.cached;
  }

  /** A number of its own for an event sent to one socket (a resumed publication). */
  next(): string {
    this.seq++;
    return this.offset();
  }

  watch(ch: string): void {
    let t = this.trails.get(ch);
    if (!t) this.trails.set(ch, (t = new Trail()));
    t.refs++;
  }

  unwatch(ch: string): void {
    const t = this.trails.get(ch);
    if (t && --t.refs === 0) this.trails.delete(ch);
  }

  snapshot(track: ChannelTrack, ch: string): Snapshot {
    const t = this.trails.get(ch);
    const live = t ? t.after(track.joinedAt) : [];
    return { inc: this.inc, epoch: track.epoch, base: track.base, joinedAt: track.joinedAt, entries: [...track.marks, ...live], lossy: !!t && t.lost > track.joinedAt };
  }

  bind(pid: string, handOver: () => SavedSocket): void {
    this.live.set(pid, handOver);
  }

  unbind(pid: string, handOver: () => SavedSocket): void {
    if (this.live.get(pid) === handOver) this.live.delete(pid);
  }

  /** A saved socket, or a live one ended now and saved. */
  private claim(pid: string): SavedSocket | undefined {
    const rec = this.drop(pid);
    if (rec) return rec;
    const handOver = this.live.get(pid);
    if (!handOver) return undefined;
    this.live.delete(pid);
    return handOver();
  }

  // ---- saved sessions, on every shard of the host

  save(rec: SavedSocket): void {
    this.keep(rec);
    this.shared?.put(`sio:${rec.pid}`, packr.pack(rec), Math.max(1, rec.until - Date.now())).catch((err: Error) => this.log(`socket.io: a session could not be saved to Redis for recovery: ${err.message}`));
    for (let s = 0; s < this.hub.shards; s++) if (s !== this.hub.thread) this.hub.forward(s, 'sio-rec', { op: 'put', rec } satisfies RecOp).catch(() => {});
  }

  /** Takes a saved socket (here, or from another shard), so it is restored at most once. */
  async take(pid: string): Promise<SavedSocket | undefined> {
    let rec = this.claim(pid);
    if (!rec) {
      const others: Promise<SavedSocket | undefined>[] = [];
      for (let s = 0; s < this.hub.shards; s++) if (s !== this.hub.thread) others.push(this.hub.forward<SavedSocket | undefined>(s, 'sio-rec', { op: 'take', pid } satisfies RecOp, TAKE_TIMEOUT_MS).catch(() => undefined));
      for (const r of await Promise.all(others)) rec ??= r ?? undefined;
    } else {
      for (let s = 0; s < this.hub.shards; s++) if (s !== this.hub.thread) this.hub.forward(s, 'sio-rec', { op: 'del', pid } satisfies RecOp).catch(() => {});
    }
    if (this.shared) {
      // This host's copy may be older than the one another host saved since (the client recovered
      // there and dropped again): that one knows the deliveries the client's offset names.
      const there = await this.fromShared(pid);
      if (there && (!rec || there.until > rec.until)) rec = there;
    }
    return rec && rec.until >= Date.now() ? rec : undefined;
  }

  /** Whether `rec` was saved by another host (or this one before a restart): read from Redis by take(). */
  fromElsewhere(rec: SavedSocket): boolean {
    return this.readBack.has(rec);
  }

  private async fromShared(pid: string): Promise<SavedSocket | undefined> {
    try {
      const bytes = await this.shared!.take(`sio:${pid}`);
      if (!bytes) return undefined;
      const rec = packr.unpack(bytes) as SavedSocket;
      if (!(rec && typeof rec === 'object' && rec.pid === pid && Array.isArray(rec.channels))) return undefined;
      this.readBack.add(rec);
      return rec;
    } catch (err) {
      this.log(`socket.io: a saved session could not be read from Redis: ${(err as Error).message}`);
      return undefined;
    }
  }

  private onOp(op: RecOp): SavedSocket | null {
    if (op.op === 'put') this.keep(op.rec);
    else if (op.op === 'take') return this.claim(op.pid) ?? null;
    else this.drop(op.pid);
    return null;
  }

  private keep(rec: SavedSocket): void {
    this.drop(rec.pid);
    if (this.records.size >= MAX_RECORDS) this.drop(this.records.keys().next().value!);
    const timer = setTimeout(() => this.records.delete(rec.pid), Math.max(0, rec.until - Date.now()));
    timer.unref();
    this.records.set(rec.pid, { rec, timer });
  }

  private drop(pid: string): SavedSocket | undefined {
    const r = this.records.get(pid);
    if (!r) return undefined;
    clearTimeout(r.timer);
    this.records.delete(pid);
    return r.rec;
  }
}

/**
 * The channel offset of the last publication of a channel the client received, given the offset it
 * sent back (undefined: it received no event carrying one); undefined when that cannot be known.
 */
export function receivedUpTo(snaps: readonly Snapshot[], clientOffset: string | undefined): { epoch: string; offset: number } | undefined {
  if (snaps.length === 0) return undefined;
  if (clientOffset === undefined) return { epoch: snaps[0]!.epoch, offset: snaps[0]!.base };
  const m = OFFSET_RE.exec(clientOffset);
  if (!m) return undefined;
  const inc = m[1]!;
  const seq = Number(m[2]);
  const snap = snapshotOf(snaps, inc, seq);
  if (!snap) return undefined;
  let offset = snap.base;
  let live = false;
  for (const [n, off] of snap.entries) {
    if (n > seq) break;
    offset = off;
    live = n > snap.joinedAt;
  }
  // Deliveries between joining and the oldest one remembered are unknown: the answer could be among them.
  if (!live && snap.lossy && seq > snap.joinedAt) return undefined;
  return { epoch: snap.epoch, offset };
}

/**
 * The snapshot of the socket that delivered `inc~seq`. One thread can appear more than once (a session
 * recovered back onto a thread it was on): delivery numbers only grow on a thread, so it is the newest
 * of that thread's sockets that had delivered something up to `seq` — the first delivery to a socket
 * (or, if none, its joining) comes after everything its predecessors on the thread were sent.
 */
function snapshotOf(snaps: readonly Snapshot[], inc: string, seq: number): Snapshot | undefined {
  let oldest: Snapshot | undefined;
  for (let i = snaps.length - 1; i >= 0; i--) {
    const s = snaps[i]!;
    if (s.inc !== inc) continue;
    const first = s.entries.length > 0 ? Math.min(s.entries[0]![0], s.joinedAt + 1) : s.joinedAt + 1;
    if (seq >= first) return s;
    oldest = s;
  }
  return oldest;
}

/** One channel's missed publications, with when each was published (HistoryAnswer with times). */
export interface MissedSlice {
  pubs: readonly Publication[];
  times: readonly number[];
}

/**
 * The publications of several channels in the order they were published: each channel's own order
 * kept, channels interleaved by publication time (ties keep the channels' order). Gives
 * [channel index, publication] pairs.
 */
export function publicationOrder(slices: ReadonlyArray<MissedSlice | undefined>): Array<[number, Publication]> {
  const heads = slices.map(() => 0);
  const out: Array<[number, Publication]> = [];
  for (;;) {
    let best = -1;
    let bestTime = Infinity;
    for (let i = 0; i < slices.length; i++) {
      const s = slices[i];
      const k = heads[i]!;
      if (!s || k >= s.pubs.length) continue;
      const t = s.times[k] ?? 0;
      if (t < bestTime) {
        best = i;
        bestTime = t;
      }
    }
    if (best < 0) return out;
    out.push([best, slices[best]!.pubs[heads[best]!++]!]);
  }
}

export function newPid(): string {
  return randomBytes(12).toString('base64url');
}
