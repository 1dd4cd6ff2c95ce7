// --require-auth cannot hold for Pusher connections: the Pusher protocol brings no token at connect
// (its private-/presence- channels need the backend's signature instead). The server says so at start
// rather than letting an operator believe every connection is authenticated.
import t from 'tap';
import { ignoredOptions, loadConfig } from '../src/config/load.js';

const PUSHER = { pusherAppId: '1', pusherKey: 'k', pusherSecret: 'secret-0123' };
const JWT = 'a-jwt-secret-of-at-least-32-bytes-0123';

t.test('--require-auth with the Pusher protocol on is warned about; without it, not', async (t) => {
  const warned = ignoredOptions(loadConfig({ flags: { requireAuth: true, jwtSecret: JWT, ...PUSHER } }));
  t.match(warned, [{ key: 'requireAuth', message: /--require-auth does not apply to Pusher connections.*no token.*public channels/ }]);
  const apps = ignoredOptions(loadConfig({ env: { RT_REQUIRE_AUTH: 'true', RT_JWT_SECRET: JWT }, code: { pusherApps: [{ id: '1', key: 'k', secret: 'secret-0123' }] } }));
  t.match(apps, [{ key: 'requireAuth', message: /^RT_REQUIRE_AUTH does not apply to Pusher connections/ }], 'named as it was given, with pusherApps too');
  t.same(ignoredOptions(loadConfig({ flags: { requireAuth: true, jwtSecret: JWT } })), [], 'no Pusher: nothing to say');
  t.same(ignoredOptions(loadConfig({ flags: PUSHER })), [], 'no --require-auth: nothing to say');
});

t.test('--require-auth without a JWT secret, public key or JWKS URL is warned about: no token could be verified', async (t) => {
  t.match(ignoredOptions(loadConfig({ flags: { requireAuth: true } })), [
    { key: 'requireAuth', message: '--require-auth without --jwt-secret, --jwt-public-key or --jwks-url: no token can be verified, so every connection that needs one is refused (401)' },
  ]);
  t.match(ignoredOptions(loadConfig({ env: { RT_REQUIRE_AUTH: '1' } })), [{ key: 'requireAuth', message: /^RT_REQUIRE_AUTH without --jwt-secret/ }], 'named as it was given');
  for (const key of [{ jwtSecret: JWT }, { jwtPublicKey: '-----BEGIN PUBLIC KEY-----' }, { jwksUrl: 'https://idp.example/jwks.json' }]) {
    t.same(ignoredOptions(loadConfig({ flags: { requireAuth: true, ...key } })), [], `with ${Object.keys(key)[0]}: nothing to say`);
  }
  t.same(ignoredOptions(loadConfig({ flags: {} })), [], 'no --require-auth: nothing to say');
});
