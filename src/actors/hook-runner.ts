/**
 * How a custom actor's hooks run, wherever they run: on the channel's shard (ChannelActor) or as the
 * one placed activation of a channel in a cluster (bridge/activation.ts). One set of rules for both:
 * a synchronous hook stays synchronous (no promise on the hot path); a promise gets the deadline
 * (--actor-hook-timeout); a refusal the hook meant (ActorError, any coded RtError) passes through;
 * anything else is logged once with the actor's file, counted, and answered with `actor_failed` (or
 * `actor_timeout`); after `maxFailures` failures in a row the owner restarts the actor with fresh state.
 */
import { RtError } from '../errors.js';
import { within, type Clock } from './clock.js';
import type { ActorContext, StopReason, Subscriber } from './define.js';
import { isThenable } from './mailbox.js';

/**
 * Marks a definition whose hooks run elsewhere under a runner of their own (a placed actor's proxy: the
 * activation applies the deadline and counts the failures). The host calling such hooks adds neither,
 * or one slow or failing hook would be timed and counted twice, once on each side.
 */
export const RUN_ELSEWHERE = Symbol('rt-actors.run-elsewhere');

/**
 * On a placed actor's proxy: registers one of this host's subscribers with the activation again (its
 * onJoin runs only if the activation no longer knows it). Used when this host was swept as dead and
 * came back: the activation made its subscribers leave meanwhile, though their connections lived on.
 * And when this shard replaced a crashed one (`replayed`): the activation knows the survivors under the
 * dead shard's node, and makes them leave once that node is swept.
 */
export const REJOIN = Symbol('rt-actors.rejoin');
export type Rejoin = (channel: string, s: Subscriber, replayed?: boolean) => Promise<void>;

export type Hook = 'init' | 'authorize' | 'onJoin' | 'onLeave' | 'onMessage' | 'onPublish' | 'onTimer' | 'onComputed' | 'onStop';

/** A refusal the hook meant (ActorError, or any coded RtError), as opposed to a bug. */
export function deliberate(err: unknown): boolean {
  if (err instanceof RtError) return err.code !== 'actor_timeout';
  return !!err && typeof err === 'object' && (err as Error).name === 'ActorError' && typeof (err as { code?: unknown }).code === 'string';
}

export interface HookRunnerOptions {
  clock: Clock;
  /** Deadline of a hook that returns a promise. */
  hookTimeoutMs: number;
  /** Failures in a row after which `restart` is called. */
  maxFailures: number;
  /** The actor's file, named in every failure logged. */
  file: string;
  log(msg: string, err?: unknown): void;
  /** Called once per failure (metrics). */
  counted?(): void;
  /** The hooks keep failing: the state may be what is broken. */
  restart(): void;
}

export class HookRunner {
  /** Consecutive failures (reset by any hook that succeeds). */
  private failures = 0;

  constructor(private readonly o: HookRunnerOptions) {}

  /**
   * Runs a hook: its value (or promise of it), or a thrown `actor_failed` / `actor_timeout` / refusal.
   * `abandoned` is called at the deadline, before anything else runs, when the hook is left running.
   */
  invoke<T>(hook: Hook, fn: () => T | Promise<T>, abandoned?: () => void): T | Promise<T> {
    let r: T | Promise<T>;
    try {
      r = fn();
    } catch (err) {
      throw this.failed(hook, err);
    }
    if (!isThenable(r)) {
      this.failures = 0;
      return r;
    }
    return this.deadline(hook, r, abandoned).then(
      (v) => {
        this.failures = 0;
        return v;
      },
      (err) => {
        throw this.failed(hook, err);
      },
    );
  }

  private deadline<T>(hook: Hook, p: Promise<T>, abandoned?: () => void): Promise<T> {
    const ms = this.o.hookTimeoutMs;
    return within(
      p,
      ms,
      () => {
        abandoned?.();
        return new RtError('actor_timeout', `the channel actor's ${hook} did not finish within ${ms} ms`, 504);
      },
      this.o.clock,
    );
  }

  /**
   * The restart itself, once the owner has cleared its timers: onStop(ctx, 'failed') (a failure of it is
   * logged, never thrown), then `init` for ctx.state (kept as it was if init throws). Subscribers stay.
   */
  freshState(def: { onStop?(ctx: never, reason: StopReason): unknown; init?(channel: string): unknown }, ctx: ActorContext<unknown>): void {
    this.o.log(`hooks failed ${this.o.maxFailures} times in a row: the actor restarts with fresh state (actor ${this.o.file})`);
    if (def.onStop) {
      try {
        const r = def.onStop(ctx as never, 'failed');
        if (isThenable(r)) r.catch((err) => this.o.log('onStop failed', err));
      } catch (err) {
        this.o.log('onStop failed', err);
      }
    }
    try {
      ctx.state = def.init ? def.init(ctx.channel) : undefined;
    } catch (err) {
      this.o.log(`init failed on restart (actor ${this.o.file})`, err);
    }
  }

  private failed(hook: Hook, err: unknown): unknown {
    if (deliberate(err)) return err;
    const timeout = err instanceof RtError && err.code === 'actor_timeout';
    this.o.counted?.();
    this.o.log(`${hook} ${timeout ? 'did not finish in time' : 'failed'} (actor ${this.o.file})`, timeout ? undefined : err);
    if (++this.failures >= this.o.maxFailures) {
      this.failures = 0;
      this.o.restart();
    }
    return timeout ? err : new RtError('actor_failed', `the channel actor failed in ${hook}; see the server log`, 500);
  }
}
