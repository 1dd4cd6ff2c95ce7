// Structured logs: a real server started by the CLI with --log-format=json at debug level, driven with
// connections, subscriptions, an auth failure and a refusal; every line it writes must parse as JSON
// with the documented fields, and floods are cut down to --log-rate lines per second per kind.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { createLogger, signJwt } from 'rt-actors';
import { cleanEnv, listeningPort, runCli } from './helpers/cli.js';
import { until } from './helpers/redis.js';
import { TestClient } from './helpers/ws-client.js';
import WebSocket from 'ws';

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
const SECRET = 'logs-test-secret-0123456789';
type Line = Record<string, any>;

function parseLines(out: string): Line[] {
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Line;
      } catch {
        throw new Error(`not a JSON line: ${l}`);
      }
    });
}

t.test('json logs: one object per line with time, level, thread, shard, msg and fields', async (t) => {
  const actors = fileURLToPath(new URL('../actors', import.meta.url));
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--log-format=json', '--log-level=debug', '--log-rate=5', '--max-channels-per-connection=1', `--actors=${actors}`], {
    env: cleanEnv({ RT_JWT_SECRET: SECRET, RT_API_KEY: '' }),
  });
  const port = await listeningPort(p);
  const url = `ws://127.0.0.1:${port}/ws`;
  const lines = () => parseLines(p.output());
  const find = (pred: (l: Line) => boolean, what: string) => until(what, () => lines().find(pred));

  const token = signJwt({ sub: 'ada', exp: Math.floor(Date.now() / 1000) + 600 }, { secret: SECRET });
  const c = await TestClient.connect(`${url}?token=${token}`);
  const opened = await find((l) => l.event === 'conn.open' && l.user === 'ada', 'conn.open');
  t.equal(opened.level, 'debug');
  t.equal(opened.thread, 'shard 0');
  t.equal(opened.shard, 0);
  t.equal(opened.transport, 'ws');
  t.match(opened.conn, /^0\./);

  t.equal((await c.request({ op: 'subscribe', channel: 'news' })).ok, true);
  const sub = await find((l) => l.event === 'subscribe', 'subscribe');
  t.equal(sub.channel, 'news');
  t.equal(sub.conn, opened.conn);

  // A refusal with its reason: over --max-channels-per-connection.
  const refused = await c.request({ op: 'subscribe', channel: 'more' });
  t.equal(refused.error.code, 'too_many_channels');
  const refusal = await find((l) => l.event === 'refusal', 'refusal');
  t.equal(refusal.reason, 'channel_limit');
  t.equal(refusal.code, 'too_many_channels');

  // An auth failure: a forged token.
  await t.rejects(TestClient.connect(`${url}?token=${signJwt({ sub: 'eve' }, { secret: 'wrong-secret-0123456789' })}`), /401/);
  const auth = await find((l) => l.event === 'auth.failed', 'auth.failed');
  t.equal(auth.reason, 'auth');
  t.match(auth.code, /^token_/);
  t.type(auth.detail, 'string');

  c.ws.close();
  const closed = await find((l) => l.event === 'conn.close' && l.conn === opened.conn, 'conn.close');
  t.equal(closed.channels, 1);

  // A flood of one kind: 20 connections within a second, at --log-rate=5 per second.
  const many = await Promise.all(Array.from({ length: 20 }, () => TestClient.connect(url)));
  const summary = await find((l) => l.event === 'log.suppressed' && l.kind === 'conn.open', 'a "suppressed" summary');
  t.ok(summary.suppressed >= 1, `suppressed ${summary.suppressed} conn.open lines`);
  const openLines = lines().filter((l) => l.event === 'conn.open').length;
  t.ok(openLines < 21, `conn.open lines were limited (${openLines} written for 21 connections)`);
  for (const m of many) m.ws.close();

  p.child.kill('SIGTERM');
  t.same(await p.exited, { code: 0, signal: null });
  const all = lines();
  for (const l of all) {
    t.ok(!Number.isNaN(Date.parse(l.time)) && /Z$/.test(l.time), `time is an ISO timestamp: ${l.time}`);
    t.ok(['error', 'warn', 'notice', 'info', 'debug'].includes(l.level), `level ${l.level}`);
    t.type(l.thread, 'string');
    t.type(l.msg, 'string');
  }
  const listening = all.find((l) => l.event === 'server.listening')!;
  t.equal(listening.port, port);
  t.equal(listening.level, 'notice');
  t.ok(all.some((l) => l.event === 'server.api_key_generated'), 'the generated API key line');
  const loaded = all.find((l) => l.event === 'actors.loaded')!;
  t.equal(loaded.level, 'info');
  t.ok(loaded.files.includes('chat-room.ts'), 'names the loaded actor files');
  t.ok(all.some((l) => l.event === 'server.stopping' && l.reason === 'SIGTERM'), 'the shutdown line');
  t.ok(all.some((l) => l.event === 'server.stopped'), 'the stopped line');
});

// A Pusher subscription refused for a bad signature was logged as auth.failed without the code and
// detail the table documents (reason only), unlike the same refusal on the other protocols.
t.test('a refused Pusher subscription is logged as auth.failed with its code and detail', async (t) => {
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--log-format=json', '--log-level=debug', '--pusher-app-id=1001', '--pusher-key=logs-key', '--pusher-secret=logs-pusher-secret-0123456789'], {
    env: cleanEnv({ RT_API_KEY: 'logs-api-key-0123456789' }),
  });
  const port = await listeningPort(p);
  const ws = new WebSocket(`ws://127.0.0.1:${port}/app/logs-key?protocol=7`);
  t.teardown(() => ws.close());
  const frames: { event: string; data?: unknown }[] = [];
  ws.on('message', (m) => frames.push(JSON.parse(String(m))));
  await until('connection_established', () => frames.some((f) => f.event === 'pusher:connection_established'));
  ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: 'private-logged', auth: `logs-key:${'ab'.repeat(32)}` } }));
  await until('the subscription error', () => frames.some((f) => f.event === 'pusher:subscription_error'));
  const auth = await until('auth.failed with a code', () => parseLines(p.output()).find((l) => l.event === 'auth.failed' && l.code !== undefined));
  t.equal(auth.reason, 'auth');
  t.equal(auth.code, 'unauthorized');
  t.match(auth.detail, /Invalid signature/);
  p.child.kill('SIGTERM');
  t.same(await p.exited, { code: 0, signal: null });
});

t.test('text logs are readable by default; errors keep their stack on one line', async (t) => {
  const out: string[] = [];
  const text = createLogger('debug', 'shard 3', { format: 'text', write: (l) => out.push(l) });
  const err = new Error('boom');
  text.error('actor failed', err, { channel: 'chat room', n: 2 });
  text.debug('a debug line', { event: 'x' });
  text.info('with extra', 42, 'words');
  text.error('an optional error that is absent', undefined);
  t.equal(out.length, 4);
  for (const l of out) t.equal(l.split('\n').length, 2, 'one line each');
  t.match(out[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z ERROR \[shard 3\] actor failed channel="chat room" n=2 err="Error: boom \| at /);
  t.notMatch(out[1], /event=/, 'the event kind is for JSON filters, not text');
  t.match(out[2], /INFO  \[shard 3\] with extra 42 words$/m);
  t.match(out[3], /ERROR \[shard 3\] an optional error that is absent$/m, 'no "undefined" after it');

  const json: string[] = [];
  const j = createLogger('info', 'main', { format: 'json', write: (l) => json.push(l) });
  j.debug('not written at info');
  j.warn('stack folded', err, { event: 'e', msg: 'cannot override', level: 'nor this' });
  t.equal(json.length, 1);
  t.equal(json[0]!.split('\n').length, 2, 'one line');
  const o = JSON.parse(json[0]!);
  t.equal(o.msg, 'stack folded');
  t.equal(o.level, 'warn');
  t.equal(o.err.message, 'boom');
  t.match(o.err.stack, /^Error: boom\n\s+at /, 'the stack is one JSON string');
  t.equal(o.shard, undefined, 'no shard field on the main thread');
});
