/**
 * Lets `--actors` hold TypeScript files with no build step: a module loader hook (Node's
 * module.register) transpiles .ts/.mts files with the TypeScript compiler as they are imported.
 * Types are erased, not checked: the user's editor and tsc do that.
 */
import { register } from 'node:module';

let registered = false;

export function registerTypeScriptLoader(): void {
  if (registered) return;
  registered = true;
  register(new URL('./ts-hooks.js', import.meta.url));
}
