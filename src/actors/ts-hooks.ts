/** Loader hooks (run by Node in its loader thread): see ts-loader.ts. */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { transpile } from './syntax.js';


interface LoadResult { format: string; source?: string | Uint8Array; shortCircuit?: boolean }
type NextLoad = (url: string, context: unknown) => Promise<LoadResult>;
interface ResolveResult { url: string; format?: string; shortCircuit?: boolean }
type NextResolve = (specifier: string, context: { parentURL?: string }) => Promise<ResolveResult>;

export async function resolve(specifier: string, context: { parentURL?: string }, next: NextResolve): Promise<ResolveResult> {
  try {
    return await next(specifier, context);
  } catch (err) {
    // An actors folder outside the project (--actors /srv/app/actors) has no node_modules/rt-actors:
    // it gets the running server's own package (the same module instances, so ActorError is ours).
    if (specifier === 'rt-actors' || specifier.startsWith('rt-actors/')) return next(specifier, { ...context, parentURL: import.meta.url });
    // TypeScript sources import siblings as './x.js' (or extensionless) while the file on disk is x.ts.
    const parent = context.parentURL ?? '';
    if (/\.m?ts$/.test(parent) && (specifier.startsWith('.') || specifier.startsWith('/'))) {
      for (const candidate of [specifier.replace(/\.m?js$/, '.ts'), specifier + '.ts']) {
        if (candidate === specifier) continue;
        try {
          return await next(candidate, context);
        } catch {
          /* try the next spelling */
        }
      }
    }
    throw err;
  }
}

export async function load(url: string, context: unknown, next: NextLoad): Promise<LoadResult> {
  if (!/\.m?ts$/.test(url) || !url.startsWith('file:')) return next(url, context);
  const file = fileURLToPath(url);
  // transpile refuses broken syntax that transpileModule alone would emit anyway ("repaired").
  return { format: 'module', source: await transpile(file, await readFile(file, 'utf8')), shortCircuit: true };
}
