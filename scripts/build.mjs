#!/usr/bin/env node
// Builds dist/: TypeScript, then the browser bundle (scripts/bundle-client.mjs). `npm run build` and
// `prepare` (which npm runs on `npm install`, with or without --omit=dev) both land here. A production
// install has no dev dependencies, and bench/ imports some (ws, socket.io, socket.io-client): there only
// the runtime (src, workers, actors: tsconfig.runtime.json) is compiled. Everything it needs to build
// (typescript, @types/node) is a regular dependency.
import { spawnSync } from 'node:child_process';
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
run([require.resolve('typescript/bin/tsc'), '-p', project]);
run(['scripts/bundle-client.mjs']);
