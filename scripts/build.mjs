#!/usr/bin/env node
// Builds dist/: TypeScript, then the browser bundle (scripts/bundle-client.mjs). `npm run build` and
// `prepare` (which npm runs on `npm install`, with or without --omit=dev) both land here. A production
// install has no dev dependencies, and bench/ imports some (ws, socket.io, socket.io-client): there only
// the runtime (src, workers, actors: tsconfig.runtime.json) is compiled. Everything it needs to build
// (typescript, @types/node) is a regular dependency.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const BENCH_DEPS = ['ws', 'socket.io', 'socket.io-client'];

const missing = BENCH_DEPS.filter((name) => {
  try {
    require.resolve(`${name}/package.json`);
    return false;
  } catch {
    return true;
  }
});
const project = missing.length === 0 ? 'tsconfig.json' : 'tsconfig.runtime.json';
if (missing.length > 0) console.log(`build: dev dependencies missing (${missing.join(', ')}): compiling the runtime only, without bench/`);

const run = (args) => {
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};
// `prepare` passes --if-stale. npm runs `prepare` not only on `npm install` but also whenever it links
// this folder somewhere: `npx rt-actors` in a clone installs the clone into npx's cache as a link and
// prepares it, so a build started there rewrote dist/ in place under a server already running from it
// (a shard it restarted then failed to load a half-written module). An up-to-date dist/ is left alone.
const STAMP = join(root, 'dist', '.build-stamp');
const INPUTS = ['src', 'workers', 'actors', 'bench', 'scripts', 'tsconfig.json', 'tsconfig.runtime.json', 'package.json'];

function newestInput(path) {
  let st;
  try {
    st = statSync(path);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const name of readdirSync(path)) newest = Math.max(newest, newestInput(join(path, name)));
  return newest;
}

function upToDate() {
  try {
    if (readFileSync(STAMP, 'utf8').trim() !== project) return false;
    const built = statSync(STAMP).mtimeMs;
    return INPUTS.every((p) => newestInput(join(root, p)) <= built);
  } catch {
    return false;
  }
}

if (process.argv.includes('--if-stale') && upToDate()) {
  console.log('build: dist/ is up to date');
  process.exit(0);
}
run([require.resolve('typescript/bin/tsc'), '-p', project]);
run(['scripts/bundle-client.mjs']);
writeFileSync(STAMP, project + '\n');
