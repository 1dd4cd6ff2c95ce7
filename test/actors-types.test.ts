// The shipped declarations type-check an actor file in a project that has only rt-actors (and its
// dependencies) installed. Symlinks are preserved so nothing resolves through this repository's own
// node_modules (its dev dependencies).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, symlinkSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function project(t: { teardown(fn: () => void): void }, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'rt-actors-types-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pkg = join(dir, 'node_modules', 'rt-actors');
  mkdirSync(pkg, { recursive: true });
  copyFileSync(join(root, 'package.json'), join(pkg, 'package.json'));
  symlinkSync(join(root, 'dist'), join(pkg, 'dist'));
  const deps = Object.keys((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
  for (const d of deps) {
    mkdirSync(join(dir, 'node_modules', d, '..'), { recursive: true });
    symlinkSync(join(root, 'node_modules', d), join(dir, 'node_modules', d));
  }
  writeFileSync(join(dir, 'package.json'), '{ "type": "module" }');
  const tsconfig = { compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, preserveSymlinks: true, types: [] }, files: Object.keys(files) };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(tsconfig));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

function check(dir: string): { ok: boolean; out: string } {
  try {
    execFileSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8', stdio: 'pipe' });
    return { ok: true, out: '' };
  } catch (err) {
    return { ok: false, out: String((err as { stdout?: string }).stdout ?? err) };
  }
}

t.test('the auction example type-checks against the shipped declarations alone', async (t) => {
  const dir = project(t, { 'auction.ts': readFileSync(join(root, 'actors', 'auction.ts'), 'utf8') });
  const r = check(dir);
  t.equal(r.out, '', 'no diagnostics');
  t.ok(r.ok);
});

t.test('event-typed payloads: hooks receive typed data and wrong payloads are errors', async (t) => {
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
  const r = check(project(t, { 'typed.ts': source }));
  t.equal(r.out, '', 'typed hooks check, and the @ts-expect-error lines are errors');
});
