/**
 * The `ctx` one hook call sees: the actor's context, until the call is abandoned at its deadline. Past
 * it the sender was answered `actor_timeout` and the mailbox moved on, so a hook still running (awaiting
 * a slow backend) would act in another message's turn and publish what its sender was told failed.
 * From then on what it does through `ctx` (broadcast, push, kick, timers, compute, replacing the state)
 * throws `actor_timeout`, which also ends the hook there. Reads stay allowed; mutating the objects inside
 * `ctx.state` cannot be caught.
 */
import { RtError } from '../errors.js';
import type { ActorContext, ActorTimers } from './define.js';

type Ctx = ActorContext<unknown>;

export class TurnContext {
  private over: string | undefined;

  constructor(private readonly base: Ctx, private readonly warn: (msg: string) => void) {}

  /** The hook call `hook` missed its deadline: refuse what it does next through this context. */
  end(hook: string): void {
    this.over = hook;
  }

  /**
   * What `ctx.<what>` is for the hook: the actor's own function while the turn lasts (so destructuring
   * `const { broadcast } = ctx` works as on a plain object), one that throws once it is over.
   */
  private fn<F>(what: string, live: F): F {
    if (this.over === undefined) return live;
    return (() => this.refuse(what)) as F;
  }

  private refuse(what: string): never {
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
    if (this.over !== undefined) this.refuse('state');
    this.base.state = v;
  }

  get now(): Ctx['now'] {
    return this.base.now;
  }

  get broadcast(): Ctx['broadcast'] {
    return this.fn('broadcast', this.base.broadcast);
  }

  get push(): Ctx['push'] {
    return this.fn('push', this.base.push);
  }

  get pushUser(): Ctx['pushUser'] {
    return this.fn('pushUser', this.base.pushUser);
  }

  get kick(): Ctx['kick'] {
    return this.fn('kick', this.base.kick);
  }

  get compute(): Ctx['compute'] {
    return this.fn('compute', this.base.compute);
  }

  get timers(): ActorTimers {
    const t = this.base.timers;
    if (this.over === undefined) return t;
    return { after: () => this.refuse('timers.after'), every: () => this.refuse('timers.every'), cancel: () => this.refuse('timers.cancel'), has: (name) => t.has(name) };
  }

  get members(): Ctx['members'] {
    return this.base.members;
  }

  get subscribers(): Ctx['subscribers'] {
    return this.base.subscribers;
  }

  get subscriberCount(): Ctx['subscriberCount'] {
    return this.base.subscriberCount;
  }
}
