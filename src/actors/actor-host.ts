/**
 * The actors a shard owns: creates a channel's actor on first use, routes requests to it, and drops
 * it once idle. Only the owner shard (ownerOf) ever holds a channel's actor.
 */
import { RtError } from '../errors.js';
import type { ChannelInfo, ConnRef, Request, SubscribeResult } from '../runtime/messages.js';
import type { Member } from '../protocol/native.js';
import { ChannelActor, type ActorEnv } from './channel-actor.js';
import type { ActorRegistry } from './registry.js';
import { threadLogger } from '../log.js';
import { payloadOf, EncodedMessage } from '../protocol/encoded-payload.js';
import { isHiddenChannel } from '../runtime/hidden-channels.js';
import { channelKind } from '../auth/channels.js';

const SWEEP_MS = 5_000;
const noop = (): void => {};

export class ActorHost {
  private readonly actors = new Map<string, ChannelActor>();
  /** Between this shard's replacement being announced and reconcileReplay (see ChannelActor.expectReplay). */
  private replayPending = false;
  /** Resolved by reconcileReplay: publishes that would start a stream wait for it (see handle). */
  private replayDone?: { promise: Promise<void>; resolve(): void };
  /** The presence subscribes waiting for the replay, in arrival order (see handle). */
  private heldSubscribes: Promise<unknown> = Promise.resolve();
  private readonly sweeper: ReturnType<typeof setInterval>;

  constructor(private readonly registry: ActorRegistry, private readonly env: ActorEnv) {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  get size(): number {
    return this.actors.size;
  }

  private actor(ch: string): ChannelActor {
    let a = this.actors.get(ch);
    if (!a) {
      const { def, file } = this.registry.actorFor(ch);
      a = new ChannelActor(ch, def, this.env, file);
      this.actors.set(ch, a);
      if (this.replayPending) a.expectReplay();
    }
    return a;
  }

  /** Answers a request addressed to this shard as a channel owner. */
  handle(req: Request): unknown {
    switch (req.t) {
      case 'sub':
        // After a restart, a new subscriber's reply must hold what the replay brings back: the members
        // of a presence channel (they come back silently: one missing from its list would never join
        // for it) and the stream's position. It waits for the replay, as a publish does; a member that
        // was on the dead thread is then announced gone before it rejoins.
        if (!req.replay && this.replayDone && !this.env.broker) {
          const waiting = req;
          if (channelKind(req.ch) !== 'presence') return this.replayDone.promise.then(() => this.handle(waiting));
          const answer = this.heldSubscribes.then(() => this.handle(waiting));
          // Presence ones one at a time: the next is handled only after this answer is posted (the mesh
          // reacts to `answer` after this link does), else this subscriber's thread would get the next
          // one's join before its own reply, while it is not yet in the channel, and miss it.
          this.heldSubscribes = answer.then(noop, noop);
          return answer;
        }
        return this.actor(req.ch).subscribe(req.conn, req.since, req.data, req.replay) as SubscribeResult | Promise<SubscribeResult>;
      case 'pub': {
        // After a restart, a channel's stream continues where its subscribers (replayed by the other
        // threads) saw it. A publish must not start it afresh before they are all in: offsets would go
        // back for every subscriber that never noticed. It waits for the replay (milliseconds; at most
        // the request timeout when a thread died meanwhile).
        // A client publish needs its sender's subscription, which the replay brings back too: with
        // Redis as well, or a survivor publishing during the replay is told it is not subscribed.
        if (this.replayDone && (req.src === 'client' || (!this.env.broker && !this.actors.get(req.ch)?.published))) {
          const waiting = req;
          return this.replayDone.promise.then(() => this.handle(waiting));
        }
        // A payload still in JSON text stays so unless the actor has a hook that reads messages: hooks
        // get a plain object, as user code may keep it, clone it or send it to a compute thread.
        const a = this.actor(req.ch);
        const raw = a.readsMessages ? undefined : payloadOf(req);
        return a.publish(raw ? new EncodedMessage(req.ev, raw) : { event: req.ev, data: req.data }, req.src, req.from, req.ex, req.w === 1, req.at);
      }
      case 'presence': {
        const a = this.actors.get(req.ch);
        return { members: a ? a.memberList() : ([] as Member[]) };
      }
      case 'history': {
        const a = this.actor(req.ch);
        return a.historySince(req.since, Math.min(req.limit ?? 100, 1000), req.times === 1);
      }
      case 'channel': {
        const a = this.actors.get(req.ch);
        return a ? this.info(a) : { name: req.ch, subscribers: 0, offset: 0, ...(req.ch.startsWith('presence-') ? { presence: 0 } : {}) };
      }
      case 'channels': {
        const out: ChannelInfo[] = [];
        for (const a of this.actors.values()) {
          if (a.subscriberCount === 0 || isHiddenChannel(a.name)) continue;
          if (req.prefix && !a.name.startsWith(req.prefix)) continue;
          out.push(this.info(a));
        }
        return out;
      }
      default:
        throw new RtError('bad_request', `unknown request ${(req as { t: string }).t}`);
    }
  }

  private info(a: ChannelActor): ChannelInfo {
    const i: ChannelInfo = { name: a.name, subscribers: a.subscriberCount, offset: a.offset };
    if (a.kind === 'presence') i.presence = a.memberCount;
    return i;
  }

  /**
   * A push (to socket ids) or a kick decided by a placed actor's activation for subscribers this shard
   * relays (src/bridge/placement.ts). Nothing to do when this shard no longer holds the channel.
   */
  relayPush(ch: string, ids: string[], event: string, data: unknown, js?: string): void {
    this.actors.get(ch)?.relayPush(ids, event, data, js);
  }

  relayKick(ch: string, socketId: string, reason: string): void {
    this.actors.get(ch)?.relayKick(socketId, reason);
  }

  /** Whether the channel has an actor here (it has subscribers, or had them lately). */
  has(ch: string): boolean {
    return this.actors.has(ch);
  }

  /** A subscriber authenticated again: see ChannelActor.regrant. Never throws, as unsubscribe. */
  regrant(ch: string, conn: ConnRef): void {
    // After a restart a subscribe may still be waiting for the replay (handle, 'sub'); the check must
    // come after it, as the notice came after the request.
    if (this.replayDone && !this.env.broker) {
      const after = channelKind(ch) === 'presence' ? this.heldSubscribes : this.replayDone.promise;
      void after.then(() => this.regrantNow(ch, conn));
      return;
    }
    this.regrantNow(ch, conn);
  }

  private regrantNow(ch: string, conn: ConnRef): void {
    const a = this.actors.get(ch);
    if (a) void Promise.resolve(a.regrant(conn)).catch((err) => threadLogger().error(`actor ${ch}: checking a fresh token's grants failed`, err, { event: 'actor.error', channel: ch }));
  }

  /** A member this shard's actor of `ch` may keep in its grace was recovered elsewhere (the `stayed` notice). */
  endGrace(ch: string, user: string): void {
    this.actors.get(ch)?.recoveredElsewhere(user);
  }

  /** Never throws: onLeave failures are logged (and counted) by the actor. `graceMs`: see ChannelActor.unsubscribe. */
  unsubscribe(ch: string, connId: string, graceMs?: number): void {
    const a = this.actors.get(ch);
    if (a) void Promise.resolve(a.unsubscribe(connId, graceMs)).catch((err) => threadLogger().error(`actor ${ch}: onLeave failed`, err, { event: 'actor.error', channel: ch }));
  }

  dropThread(thread: number): void {
    for (const a of this.actors.values()) void Promise.resolve(a.dropThread(thread)).catch((err) => threadLogger().error(`actor ${a.name}: dropping a restarted thread's members failed`, err, { event: 'actor.error', channel: a.name }));
  }

  /** This shard replaced a dead one: the threads' reports are awaited (src/actors/replay-collector.ts). */
  expectReplay(): void {
    this.replayPending = true;
    if (!this.replayDone) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.replayDone = { promise, resolve };
      this.heldSubscribes = promise;
    }
    for (const a of this.actors.values()) a.expectReplay();
  }

  /**
   * After this shard replaced a dead one: every actor settles its replay (members in `seen` that no
   * thread re-registered are announced as gone). A channel without an actor has no subscriber left
   * to tell.
   */
  reconcileReplay(seen: ReadonlyMap<string, Member[]>): Promise<void> {
    this.replayPending = false;
    this.replayDone?.resolve();
    this.replayDone = undefined;
    const all: Promise<void>[] = [];
    for (const a of this.actors.values()) {
      all.push(Promise.resolve(a.reconcileReplay(seen.get(a.name) ?? [])).catch((err) => threadLogger().error(`actor ${a.name}: reconciling presence after a restart failed`, err, { event: 'actor.error', channel: a.name })));
    }
    // Settles once every actor has reconciled (each behind the replayed subscriptions in its mailbox).
    return Promise.all(all).then(() => {});
  }

  private sweep(): void {
    const now = Date.now();
    for (const [name, a] of this.actors) {
      if (a.idle(now)) {
        void a.stop('idle');
        this.actors.delete(name);
      }
    }
  }

  /** Stops every actor (onStop with reason `shutdown`, each within its deadline). */
  async stopAll(): Promise<void> {
    clearInterval(this.sweeper);
    const all = [...this.actors.values()];
    this.actors.clear();
    await Promise.all(all.map((a) => a.stop('shutdown')));
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
