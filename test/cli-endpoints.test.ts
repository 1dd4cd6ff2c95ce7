// The start log's "endpoints:" line names what this configuration serves. It always offered
// ws://…/ws (a 404 with --transports=sse,polling) and never the SSE, polling, Socket.IO or Pusher
// endpoints a user had turned on.
import t from 'tap';
import WebSocket from 'ws';
import { fileURLToPath } from 'node:url';
import { cleanEnv, listeningPort, runCli } from './helpers/cli.js';

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));

t.test('the endpoints line lists the transports and gateways that are on, and only those', async (t) => {
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=127.0.0.1', '--workers=1', '--transports=sse,polling', '--pusher-app-id=app1', '--pusher-key=key1', '--pusher-secret=secret-123', '--dashboard'], { env: cleanEnv() });
  const port = await listeningPort(p);
  const line = (await p.waitFor(/endpoints: ([^\n]*)/))[1]!;
  const urls = line.split(', ');
  const base = `127.0.0.1:${port}`;
  t.same(urls, [
    `http://${base}/sse`,
    `http://${base}/poll`,
    `http://${base}/socket.io/`,
    `ws://${base}/app/key1`,
    `http://${base}/apps/app1/`,
    `http://${base}/api/publish`,
    `http://${base}/health`,
    `http://${base}/metrics`,
    `http://${base}/dashboard`,
  ]);
  // What the line offers is served: the Pusher socket opens, SSE streams.
  const ws = new WebSocket(`ws://${base}/app/key1?protocol=7`);
  const first = await new Promise<string>((resolve, reject) => (ws.once('message', (m) => resolve(String(m))), ws.once('error', reject)));
  ws.close();
  t.match(first, /pusher:connection_established/);
  const ac = new AbortController();
  const sse = await fetch(`http://${base}/sse?channels=news`, { signal: ac.signal });
  t.equal(sse.status, 200);
  ac.abort();
});

t.test('an IPv6 --host is written in brackets in the start line and the endpoints; a wildcard host as localhost', async (t) => {
  const p = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=::1', '--workers=1'], { env: cleanEnv() });
  const port = await listeningPort(p);
  t.match(p.output(), `listening on [::1]:${port} with 1 shard`);
  const urls = (await p.waitFor(/endpoints: ([^\n]*)/))[1]!.split(', ');
  t.equal(urls[0], `ws://[::1]:${port}/ws`, 'not ws://::1:port/ws, which is no URL');
  const health = urls.find((u) => u.endsWith('/health'))!;
  t.equal((await fetch(health)).status, 200, 'the URL the line offers is served');

  const any = runCli(t, process.execPath, [bin, 'start', '--port=0', '--host=::', '--workers=1'], { env: cleanEnv() });
  const anyPort = await listeningPort(any);
  t.match(any.output(), `listening on [::]:${anyPort} with 1 shard`);
  const anyUrls = (await any.waitFor(/endpoints: ([^\n]*)/))[1]!.split(', ');
  t.equal(anyUrls[0], `ws://localhost:${anyPort}/ws`, 'a client cannot connect to ::: localhost is offered');
});
