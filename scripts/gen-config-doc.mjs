#!/usr/bin/env node
// Regenerates docs/configuration.md from the one configuration schema (src/config/schema.ts, built).
// Run after adding an option: `npm run build && node scripts/gen-config-doc.mjs`. test/docs.test.ts
// fails when the file is out of date.
import { writeFileSync } from 'node:fs';
import { OPTIONS } from '../dist/src/config/schema.js';

const flag = (k) => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
const env = (k) => OPTIONS.find((o) => o.key === k)?.env ?? 'RT_' + k.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
const type = (o) => (o.type === 'enum' ? o.choices.map((c) => '`' + c + '`').join(' \\| ') : o.type === 'workers' ? '`auto` \\| int' : o.type);
const def = (o) => (o.default === '' || (Array.isArray(o.default) && o.default.length === 0) ? '—' : '`' + String(o.default) + '`');
// The bounds validation enforces, in the option's own unit (seconds, bytes).
const range = (o) => (o.min === undefined && o.max === undefined ? '' : o.max === undefined ? `≥ ${o.min}` : o.min === undefined ? `≤ ${o.max}` : `${o.min}–${o.max}`);

export function render() {
  const rows = OPTIONS.filter((o) => !o.hidden).map((o) => `| \`--${flag(o.key)}\` | \`${env(o.key)}\` | ${o.key === 'config' ? '— (files do not nest)' : `\`${o.key}\``} | ${type(o)} | ${def(o)} | ${range(o)} | ${o.doc.replace(/\|/g, '\\|')} |`);
  return `# Configuration

One schema, four sources. For every option, the first of these that sets it wins:

1. a command-line flag: \`rt-actors start --port=7000\` (or \`--port 7000\`)
2. an environment variable: \`RT_PORT=7000\`
3. the JSON config file given with \`--config\` / \`RT_CONFIG\`: \`{ "port": 7000 }\`
4. the default

\`createServer(options)\` takes the same keys; options passed in code rank with flags. Two more options
exist only in code, \`env\` and \`threadExecArgv\`: see [actors.md](actors.md#embedding-and-the-memory-transport).

Booleans: \`--restart-shards\` or \`--restart-shards=true\` turns one on, \`--no-restart-shards\` or
\`--restart-shards=false\` turns it off (\`true\`/\`false\`, \`1\`/\`0\`, \`yes\`/\`no\`, in any case, in flags, variables and
files alike). \`--no-…\` takes no value: \`--no-require-auth=1\` is refused rather than guessed, and only
booleans have a \`--no-\` form. A config file cannot name another one: a \`"config"\` key in it is refused.

Every value is validated at start, in every source that sets it: a bad value in the config file stops
the start even when a flag or variable overrides that key. A bad value, an unknown flag or an unknown
config-file key stops the server with exit code 2 and a message naming the key as it was written (the
flag, the variable, or the file key with the file's path) and what it accepts, e.g.
\`rt-actors: invalid value "lots" for --workers (flag): expected 'auto' or an integer from 1 to 256\`. Other exit
codes (the port in use: 3) are in [deployment.md](deployment.md#exit-codes). A misspelt flag or key is
named with the one probably meant (\`unknown option --prot (did you mean --port?)\`). An \`RT_*\` variable
that names no option cannot stop the start (the environment is shared with other programs) but is not
ignored silently either: each one is logged as a warning (\`config.unknown_env\`), with the variable
probably meant (\`RT_REDIS\`: \`RT_REDIS_URL\`). Likewise an option set where it has no effect, because
what it depends on is off (\`--dashboard-token\` without \`--dashboard\`, \`--redis-prefix\` without
\`--redis\`, \`--tls-passphrase\` without \`--tls-cert\`, \`--poll-timeout\` when \`--transports\` leaves out
polling, …), is logged as a warning (\`config.ignored\`).

Paths (\`--config\`, \`--actors\`, \`--tls-cert\`, \`--tls-key\`, \`--jwt-public-key\`) are relative to the
working directory the server starts in, also inside a config file (not to the file's folder): under a
process manager, give absolute paths or set its working directory (systemd \`WorkingDirectory=\`).

Durations take seconds or a unit (\`500ms\`, \`90s\`, \`5m\`, \`1h\`, \`1d\`); sizes take bytes or a unit
(\`64kb\`, \`1mb\`, \`1gb\`). The *accepted* column gives the bounds a value is checked against, in seconds for
durations and bytes for sizes.

| flag | environment | config key | type | default | accepted | meaning |
|---|---|---|---|---|---|---|
${rows.join('\n')}

This table is generated from \`src/config/schema.ts\` by \`scripts/gen-config-doc.mjs\`.
`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(new URL('../docs/configuration.md', import.meta.url), render());
  console.log('docs/configuration.md written');
}
