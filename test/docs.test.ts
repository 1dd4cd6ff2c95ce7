import t from 'tap';
import { readFileSync, existsSync, readdirSync } from 'node:fs';
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

const read = (p: string) => readFileSync(new URL('../' + p, import.meta.url), 'utf8');
/** Every .ts file under src, concatenated: the docs' codes must be found in what the server runs. */
function sourceText(): string {
  const root = new URL('../src/', import.meta.url);
  return (readdirSync(root, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .map((f) => readFileSync(new URL(f, root), 'utf8'))
    .join('\n');
}
/** The rows of the markdown table under `heading`, as arrays of cells. */
function tableRows(text: string, heading: string): string[][] {
  const doc = '\n' + text;
  const start = doc.indexOf(`\n${heading}\n`);
  if (start < 0) return [];
  const rows: string[][] = [];
  for (const line of doc.slice(start + heading.length + 2).split('\n')) {
    if (line.startsWith('#')) break;
    if (!line.startsWith('|') || /^\|[-| ]+\|$/.test(line)) continue;
    rows.push(line.split('|').slice(1, -1).map((c) => c.trim()));
  }
  return rows.slice(1);
}

t.test('docs/protocol.md: its error and close code tables are the server\'s', async (t) => {
  const doc = read('docs/protocol.md');
  const src = sourceText();
  const errorRows = tableRows(doc, '## Error codes');
  const documented = errorRows.flatMap((r) => [...r[0]!.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!));
  t.ok(documented.length >= 30, 'the error code table is found');
  for (const code of documented) t.match(src, new RegExp(`['"]${code}['"]`), `error code ${code} is used in src`);

  const closeRows = tableRows(doc, '## Close codes');
  t.ok(closeRows.length >= 10, 'the close code table is found');
  for (const [code] of closeRows) {
    if (code === '1000') continue; // the normal close: what ws.end() sends without a code
    t.match(src, new RegExp(`\\b${code}\\b`), `close code ${code} is used in src`);
  }

  // The reverse: a code the server answers with must be findable in the docs. These stay inside the
  // server (or are said in other words where they can surface).
  const internal = new Set(['refused', 'unsupported', 'bad_task']);
  const docs = readdirSync(new URL('../docs/', import.meta.url)).filter((f) => f.endsWith('.md')).map((f) => read('docs/' + f)).join('\n');
  const thrown = new Set([...src.matchAll(/new RtError\(\s*'([a-z_]+)'/g)].map((m) => m[1]!));
  for (const code of thrown) {
    if (internal.has(code)) continue;
    // A one-word code is an ordinary word too: it counts only in a code span.
    const named = code.includes('_') ? new RegExp(`(?<![a-z_])${code}(?![a-z_])`).test(docs) : docs.includes('`' + code + '`');
    t.ok(named, `error code ${code} (thrown in src) is named in docs/`);
  }
});

t.test('docs/http-api.md: its endpoint table is /api/openapi.json\'s', async (t) => {
  const { openApiDocument } = await import('../dist/src/transports/openapi.js');
  const paths = (openApiDocument() as { paths: Record<string, Record<string, unknown>> }).paths;
  const described = new Set(Object.entries(paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)));
  const rows = tableRows(read('docs/http-api.md'), '# HTTP API reference').filter((r) => /`\/(api|health|metrics)/.test(r[1] ?? ''));
  t.ok(rows.length >= 10, 'the endpoint table is found');
  const listed = new Set<string>();
  for (const [methods, path] of rows) {
    const p = /`([^`]+)`/.exec(path!)![1]!.replace(/:(\w+)/g, '{$1}');
    for (const m of methods!.matchAll(/`([A-Z]+)`/g)) listed.add(`${m[1]} ${p}`);
  }
  for (const e of listed) t.ok(described.has(e), `${e} (docs/http-api.md) is in the OpenAPI document`);
  for (const e of described) t.ok(listed.has(e), `${e} (OpenAPI document) is in docs/http-api.md's table`);
});

t.test("docs/pusher.md: each migration's start command lets the Laravel site's browsers in", async (t) => {
  // Echo in a browser sends the page's Origin; one the server was not given is closed with 4009,
  // which pusher-js never retries. Reverb, Soketi and hosted Pusher let every origin in by default.
  const doc = read('docs/pusher.md');
  const section = doc.slice(doc.indexOf('\n## Migrating'), doc.indexOf('\n## ', doc.indexOf('\n## Migrating') + 1));
  const starts = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/\\\n\s*/g, '')).filter((c) => c.includes('rt-actors start'));
  t.ok(starts.length >= 3, 'a start command for Reverb, Soketi and Pusher');
  for (const c of starts) t.match(c, /--allowed-origins=\S+/, `names the site's origin: ${c.trim().slice(0, 60)}…`);
  t.match(section, /4009/, 'says what a refused origin looks like');
});
