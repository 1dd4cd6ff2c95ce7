/**
 * `npm run bench [-- --quick] [-- --only=name,...]`: runs every benchmark and prints one JSON line per
 * figure. Each module measures its baseline in the same run. Figures go into docs/benchmarks.md.
 */
const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',');

const suites: Array<[string, string, string]> = [
  ['ring', './ring.js', 'benchRing'],
  ['encode-once', './encode-once.js', 'benchEncodeOnce'],
  ['hot-frames', './hot-frames.js', 'benchHotFrames'],
  ['token-verify', './token-verify.js', 'benchTokenVerify'],
  ['fanout', './fanout.js', 'benchFanout'],
  ['http-publish', './http-publish.js', 'benchHttpPublish'],
  ['memory', './memory.js', 'benchMemory'],
  ['socketio', './socketio.js', 'benchSocketIo'],
  ['pusher', './pusher.js', 'benchPusher'],
  ['transports', './transports.js', 'benchTransports'],
  ['bridge', './bridge.js', 'benchBridge'],
  ['actors', './actors.js', 'benchActors'],
];

const started = Date.now();
for (const [name, file, fn] of suites) {
  if (only && !only.includes(name)) continue;
  let mod: Record<string, (o: { quick: boolean }) => Promise<Record<string, unknown>[]>>;
  try {
    mod = await import(file);
  } catch {
    continue; // suite not built in this checkout
  }
  const t0 = Date.now();
  try {
    for (const row of await mod[fn]!({ quick })) console.log(JSON.stringify(row));
  } catch (err) {
    console.log(JSON.stringify({ bench: name, error: (err as Error).message }));
  }
  console.error(`[bench] ${name} took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
console.error(`[bench] total ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(0);
