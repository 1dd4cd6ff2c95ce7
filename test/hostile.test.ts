import t from 'tap';
import { pack } from 'msgpackr';
import { startServer, api } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

t.test('hostile input on /ws gets errors or a close with a reason, never a shard crash', async (t) => {
  const s = await startServer(t, { maxPayload: 16 * 1024, maxChannelsPerConnection: 20 });
  const c = await TestClient.connect(s.url + '/ws');
  const expectError = async (send: () => void, code: string | RegExp, name: string) => {
    send();
    const f = await c.next((x) => x.op === 'error' || (x.op === 'reply' && x.ok === false));
    t.match(f.error.code, code, name);
  };
  await expectError(() => c.sendRaw('garbage{{{'), 'bad_json', 'garbage text');
  await expectError(() => c.sendRaw(Buffer.from([0xc1, 0xff, 0x00])), 'bad_frame', 'invalid msgpack');
  const full = pack({ op: 'subscribe', channel: 'abc' });
  await expectError(() => c.sendRaw(full.subarray(0, full.length - 2)), 'bad_frame', 'truncated msgpack');
  await expectError(() => c.sendRaw(Buffer.from([0xff, 0xfe, 0x80])), /bad_frame|bad_json/, 'invalid utf-8 in a text frame');
  await expectError(() => c.send({ op: 'explode' }), 'unknown_op', 'unknown op');
  await expectError(() => c.send({ nop: 1 }), 'unknown_op', 'no op');
  c.send({ op: 'subscibe', ref: 901, channel: 'a' });
  t.match((await c.next((x) => x.ref === 901)).error.message, /^unknown op "subscibe" \(did you mean subscribe\?\); known ops: auth, subscribe/, 'a misspelt op is named with the one meant');
  c.send({ ref: 902, channel: 'a' });
  t.match((await c.next((x) => x.ref === 902)).error.message, /^the frame has no "op"; known ops: auth, subscribe/, 'a missing op is said to be missing, not "undefined"');
  // An op String() cannot convert (its toString is not a function) was answered "internal".
  c.sendRaw('{"op":{"toString":1},"ref":903}');
  const opObject = await c.next((x) => x.ref === 903);
  t.equal(opObject.error.code, 'unknown_op', 'an object op is an unknown op');
  t.match(opObject.error.message, /^unknown op of type object \(an op is a string\); known ops: auth, subscribe/);
  c.sendRaw('{"op":[{"toString":1}],"ref":904}');
  t.equal((await c.next((x) => x.ref === 904)).error.code, 'unknown_op', 'an array op is an unknown op');
  await expectError(() => c.sendRaw('[1,2,3]'), 'bad_frame', 'array frame');
  await expectError(() => c.sendRaw('null'), 'bad_frame', 'null frame');
  await expectError(() => c.send({ op: 'subscribe' }), 'invalid_channel', 'subscribe without channel');
  await expectError(() => c.send({ op: 'subscribe', channel: 'x'.repeat(5000) }), 'invalid_channel', 'huge channel name');
  await expectError(() => c.send({ op: 'subscribe', channel: { $gt: 1 } }), 'invalid_channel', 'object channel');
  await expectError(() => c.send({ op: 'subscribe', channel: 'a', since: { offset: -1, epoch: 'x' } }), 'bad_frame', 'bad since');
  await expectError(() => c.send({ op: 'publish', channel: 'a', event: '', data: 1 }), 'bad_frame', 'empty event');
  await expectError(() => c.send({ op: 'subscribe', channel: '__proto__', ref: -5 }), 'bad_frame', 'negative ref');
  await expectError(() => c.send({ op: 'auth', token: 'a.b.c' }), /^token_/, 'garbage token');
  // subscribe flood: the cap answers too_many_channels, nothing else breaks
  const floods = await Promise.all(Array.from({ length: 40 }, (_, i) => c.request({ op: 'subscribe', channel: `flood-${i}` })));
  t.equal(floods.filter((r) => r.ok).length, 20, 'exactly the cap succeeded');
  t.ok(floods.filter((r) => !r.ok).every((r) => r.error.code === 'too_many_channels'), 'the rest were refused with a code');
  const dup = await c.request({ op: 'subscribe', channel: 'flood-0' });
  t.equal(dup.error.code, 'already_subscribed');
  t.equal((await c.request({ op: 'ping' })).ok, true, 'connection still usable');

  // an oversized frame closes the connection with 1009 and a reason
  const big = await TestClient.connect(s.url + '/ws');
  big.sendRaw(JSON.stringify({ op: 'publish', channel: 'a', event: 'e', data: 'x'.repeat(20 * 1024) }));
  const closed = await big.waitClose();
  t.equal(closed.code, 1009, 'oversized frame: close 1009');
  t.match(closed.reason, /limit is 16384 bytes/);
  // an absurdly large one is cut off at the transport without being buffered
  const huge = await TestClient.connect(s.url + '/ws');
  huge.sendRaw(Buffer.alloc(1024 * 1024, 1));
  t.ok((await huge.waitClose()).code >= 1006, 'huge frame: connection closed');

  // a client that only sends malformed frames is cut off with a reason
  const bad = await TestClient.connect(s.url + '/ws');
  for (let i = 0; i < 25; i++) bad.sendRaw('}');
  const cut = await bad.waitClose();
  t.equal(cut.code, 4000);
  t.match(cut.reason, /malformed/);

  // bad upgrade parameters are refused before upgrading
  await t.rejects(TestClient.connect(s.url + '/ws?format=xml'), /400/);

  const health = await api(s.http, '/health', undefined, { key: null });
  t.same(health.body.workers, { total: 2, alive: 2, stuck: 0 }, 'both shards alive');
  const fresh = await TestClient.connect(s.url + '/ws');
  t.equal((await fresh.request({ op: 'subscribe', channel: 'still-works' })).ok, true);
  fresh.close();
  c.close();
});
