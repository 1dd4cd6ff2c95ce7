/**
 * The compute pool of actors (`ctx.compute`): a piscina pool on the main thread running the folder's
 * `<name>.task.ts` modules. A shard's actor forwards `{ task, input }` through the mesh; the result
 * goes back the same way and reaches the actor through its mailbox (onComputed).
 */
import { Piscina } from 'piscina';
import { RtError } from '../errors.js';
import type { ServerConfig } from '../config/schema.js';
import type { Hub } from '../runtime/hub.js';
import { folderModules, listTasks } from './folder.js';
import { compiledModules } from './actor-modules.js';

export interface ActorComputePool {
  destroy(): Promise<void>;
}

/** Starts the pool when the actors folder has task files (none: nothing starts, ctx.compute answers not_found). */
export function startActorCompute(config: ServerConfig, hub: Hub, execArgv?: string[]): ActorComputePool | undefined {
  const tasks = config.actors ? listTasks(config.actors) : new Map<string, string>();
  if (tasks.size === 0) return undefined;
  const threads = config.actorComputeThreads || Math.max(1, Math.floor(config.workers / 2));
  const pool = new Piscina({
    filename: new URL('../../workers/actor-task.js', import.meta.url).href,
    minThreads: 1,
    maxThreads: threads,
    idleTimeout: 30_000,
    execArgv,
    // The folder as the main thread compiled it: a task's import() of a computed specifier finds the
    // compiled copies (dynamic-import.ts).
    workerData: { root: config.actors, compiled: compiledModules(config.actors) },
    // Bounded: beyond this many waiting tasks, run() rejects and the actor gets `overloaded`.
    maxQueue: threads * config.actorMailboxSize,
  });
  // Compiled with the actors at start (this resolves at once); one that did not compile stopped the start.
  const modules = folderModules(config.actors);
  modules.catch(() => {});
  hub.onForward('actor-compute', async (body: { task?: unknown; input?: unknown }) => {
    const file = typeof body.task === 'string' ? tasks.get(body.task) : undefined;
    if (!file) throw new RtError('not_found', `no compute task ${String(body.task).slice(0, 100)} (a <name>.task.ts file in --actors)`, 404);
    try {
      return await pool.run({ file, url: (await modules).urlOf(file), input: body.input });
    } catch (err) {
      if (err instanceof Error && /queue is at limit/i.test(err.message)) throw new RtError('overloaded', 'the compute pool is full; try again later', 503);
      throw new RtError('task_failed', `compute task ${body.task as string} failed: ${failure(err)}`, 500);
    }
  });
  return { destroy: () => pool.destroy() };
}

/**
 * What went wrong, for the actor. A task may throw anything, and a result structured clone refuses (a
 * function, a class with private fields…) reaches us as an empty object with no message at all.
 */
function failure(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err !== null && typeof err === 'object' && Object.keys(err).length === 0) {
    return 'its result cannot be sent between threads (structured clone refused it: return plain data, no functions)';
  }
  return typeof err === 'string' ? err : String(JSON.stringify(err) ?? err);
}
