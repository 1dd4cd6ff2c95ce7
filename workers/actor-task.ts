/**
 * Piscina worker running actors' compute tasks (src/actors/compute-pool.ts): imports the task module
 * (TypeScript through the same loader as the actors) and calls its default export with the input.
 */
import { pathToFileURL } from 'node:url';
import { registerTypeScriptLoader } from '../src/actors/ts-loader.js';

type TaskFn = (input: unknown) => unknown;
const loaded = new Map<string, Promise<TaskFn>>();

function taskOf(file: string): Promise<TaskFn> {
  let p = loaded.get(file);
  if (!p) {
    registerTypeScriptLoader();
    p = import(pathToFileURL(file).href).then((m: { default?: unknown }) => {
      if (typeof m.default !== 'function') throw new Error(`${file}: a task module must default-export a function (input) => result`);
      return m.default as TaskFn;
    });
    loaded.set(file, p);
  }
  return p;
}

export default async function runTask(job: { file: string; input: unknown }): Promise<unknown> {
  return (await taskOf(job.file))(job.input);
}
