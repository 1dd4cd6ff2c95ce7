// `rt-actors token` mints with the configuration `start` reads: a token minted where the server's
// environment or config file sets --jwt-audience / --jwt-issuer must carry them, or that server refuses it.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';
import { cleanEnv } from './helpers/cli.js';

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
const AUDIENCE = ['rt-actors', 'other-api'];
const ISSUER = ['https://issuer.example/', 'https://old-issuer.example/'];

function mint(args: string[], env: Record<string, string>): { token: string; claims: Record<string, unknown>; stderr: string } {
  // Nothing of the environment running the tests: an empty variable is an unset one.
  const none = { RT_JWT_SECRET: '', RT_JWT_AUDIENCE: '', RT_JWT_ISSUER: '', RT_CONFIG: '' };
  const r = spawnSync(process.execPath, [bin, 'token', '--sub', '42', ...args], { encoding: 'utf8', env: cleanEnv({ ...none, ...env }), timeout: 60_000 });
  if (r.status !== 0) throw new Error(`token exited ${r.status}: ${r.stderr}`);
  const token = r.stdout.trim().split('\n').pop()!;
  return { token, claims: JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()), stderr: r.stderr };
}

t.test('a token minted with the server configuration carries its audience and issuer, and that server accepts it', async (t) => {
  const s = await startServer(t, { workers: 1, jwtAudience: AUDIENCE, jwtIssuer: ISSUER, requireAuth: true });
  const dir = mkdtempSync(join(tmpdir(), 'rt-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'rt.json'), JSON.stringify({ jwtSecret: JWT_SECRET, jwtAudience: AUDIENCE, jwtIssuer: ISSUER }));
  const ways: [string, string[], Record<string, string>][] = [
    ['RT_* environment', [], { RT_JWT_SECRET: JWT_SECRET, RT_JWT_AUDIENCE: AUDIENCE.join(','), RT_JWT_ISSUER: ISSUER.join(',') }],
    ['--config file', ['--config', join(dir, 'rt.json')], {}],
    ['--secret, audience and issuer from the environment', ['--secret', JWT_SECRET], { RT_JWT_AUDIENCE: AUDIENCE.join(','), RT_JWT_ISSUER: ISSUER.join(',') }],
  ];
  for (const [how, args, env] of ways) {
    const { token, claims } = mint(args, env);
    t.equal(claims.aud, AUDIENCE[0], `${how}: aud is the first configured audience`);
    t.equal(claims.iss, ISSUER[0], `${how}: iss is the first configured issuer`);
    const c = await TestClient.connect(`${s.url}/ws?token=${token}`);
    t.equal(c.welcome.user, '42', `${how}: the server that configuration describes accepts the token`);
    c.close();
  }
});

t.test('without a configured audience or issuer the token has neither claim', async (t) => {
  const { claims } = mint(['--secret', JWT_SECRET], {});
  t.notOk('aud' in claims, 'no aud');
  t.notOk('iss' in claims, 'no iss');
});
