/**
 * The `ctx` one hook call sees: the actor's context, until the call is abandoned at its deadline. Past
 * it the sender was answered `actor_timeout` and the mailbox moved on, so a hook still running (awaiting
 * a slow backend) would act in another message's turn and publish what its sender was told failed.
 * From then on what it does through `ctx` (broadcast, push, kick, timers, compute, replacing the state)
 * throws `actor_timeout`, which also ends the hook there. Reads stay allowed; mutating the objects inside
 * `ctx.state` cannot be caught.
 */
import { RtError } from '../errors.js';
import type { Member } from '../protocol/native.js';
import type { ActorContext, ActorTimers, Subscriber } from './define.js';

type Ctx = ActorContext<unknown>;

export class TurnContext {
  private over: string | undefined;
  private turnTimers: ActorTimers | undefined;

  constructor(private readonly base: Ctx, private readonly warn: (msg: string) => void) {}

  /** The hook call `hook` missed its deadline: refuse what it does next through this context. */
  end(hook: string): void {
    this.over = hook;
  }

  private live(what: string): void {
    if (this.over === undefined) return;
    const msg = `${this.over} used ctx.${what} after its deadline; refused`;
    this.warn(msg);
    throw new RtError('actor_timeout', msg, 504);
  }

  get channel(): string {
    return this.base.channel;
  }

  get state(): unknown {
    return this.base.state;
  }

  set state(v: unknown) {
    this.live('state');
    this.base.state = v;
  }

  now(): number {
    return this.base.now();
  }

  broadcast(event: string, data: unknown): number {
    this.live('broadcast');
    return this.base.broadcast(event, data);
  }

  push(socketId: string, event: string, data: unknown): boolean {
    this.live('push');
    return this.base.push(socketId, event, data);
  }

  pushUser(userId: string, event: string, data: unknown): number {
    this.live('pushUser');
    return this.base.pushUser(userId, event, data);
  }

  kick(socketId: string, reason?: string): boolean {
    this.live('kick');
    return this.base.kick(socketId, reason);
  }

  compute(task: string, input: unknown, tag?: string): void {
    this.live('compute');
    this.base.compute(task, input, tag);
  }

  get timers(): ActorTimers {
    if (this.turnTimers) return this.turnTimers;
    const t = this.base.timers;
    return (this.turnTimers = {
      after: (name, ms, data) => (this.live('timers.after'), t.after(name, ms, data)),
      every: (name, ms, data) => (this.live('timers.every'), t.every(name, ms, data)),
      cancel: (name) => (this.live('timers.cancel'), t.cancel(name)),
      has: (name) => t.has(name),
    });
  }

  members(): Member[] {
    return this.base.members();
  }

  subscribers(): Subscriber[] {
    return this.base.subscribers();
  }

  subscriberCount(): number {
    return this.base.subscriberCount();
  }
}
