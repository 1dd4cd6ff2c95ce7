/**
 * The compiled modules of each --actors folder, per thread: the main thread compiles a folder once
 * (module-compiler.ts, on a thread of its own) and hands the result to the shards it starts, which
 * adopt it and never compile. Compiled copies live in a private temporary folder, removed when the
 * server that compiled them closes (holdActorModules), or else when the process exits.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { isMainThread, Worker } from 'node:worker_threads';
import type { CompiledModules } from './module-compiler.js';
import { detectsModuleSyntax, nodeConditions } from './resolve-specifier.js';

export class ActorModules {
  constructor(readonly compiled: CompiledModules) {}

  /** The URL to import for `file`; throws what keeps it from loading (its syntax, an import it lacks). */
  urlOf(file: string): string {
    const e = this.compiled.errors[file];
    if (e) throw errorFrom(e);
    const url = this.compiled.urls[file];
    if (!url) throw new Error(`${file}: not among the compiled modules of its folder (was it added after the start?)`);
    return url;
  }

  /**
   * `text` (an error of Node's loader) with the compiled copies it names replaced by the originals:
   * Node names a module by the specifier it was imported with, the compiled copy's URL in TMPDIR.
   */
  originals(text: string): string {
    let out = text;
    // Longest first: one copy's URL may begin another's (a.ts.mjs, a.ts.mjs.mjs).
    for (const [file, url] of Object.entries(this.compiled.urls).sort((a, b) => b[1].length - a[1].length)) {
      if (!url.startsWith('file:') || !out.includes(url)) continue;
      out = out.split(url).join(file);
    }
    return out;
  }
}

/** An error of the compilation (sent between threads as name and message) as an Error again. */
export function errorFrom(e: { name: string; message: string }): Error {
  return e.name === 'SyntaxError' ? new SyntaxError(e.message) : Object.assign(new Error(e.message), { name: e.name });
}

interface Slot {
  done?: ActorModules;
  pending: Promise<ActorModules>;
  /** Where its copies are (none for an adopted folder, or one with no files). */
  outDir?: string;
}

/** By the folder's absolute path (path.resolve of --actors, as folder.ts lists it). */
const folders = new Map<string, Slot>();
/** Servers of this process running with each folder (holdActorModules). */
const holders = new Map<string, number>();
let outRoot: string | undefined;
let compilations = 0;

/**
 * A server start holds its folder's compiled modules until it closes. The first holder compiles the
 * folder afresh: a server started again in the same process (a test, a dev tool restarting it) sees
 * the files as they are now, not as the previous start compiled them (a file added since was "not
 * among the compiled modules"; an edit, or a syntax error fixed, went unseen). Servers running at the
 * same time share one compilation. The last one out removes the copies.
 */
export function holdActorModules(dir: string): () => void {
  const root = resolvePath(dir);
  const count = holders.get(root) ?? 0;
  if (count === 0) folders.delete(root);
  holders.set(root, count + 1);
  let held = true;
  return () => {
    if (!held) return;
    held = false;
    const left = holders.get(root)! - 1;
    if (left > 0) return void holders.set(root, left);
    holders.delete(root);
    const slot = folders.get(root);
    folders.delete(root);
    if (slot?.outDir) rmSync(slot.outDir, { recursive: true, force: true });
  };
}

/** The compiled modules of the folder at `root` (an absolute path), compiling `entries` and their imports once. */
export function actorModules(root: string, entries: string[]): Promise<ActorModules> {
  const known = folders.get(root);
  if (known) return known.pending;
  const slot: Slot = {
    pending: compileOnThread(root, entries).then(({ compiled, outDir }) => {
      slot.outDir = outDir;
      return (slot.done = new ActorModules(compiled));
    }),
  };
  slot.pending.catch(() => {
    if (folders.get(root) === slot) folders.delete(root);
  });
  folders.set(root, slot);
  return slot.pending;
}

/** What a shard is given: the modules its parent compiled, if it did. */
export function compiledModules(dir: string): CompiledModules | undefined {
  return folders.get(resolvePath(dir))?.done?.compiled;
}

/** The compiled copy of `file` (an original's real path) in this thread's folders, if it has one. */
export function compiledUrlOf(file: string): string | undefined {
  for (const { done } of folders.values()) {
    const url = done?.compiled.urls[file];
    if (url) return url;
  }
  return undefined;
}

/** In a shard: the parent's compiled modules, so the shard imports them without compiling. */
export function adoptActorModules(dir: string, compiled: CompiledModules): void {
  const done = new ActorModules(compiled);
  folders.set(resolvePath(dir), { done, pending: Promise.resolve(done) });
}

/**
 * Removes this process's compiled copies: at exit, and before a process kills itself (the CLI's second
 * Ctrl-C is a SIGKILL, which runs no exit handler).
 */
export function removeCompiledCopies(): void {
  if (outRoot) rmSync(outRoot, { recursive: true, force: true });
}

const COPIES_PREFIX = 'rt-actors-modules-';

/** This host's name as it appears in the copies' folder names: no dots or dashes. */
function hostTag(): string {
  return hostname().replace(/[^A-Za-z0-9_]/g, '_');
}

/** Whose copies a folder holds: this host and process, `<host>.<pid>`. */
function ownerTag(): string {
  return `${hostTag()}.${process.pid}`;
}

/**
 * Removes the copies of servers of this host that are gone without removing them (killed with
 * SIGKILL, by the OOM killer, at a power cut): their folder names a process that no longer runs.
 * Folders of other hosts sharing TMPDIR are left alone, as their processes cannot be checked from here.
 */
function sweepStaleCopies(): void {
  const host = hostTag();
  let names: string[];
  try {
    names = readdirSync(tmpdir());
  } catch {
    return;
  }
  for (const name of names) {
    const m = new RegExp(`^${COPIES_PREFIX}(.+)\\.(\\d+)-[^-]+$`).exec(name);
    if (!m || m[1] !== host || isRunning(Number(m[2]))) continue;
    rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

function compileOnThread(root: string, entries: string[]): Promise<{ compiled: CompiledModules; outDir?: string }> {
  if (entries.length === 0) return Promise.resolve({ compiled: { urls: {}, errors: {} } });
  if (!outRoot) {
    sweepStaleCopies();
    try {
      outRoot = mkdtempSync(join(tmpdir(), `${COPIES_PREFIX}${ownerTag()}-`));
    } catch (err) {
      const why = (err as Error).message;
      return Promise.reject(new Error(`cannot create a folder for the compiled actors in ${tmpdir()} (${why}): set TMPDIR to a writable folder (in a container with a read-only root, mount a tmpfs or emptyDir there)`));
    }
    // A shard that compiled (it had nothing to adopt) leaves its copies to the process.
    if (isMainThread) process.once('exit', removeCompiledCopies);
  }
  const outDir = join(outRoot, String(compilations++));
  return new Promise((resolve, reject) => {
    // No execArgv of the parent's: the compiler runs only this package and TypeScript. It is told
    // this thread's options that decide what a module is (-C, module detection), as the threads that
    // load the copies run with them.
    const worker = new Worker(new URL('../../workers/module-compiler.js', import.meta.url), { workerData: { root, entries, outDir, node: { conditions: nodeConditions(), detectModule: detectsModuleSyntax() } }, execArgv: [] });
    worker.once('message', (compiled: CompiledModules) => {
      resolve({ compiled, outDir });
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the actors module compiler exited with code ${code} before answering`)));
  });
}
