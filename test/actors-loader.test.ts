// The --actors loader: syntax errors stop the start with file:line:column (never "repaired"), a folder
// anywhere on disk imports 'rt-actors', helper modules follow the documented rule, the start log lists
// what was loaded.
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync, rmSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cleanEnv, listeningPort, runCli } from './helpers/cli.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

// About 25 servers started one after another, several with a compile each: on a loaded machine (load
// average 13 in one CI run) that passed .taprc's 120 s per file.
t.setTimeout(300_000);

/** Starts a server on `dir` and returns it with what it logged (stderr) while starting. */
async function startLogged(t: Test, dir: string, opts: Record<string, unknown>): Promise<{ server: Awaited<ReturnType<typeof startServer>>; log: string }> {
  const lines: string[] = [];
  const original = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    lines.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  try {
    return { server: await startServer(t, { actors: dir, ...opts }), log: lines.join('\n') };
  } finally {
    process.stderr.write = original;
  }
}

function folder(t: { teardown(fn: () => void): void }, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'rt-actors-folder-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) {
    const p = join(dir, name);
    mkdirSync(join(p, '..'), { recursive: true });
    writeFileSync(p, text);
  }
  return dir;
}

/** A client of a server started with the folder `dir` (one shard). */
async function clientOf(t: Test, dir: string): Promise<TestClient> {
  const s = await startServer(t, { actors: dir, workers: 1 });
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  return c;
}

const ACTOR = `import { defineActor } from 'rt-actors';
import { greeting } from './lib/greet.js';
import { shout } from './_shout.js';
export default defineActor({
  match: ['greet-*', /^hello\\.\\d+$/],
  onJoin: (_ctx, who) => ({ reply: shout(greeting(who.socketId)) }),
});
`;

t.test('a syntax error that TypeScript could "repair" stops the start with file:line:column', async (t) => {
  const dir = folder(t, {
    'broken.ts': `import { defineActor } from 'rt-actors';\nexport default defineActor({\n  match: 'x-*'\n  onJoin() {},\n});\n`,
  });
  await t.rejects(startServer(t, { actors: dir }), { message: new RegExp(`broken\\.ts:4:3: ',' expected`) });
});

t.test('a JavaScript syntax error names the file and line', async (t) => {
  const dir = folder(t, { 'bad.mjs': `export default {\n  match: 'y-*',,\n};\n` });
  await t.rejects(startServer(t, { actors: dir }), { message: /bad\.mjs:2:16: Property assignment expected[^]*SyntaxError: Unexpected token/ });
});

t.test('a top-level file without a default export is refused with the helper rule', async (t) => {
  const dir = folder(t, { 'util.ts': `export const x = 1;\n` });
  await t.rejects(startServer(t, { actors: dir }), { message: /util\.ts: no default export.*subfolder.*"_"/s });
});

t.test('a folder outside the project imports rt-actors; helpers in lib/ and _files load; the start log lists actors', async (t) => {
  const dir = folder(t, {
    'greeter.ts': ACTOR,
    'lib/greet.ts': `export const greeting = (id: string): string => 'hello ' + id;\n`,
    '_shout.ts': `export const shout = (s: string): string => s.toUpperCase();\n`,
  });
  const { server: s, log } = await startLogged(t, dir, { logLevel: 'info' });
  t.match(log, new RegExp(`actor ${join(dir, 'greeter.ts').replace(/[.\\/]/g, '\\$&')}: match greet-\\*, /\\^hello`), 'start log lists the actor and its match');
  t.notMatch(log, /_shout|greet\.ts: match/, 'helpers are not actors');
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  const r = await c.request({ op: 'subscribe', channel: 'greet-1' });
  t.equal(r.data, `HELLO ${c.welcome.socket_id}`.toUpperCase());
});

t.test('a RegExp match with the g or y flag matches every channel it fits, not every other one', async (t) => {
  // RegExp.test with g/y moves lastIndex, so the next channel was tested from the previous match's end.
  const dir = folder(t, {
    'rooms.ts': `import { defineActor } from 'rt-actors';\nexport default defineActor({ match: [/^room-\\d+$/g, /^desk-\\d+$/y], onJoin: () => ({ reply: 'custom' }) });\n`,
  });
  const c = await clientOf(t, dir);
  for (const ch of ['room-1', 'room-2', 'room-3', 'desk-1', 'desk-2', 'desk-3']) {
    t.equal((await c.request({ op: 'subscribe', channel: ch })).data, 'custom', `${ch} is served by the actor`);
  }
});

t.test('an actor definition with an unknown key, or history/clientPublish of the wrong kind, stops the start naming the file', async (t) => {
  const cases: Array<[string, RegExp]> = [
    [`onMesage() {}`, /typo\.ts: "onMesage" is not an actor option \(did you mean "onMessage"\?\); known: match, history/],
    [`history: { size: -5 }`, /typo\.ts: "history\.size" must be an integer from 0 to 1000000/],
    [`history: { ttlSeconds: 'abc' }`, /typo\.ts: "history\.ttlSeconds" must be a number of seconds, at least 1/],
    [`history: { sise: 5 }`, /typo\.ts: "history\.sise" is not a history option/],
    [`history: 50`, /typo\.ts: "history" must be \{ size\?, ttlSeconds\? \}/],
    [`clientPublish: 'yes'`, /typo\.ts: "clientPublish" must be true or false/],
  ];
  for (const [extra, message] of cases) {
    const dir = folder(t, { 'typo.ts': `export default { match: 'x-*', ${extra} };\n` });
    await t.rejects(startServer(t, { actors: dir, workers: 1 }), { message }, extra);
  }
});

t.test('testActor refuses the definitions the loader refuses', async (t) => {
  const { testActor } = await import('rt-actors/testing');
  t.throws(() => testActor({ match: 'x-*', onJion() {} } as never), { message: /testActor: "onJion" is not an actor option \(did you mean "onJoin"\?\)/ });
  t.throws(() => testActor({ match: 'x-*', history: { ttlSeconds: NaN } }), { message: /"history\.ttlSeconds" must be a number of seconds/ });
});

t.test('a handler file with a key that is not a handler option stops the start naming it', async (t) => {
  const dir = folder(t, {
    'orders.handlers.ts': `import { defineHandlers } from 'rt-actors';\nexport default defineHandlers({ onConect() {}, events: { ping: () => 'pong' } } as never);\n`,
  });
  await t.rejects(startServer(t, { actors: dir, workers: 1 }), { message: /orders\.handlers\.ts: "onConect" is not a handler option \(did you mean "onConnect"\?\)/ });
});

t.test('an actor whose every pattern an earlier file already matches is named in a start warning', async (t) => {
  const actor = (match: string) => `import { defineActor } from 'rt-actors';\nexport default defineActor({ match: ${match}, onJoin: () => ({ reply: ${JSON.stringify(match)} }) });\n`;
  const dir = folder(t, {
    'a-chat.ts': actor(`'chat-*'`),
    'b-vip.ts': actor(`['chat-vip-*', 'chat-lobby']`),
    'c-rooms.ts': actor(`['chat-x', 'room-*']`),
    'd-again.ts': actor(`/^room-\\d+$/`),
  });
  const { log } = await startLogged(t, dir, { workers: 1, logLevel: 'warn' });
  t.match(log, /b-vip\.ts never serves a channel: every pattern of its match is matched by an earlier file \(a-chat\.ts: chat-\*\)/, 'the shadowed file is named with the one before it');
  t.notMatch(log, /c-rooms\.ts never serves/, 'room-* is its own');
  t.notMatch(log, /d-again\.ts never serves/, 'a RegExp is not compared with globs');
});

t.test('a compiled actor keeps its file: import.meta.url and stack traces name it; import cycles, extensionless helpers and the folder\'s own packages load', async (t) => {
  // Actor modules are compiled to copies elsewhere (src/actors/module-compiler.ts): what the copies
  // import must be what the originals would have imported, from where the originals are.
  const dir = folder(t, {
    'meta.ts': `import { defineActor } from 'rt-actors';
import { readFileSync } from 'node:fs';
import { ping } from './lib/a';
import { tag } from 'local-pkg';
import type { Note } from './lib/types.js';
const text = readFileSync(new URL('./greeting.txt', import.meta.url), 'utf8').trim();
const note: Note = { text };
export default defineActor({
  match: 'meta-*',
  onJoin: () => ({ reply: [note.text, ping(), tag, import.meta.filename, import.meta.dirname, new Error('here').stack!.split('\\n')[1]] }),
});
`,
    'greeting.txt': 'hi there\n',
    'lib/a.ts': `import { pong } from './b.js';\nexport const A = 'a';\nexport const ping = (): string => 'ping-' + pong();\n`,
    'lib/b.ts': `import { A } from './a.js';\nexport const pong = (): string => 'pong-' + A;\n`,
    'lib/types.ts': `export interface Note { text: string }\n`,
    'node_modules/local-pkg/package.json': JSON.stringify({ name: 'local-pkg', type: 'module', exports: { import: './esm.js', require: './cjs.cjs' } }),
    'node_modules/local-pkg/esm.js': `export const tag = 'esm';\n`,
    'node_modules/local-pkg/cjs.cjs': `exports.tag = 'cjs';\n`,
  });
  const c = await clientOf(t, dir);
  const [text, ping, tag, filename, dirname, frame] = (await c.request({ op: 'subscribe', channel: 'meta-1' })).data as string[];
  t.equal(text, 'hi there', 'import.meta.url is the original file: a file beside it is read');
  t.equal(ping, 'ping-pong-a', 'a cycle between helpers, imported as ./lib/a and ./b.js, loads');
  t.equal(tag, 'esm', "a package in the folder's own node_modules resolves from the folder, as an ES module");
  t.equal(filename, join(dir, 'meta.ts'), 'import.meta.filename');
  t.equal(dirname, dir, 'import.meta.dirname');
  t.match(frame, `${join(dir, 'meta.ts')}:10:`, 'a stack trace names the original file and line');
});

t.test('a helper that does not compile, or a package the folder lacks, stops the start naming the file', async (t) => {
  const broken = folder(t, {
    'chat.ts': `import { defineActor } from 'rt-actors';\nimport { x } from './lib/broken.js';\nexport default defineActor({ match: 'c-*', onJoin: () => ({ reply: x }) });\n`,
    'lib/broken.ts': `export const x = {\n  a: 1\n  b: 2,\n};\n`,
  });
  await t.rejects(startServer(t, { actors: broken, workers: 1 }), { message: /chat\.ts: .*lib\/broken\.ts:3:3: ',' expected/ });
  const missing = folder(t, { 'chat.ts': `import { defineActor } from 'rt-actors';\nimport nope from 'no-such-package';\nexport default defineActor({ match: 'c-*', onJoin: () => ({ reply: nope }) });\n` });
  await t.rejects(startServer(t, { actors: missing, workers: 1 }), { message: /chat\.ts: Cannot find package 'no-such-package' imported from .*chat\.ts/ });
  const noFile = folder(t, { 'chat.ts': `import { defineActor } from 'rt-actors';\nimport { y } from './lib/absent.js';\nexport default defineActor({ match: 'c-*', onJoin: () => ({ reply: y }) });\n` });
  await t.rejects(startServer(t, { actors: noFile, workers: 1 }), { message: /chat\.ts: Cannot find module '.*lib\/absent\.js' imported from .*chat\.ts/ });
});

t.test('a top-level file the folder rule does not load (.tsx, .cjs) is named in a start warning, not skipped in silence', async (t) => {
  const actor = `import { defineActor } from 'rt-actors';\nexport default defineActor({ match: 'chat-*' });\n`;
  const dir = folder(t, { 'chat.ts': actor, 'room.tsx': actor, 'legacy.cjs': `module.exports = { match: 'old-*' };\n`, '_helper.cts': '', 'lib/deep.tsx': actor });
  const { log } = await startLogged(t, dir, { workers: 1, logLevel: 'warn' });
  t.match(log, /room\.tsx is not loaded: actor, handler and task files are \.ts, \.mts, \.js or \.mjs/);
  t.match(log, /legacy\.cjs is not loaded/);
  t.notMatch(log, /chat\.ts is not loaded|_helper\.cts|deep\.tsx/, 'loaded files, helpers and subfolders are not named');
});

t.test("import() of a computed specifier resolves from the original file; a CommonJS actor loads as it is", async (t) => {
  const plugin = (name: string) => `export const name = ${JSON.stringify(name)};\n`;
  const dir = folder(t, {
    'plugins.ts': `import { defineActor } from 'rt-actors';
import './lib/eager.js';
const load = async (spec: string): Promise<string> => {
  try {
    return ((await import(spec)) as { name: string }).name;
  } catch (err) {
    return 'error: ' + (err as Error).message;
  }
};
export default defineActor({
  match: 'plug-*',
  onJoin: async () => ({ reply: [await load('./lib/' + 'eager.js'), await load('./lib/' + 'plain.mjs'), await load('local-' + 'pkg'), await load('./lib/' + 'lazy.js')] }),
});
`,
    'lib/eager.ts': plugin('eager, compiled'),
    'lib/plain.mjs': plugin('plain javascript'),
    'lib/lazy.ts': plugin('never compiled'),
    'node_modules/local-pkg/package.json': JSON.stringify({ name: 'local-pkg', type: 'module', exports: './index.js' }),
    'node_modules/local-pkg/index.js': plugin('a package'),
    'legacy.js': `module.exports = { match: 'old-*', onJoin: () => ({ reply: typeof require }) };\n`,
  });
  // The folder's package.json makes its .js files CommonJS (Node's rule); .ts and .mjs stay ES modules.
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'commonjs' }));
  const c = await clientOf(t, dir);
  const [eager, plain, pkg, lazy] = (await c.request({ op: 'subscribe', channel: 'plug-1' })).data as string[];
  t.equal(eager, 'eager, compiled', 'a TypeScript module compiled at start, by a computed specifier');
  t.equal(plain, 'plain javascript', 'a JavaScript module of the folder, from where it is');
  t.equal(pkg, 'a package', "a package of the folder's own node_modules");
  t.match(lazy, /lazy\.ts .*was not compiled at start: import it once with a literal specifier/, 'TypeScript the start never saw: an error that says what to do');
  t.equal((await c.request({ op: 'subscribe', channel: 'old-1' })).data, 'function', 'a CommonJS file runs as CommonJS');
});

t.test('`import x = require()` and `export =` stop the start naming the line, instead of being dropped without a word', async (t) => {
  // TypeScript compiling to an ES module drops both: `fs` was undefined when the hook ran, the export lost.
  const importEquals = folder(t, {
    'legacy.ts': `import { defineActor } from 'rt-actors';\nimport fs = require('node:fs');\nexport default defineActor({ match: 'l-*', onJoin: () => ({ reply: typeof fs.readFileSync }) });\n`,
  });
  const refused = await startServer(t, { actors: importEquals, workers: 1 }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(refused?.message, /legacy\.ts:2:1: `import fs = require\(…\)` is CommonJS.*write `import fs from '…'`/);
  const typeOnly = folder(t, {
    'typed.ts': `import { defineActor } from 'rt-actors';\nimport type Os = require('node:os');\nconst arch: ReturnType<typeof Os.arch> = 'x64';\nexport default defineActor({ match: 't-*', onJoin: () => ({ reply: arch }) });\n`,
  });
  await startServer(t, { actors: typeOnly, workers: 1 });
  t.pass('`import type x = require()` is erased, not refused');
  const exportEquals = folder(t, {
    'chat.ts': `import { defineActor } from 'rt-actors';\nimport { x } from './lib/x.js';\nexport default defineActor({ match: 'c-*', onJoin: () => ({ reply: x }) });\n`,
    'lib/x.ts': `const x = 1;\nexport = x;\n`,
  });
  await t.rejects(startServer(t, { actors: exportEquals, workers: 1 }), { message: /chat\.ts: .*lib\/x\.ts:2:1: `export =` is CommonJS.*write `export default`/ });
});

t.test('a server started again in the same process compiles the folder as it is now; the copies go when it closes', async (t) => {
  // The compiled modules were kept per process: a file added since the first start was "not among the
  // compiled modules of its folder", and an edit went unseen.
  const actor = (match: string, reply: string) => `import { defineActor } from 'rt-actors';\nexport default defineActor({ match: '${match}', onJoin: () => ({ reply: '${reply}' }) });\n`;
  const dir = folder(t, { 'a.ts': actor('a-*', 'first') });
  const reply = async (s: { url: string }, channel: string): Promise<unknown> => {
    const c = await TestClient.connect(s.url + '/ws');
    try {
      return (await c.request({ op: 'subscribe', channel })).data;
    } finally {
      c.close();
    }
  };
  const first = await startServer(t, { actors: dir, workers: 1 });
  t.equal(await reply(first, 'a-1'), 'first');
  const copies = readdirSync(tmpdir()).filter((n) => n.startsWith('rt-actors-modules-')).map((n) => join(tmpdir(), n));
  const mine = copies.flatMap((d) => readdirSync(d).map((n) => join(d, n))).filter((d) => existsSync(join(d, 'a.ts.mjs')) && readFileSync(join(d, 'a.ts.mjs'), 'utf8').includes(pathToFileURL(join(dir, 'a.ts')).href));
  t.equal(mine.length, 1, 'one compiled copy of the folder');
  await first.close();
  t.notOk(existsSync(mine[0]!), 'the copies are removed when the server closes');
  writeFileSync(join(dir, 'a.ts'), actor('a-*', 'edited'));
  writeFileSync(join(dir, 'b.ts'), actor('b-*', 'added'));
  const second = await startServer(t, { actors: dir, workers: 1 });
  t.equal(await reply(second, 'a-1'), 'edited', 'an edit is seen');
  t.equal(await reply(second, 'b-1'), 'added', 'a file added since the first start loads');
});

t.test('a link error names the original module, not its compiled copy, and says how to re-export a type', async (t) => {
  // Node names the module by the specifier it was imported with: the compiled copy's URL in TMPDIR.
  const dir = folder(t, {
    'shapes.ts': `import { defineActor } from 'rt-actors';\nimport { area, type Shape } from './lib/index.js';\nconst s: Shape = { side: 2 };\nexport default defineActor({ match: 's-*', onJoin: () => ({ reply: area(s) }) });\n`,
    'lib/index.ts': `export { Shape } from './types.js';\nexport const area = (s: { side: number }): number => s.side ** 2;\n`,
    'lib/types.ts': `export interface Shape { side: number }\n`,
  });
  const err = await startServer(t, { actors: dir, workers: 1 }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(err?.message, `shapes.ts: SyntaxError: The requested module '${join(dir, 'lib', 'types.ts')}' does not provide an export named 'Shape'`);
  t.match(err?.message, /if Shape is a type, import or re-export it with `type`: `export type \{ Shape \} from …`/);
  t.notMatch(err?.message, /rt-actors-modules-/, 'the compiled copy is not named');
});

t.test('a package export is chosen with the conditions Node runs with (node -C development), at start and for a computed import()', async (t) => {
  // The compiler resolved with 'node' and 'import' only: `node -C development` loaded a package's
  // development build when run directly, but its default one through --actors.
  const dir = folder(t, {
    'mode.ts': `import { defineActor } from 'rt-actors';\nimport { mode } from 'cpkg';\nconst later = async (): Promise<string> => ((await import('cp' + 'kg')) as { mode: string }).mode;\nexport default defineActor({ match: 'mode-*', onJoin: async () => ({ reply: [mode, await later()] }) });\n`,
    'node_modules/cpkg/package.json': JSON.stringify({ name: 'cpkg', type: 'module', exports: { development: './dev.js', default: './prod.js' } }),
    'node_modules/cpkg/dev.js': `export const mode = 'development';\n`,
    'node_modules/cpkg/prod.js': `export const mode = 'production';\n`,
  });
  const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
  const p = runCli(t, process.execPath, ['-C', 'development', bin, 'start', '--port', '0', '--host', '127.0.0.1', '--workers', '1', '--actors', dir]);
  const port = await listeningPort(p, 60_000);
  const c = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
  t.teardown(() => c.close());
  t.same((await c.request({ op: 'subscribe', channel: 'mode-1' })).data, ['development', 'development']);
});

t.test('import.meta destructured or passed on names the original file too', async (t) => {
  // Only `import.meta.url|filename|dirname` were rewritten: `const { dirname } = import.meta` was the
  // compiled copy's folder in TMPDIR, and a file read beside it was not found.
  const dir = folder(t, {
    'meta.ts': `import { defineActor } from 'rt-actors';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
const { dirname, url } = import.meta;
const fileOf = (m: ImportMeta): string => m.filename;
export default defineActor({ match: 'meta-*', onJoin: () => ({ reply: [readFileSync(join(dirname, 'note.txt'), 'utf8'), url, fileOf(import.meta)] }) });
`,
    'note.txt': 'beside',
  });
  const c = await clientOf(t, dir);
  t.same((await c.request({ op: 'subscribe', channel: 'meta-1' })).data, ['beside', pathToFileURL(join(dir, 'meta.ts')).href, join(dir, 'meta.ts')]);
});

t.test('copies left by a server killed without its exit (SIGKILL, the OOM killer) are removed at the next start; a running one\'s are kept', async (t) => {
  const dir = folder(t, { 'room.ts': `import { defineActor } from 'rt-actors';\nexport default defineActor({ match: 'room-*' });\n` });
  const tmp = mkdtempSync(join(tmpdir(), 'rt-actors-tmpdir-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
  const start = () => runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--actors', dir], { env: cleanEnv({ TMPDIR: tmp }) });
  const copies = () => readdirSync(tmp).filter((n) => n.startsWith('rt-actors-modules-'));
  const killed = start();
  await listeningPort(killed, 60_000);
  const [left] = copies();
  killed.child.kill('SIGKILL');
  await killed.exited;
  t.same(copies(), [left], 'SIGKILL: the copies stay behind');
  const alive = start();
  await listeningPort(alive, 60_000);
  t.notOk(copies().includes(left!), 'the next start removed them');
  t.equal(copies().length, 1, 'its own are there');
  const [kept] = copies();
  const third = start();
  await listeningPort(third, 60_000);
  t.ok(copies().includes(kept!), 'a running server\'s copies are kept');
  t.equal(copies().length, 2);
});

t.test('a .js actor with import/export and no package "type" is an ES module, as Node detects it: it imports rt-actors and TypeScript helpers', async (t) => {
  // Taken for CommonJS (no package.json says "type": "module"), it was loaded from where it is, and
  // its `import ... from 'rt-actors'` failed in a folder outside the project.
  const dir = folder(t, {
    'modern.js': `import { defineActor } from 'rt-actors';\nimport { tag } from './lib/tag.js';\nexport default defineActor({ match: 'js-*', onJoin: () => ({ reply: [tag, import.meta.filename] }) });\n`,
    'lib/tag.ts': `export const tag: string = 'typescript helper';\n`,
    'classic.js': `module.exports = { match: 'cjs-*', onJoin: () => ({ reply: typeof require }) };\n`,
  });
  const c = await clientOf(t, dir);
  t.same((await c.request({ op: 'subscribe', channel: 'js-1' })).data, ['typescript helper', join(dir, 'modern.js')]);
  t.equal((await c.request({ op: 'subscribe', channel: 'cjs-1' })).data, 'function', 'a .js file without module syntax is still CommonJS');
});

t.test("an editor's lock file (a hidden symlink to nowhere) does not stop the start", async (t) => {
  // Emacs keeps `.#chat.ts` beside a file being edited, a symlink to user@host.pid: its stat failed
  // the whole folder ("cannot read folder (ENOENT …)").
  const dir = folder(t, { 'chat.ts': `import { defineActor } from 'rt-actors';\nexport default defineActor({ match: 'chat-*', onJoin: () => ({ reply: 'here' }) });\n` });
  symlinkSync('user@host.1234:1700000000', join(dir, '.#chat.ts'));
  const c = await clientOf(t, dir);
  t.equal((await c.request({ op: 'subscribe', channel: 'chat-1' })).data, 'here');
});

t.test('a helper that throws while it loads: the start error names where it threw (the original file and line)', async (t) => {
  // The message named only the actor file that imported the helper.
  const dir = folder(t, {
    'chat.ts': `import { defineActor } from 'rt-actors';\nimport { mode } from './lib/config.js';\nexport default defineActor({ match: 'c-*', onJoin: () => ({ reply: mode }) });\n`,
    'lib/config.ts': `// read once at start\ntype Env = Record<string, string | undefined>;\nexport const mode: string = (process.env as Env).NO_SUCH_CHAT_MODE ?? fail('NO_SUCH_CHAT_MODE is not set');\nfunction fail(why: string): never {\n  throw new Error(why);\n}\n`,
  });
  await t.rejects(startServer(t, { actors: dir, workers: 1 }), { message: `${join(dir, 'chat.ts')}: NO_SUCH_CHAT_MODE is not set (thrown at ${join(dir, 'lib', 'config.ts')}:5:9)` });
  const missing = folder(t, { 'chat.ts': `import nope from 'no-such-package';\nexport default { match: 'c-*', onJoin: () => ({ reply: nope }) };\n` });
  const err = await startServer(t, { actors: missing, workers: 1 }).then(
    () => undefined,
    (e: Error) => e,
  );
  t.notMatch(err?.message, /thrown at/, "an error of the server's own (an import not found) says no frame");
});

t.test('a JavaScript module of the folder reached through package.json "imports" (#util) is compiled like one imported by its path', async (t) => {
  // Only a relative specifier's JavaScript was compiled: lib/util.js, reached as '#util', was loaded
  // from where it is, and its own `import … from 'rt-actors'` failed in a folder outside the project.
  const dir = folder(t, {
    'package.json': JSON.stringify({ type: 'module', imports: { '#util': './lib/util.js' } }),
    'chat.ts': `import { defineActor } from 'rt-actors';\nimport { util } from '#util';\nexport default defineActor({ match: 'c-*', onJoin: () => ({ reply: util }) });\n`,
    'lib/util.js': `import { ActorError } from 'rt-actors';\nimport { n } from './n.js';\nexport const util = typeof ActorError + ' ' + n;\n`,
    'lib/n.ts': `export const n: number = 1;\n`,
  });
  const c = await clientOf(t, dir);
  t.equal((await c.request({ op: 'subscribe', channel: 'c-1' })).data, 'function 1');
});

t.test('an import() with a ?query loads a fresh instance, as Node does (a config file re-read), of JSON and of a compiled helper', async (t) => {
  // Specifiers were read as paths: './config.json?t=…' was a file that does not exist.
  const dir = folder(t, {
    'conf.ts': `import { defineActor } from 'rt-actors';
import { writeFileSync } from 'node:fs';
import { count } from './lib/counter.js';
const config = async (): Promise<unknown> => (await import('./config.json?t=' + Math.random(), { with: { type: 'json' } })).default;
const fresh = async (): Promise<number> => ((await import('./lib/counter.js?n=' + Math.random())) as { count: () => number }).count();
export default defineActor({
  match: 'conf-*',
  onJoin: async () => {
    const before = await config();
    writeFileSync(new URL('./config.json', import.meta.url), '{"v":2}');
    return { reply: [before, await config(), count(), count(), await fresh()] };
  },
});
`,
    'config.json': '{"v":1}',
    'lib/counter.ts': `let n = 0;\nexport const count = (): number => ++n;\n`,
  });
  const c = await clientOf(t, dir);
  t.same((await c.request({ op: 'subscribe', channel: 'conf-1' })).data, [{ v: 1 }, { v: 2 }, 1, 2, 1]);
});

t.test('a JavaScript helper with a syntax error: the start error names the helper and its line', async (t) => {
  // Node's SyntaxError names no file, and only the actor file itself was parsed again to place it.
  const dir = folder(t, {
    'chat.ts': `import { defineActor } from 'rt-actors';\nimport { x } from './lib/bad.mjs';\nexport default defineActor({ match: 'c-*', onJoin: () => ({ reply: x }) });\n`,
    'lib/bad.mjs': `export const x = {\n  a: 1,,\n};\n`,
  });
  await t.rejects(startServer(t, { actors: dir, workers: 1 }), {
    message: `${join(dir, 'chat.ts')}: SyntaxError: Unexpected token ',' (${join(dir, 'lib', 'bad.mjs')}:2:8: Property assignment expected. (TS1136))`,
  });
});

t.test("an import of a folder ('./lib', TypeScript's bundler style) is refused as Node refuses it, saying which file to import", async (t) => {
  // It was "Cannot find module '…/lib'", with the folder and its index.ts right there.
  const dir = folder(t, {
    'chat.ts': `import { defineActor } from 'rt-actors';\nimport { x } from './lib';\nexport default defineActor({ match: 'c-*', onJoin: () => ({ reply: x }) });\n`,
    'lib/index.ts': `export const x = 1;\n`,
  });
  await t.rejects(startServer(t, { actors: dir, workers: 1 }), {
    message: `${join(dir, 'chat.ts')}: Directory import '${join(dir, 'lib')}' is not supported resolving ES modules imported from ${join(dir, 'chat.ts')}: import './lib/index.js'`,
  });
});
