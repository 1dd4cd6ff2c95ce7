// Starts the real server (real worker threads, uWS on a loopback port) for a test.
import { createServer, type RtServer, type ServerOptions } from 'rt-actors';

export const API_KEY = 'test-api-key';
export const JWT_SECRET = 'test-jwt-secret-0123456789';

export async function startServer(t: { teardown(fn: () => unknown): void }, opts: ServerOptions = {}): Promise<RtServer & { url: string; http: string }> {
  // The shards run without tap's module loaders (ts-node, mock, processinfo): they load only dist/.
  const server = await createServer({ port: 0, host: '127.0.0.1', workers: 2, apiKey: API_KEY, jwtSecret: JWT_SECRET, logLevel: 'error', env: {}, threadExecArgv: [], ...opts });
  t.teardown(() => server.close());
  return Object.assign(server, { url: `ws://127.0.0.1:${server.port}`, http: `http://127.0.0.1:${server.port}` });
}

export async function api(base: string, path: string, body?: unknown, init: { key?: string | null; method?: string; raw?: string } = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const key = init.key === undefined ? API_KEY : init.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const res = await fetch(base + path, {
    method: init.method ?? (body === undefined && init.raw === undefined ? 'GET' : 'POST'),
    headers,
    body: init.raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON: keep the text so the assertion shows it */
  }
  return { status: res.status, body: parsed };
}
