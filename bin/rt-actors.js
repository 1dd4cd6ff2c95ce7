#!/usr/bin/env node
// Runs in this process (no child): signals sent to it reach the server directly. Exit codes: see
// `rt-actors --help` and docs/deployment.md#exit-codes.
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    // One line, stack folded, so a log collector keeps it together.
    process.stderr.write(`rt-actors: unexpected error: ${String(err?.stack ?? err).replace(/\r?\n\s*/g, ' | ')}\n`);
    process.exit(1);
  },
);
