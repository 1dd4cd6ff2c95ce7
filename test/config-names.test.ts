// A start refused for a value checked after loading (a folder, a key file, a Redis URL, a pattern list)
// names the option as the user set it — the RT_* variable, the config file key — as the loader's own
// errors do: these said `--actors`, `--redis`, or named no option at all, for a value set in the environment.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanEnv, runCli } from './helpers/cli.js';

const bin = fileURLToPath(new URL('../bin/rt-actors.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'rt-config-names-'));
const configFile = join(dir, 'rt.json');
writeFileSync(configFile, JSON.stringify({ redis: 'redis//127.0.0.1:6379' }));

const cases: Array<[string, Record<string, string>, string[], RegExp]> = [
  ['RT_ACTORS', { RT_ACTORS: join(dir, 'missing') }, [], /rt-actors: RT_ACTORS \S+missing: cannot read folder/],
  ['RT_JWKS_URL', { RT_JWKS_URL: 'ftp://idp.example/keys' }, [], /rt-actors: RT_JWKS_URL: JWKS URL must be http\(s\)/],
  ['RT_JWT_PUBLIC_KEY', { RT_JWT_PUBLIC_KEY: join(dir, 'no-key.pem') }, [], /rt-actors: cannot read RT_JWT_PUBLIC_KEY file /],
  ['RT_TLS_CERT alone', { RT_TLS_CERT: join(dir, 'cert.pem') }, [], /rt-actors: TLS needs both RT_TLS_CERT and --tls-key: RT_TLS_CERT is set alone/],
  ['RT_REDIS_URL', { RT_REDIS_URL: 'redis://127.0.0.1:6379/x' }, [], /rt-actors: RT_REDIS_URL: database "x" must be a number/],
  ['RT_HISTORY_PATTERNS', { RT_HISTORY_PATTERNS: 'chat-*=lots' }, ['--redis', 'redis://127.0.0.1:6379'], /rt-actors: RT_HISTORY_PATTERNS: history pattern "chat-\*=lots" must look like/],
  ['a mistyped scheme in the config file', {}, ['--config', configFile], /rt-actors: redis \(config file\): "redis\/\/127\.0\.0\.1:6379" is not a Redis URL: write the scheme as redis:\/\//],
];

for (const [name, env, args, expected] of cases) {
  t.test(name, async (t) => {
    const p = runCli(t, process.execPath, [bin, 'start', '--port', '0', ...args], { env: cleanEnv(env) });
    const { code } = await p.exited;
    t.equal(code, 2, 'a configuration error (exit 2)');
    t.match(p.output(), expected, 'the option is named as it was set');
  });
}
