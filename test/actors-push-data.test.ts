// ctx.push sends what its data was when pushed, as its JSON, to a subscriber on any thread. A push to
// a connection on the actor's own thread went as a live object, encoded after the hook had returned (so
// a change made after the push was sent), and one to another thread went through msgpack, which keeps
// a Map's entries and renames a `__proto__` key: the same push reached two subscribers differently.
import t, { type Test } from 'tap';
import { fileURLToPath } from 'node:url';
import { startServer } from './helpers/server.js';
import { channelOwnedBy, clientOnShard } from './helpers/faults.js';
import { dropNamespace, machineRedis } from './helpers/redis.js';

const ACTORS = fileURLToPath(new URL('./fixtures/push-actors', import.meta.url));

async function pushedAlike(t: Test, s: { url: string }): Promise<void> {
  const channel = channelOwnedBy('pushed-', 0, 2);
  const texts: string[][] = [];
  for (const shard of [0, 1]) {
    const c = await clientOnShard(`${s.url}/ws`, shard, t);
    const seen: string[] = [];
    texts.push(seen);
    c.ws.on('message', (m) => seen.push(m.toString()));
    t.equal((await c.request({ op: 'subscribe', channel })).ok, true);
    // A publish whose data has a `__proto__` key, echoed back in the push.
    c.ws.send(`{"op":"publish","ref":99,"channel":${JSON.stringify(channel)},"event":"go","data":{"__proto__":{"x":1}}}`);
    await c.next((f) => f.op === 'message' && f.event === 'pushed');
  }
  const pushed = texts.map((seen) => JSON.parse(seen.find((m) => m.includes('"event":"pushed"'))!).data);
  t.same(pushed[0], { n: 1, map: {}, bytes: { 0: 1, 1: 2 }, echo: JSON.parse('{"__proto__":{"x":1}}') }, 'owner thread: the data as it was pushed, as JSON writes it');
  t.same(pushed[1], { n: 2, map: {}, bytes: { 0: 1, 1: 2 }, echo: JSON.parse('{"__proto__":{"x":1}}') }, 'other thread: the same');
  t.ok(texts[1]!.some((m) => m.includes('"echo":{"__proto__":{"x":1}}')), 'the __proto__ key kept');
}

t.test('a push reaches a subscriber on the owner thread and on another thread alike, as its JSON when pushed', async (t) => {
  await pushedAlike(t, await startServer(t, { workers: 2, actors: ACTORS, threadExecArgv: [] }));
});

// With --redis the actor is placed (one activation cluster-wide) and its pushes go out after its turn,
// through the node relaying each subscriber.
t.test('with --redis too (a placed actor)', async (t) => {
  const redis = await machineRedis(t);
  const ns = `rt-push-data-${process.pid}-${Date.now()}`;
  t.teardown(() => dropNamespace(redis.port, ns));
  await pushedAlike(t, await startServer(t, { workers: 2, actors: ACTORS, threadExecArgv: [], redis: redis.url, redisNamespace: ns }));
});
