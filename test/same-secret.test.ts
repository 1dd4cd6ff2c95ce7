import t from 'tap';
import { sameSecret } from '../src/security/same-secret.js';

t.test('sameSecret is true only for the secret itself', async (t) => {
  const key = 'k3y-0123456789abcdef';
  t.equal(sameSecret(key, key), true);
  t.equal(sameSecret(key.slice(0, -1) + 'g', key), false, 'last character differs');
  t.equal(sameSecret('x' + key.slice(1), key), false, 'first character differs');
  t.equal(sameSecret(key.slice(0, -1), key), false, 'a prefix');
  t.equal(sameSecret(key + key, key), false, 'the secret twice (same characters modulo its length)');
  t.equal(sameSecret(key + 'x', key), false, 'longer');
  t.equal(sameSecret('', key), false, 'empty');
  t.equal(sameSecret(key, ''), false, 'no secret configured matches nothing, not even the empty string');
  t.equal(sameSecret('', ''), false);
  t.equal(sameSecret('clé-🔑', 'clé-🔑'), true, 'non-ASCII');
  t.equal(sameSecret('clé-🔑', 'cle-🔑'), false);
  // Characters whose codes differ only above the low byte must still count.
  t.equal(sameSecret('\u0141', 'A'), false);
});
