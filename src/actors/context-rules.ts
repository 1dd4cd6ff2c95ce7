/**
 * Rules of the actor context shared by the two runtimes that run user hooks: the channel actor of one
 * host (channel-actor.ts) and the one activation of a placed actor (bridge/activation.ts). Both check
 * event names, kick reasons and compute tasks the same way, and turn a compute task into the same
 * ComputeResult, through these functions.
 */
import { RtError, toErrorBody } from '../errors.js';
import type { ComputeResult, PublishDelivery } from './define.js';
import { reservedEvent } from '../client/reserved-events.js';
import { logInternal } from '../log.js';

/**
 * The JSON text of a value an actor sends (a broadcast's or push's data, a reply): every protocol's
 * frame is made from it, so every subscriber gets the same value on every shard (a Map is `{}` for all,
 * not `{}` for some and its entries for others). What JSON cannot carry (a BigInt, a cycle, a symbol)
 * is a `bad_data` error here, in the hook that made it, rather than an encoder's TypeError later, on a
 * shard's delivery path. `undefined` is sent as null.
 */
export function sendableJson(value: unknown, what: string): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (err) {
    throw new RtError('bad_data', `${what} cannot be sent as JSON: ${(err as Error).message}`);
  }
  if (text === undefined) throw new RtError('bad_data', `${what} cannot be sent as JSON: a ${typeof value}`);
  return text;
}

/** A hook's returned value that cannot be sent (sendableJson, assertEventName) is the hook's failure. */
export function hookFailure(channel: string, err: unknown): RtError {
  return new RtError('actor_failed', `the channel actor of ${channel} returned what cannot be sent: ${(err as Error).message}`, 500);
}

export function assertEventName(event: unknown): asserts event is string {
  if (typeof event !== 'string' || event.length === 0 || event.length > 200) throw new RtError('bad_event', 'an event name must be a string of 1-200 characters');
  const reserved = reservedEvent(event);
  if (reserved) throw new RtError('bad_event', `${reserved}: ${JSON.stringify(event)}`);
}

/**
 * The sender's user shown with a publication (Pusher's `user_id`, see Publication.user): `user` is the
 * member a client subscribed to a presence channel as, and it is shown only on client events.
 */
export function clientEventUser(event: string, user: string | undefined): string | undefined {
  return user !== undefined && event.startsWith('client-') ? user : undefined;
}

const EVERYONE: PublishDelivery = Object.freeze({});

/** What a publish hook is told of a message's delivery (its `delivery` argument). */
export function deliveryOf(exclude: string | undefined): PublishDelivery {
  return exclude === undefined ? EVERYONE : { exclude };
}

/** The reason a kicked client is told. */
export function kickReason(reason: unknown): string {
  return typeof reason === 'string' && reason ? reason.slice(0, 200) : 'removed from the channel';
}

export type ComputeFn = (task: string, input: unknown) => Promise<unknown>;

/** Checks a `ctx.compute` call, throwing to the hook: a bad task name, no pool, or `inFlight` at `limit`. */
export function checkCompute(run: ComputeFn | undefined, channel: string, inFlight: number, limit: number, task: unknown): asserts run is ComputeFn {
  if (typeof task !== 'string' || !/^[A-Za-z0-9_-]{1,100}$/.test(task)) throw new RtError('bad_task', 'a compute task is named by its file in the actors folder: <task>.task.ts');
  if (!run) throw new RtError('unavailable', 'this server has no compute pool for actors', 503);
  if (inFlight >= limit) throw new RtError('overloaded', `channel ${channel} has ${inFlight} compute tasks in flight`, 503);
}

/** Runs a checked compute task: settles with its ComputeResult, never rejects. */
export function runCompute(run: ComputeFn, task: string, input: unknown, tag: string | undefined): Promise<ComputeResult> {
  const base = tag === undefined ? { task } : { task, tag };
  let started: Promise<unknown>;
  try {
    started = run(task, input);
  } catch (err) {
    started = Promise.reject(err);
  }
  return started.then(
    (value): ComputeResult => ({ ...base, ok: true, value }),
    (err): ComputeResult => (logInternal(err, 'a compute call'), { ...base, ok: false, error: toErrorBody(err) }),
  );
}
