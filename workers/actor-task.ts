/**
 * Piscina worker running actors' compute tasks (src/actors/compute-pool.ts): imports the task module
 * (its compiled copy, as for the actors: src/actors/actor-modules.ts) and calls its default export
 * with the input.
 */
import { workerData } from 'node:worker_threads';
import { adoptActorModules } from '../src/actors/actor-modules.js';
import type { CompiledModules } from '../src/actors/module-compiler.js';

type TaskFn = (input: unknown) => unknown;

const data = workerData as { root: string; compiled?: CompiledModules } | undefined;
if (data?.compiled) adoptActorModules(data.root, data.compiled);

// As for the actors (src/actors/folder.ts): stack traces give the lines of the task's own source.
process.setSourceMapsEnabled(true);
const loaded = new Map<string, Promise<TaskFn>>();

function taskOf(file: string, url: string): Promise<TaskFn> {
  let p = loaded.get(url);
  if (!p) {
    p = import(url).then((m: { default?: unknown }) => {
      if (typeof m.default !== 'function') throw new Error(`${file}: a task module must default-export a function (input) => result`);
      return m.default as TaskFn;
    });
    loaded.set(url, p);
  }
  return p;
}

export default async function runTask(job: { file: string; url: string; input: unknown }): Promise<unknown> {
  return (await taskOf(job.file, job.url))(job.input);
}
