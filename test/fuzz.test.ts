// Property-based fuzzing of every native parser against a running server: random and mutated input
// must get a correct error (or a close with a reason), never crash a shard, and leave the server serving.
import t from 'tap';
import fc from 'fast-check';
import { pack } from 'msgpackr';
import { signJwt } from 'rt-actors';
import { startServer, api, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const KNOWN_CODES = /^(bad_json|bad_frame|unknown_op|invalid_channel|unauthorized|forbidden|not_subscribed|already_subscribed|too_many_channels|publish_refused|no_handler|rate_limited|payload_too_large|token_[a-z_]+|timeout|unavailable|not_found|refused)$/;

/** Valid frames, so mutations start from something the parser takes further than the first byte. */
const validFrame = fc.oneof(
  fc.record({ op: fc.constant('subscribe'), channel: fc.string({ minLength: 1, maxLength: 20 }), ref: fc.nat() }),
  fc.record({ op: fc.constant('publish'), channel: fc.string({ maxLength: 20 }), event: fc.string({ maxLength: 10 }), data: fc.jsonValue({ maxDepth: 3 }) }),
  fc.record({ op: fc.constantFrom('unsubscribe', 'presence', 'history'), channel: fc.string(), since: fc.option(fc.record({ offset: fc.integer(), epoch: fc.string() })) }),
  fc.record({ op: fc.constantFrom('auth', 'rpc', 'ping', 'nope'), token: fc.string(), event: fc.string(), data: fc.anything({ maxDepth: 2 }) }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 })),
);

function mutate(bytes: Uint8Array, cuts: number[], flips: number[]): Uint8Array {
  let out = Uint8Array.from(bytes);
  for (const f of flips) if (out.length) out[f % out.length] ^= 1 << (f % 8);
  for (const c of cuts) if (out.length > 1) out = out.subarray(0, 1 + (c % (out.length - 1)));
  return out;
}

t.test('random and mutated /ws frames (JSON and msgpack)', async (t) => {
  const s = await startServer(t, { maxChannelsPerConnection: 1000, rateLimit: 0 });
  const conns = {
    json: await TestClient.connect(s.url + '/ws'),
    mp: await TestClient.connect(s.url + '/ws?format=msgpack', { msgpack: true }),
  };
  t.teardown(() => (conns.json.close(), conns.mp.close()));
  let answered = 0;
  let cutOff = 0;
  await fc.assert(
    fc.asyncProperty(validFrame, fc.array(fc.nat(), { maxLength: 2 }), fc.array(fc.nat(), { maxLength: 3 }), fc.boolean(), async (frame, cuts, flips, binary) => {
      const key = binary ? 'mp' : 'json';
      const c = conns[key];
      const raw = binary ? pack(frame) : Buffer.from(JSON.stringify(frame));
      const bytes = mutate(raw, cuts, flips);
      c.frames.length = 0;
      c.sendRaw(binary ? Buffer.from(bytes) : Buffer.from(bytes).toString('latin1'));
      for (const f of c.frames) if ((f.op === 'error' || (f.op === 'reply' && f.ok === false)) && !KNOWN_CODES.test(f.error?.code)) return false;
      let ping;
      try {
        ping = await c.request({ op: 'ping' }, 2000);
      } catch {
        // The only allowed way to lose the connection: too many malformed frames, closed with 4000.
        const closed = await c.waitClose();
        if (closed.code !== 4000 || !/malformed/.test(closed.reason)) return false;
        cutOff++;
        conns[key] = await TestClient.connect(s.url + (binary ? '/ws?format=msgpack' : '/ws'), { msgpack: binary });
        return true;
      }
      if (ping.pong !== true) return false;
      for (const f of c.frames) {
        if ((f.op === 'error' || (f.op === 'reply' && f.ok === false)) && !KNOWN_CODES.test(f.error?.code)) return false;
        if (f.op === 'error' || f.op === 'reply') answered++;
      }
      return true;
    }),
    { numRuns: RUNS, seed: Number(process.env.FUZZ_SEED ?? 42) },
  );
  t.comment(`connections cut off for malformed frames: ${cutOff}`);
  t.ok(answered > RUNS / 2, `most fuzz frames were answered (${answered})`);
  const h = await api(s.http, '/health', undefined, { key: null });
  t.same(h.body.workers, { total: 2, alive: 2, stuck: 0 }, 'no shard crashed');
});

t.test('random HTTP API bodies get 2xx or a 4xx JSON error', async (t) => {
  const s = await startServer(t);
  const body = fc.oneof(
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    fc.record({ channel: fc.oneof(fc.string(), fc.jsonValue()), event: fc.oneof(fc.string(), fc.integer()), data: fc.jsonValue({ maxDepth: 2 }), socket_id: fc.option(fc.string()) }).map((v) => JSON.stringify(v)),
    fc.record({ messages: fc.array(fc.record({ channel: fc.string({ maxLength: 8 }), event: fc.string({ maxLength: 5 }), data: fc.jsonValue({ maxDepth: 1 }) }), { maxLength: 5 }) }).map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 200 }),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  );
  await fc.assert(
    fc.asyncProperty(body, fc.constantFrom('/api/publish', '/api/batch'), async (raw, path) => {
      const r = await api(s.http, path, undefined, { raw });
      if (r.status === 200) return r.body.ok === true;
      return r.status >= 400 && r.status < 500 && typeof r.body?.error?.code === 'string' && typeof r.body.error.message === 'string';
    }),
    { numRuns: RUNS, seed: 7 },
  );
  const h = await api(s.http, '/health', undefined, { key: null });
  t.equal(h.body.status, 'ok');
});

t.test('random and mutated tokens are refused with a token_* code', async (t) => {
  const s = await startServer(t);
  const c = await TestClient.connect(s.url + '/ws');
  t.teardown(() => c.close());
  const good = signJwt({ sub: '1', exp: Math.floor(Date.now() / 1000) + 600 }, { secret: JWT_SECRET });
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.string({ maxLength: 300 }), fc.tuple(fc.nat(good.length - 1), fc.string({ minLength: 1, maxLength: 1 })).map(([i, ch]) => good.slice(0, i) + ch + good.slice(i + 1))), async (tok) => {
      const r = await c.request({ op: 'auth', token: tok });
      if (tok === good) return r.ok === true;
      if (r.ok) return tok.split('.').length === 3; // a mutation can land in ignored bits of base64: must still verify
      return /^(token_|bad_frame)/.test(r.error.code);
    }),
    { numRuns: RUNS, seed: 3 },
  );
  t.pass('every token answered');
});

t.test('random and mutated Engine.IO / Socket.IO packets over WebSocket and polling', async (t) => {
  const { RawWs, rawHandshake, http } = await import('./helpers/sio.js');
  const s = await startServer(t, { rateLimit: 0 });
  const good = ['40', '42["subscribe",{"channel":"fz"}]', '421["subscribe",{"channel":"fz"}]', '42["client event",{"channel":"private-x","event":"client-a","data":1}]', '451-["x",{"_placeholder":true,"num":0}]', '3', '2', '6', '5', '41', '40/chat,{"token":"x"}'];
  const packet = fc.oneof(
    fc.tuple(fc.constantFrom(...good), fc.array(fc.nat(), { maxLength: 2 }), fc.array(fc.nat(), { maxLength: 3 })).map(([p, cuts, flips]) => Buffer.from(mutate(Buffer.from(p), cuts, flips)).toString('latin1')),
    fc.tuple(fc.integer({ min: 0, max: 9 }), fc.option(fc.string({ maxLength: 8 })), fc.option(fc.nat()), fc.jsonValue({ maxDepth: 3 })).map(([type, nsp, id, data]) => `4${type}${nsp ? '/' + nsp + ',' : ''}${id ?? ''}${JSON.stringify(data)}`),
    fc.string({ maxLength: 60 }),
  );
  let closedByServer = 0;
  await fc.assert(
    fc.asyncProperty(packet, fc.boolean(), async (p, binary) => {
      const ws = new RawWs(`${s.url}/socket.io/?EIO=4&transport=websocket`);
      await ws.opened();
      await ws.next((m) => String(m).startsWith('0'));
      ws.ws.send('40');
      await ws.next((m) => String(m).startsWith('40'));
      ws.ws.send(binary ? Buffer.from(p, 'latin1') : p);
      ws.ws.send('4277["subscribe",{"channel":"probe"}]');
      try {
        const ack = String(await ws.next((m) => String(m).startsWith('4377'), 3000));
        ws.ws.close();
        return ack.includes('"ok":true');
      } catch {
        // A protocol violation may close the connection: allowed, as long as the server closed it.
        closedByServer++;
        return !!ws.closed;
      }
    }),
    { numRuns: RUNS, seed: 11 },
  );
  t.comment(`connections closed for protocol errors: ${closedByServer}`);
  const body = fc.oneof(fc.string({ maxLength: 100 }), fc.array(fc.constantFrom(...good), { maxLength: 4 }).map((a) => a.join('\x1e')));
  await fc.assert(
    fc.asyncProperty(body, async (b) => {
      const hs = await rawHandshake(s.http);
      const r = await http(`${s.http}/socket.io/?EIO=4&transport=polling&sid=${hs.sid}`, { method: 'POST', body: b });
      return (r.status === 200 && r.body === 'ok') || (r.status === 400 && typeof JSON.parse(r.body).code === 'number');
    }),
    { numRuns: RUNS, seed: 12 },
  );
  const h = await api(s.http, '/health', undefined, { key: null });
  t.same(h.body.workers, { total: 2, alive: 2, stuck: 0 }, 'no shard crashed');
});

t.test('random SSE and long-polling requests get a stream, a poll answer or a 4xx JSON error', async (t) => {
  const s = await startServer(t, { rateLimit: 0, pollTimeout: '200ms' });
  /** Status and first bytes of a response, without waiting for a stream to end. */
  const probe = async (url: string, init: RequestInit = {}): Promise<{ status: number; body: string }> => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 1500);
    try {
      const res = await fetch(url, { ...init, signal: ac.signal });
      const reader = res.body!.getReader();
      const first = await reader.read();
      ac.abort();
      return { status: res.status, body: first.value ? Buffer.from(first.value).toString() : '' };
    } catch {
      return { status: -1, body: '' };
    } finally {
      clearTimeout(timer);
    }
  };
  const text = fc.string({ maxLength: 40 });
  const okError = (r: { status: number; body: string }) => r.status >= 400 && r.status < 500 && /"code"/.test(r.body);
  await fc.assert(
    fc.asyncProperty(text, fc.option(text), fc.option(text), fc.constantFrom('sse', 'poll'), async (channels, lastId, format, path) => {
      const q = new URLSearchParams({ channels });
      if (lastId !== null) q.set('lastEventId', lastId);
      if (format !== null) q.set('format', format);
      const r = await probe(`${s.http}/${path}?${q}`, lastId !== null ? { headers: { 'last-event-id': lastId.replace(/[^\x20-\x7e]/g, '') } } : {});
      return r.status === 200 || okError(r);
    }),
    { numRuns: Math.ceil(RUNS / 2), seed: 21 },
  );
  // a live session, then random POST bodies and sids
  const hello = await probe(`${s.http}/poll`);
  const sid = JSON.parse(hello.body).frames[0].session as string;
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)), text), fc.boolean(), async (body, goodSid) => {
      const r = await probe(`${s.http}/poll?sid=${goodSid ? sid : encodeURIComponent(body.slice(0, 10))}`, { method: 'POST', body });
      return r.status === 200 || okError(r);
    }),
    { numRuns: RUNS, seed: 22 },
  );
  const h = await api(s.http, '/health', undefined, { key: null });
  t.same(h.body.workers, { total: 2, alive: 2, stuck: 0 }, 'no shard crashed');
});
