// --require-auth cannot hold for Pusher connections: the Pusher protocol brings no token at connect
// (its private-/presence- channels need the backend's signature instead). The server says so at start
// rather than letting an operator believe every connection is authenticated.
import t from 'tap';
import { ignoredOptions, loadConfig } from '../src/config/load.js';

const PUSHER = { pusherAppId: '1', pusherKey: 'k', pusherSecret: 'secret-0123' };

t.test('--require-auth with the Pusher protocol on is warned about; without it, not', async (t) => {
  const warned = ignoredOptions(loadConfig({ flags: { requireAuth: true, ...PUSHER } }));
  t.match(warned, [{ key: 'requireAuth', message: /--require-auth does not apply to Pusher connections.*no token.*public channels/ }]);
  const apps = ignoredOptions(loadConfig({ env: { RT_REQUIRE_AUTH: 'true' }, code: { pusherApps: [{ id: '1', key: 'k', secret: 'secret-0123' }] } }));
  t.match(apps, [{ key: 'requireAuth', message: /^RT_REQUIRE_AUTH does not apply to Pusher connections/ }], 'named as it was given, with pusherApps too');
  t.same(ignoredOptions(loadConfig({ flags: { requireAuth: true } })), [], 'no Pusher: nothing to say');
  t.same(ignoredOptions(loadConfig({ flags: PUSHER })), [], 'no --require-auth: nothing to say');
});
