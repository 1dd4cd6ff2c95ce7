// Keeps tap's @tapjs/processinfo out of the server's threads and of the processes a test starts.
//
// tap hands it to every test process through NODE_OPTIONS, and Node applies NODE_OPTIONS to each new
// Worker as well, even one started with `execArgv: []`: every shard then ran processinfo's
// asynchronous loader hooks (module.register). The suite's rare link failures of a shard ("The
// requested module './ring.js' does not provide an export named 'Doorbell'", then 'Hub',
// 'clientAddress'; 3 in about 10 CI runs, never reproduced alone) all came from shards running such
// hooks; Node's own notes on nodejs/node#60380 (Node 25) name races of asynchronous hooks that it
// fixes. Coverage is off (.taprc), so nothing reads what processinfo would record there.
const options = process.env.NODE_OPTIONS;
if (options !== undefined) {
  const rest = options
    .split(/\s+(?=(?:[^"]*"[^"]*")*[^"]*$)/)
    .filter((o) => o !== '' && !o.includes('@tapjs/processinfo'))
    .join(' ');
  if (rest === '') delete process.env.NODE_OPTIONS;
  else process.env.NODE_OPTIONS = rest;
}

export {};
