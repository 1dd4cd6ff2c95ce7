/**
 * Wraps a user actor's hooks so the time each takes (until a returned promise settles) is recorded in
 * rt_actor_hook_seconds{hook}, and so that while its synchronous part runs the thread's running-code
 * slot names it (a shard stuck in it is then reported by hook, file and channel). Done once per
 * definition at load, so the actor code paths stay as they are.
 */
import { performance } from 'node:perf_hooks';
import { ACTOR_HOOKS } from '../runtime/metric-families.js';
import { metrics } from '../runtime/metrics.js';
import { codeLabel, enterCode, leaveCode } from '../runtime/running-code.js';
import type { AnyActorDefinition } from './define.js';

type AnyFn = (...args: unknown[]) => unknown;

/** Read once: the getter is not free, and a hook call is on a custom actor's publish path. */
const ORIGIN = performance.timeOrigin;

export function timeHooks(def: AnyActorDefinition, file: string): AnyActorDefinition {
  const timed: Record<string, unknown> = { ...def };
  for (const hook of ACTOR_HOOKS) {
    const fn = def[hook] as AnyFn | undefined;
    if (typeof fn !== 'function') continue;
    const label = codeLabel(`${hook} of actor ${file}`);
    timed[hook] = function (this: unknown, ...args: unknown[]) {
      const t0 = performance.now();
      // init(channel); every other hook (ctx, …).
      const first = args[0] as string | { channel?: unknown } | undefined;
      const channel = typeof first === 'string' ? first : typeof first?.channel === 'string' ? first.channel : '';
      enterCode(label, channel, ORIGIN + t0);
      // Looked up per call: the registry of the thread running the hook (each shard loads the actors).
      const record = () => metrics().observe('rt_actor_hook_seconds', { hook }, (performance.now() - t0) / 1000);
      let r: unknown;
      try {
        r = fn.apply(this, args);
      } catch (err) {
        record();
        throw err;
      } finally {
        leaveCode();
      }
      if (r && typeof (r as Promise<unknown>).then === 'function') {
        (r as Promise<unknown>).then(record, record);
        return r;
      }
      record();
      return r;
    };
  }
  return timed as unknown as AnyActorDefinition;
}
