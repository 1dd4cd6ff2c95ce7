import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
// @ts-expect-error plain JS script without types
import { render } from '../scripts/gen-config-doc.mjs';

t.test('docs/configuration.md matches the schema', async (t) => {
  const current = readFileSync(new URL('../docs/configuration.md', import.meta.url), 'utf8');
  t.equal(current, render(), 'run: npm run build && node scripts/gen-config-doc.mjs');
});

t.test('the docs the README links to exist', async (t) => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const links = [...readme.matchAll(/\]\((docs\/[^)#]+)/g)].map((m) => m[1]!);
  t.ok(links.length >= 5, 'README links the guides');
  for (const l of links) t.ok(existsSync(new URL('../' + l, import.meta.url)), `${l} exists`);
});
