/**
 * What a compiled actors-folder module calls for an import() whose specifier is computed at run time
 * (module-compiler.ts rewrites `import(expr)` to `importFrom(expr, <original file URL>, options)`):
 * the specifier is resolved from the original file, and the folder's compiled copy is taken when
 * there is one. TypeScript that the start did not compile cannot be loaded then: it says so.
 */
import { fileURLToPath } from 'node:url';
import { compiledUrlOf } from './actor-modules.js';
import { fileOf, resolveSpecifier } from './resolve-specifier.js';

export async function importFrom(specifier: unknown, parentUrl: string, options?: ImportCallOptions): Promise<unknown> {
  const parent = fileURLToPath(parentUrl);
  const { url } = resolveSpecifier(String(specifier), parent);
  if (!url.startsWith('file:')) return import(url, options);
  const { file, suffix } = fileOf(url);
  const compiled = compiledUrlOf(file);
  if (compiled) return import(compiled + suffix, options);
  if (/\.m?ts$/.test(file)) {
    throw Object.assign(new Error(`${file} (imported from ${parent} by a computed import()) was not compiled at start: import it once with a literal specifier (import('./x.js') or a static import) so the server compiles it`), { code: 'ERR_MODULE_NOT_FOUND' });
  }
  return import(url, options);
}
