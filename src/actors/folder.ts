/**
 * The --actors folder: channel actors and request handlers live side by side in it. This lists and
 * imports its modules (in name order, compiled copies: actor-modules.ts); the two loaders then keep
 * the default exports that are theirs.
 *
 * Folder rules (docs/actors.md): every top-level .ts/.mts/.js/.mjs file is an actor or handler file
 * and must default-export one; files whose name starts with `_`, and everything in subfolders, are
 * helper modules (imported by the others, never loaded by themselves); `<name>.task.ts` files are
 * compute tasks for `ctx.compute`, run on the compute pool.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transpile } from './syntax.js';
import { actorModules, type ActorModules } from './actor-modules.js';

const MODULE_FILE = /\.(ts|mts|js|mjs)$/;
const TASK_FILE = /^([A-Za-z0-9_-]{1,100})\.task\.(ts|mts|js|mjs)$/;

function isHelper(name: string): boolean {
  return name.startsWith('_') || name.startsWith('.') || name.endsWith('.d.ts') || name.endsWith('.d.mts');
}

function list(dir: string): { root: string; names: string[] } {
  const root = resolve(dir);
  try {
    if (!statSync(root).isDirectory()) throw new Error('not a directory');
    // Hidden files are never loaded, and are not looked at: an editor's lock file (Emacs' `.#chat.ts`)
    // is a symlink to nowhere, whose stat failed the whole start.
    return { root, names: readdirSync(root).filter((n) => MODULE_FILE.test(n) && !n.startsWith('.') && statSync(join(root, n)).isFile()).sort() };
  } catch (err) {
    throw new Error(`--actors ${dir}: cannot read folder (${(err as Error).message})`);
  }
}

/** Extensions of modules Node or a bundler could load, but which the folder rule does not. */
const UNLOADED_MODULE_FILE = /\.(cjs|cts|tsx|jsx)$/;

/**
 * Top-level files that look like actor files but are never loaded (`chat.tsx`, `room.cjs`): without a
 * word, their channels would just get the built-in actor.
 */
export function unloadedFiles(dir: string): string[] {
  const root = resolve(dir);
  try {
    return readdirSync(root).filter((n) => UNLOADED_MODULE_FILE.test(n) && !isHelper(n) && statSync(join(root, n)).isFile()).sort();
  } catch {
    return [];
  }
}

/** Compute task files of the folder, by task name. */
export function listTasks(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  if (!dir) return out;
  const { root, names } = list(dir);
  for (const n of names) {
    const m = TASK_FILE.exec(n);
    if (m && !isHelper(n)) out.set(m[1]!, join(root, n));
  }
  return out;
}

/**
 * Where a load error happened: the loader's TypeScript diagnostics already say `file:line:column`;
 * Node's SyntaxErrors for JavaScript modules say no position, so the file is parsed again to find it.
 */
async function describe(file: string, err: unknown, modules: ActorModules): Promise<string> {
  const e = err as Error;
  const msg = modules.originals(e?.message ?? String(err)) + exportHint(e);
  // One line: a start-up error is printed as a single line (docs/deployment.md, exit codes).
  if (msg.startsWith(file)) return oneLine(msg);
  if (e?.name === 'SyntaxError') {
    try {
      await transpile(file, readFileSync(file, 'utf8'));
    } catch (located) {
      return `${oneLine((located as Error).message)} (SyntaxError: ${msg})`;
    }
    // Not the file's own: a JavaScript module it imports (Node's message names none).
    const suspects = Object.values(modules.compiled.jsSyntax ?? {}).map((m) => oneLine(m).split('; ')[0]);
    if (suspects.length > 0 && !msg.includes('does not provide an export named')) return `${file}: SyntaxError: ${msg} (${suspects.slice(0, 3).join('; ')})`;
  }
  return `${file}: ${e?.name && e.name !== 'Error' ? e.name + ': ' : ''}${msg}${thrownAt(e, modules)}`;
}

/** This server's own code (dist/, and src/ and workers/ that its source maps name). */
const OWN_CODE = ['../../', '../../../src/', '../../../workers/'].map((p) => fileURLToPath(new URL(p, import.meta.url)));

/**
 * Where a module threw while it loaded (a helper's top-level code): the first frame of the stack
 * that is not Node's. Source maps are on, so it names the original file and line; the message alone
 * named only the actor file that imported it.
 */
function thrownAt(e: Error | undefined, modules: ActorModules): string {
  for (const frame of (typeof e?.stack === 'string' ? e.stack : '').split('\n').slice(1)) {
    const m = /^\s*at (?:.* \()?(.+?)(:\d+:\d+)\)?$/.exec(frame);
    if (!m || m[1]!.startsWith('node:')) continue;
    const at = modules.originals(m[1]!);
    const path = at.startsWith('file:') ? fileURLToPath(at) : at;
    // Thrown by this server (a compile error given back, a check of its own): the message says where.
    return OWN_CODE.some((dir) => path.startsWith(dir)) ? '' : ` (thrown at ${path}${m[2]})`;
  }
  return '';
}

/**
 * Files are compiled one by one, so `export { T } from './x.js'` or `import { T }` of a name that is
 * only a type (an interface, a type alias) stays in the output, and Node refuses the link.
 */
function exportHint(e: Error | undefined): string {
  const name = e?.name === 'SyntaxError' ? /does not provide an export named '([^']+)'/.exec(e.message)?.[1] : undefined;
  return name ? ` (if ${name} is a type, import or re-export it with \`type\`: \`export type { ${name} } from …\`; each file is compiled on its own, so the server cannot tell)` : '';
}

/** Several diagnostics of one file, joined: the first says where; the rest follow it on the same line. */
function oneLine(msg: string): string {
  return msg.split('\n').filter((l) => l.trim() !== '').join('; ');
}

/** The folder's modules, compiled once per start: every top-level file and what it imports. */
export function folderModules(dir: string): Promise<ActorModules> {
  const { root, names } = list(dir);
  return modulesOf(root, names);
}

function modulesOf(root: string, names: string[]): Promise<ActorModules> {
  return actorModules(root, names.filter((n) => !isHelper(n)).map((n) => join(root, n)));
}

export async function importFolder(dir: string): Promise<Array<{ file: string; exported: unknown }>> {
  const { root, names } = list(dir);
  const modules = await modulesOf(root, names);
  // Stack traces of actor code then give the lines of the user's own source, not of the compiled copy.
  process.setSourceMapsEnabled(true);
  const out: Array<{ file: string; exported: unknown }> = [];
  for (const name of names) {
    if (isHelper(name)) continue;
    const file = join(root, name);
    if (TASK_FILE.test(name)) {
      // Tasks run on the compute pool, not here; but one that cannot compile stops the start like an
      // actor file, instead of failing every ctx.compute call later.
      try {
        modules.urlOf(file);
      } catch (err) {
        throw new Error(await describe(file, err, modules));
      }
      continue;
    }
    let mod: { default?: unknown };
    try {
      mod = (await import(modules.urlOf(file))) as { default?: unknown };
    } catch (err) {
      throw new Error(await describe(file, err, modules));
    }
    if (mod.default === undefined) {
      throw new Error(`${file}: no default export. A file at the top of --actors must \`export default defineActor({...})\` or \`defineHandlers({...})\`; put helper modules in a subfolder or in a file whose name starts with "_"`);
    }
    out.push({ file, exported: mod.default });
  }
  return out;
}
