// The deployment files (Dockerfile, deploy/rt-actors.service, deploy/nginx.conf, docs/deployment.md)
// agree with the production install test/install.test.ts runs, with the exit codes of the CLI, and with
// the endpoints a real server answers. No Docker engine runs here: the files are checked against the
// repository and a live server instead (test/nginx.test.ts runs nginx with the example).
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startServer } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { APP, RawPusher } from './helpers/pusher.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const read = (f: string) => readFileSync(root + f, 'utf8');
const INSTALL = 'npm install --omit=dev';

t.test('Dockerfile: the tested production install, from files that exist, node as PID 1', async (t) => {
  const docker = read('Dockerfile');
  t.ok(docker.includes(`RUN ${INSTALL}`), 'runs the production install');
  t.ok(read('test/install.test.ts').includes(`['install', '--omit=dev']`), 'the same install the install test runs');
  t.ok(read('docs/deployment.md').includes(INSTALL), 'the same install the docs describe');
  const copied: string[] = [];
  for (const m of docker.matchAll(/^COPY\s+(.+)\s+(\S+)$/gm)) copied.push(...m[1]!.trim().split(/\s+/));
  t.ok(copied.length > 0);
  for (const f of copied) t.ok(existsSync(root + f), `COPY ${f}: exists`);
  // Everything the build reads is copied: the runtime TypeScript project and what `prepare` runs.
  const tsRuntime = JSON.parse(read('tsconfig.runtime.json'));
  const roots = (tsRuntime.include as string[]).map((g) => g.split('/')[0]!);
  const pkg = JSON.parse(read('package.json'));
  const prepareScript = /node (\S+)/.exec(pkg.scripts.prepare)![1]!;
  const needed = [...roots, tsRuntime.extends.replace(/^\.\//, ''), 'tsconfig.runtime.json', 'package.json', 'package-lock.json', prepareScript.split('/')[0]!, pkg.bin['rt-actors'].split('/')[0]!];
  for (const n of needed) t.ok(copied.includes(n), `the image gets ${n}`);
  t.match(read('scripts/build.mjs'), /bundle-client\.mjs/, 'the build script bundles from scripts/, which is copied');
  t.match(docker, /^FROM node:(\d+)/m);
  t.ok(Number(/^FROM node:(\d+)/m.exec(docker)![1]) >= Number(/\d+/.exec(pkg.engines.node)![0]), 'the image has the Node version package.json asks for');
  t.match(docker, /^ENTRYPOINT \["node", "bin\/rt-actors\.js"\]$/m, 'node runs the server directly');
  t.notMatch(docker, /npx|npm (start|exec|run)/, 'no npm between the signal and the server');
  t.match(docker, /^HEALTHCHECK [^\n]*\\\n\s+CMD \["node", "bin\/rt-actors\.js", "health"\]$/m, 'the health check is `rt-actors health` (test/cli-health.test.ts), which follows RT_PORT, RT_HOST and TLS');
  t.match(read('.dockerignore'), /^node_modules$/m, 'a local node_modules is not copied into the image');
  t.match(read('docs/deployment.md'), /docker build -t rt-actors \.\ndocker run [^\n]*\\\n(?:[^\n]*\\\n)*\s+rt-actors start/, 'docs/deployment.md has the docker run line');
});

t.test('systemd unit: node directly, stop timeout above the drain, no restart on exit codes 2 and 3', async (t) => {
  const unit = read('deploy/rt-actors.service');
  const exec = /^ExecStart=(.+)$/m.exec(unit)![1]!;
  t.notMatch(exec, /npx|npm/, 'does not depend on npx');
  t.match(exec, /^\/usr\/bin\/node \S+\/bin\/rt-actors\.js start /);
  const { OPTIONS } = await import('rt-actors');
  const drain = Number(OPTIONS.find((o) => o.key === 'shutdownTimeout')!.default);
  t.ok(Number(/^TimeoutStopSec=(\d+)/m.exec(unit)![1]) > drain, `TimeoutStopSec is more than --shutdown-timeout (${drain} s)`);
  const { EXIT } = await import('../dist/src/cli/main.js');
  t.same(/^RestartPreventExitStatus=(.+)$/m.exec(unit)![1]!.split(' ').map(Number), [EXIT.CONFIG, EXIT.LISTEN], 'the exit codes that do not fix themselves');
  t.match(unit, /^KillSignal=SIGTERM$/m);
});

t.test('nginx example: every location it proxies is served by rt-actors', async (t) => {
  const conf = read('deploy/nginx.conf');
  const socketio = /location \/socket\.io\/ \{([^}]*)\}/.exec(conf);
  t.ok(socketio, 'has the /socket.io/ location Laravel Echo needs');
  t.match(socketio![1], /proxy_set_header Upgrade \$http_upgrade;/);
  t.match(socketio![1], /proxy_http_version 1\.1;/);
  t.match(conf, /location = \/health \{/);
  t.match(conf, /location = \/metrics \{[^}]*deny all;/, '/metrics is not public');
  const s = await startServer(t, { workers: 1, dashboard: true, pusherApps: [APP] });
  const ws = await TestClient.connect(s.url + '/ws');
  t.ok(ws.welcome, '/ws: rt-actors accepts a WebSocket');
  ws.ws.close();
  const pusher = await RawPusher.open(t, `${s.url}/app/${APP.key}?protocol=7`);
  t.match(await pusher.next((f) => f.event === 'pusher:connection_established'), { event: 'pusher:connection_established' }, '/app/: rt-actors accepts a Pusher WebSocket');
  const probes: Record<string, string> = {
    '/socket.io/': '/socket.io/?EIO=4&transport=polling',
    '/apps/': `/apps/${APP.id}/channels`,
    '/dashboard': '/dashboard',
    '/sse': '/sse?channels=nginx-probe',
    '/poll': '/poll',
    '/api/': '/api/channels',
    '/client.js': '/client.js',
    '/health': '/health',
    '/metrics': '/metrics',
  };
  const locations = [...conf.matchAll(/location (?:= )?(\S+) \{/g)].map((m) => m[1]!);
  t.same(locations.sort(), ['/ws', '/app/', ...Object.keys(probes)].sort(), 'the locations of the example');
  for (const [loc, path] of Object.entries(probes)) {
    const ctl = new AbortController();
    const res = await fetch(s.http + path, { signal: ctl.signal, headers: { authorization: 'Bearer test-api-key' } });
    ctl.abort(); // an SSE stream stays open
    t.not(res.status, 404, `${loc}: rt-actors serves ${path} (${res.status})`);
  }
});
