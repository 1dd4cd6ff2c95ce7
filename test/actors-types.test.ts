// The shipped declarations type-check an actor file in a project that has only rt-actors (and its
// dependencies) installed. Symlinks are preserved so nothing resolves through this repository's own
// node_modules (its dev dependencies).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, symlinkSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

t.setTimeout(600_000);

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function project(t: { teardown(fn: () => void): void }, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'rt-actors-types-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pkg = join(dir, 'node_modules', 'rt-actors');
  mkdirSync(pkg, { recursive: true });
  copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'));
  symlinkSync(join(root, 'dist'), join(pkg, 'dist'));
  for (const d of productionClosure()) {
    mkdirSync(join(dir, 'node_modules', d, '..'), { recursive: true });
    symlinkSync(join(root, 'node_modules', d), join(dir, 'node_modules', d));
  }
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }');
  const tsconfig = { compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, preserveSymlinks: true, types: [] }, files: Object.keys(files) };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** rt-actors' dependencies and theirs, as an install of rt-actors alone would have them. */
function productionClosure(): string[] {
  const seen = new Set<string>();
  const deps = (dir: string): string[] => Object.keys((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> }).dependencies ?? {});
  const queue = deps(root);
  while (queue.length > 0) {
    const d = queue.shift()!;
    if (seen.has(d)) continue;
    seen.add(d);
    try {
      queue.push(...deps(join(root, 'node_modules', d)));
    } catch {
      /* not hoisted (nested under its dependent): reached through that package's own node_modules */
    }
  }
  return [...seen];
}

function check(dir: string): { ok: boolean; out: string } {
  try {
    execFileSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8', stdio: 'pipe' });
    return { ok: true, out: '' };
  } catch (err) {
    return { ok: false, out: String((err as { stdout?: string }).stdout ?? err) };
  }
}

// One tsc run for both files: type-checking @types/node and the dependencies' declarations is the slow part.
t.test('the auction example and an event-typed actor type-check against the shipped declarations alone', { timeout: 600_000 }, async (t) => {
  const source = `
  import { defineActor } from 'rt-actors';
  import { testActor } from 'rt-actors/testing';
  interface In { move: { x: number; y: number } }
  interface Out { moved: { x: number; y: number; by: string } }
  export default defineActor<{ n: number }, In, Out>({
    match: 'c-*',
    init: () => ({ n: 0 }),
    onMessage(ctx, msg, from) {
      const x: number = msg.data.x;
      ctx.broadcast('moved', { x, y: msg.data.y, by: from.socketId });
      // @ts-expect-error: not an event of Out
      ctx.broadcast('nope', {});
      // @ts-expect-error: wrong payload for 'moved'
      ctx.push(from.socketId, 'moved', { x: 'a' });
      return { reply: ctx.state.n };
    },
  });
  void testActor;
  `;
  const dir = project(t, { 'auction.ts': readFileSync(join(root, 'actors', 'auction.ts'), 'utf8'), 'typed.ts': source });
  const r = check(dir);
  t.equal(r.out, '', 'no diagnostics: typed hooks check, and the @ts-expect-error lines are errors');
  t.ok(r.ok);
});
