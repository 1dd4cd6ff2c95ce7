#!/usr/bin/env node
// Runs the tap suite with the TAP reporter, passes its output through, and ends with the one line CI
// reads: "N passed, N failed". Leaf assertions are counted; a subtest's own summary line is not.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

const args = ['tap', '--reporter=tap', ...process.argv.slice(2)];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'] });
let passed = 0, failed = 0, skipped = 0;
let prev = '';
const rl = createInterface({ input: child.stdout });
rl.on('line', (line) => {
  process.stdout.write(line + '\n');
  const m = /^(\s*)(not ok|ok) \d+/.exec(line);
  if (m) {
    const indent = m[1].length;
    const plan = /^(\s*)1\.\.\d+/.exec(prev);
    const isSummary = plan && plan[1].length > indent;
    if (!isSummary) {
      if (/# (SKIP|TODO)/i.test(line)) skipped++;
      else if (m[2] === 'ok') passed++;
      else failed++;
    } else if (m[2] === 'not ok' && /# (timeout|exit|signal)/i.test(line)) {
      // A file that timed out or died: its summary is the only trace of the failure.
      failed++;
    }
  }
  if (line.trim() !== '' && !/^\s*#/.test(line)) prev = line;
});
child.on('close', (code) => {
  rl.close();
  setImmediate(() => {
    if (code !== 0 && failed === 0) failed = 1; // the runner itself failed
    console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
    process.exit(code ?? 1);
  });
});
