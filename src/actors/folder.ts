/**
 * The --actors folder: channel actors and request handlers live side by side in it. This lists and
 * imports its modules (in name order, TypeScript through the loader hook); the two loaders then keep
 * the default exports that are theirs.
 */
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { registerTypeScriptLoader } from './ts-loader.js';

const MODULE_FILE = /\.(ts|mts|js|mjs)$/;

export async function importFolder(dir: string): Promise<Array<{ file: string; exported: unknown }>> {
  const root = resolve(dir);
  let names: string[];
  try {
    if (!statSync(root).isDirectory()) throw new Error('not a directory');
    names = readdirSync(root).filter((n) => MODULE_FILE.test(n) && !n.endsWith('.d.ts')).sort();
  } catch (err) {
    throw new Error(`--actors ${dir}: cannot read folder (${(err as Error).message})`);
  }
  if (names.some((n) => /\.m?ts$/.test(n))) registerTypeScriptLoader();
  const out: Array<{ file: string; exported: unknown }> = [];
  for (const name of names) {
    const file = join(root, name);
    const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
    out.push({ file, exported: mod.default });
  }
  return out;
}
