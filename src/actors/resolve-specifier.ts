/**
 * Where an import of an actors-folder module leads: Node's ES module resolution from the original
 * file (import-meta-resolve, a port of Node's own algorithm: a parent of our choosing needs a flag in
 * Node 20), plus the two liberties TypeScript sources take, './x.js' or './x' for a sibling x.ts.
 * Used when the folder is compiled (module-compiler.ts) and by import() of a computed specifier at
 * run time (dynamic-import.ts).
 */
import { realpathSync, statSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { moduleResolve, resolve as resolveEsm } from 'import-meta-resolve';

export interface Resolved {
  /** The URL Node would load. */
  url: string;
}

/**
 * The conditions Node matches package "exports" and "imports" with in a thread started with
 * `execArgv`: its defaults and every `--conditions`/`-C` of the thread's options and of NODE_OPTIONS
 * (which reaches every thread). import-meta-resolve alone knows only 'node' and 'import': a package's
 * "development" export chosen by `node -C development` was replaced by its default.
 */
export function nodeConditions(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const args = nodeArgs(execArgv, nodeOptions);
  const out = ['node', 'import'];
  if (!args.includes('--no-addons')) out.push('node-addons');
  for (let i = 0; i < args.length; i++) {
    const m = /^(?:--conditions|-C)(?:=(.*))?$/.exec(args[i]!);
    const value = m && (m[1] ?? args[++i]);
    if (value && !out.includes(value)) out.push(value);
  }
  return out;
}

/**
 * Whether Node takes a .js file with no package "type" for an ES module when it has import/export
 * (module syntax detection: on by default since Node 20.19 and 22.7; the flag says otherwise).
 */
export function detectsModuleSyntax(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  const flags = nodeArgs(execArgv, nodeOptions).filter((a) => /^--(no-)?experimental-detect-module$/.test(a));
  if (flags.length > 0) return !flags.at(-1)!.startsWith('--no-');
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 7) || (major === 20 && minor >= 19);
}

/** NODE_OPTIONS (it reaches every thread) then the thread's own options, as Node applies them. */
function nodeArgs(execArgv: readonly string[], nodeOptions: string): string[] {
  return [...nodeOptions.split(/\s+/).filter(Boolean), ...execArgv];
}

/** Resolves `specifier` as imported by the file `parent`; throws ERR_MODULE_NOT_FOUND as Node would. */
export function resolveSpecifier(specifier: string, parent: string, conditions: readonly string[] = nodeConditions()): Resolved {
  if (isBuiltin(specifier) || /^(data|node|https?):/.test(specifier)) return { url: specifier };
  if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('file:')) {
    // A URL relative to the parent, as Node reads it: %-escapes are decoded, and a ?query or #hash
    // names no file but a module instance of its own (`import('./config.json?t=' + Date.now())`).
    const { file: path, suffix } = fileOf(new URL(specifier, pathToFileURL(parent)).href);
    const found = [path, path.replace(/\.js$/, '.ts'), path.replace(/\.mjs$/, '.mts'), path + '.ts'].find(isFile);
    if (!found && isDirectory(path)) {
      // TypeScript's "bundler" resolution finds lib/index.ts for './lib'; Node (and so the server) does not.
      const index = ['index.ts', 'index.mts', 'index.js', 'index.mjs'].find((n) => isFile(join(path, n)));
      const hint = index ? `: import '${specifier.replace(/\/$/, '')}/${index.replace(/\.ts$/, '.js').replace(/\.mts$/, '.mjs')}'` : '';
      throw Object.assign(new Error(`Directory import '${path}' is not supported resolving ES modules imported from ${parent}${hint}`), { code: 'ERR_UNSUPPORTED_DIR_IMPORT' });
    }
    if (!found) throw Object.assign(new Error(`Cannot find module '${path}' imported from ${parent}`), { code: 'ERR_MODULE_NOT_FOUND' });
    return { url: pathToFileURL(realpathSync(found)).href + suffix };
  }
  try {
    return { url: resolvePackage(specifier, pathToFileURL(parent), conditions) };
  } catch (err) {
    // A folder outside the project has no node_modules/rt-actors: it gets the running server's own
    // package (the same module instances, so ActorError is ours).
    if (specifier === 'rt-actors' || specifier.startsWith('rt-actors/')) return { url: resolveEsm(specifier, import.meta.url) };
    throw err;
  }
}

/** The file a file: URL names, and its ?query#hash (to put back on the URL of the file's compiled copy). */
export function fileOf(url: string): { file: string; suffix: string } {
  const u = new URL(url);
  const suffix = u.search + u.hash;
  u.search = '';
  u.hash = '';
  return { file: fileURLToPath(u), suffix };
}

/** import-meta-resolve's resolve() with the thread's conditions (its own answers for a missing file kept). */
function resolvePackage(specifier: string, parent: URL, conditions: readonly string[]): string {
  try {
    return moduleResolve(specifier, parent, new Set(conditions), false).href;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { url?: unknown };
    // As import.meta.resolve: a package whose target file is missing resolves; the import then fails.
    if ((e.code === 'ERR_UNSUPPORTED_DIR_IMPORT' || e.code === 'ERR_MODULE_NOT_FOUND') && typeof e.url === 'string') return e.url;
    throw err;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
