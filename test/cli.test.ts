import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, mkdtempSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { connect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestClient } from './helpers/ws-client.js';
import { cleanEnv, listeningPort, runCli } from './helpers/cli.js';
import { loadConfig } from '../src/config/load.js';

// Several servers start and stop one after another: longer than .taprc's default on a busy machine.
t.setTimeout(360_000);

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
const run = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60000 });

t.test('help and usage errors', async (t) => {
  const help = run(['--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /rt-actors start/);
  const startHelp = run(['start', '--help']);
  t.equal(startHelp.status, 0);
  for (const flag of ['--port', '--workers', '--api-key', '--jwt-secret', '--jwt-public-key', '--actors', '--history-size', '--max-payload', '--client-publish']) {
    t.match(startHelp.stdout, flag, `start --help documents ${flag}`);
  }
  t.match(startHelp.stdout, /RT_API_KEY/);
  const unknown = run(['start', '--prot=1']);
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /unknown option --prot \(did you mean --port\?\); accepted options: .*--port/);
  const badValue = run(['start', '--workers=lots']);
  t.equal(badValue.status, 2);
  t.match(badValue.stderr, /--workers.*'auto' or an integer/);
  const badEnum = run(['start', '--client-publish', 'maybe']);
  t.equal(badEnum.status, 2);
  t.match(badEnum.stderr, /one of none, private, all/);
  const badEnv = run(['start'], { RT_MAX_PAYLOAD: 'huge' });
  t.equal(badEnv.status, 2);
  t.match(badEnv.stderr, /RT_MAX_PAYLOAD/);
  const dir = mkdtempSync(join(tmpdir(), 'rt-cfg-'));
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ prot: 1 }));
  const badFile = run(['start', '--config', join(dir, 'c.json')]);
  t.equal(badFile.status, 2);
  t.match(badFile.stderr, /unknown key "prot"/);
  t.equal(run(['frobnicate']).status, 2);
  const tok = run(['token', '--sub', '42', '--channels', 'private-orders.*', '--ttl', '1h', '--secret', 's3cret']);
  t.equal(tok.status, 0);
  const jwt = tok.stdout.trim().split('\n').pop()!;
  const payload = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString());
  t.equal(payload.sub, '42');
  t.same(payload.channels, ['private-orders.*']);
  t.ok(payload.exp - payload.iat === 3600);
  writeFileSync(join(dir, 'secret.json'), JSON.stringify({ jwtSecret: 'from-config' }));
  const fromConfig = run(['token', '--sub', '7', '--config', join(dir, 'secret.json')]);
  t.equal(fromConfig.status, 0, 'the configured secret signs when --secret is absent');
  const noSecret = run(['token', '--sub', '7'], { RT_JWT_SECRET: '' });
  t.equal(noSecret.status, 2);
  t.match(noSecret.stderr, /no secret/);
});

t.test('start serves, prints the generated key once, and SIGTERM shuts down gracefully', async (t) => {
  const child = spawn(process.execPath, [bin, 'start', '--workers=2', '--port=0', '--host=127.0.0.1', '--log-level=warn'], { env: { ...process.env, RT_API_KEY: '' } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const deadline = Date.now() + 20000;
  while (!/listening on 127\.0\.0\.1:(\d+)/.test(out) || !/API key[^:]*: \S+\n/.test(out)) {
    if (Date.now() > deadline) throw new Error('server did not start: ' + out);
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]);
  const key = /API key[^:]*: (\S+)/.exec(out)![1]!;
  t.match(out, /2 shards/);
  const health = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.json());
  t.equal(health.status, 'ok');
  const c = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
  await c.request({ op: 'subscribe', channel: 'x' });
  const pub = await fetch(`http://127.0.0.1:${port}/api/publish`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: JSON.stringify({ channel: 'x', event: 'e', data: 1 }) });
  t.equal(pub.status, 200, 'printed key works');
  await c.next((f) => f.op === 'message');
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  child.kill('SIGTERM');
  const bye = await c.next((f) => f.op === 'disconnect');
  t.equal(bye.reconnect, true, 'clients are told to reconnect');
  t.equal((await c.waitClose()).code, 1012);
  t.equal(await exited, 0, 'clean exit');
  t.equal((out.match(/API key/g) ?? []).length, 1, 'key printed once');
});

t.test('SIGTERM while the server is still starting: it stops once started, exit 0, nothing left in TMPDIR', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'rt-cli-gate-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const gate = join(tmp, 'open');
  const actors = fileURLToPath(new URL('./fixtures/start-gate', import.meta.url));
  const child = spawn(process.execPath, [bin, 'start', '--workers=1', '--port=0', '--host=127.0.0.1', `--actors=${actors}`], { env: { ...cleanEnv(), TMPDIR: tmp, START_GATE: gate } });
  t.teardown(() => child.kill('SIGKILL'));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  // The compiled copy of the actors folder exists once the start is loading them: the gate holds it there.
  const copies = () => readdirSync(tmp).filter((f) => f.startsWith('rt-actors-modules-'));
  for (const deadline = Date.now() + 20_000; copies().length === 0; ) {
    if (Date.now() > deadline) throw new Error('the start never reached the actors: ' + out);
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGTERM');
  for (const deadline = Date.now() + 10_000; !/SIGTERM while starting/.test(out); ) {
    if (Date.now() > deadline) throw new Error('the signal was not taken: ' + out);
    await new Promise((r) => setTimeout(r, 20));
  }
  t.notMatch(out, /listening on/, 'the signal came before the server was listening');
  writeFileSync(gate, '');
  t.equal(await exited, 0, 'a clean exit');
  t.match(out, /listening on[\s\S]*SIGTERM: shutting down[\s\S]*stopped in \d+ ms/, 'started, then drained and stopped');
  t.same(copies(), [], 'the compiled actors were removed');
});

t.test('start-up errors: one clear line each, and a documented exit code', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-cli-'));
  const oneLine = (r: { stderr: string }) => r.stderr.trimEnd().split('\n');

  // A port in use: exit 3.
  const blocker = createNetServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => blocker.close());
  const busy = (blocker.address() as { port: number }).port;
  for (const host of [['--host=127.0.0.1'], []]) {
    const inUse = run(['start', `--port=${busy}`, '--workers=1', ...host]);
    t.equal(inUse.status, 3, `port in use exits 3 (${host.join(' ') || 'all interfaces'})`);
    t.same(oneLine(inUse).length, 1, 'one line');
    t.match(inUse.stderr, new RegExp(`^rt-actors: cannot listen on .*:${busy}: the port is in use\n$`), 'the reason, not a guess');
  }
  const inUseJson = run(['start', `--port=${busy}`, '--workers=1', '--host=127.0.0.1', '--log-format=json']);
  t.equal(inUseJson.status, 3);
  const line = JSON.parse(inUseJson.stderr.trim());
  t.match(line, { level: 'error', event: 'server.start_failed', exit: 3, msg: /port is in use/ }, 'with --log-format=json, the line is JSON');

  // Actors are compiled into a folder under TMPDIR: one that cannot be written says what to set.
  const actorsDir = mkdtempSync(join(tmpdir(), 'rt-cli-actors-'));
  writeFileSync(join(actorsDir, 'echo.ts'), `export default { match: 'echo-*' };\n`);
  const noTmp = run(['start', '--port=0', '--workers=1', `--actors=${actorsDir}`], { TMPDIR: join(dir, 'missing') });
  t.equal(noTmp.status, 2, 'an unwritable TMPDIR with --actors: exit 2');
  t.same(oneLine(noTmp).length, 1);
  t.match(noTmp.stderr, /cannot create a folder for the compiled actors in .*missing .*set TMPDIR to a writable folder/);

  // A configuration error with --log-format=json (or RT_LOG_FORMAT=json): a JSON line too.
  for (const [args, env] of [[['--log-format=json', '--workers=lots'], {}], [['--workers=lots'], { RT_LOG_FORMAT: 'json' }]] as const) {
    const bad = run(['start', ...args], env);
    t.equal(bad.status, 2);
    t.match(JSON.parse(bad.stderr.trim()), { level: 'error', event: 'server.start_failed', exit: 2, key: 'workers', msg: /--workers/ });
  }
  // logFormat set in the config file only: the file's own error is a JSON line too.
  const jsonConfig = join(mkdtempSync(join(tmpdir(), 'rt-cfg-')), 'rt.json');
  writeFileSync(jsonConfig, JSON.stringify({ logFormat: 'json', workers: 'lots' }));
  const fromFile = run(['start', `--config=${jsonConfig}`]);
  t.equal(fromFile.status, 2);
  t.match(JSON.parse(fromFile.stderr.trim()), { level: 'error', event: 'server.start_failed', exit: 2, key: 'workers' }, 'logFormat from the config file');

  // A --host that cannot be bound is a configuration error naming --host, not "the port is in use":
  // an address that is not this machine's (TEST-NET-1), a name that does not resolve. Port 0 as well.
  for (const [host, why] of [['192.0.2.1', /not an address of this machine/], ['no-such-host.invalid', /does not resolve/]] as const) {
    for (const port of ['--port=0', `--port=${busy}`]) {
      const bad = run(['start', port, '--workers=1', `--host=${host}`]);
      t.equal(bad.status, 2, `--host=${host} ${port}: exit 2`);
      t.same(oneLine(bad).length, 1);
      t.match(bad.stderr, new RegExp(`^rt-actors: invalid --host "${host.replace(/\./g, '\\.')}": `));
      t.match(bad.stderr, why);
    }
  }

  // A missing --actors folder: a configuration error, exit 2.
  const noActors = run(['start', '--port=0', '--workers=1', `--actors=${join(dir, 'missing')}`]);
  t.equal(noActors.status, 2);
  t.same(oneLine(noActors).length, 1);
  t.match(noActors.stderr, /^rt-actors: --actors .*missing: cannot read folder/);

  // An actor file that fails to import: exit 2, naming it, no stack.
  mkdirSync(join(dir, 'broken'));
  writeFileSync(join(dir, 'broken', 'bad.mjs'), 'export default {{;\n');
  const broken = run(['start', '--port=0', '--workers=1', `--actors=${join(dir, 'broken')}`]);
  t.equal(broken.status, 2);
  t.same(oneLine(broken).length, 1);

  // An unreadable TLS file (a directory, a missing file): exit 2.
  for (const file of [dir, join(dir, 'nope.pem')]) {
    const tls = run(['start', '--port=0', '--workers=1', `--tls-cert=${file}`, `--tls-key=${file}`]);
    t.equal(tls.status, 2, `TLS file ${file}`);
    t.same(oneLine(tls).length, 1);
    t.match(tls.stderr, /^rt-actors: cannot read --tls-cert file /);
  }

  // A --shutdown-timeout past what a timer holds (2^31 ms, about 24.8 days) is refused: it used to fire at
  // once, cutting in-flight requests and crashing the process as its threads were ended under it.
  const long = run(['start', '--port=0', '--workers=1', '--shutdown-timeout=30d']);
  t.equal(long.status, 2);
  t.match(long.stderr, /^rt-actors: invalid value "30d" for --shutdown-timeout \(flag\): expected a duration .* from 0 to 86400/);

  // A config file saved with a UTF-8 byte order mark (Windows editors) is read like any other.
  writeFileSync(join(dir, 'bom.json'), '\uFEFF' + JSON.stringify({ workers: 'lots' }));
  const bom = run(['start', '--config', join(dir, 'bom.json')]);
  t.equal(bom.status, 2);
  t.match(bom.stderr, `rt-actors: invalid value "lots" for workers (file ${join(dir, 'bom.json')})`, 'its keys are read, not refused as invalid JSON');

  // A "config" key inside a config file.
  writeFileSync(join(dir, 'nested.json'), JSON.stringify({ port: 0, config: 'other.json' }));
  const nested = run(['start', '--config', join(dir, 'nested.json')]);
  t.equal(nested.status, 2);
  t.match(nested.stderr, /key "config" is not allowed inside a config file/);
});

t.test('a bad value is refused in every layer, also where a higher one overrides it, naming that layer', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-cfg-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ port: 'abc' }));
  const hidden = run(['start', '--port', '7000', '--config', file]);
  t.equal(hidden.status, 2, 'the file\'s port is checked though --port overrides it');
  t.match(hidden.stderr, `invalid value "abc" for port (file ${file}): expected an integer`);
  t.throws(() => loadConfig({ flags: { config: file }, env: { RT_PORT: '7000' } }), { message: `invalid value "abc" for port (file ${file})` }, 'under RT_PORT too');
  t.throws(() => loadConfig({ flags: { port: '7000' }, env: { RT_PORT: 'seven' } }), { message: 'invalid value "seven" for RT_PORT (env)' }, 'a variable under a flag');
  t.throws(() => loadConfig({ flags: { port: '7000' }, code: { port: 'x' } }), { message: 'invalid value "x" for port (code)' }, 'a createServer option under a flag');
  // The winner is still the highest layer.
  writeFileSync(file, JSON.stringify({ port: 6100 }));
  t.equal(loadConfig({ flags: { port: '7000', config: file }, env: { RT_PORT: '6200' } }).port, 7000);
  t.equal(loadConfig({ flags: { config: file }, env: { RT_PORT: '6200' } }).port, 6200);
});

t.test('start errors found after loading name the option as the user wrote it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-cfg-'));
  const refused = (args: string[], env: Record<string, string>, message: string) => {
    const r = run(['start', '--port=0', '--workers=1', ...args], env);
    t.equal(r.status, 2, `${args.join(' ')} ${JSON.stringify(env)}`);
    t.match(r.stderr, `rt-actors: ${message}`);
  };
  refused(['--auth-endpoint=app.test/auth'], {}, '--auth-endpoint must be an http(s) URL, not "app.test/auth"');
  // fetch refuses such a URL: every private subscribe failed, telling the client the URL and its password.
  refused(['--auth-endpoint=https://user:secret@app.test/auth'], {}, '--auth-endpoint must not hold a user name or password (user:password@)');
  refused(['--jwks-url=https://user:secret@idp.test/.well-known/jwks.json'], {}, '--jwks-url: JWKS URL must not hold a user name or password (user:password@)');
  refused([], { RT_SOCKETIO_TRANSPORTS: 'carrier-pigeon' }, 'RT_SOCKETIO_TRANSPORTS must list one or both of polling, websocket');
  refused(['--engineio-echo-path=echo'], {}, '--engineio-echo-path must be a path');
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ authEndpoint: 'ftp://app.test/auth', pusherApps: [{ id: '1', key: 'k', secret: 'short' }] }));
  refused([`--config=${join(dir, 'c.json')}`], {}, 'authEndpoint (config file) must be an http(s) URL');
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ pusherApps: [{ id: '1', key: 'k', secret: 'short' }] }));
  refused([`--config=${join(dir, 'c.json')}`], {}, 'pusherApps[0].secret must be a string of at least 8 characters');
  refused(['--pusher-apps=[{"id":"1","key":"k","secret":"short"}]'], {}, '--pusher-apps[0].secret must be');
  // Its credentials are sent decoded as basic auth: the URIError crashed every shard at start (exit 0).
  refused(['--pusher-apps=[{"id":"1","key":"k","secret":"long-enough","webhooks":[{"url":"https://hooks:p%ss@app.test/hook"}]}]'], {}, "--pusher-apps[0].webhooks[0].url: its user name or password has a '%' that is not a percent-escape: write '%' as %25");
  // The single app of --pusher-app-id/--pusher-key/--pusher-secret is named by the option as it was set.
  refused(['--pusher-app-id=1', '--pusher-key=k', '--pusher-secret=short'], {}, '--pusher-secret must be a string of at least 8 characters');
  refused([], { RT_PUSHER_APP_ID: '1', RT_PUSHER_KEY: 'k', RT_PUSHER_SECRET: 'short' }, 'RT_PUSHER_SECRET must be a string of at least 8 characters');
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ pusherAppId: '1', pusherKey: 'a key', pusherSecret: 'long-enough' }));
  refused([`--config=${join(dir, 'c.json')}`], {}, 'pusherKey (config file) "a key" is not valid');
  refused(['--jwt-public-key=/nonexistent.pem'], { RT_JWT_SECRET: 'x'.repeat(32) }, 'set either RT_JWT_SECRET for HS256 or --jwt-public-key for RS256/ES256, not both');
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ allowedOrigins: ['app.example.com'], ringQueueLow: '8mb' }));
  refused([`--config=${join(dir, 'c.json')}`], {}, 'ringQueueLow (config file) (8388608) must be less than --ring-queue-high (4194304)');
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ allowedOrigins: ['app.example.com'] }));
  refused([`--config=${join(dir, 'c.json')}`], {}, 'allowedOrigins (config file): "app.example.com" has no scheme');
  refused([], { RT_TRUST_PROXY: '10.0.0.0/33' }, 'RT_TRUST_PROXY: "10.0.0.0/33" is not an IP address');
  refused([], { RT_TLS_CERT: '/nonexistent.pem', RT_TLS_KEY: '/nonexistent.pem' }, 'cannot read RT_TLS_CERT file /nonexistent.pem');
  refused(['--redis=redis://127.0.0.1:1'], { RT_HOST_ID: 'no spaces please' }, 'RT_HOST_ID "no spaces please" must be 1-64 letters');
});

t.test('boolean flags: --x, --x=<bool>, --no-x; nonsense is refused', async (t) => {
  const refused = (args: string[], re: RegExp) => {
    const r = run(['start', ...args]);
    t.equal(r.status, 2, args.join(' '));
    t.match(r.stderr, re);
  };
  refused(['--no-require-auth=1'], /--no-require-auth takes no value \(got "1"\): write --no-require-auth or --require-auth=1/);
  refused(['--no-require-auth=false'], /takes no value/);
  refused(['--require-auth=maybe'], /invalid value "maybe" for --require-auth \(flag\): expected true or false \(also 1\/0, yes\/no\)/);
  refused(['--require-auth', 'false'], /unexpected argument "false" \(--require-auth is a boolean: write --require-auth=false instead\)/);
  refused(['--no-port'], /--no-port: only boolean options have a --no- form/);
  refused(['-port=7000'], /unexpected argument "-port=7000" \(options start with two dashes: write --port=7000\)/);
  refused(['-p', '7000'], /unexpected argument "-p" \(options have long names only, e.g. --port; see --help\)/);
  // .env and compose files often capitalise: TRUE is as clear as true.
  for (const [value, on] of [['TRUE', true], ['True', true], ['YES', true], ['FALSE', false], ['No', false]] as const) {
    t.equal(loadConfig({ env: { RT_REQUIRE_AUTH: value } }).requireAuth, on, `RT_REQUIRE_AUTH=${value}`);
  }
});

t.test('--require-auth / --no-require-auth reach the server', async (t) => {
  const cases: [string[], number][] = [
    [['--require-auth'], 401],
    [['--require-auth=1'], 401],
    [['--no-require-auth'], 101],
    [['--require-auth=false'], 101],
    [['--require-auth', '--no-require-auth'], 101],
  ];
  // One server per case, one after another: five processes starting at once on a loaded 2-core CI
  // machine took longer than the start deadline.
  for (const [flags, status] of cases) {
    const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', ...flags]);
    const port = await listeningPort(p);
    const got = await TestClient.connect(`ws://127.0.0.1:${port}/ws`).then(
      (c) => (c.ws.close(), 101),
      (err: Error) => Number(/HTTP (\d+)/.exec(err.message)?.[1] ?? 0),
    );
    t.equal(got, status, `${flags.join(' ')}: ${status === 101 ? 'connects without a token' : 'refused without a token'}`);
    p.child.kill('SIGTERM');
    await p.exited;
  }
});

t.test('a misspelt flag or config key is named with what was meant; an unknown RT_* variable is not silently ignored', async (t) => {
  for (const [flag, meant] of [['--prot=1', '--port'], ['--max_payload=1mb', '--max-payload'], ['--redis-url=redis://x', '--redis'], ['--no-restart-shard', '--no-restart-shards']]) {
    const r = run(['start', flag]);
    t.equal(r.status, 2, flag);
    t.match(r.stderr, `unknown option ${flag.split('=')[0]} (did you mean ${meant}?); accepted options: --port`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'rt-cfg-'));
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ 'max-payload': '1mb' }));
  const file = run(['start', '--config', join(dir, 'c.json')]);
  t.equal(file.status, 2);
  t.match(file.stderr, 'unknown key "max-payload" in ' + join(dir, 'c.json') + ' (did you mean "maxPayload"?)');
  t.notMatch(file.stderr, /known keys: .*\bconfig\b/, 'the keys it lists do not include "config", which a file may not hold');

  // The environment is shared with other programs: a warning, not a refusal, and the server starts.
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--log-format=json'], { env: cleanEnv({ RT_MAX_PAYLAOD: '1mb', RT_REDIS: 'redis://10.0.0.5:6379' }) });
  await listeningPort(p);
  const warned = p.output().split('\n').filter((l) => l.includes('"config.unknown_env"')).map((l) => JSON.parse(l));
  t.match(warned, [
    { level: 'warn', variable: 'RT_MAX_PAYLAOD', msg: /names no rt-actors option and is ignored \(did you mean RT_MAX_PAYLOAD\?\)/ },
    { level: 'warn', variable: 'RT_REDIS', msg: /did you mean RT_REDIS_URL\?/ },
  ].sort((a, b) => (a.variable < b.variable ? -1 : 1)));
  t.equal(warned.length, 2, 'one warning each, none for the known variables');
  p.child.kill('SIGTERM');
  await p.exited;
});

t.test('an option that has no effect without another (--dashboard-token without --dashboard) is not accepted in silence', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rt-cfg-'));
  writeFileSync(join(dir, 'c.json'), JSON.stringify({ redisPrefix: 'laravel_database_' }));
  const args = ['start', '--port=0', '--host=127.0.0.1', '--workers=1', '--log-format=json', '--dashboard-token=dash-0123456789', `--config=${join(dir, 'c.json')}`, '--transports=ws,polling', '--sse-keepalive=5s'];
  const p = runCli(t, process.execPath, [bin, ...args], { env: cleanEnv({ RT_TLS_PASSPHRASE: 'x' }) });
  await listeningPort(p);
  const warned = p.output().split('\n').filter((l) => l.includes('"config.ignored"')).map((l) => JSON.parse(l));
  const byKey = Object.fromEntries(warned.map((w) => [w.key, w.msg]));
  t.match(byKey, {
    dashboardToken: '--dashboard-token has no effect without --dashboard: it is ignored',
    redisPrefix: 'redisPrefix (config file) has no effect without --redis or --redis-sentinels',
    tlsPassphrase: 'RT_TLS_PASSPHRASE has no effect without --tls-cert',
    sseKeepalive: '--sse-keepalive has no effect: --transports (ws,polling) leaves out sse; it is ignored',
  });
  t.equal(warned.length, 4, 'nothing else (defaults of such options are not warned about)');
  p.child.kill('SIGTERM');
  await p.exited;
  // With what it needs, no warning.
  const q = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--log-format=json', '--dashboard', '--dashboard-token=dash-0123456789']);
  await listeningPort(q);
  t.notMatch(q.output(), /config\.ignored/);
  q.child.kill('SIGTERM');
  await q.exited;
});

t.test('-h and help <command> show a command\'s help', async (t) => {
  for (const args of [['start', '-h'], ['help', 'start']]) {
    const r = run(args);
    t.equal(r.status, 0, args.join(' '));
    t.match(r.stdout, /^Usage: rt-actors start/);
  }
  for (const args of [['token', '-h'], ['help', 'token']]) t.match(run(args).stdout, /^Usage: rt-actors token/, args.join(' '));
  for (const args of [['health', '-h'], ['help', 'health']]) t.match(run(args).stdout, /^Usage: rt-actors health/, args.join(' '));
  const unknown = run(['help', 'stat']);
  t.equal(unknown.status, 2, 'help for a command that does not exist is a usage error');
  t.match(unknown.stderr, 'no help for "stat": commands are start, token, health');
});

t.test('token: a misspelt option is named with what was meant; an option without its value is refused', async (t) => {
  const typo = run(['token', '--sub', '42', '--secret', 's3cret', '--chanels', 'private-a']);
  t.equal(typo.status, 2);
  t.match(typo.stderr, 'unknown option --chanels (did you mean --channels?); accepted options: --sub');
  // `--channels` left empty would mint a token granting nothing, silently.
  for (const [args, flag] of [[['--sub', '42', '--secret', 's3cret', '--channels'], '--channels'], [['--sub', '--secret', 's3cret'], '--sub']] as const) {
    const r = run(['token', ...args]);
    t.equal(r.status, 2, args.join(' '));
    t.match(r.stderr, `option ${flag} needs a value`);
    t.equal(r.stdout, '', 'no token printed');
  }
  // A sub the server refuses would mint a token no connection can use.
  const reserved = run(['token', '--sub', 'ada @admin', '--secret', 's3cret']);
  t.equal(reserved.status, 2, 'a sub holding " @" is refused');
  t.match(reserved.stderr, 'a user id may not contain " @"');
  t.equal(reserved.stdout, '', 'no token printed');
});

t.test('--help documents endpoints, the --no- form, exit codes, examples and the docs', async (t) => {
  const help = run(['start', '--help']).stdout;
  for (const s of ['/ws', '/sse', '/socket.io/', '/app/<key>', '/apps/<id>/', '/api/openapi.json', '/dashboard', '/api/', '/health', '/metrics', '/client.js', '--no-restart-shards', '--no-require-auth', 'Exit codes', '  3  the port cannot be bound', 'Examples:', 'docs/configuration.md', 'docs/deployment.md', '--log-format=<text|json>']) {
    t.ok(help.includes(s), `start --help mentions ${s}`);
  }
  t.match(run(['--help']).stdout, /Exit codes:[\s\S]*2  invalid usage or configuration/);
  // A "config" key in a config file is refused: the help must not offer one.
  t.notMatch(help, 'config key "config"');
  t.match(help, /--config=<string>\n.*\n      env RT_CONFIG\n/);
});

t.test('a closed stdout or stderr does not kill the server (rt-actors start | head -2)', async (t) => {
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--log-level=debug']);
  const port = await listeningPort(p);
  // What `| head -2` does once it has its lines: close the reading end of both pipes.
  p.child.stdout!.destroy();
  p.child.stderr!.destroy();
  // Debug lines (connections) are written to the closed pipe now.
  for (let i = 0; i < 3; i++) {
    const c = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
    c.ws.close();
    await c.waitClose();
  }
  const health = await fetch(`http://127.0.0.1:${port}/health`);
  t.equal(health.status, 200, 'still serving after writes to the closed pipes');
  t.equal(p.child.exitCode, null, 'still running');
  p.child.kill('SIGTERM');
  t.same(await p.exited, { code: 0, signal: null }, 'and stops cleanly');
});

t.test('--help | head -1 exits quietly', async (t) => {
  const r = spawnSync('sh', ['-c', `"${process.execPath}" "${bin}" start --help | head -1`], { encoding: 'utf8' });
  t.match(r.stdout, /^Usage: rt-actors start/);
  t.notMatch(r.stderr, /EPIPE|Error/, 'no error printed');
});

t.test('rings that would not fit in memory are refused at start, naming --workers and --ring-size', async (t) => {
  const r = run(['start', '--workers=64', '--ring-size=1gb', '--port=0']);
  t.equal(r.status, 2);
  t.match(r.stderr, /64 shards with --ring-size=1073741824 need 4160\.0 GiB of rings .* lower --workers .* or --ring-size/);
});

t.test('Ctrl-C twice: the second SIGINT stops the process without waiting for the drain', async (t) => {
  // With an actors folder: the SIGKILL runs no exit handler, yet the compiled copies must not stay in TMPDIR.
  const actors = mkdtempSync(join(tmpdir(), 'rt-cli-actors-'));
  writeFileSync(join(actors, 'room.ts'), `import { defineActor } from 'rt-actors';\nexport default defineActor({ match: 'room-*' });\n`);
  const tmp = mkdtempSync(join(tmpdir(), 'rt-cli-tmpdir-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--shutdown-timeout=60', '--api-key=k', '--actors', actors], { env: cleanEnv({ TMPDIR: tmp }) });
  const port = await listeningPort(p);
  t.equal(readdirSync(tmp).filter((n) => n.startsWith('rt-actors-modules-')).length, 1, 'the compiled copies are in TMPDIR');
  // A request whose body never completes: the drain would wait the whole minute for it.
  const slow = connect(port, '127.0.0.1');
  t.teardown(() => slow.destroy());
  await new Promise((r) => slow.once('connect', r));
  slow.write('POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Length: 100\r\n\r\n{"channel":');
  p.child.kill('SIGINT');
  await p.waitFor(/SIGINT: shutting down/);
  p.child.kill('SIGINT');
  const exit = await p.exited;
  t.equal(exit.signal, 'SIGKILL', 'stopped at once (no abort, no wait for the drain)');
  t.match(p.output(), /SIGINT again: stopping now, without waiting for the drain/);
  t.notMatch(p.output(), /stopped in \d+ ms/, 'the drain did not finish');
  t.same(readdirSync(tmp), [], 'nothing left in TMPDIR');
});
