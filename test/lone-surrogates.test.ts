// A lone surrogate in a JSON publisher's data ("\ud800") has no UTF-8. JSON subscribers got it, msgpack
// subscribers a `str` holding its WTF-8 bytes (not UTF-8: strict decoders refuse the frame), history
// on another shard three U+FFFD. Now it is U+FFFD on every path, and every msgpack str valid UTF-8.
import t from 'tap';
import WebSocket from 'ws';
import { signJwt } from 'rt-actors';
import { api, startServer, JWT_SECRET } from './helpers/server.js';
import { TestClient } from './helpers/ws-client.js';

const tok = signJwt({ sub: 'u', exp: Math.floor(Date.now() / 1000) + 600, channels: ['private-*'] }, { secret: JWT_SECRET });
const s = await startServer(t, { workers: 2 });
const WTF8_D800 = Buffer.from([0xed, 0xa0, 0x80]);
const FFFD = Buffer.from('\ufffd');

t.test('a lone surrogate is U+FFFD for every subscriber and in history', async (t) => {
  const subs: TestClient[] = [];
  for (let i = 0; i < 6; i++) {
    const c = await TestClient.connect(`${s.url}/ws?token=${tok}`, { msgpack: i % 2 === 1 });
    t.teardown(() => c.close());
    t.equal((await c.request({ op: 'subscribe', channel: 'private-sur' })).ok, true);
    subs.push(c);
  }
  t.equal(new Set(subs.map((c) => c.welcome.socket_id.split('.')[0])).size, 2, 'subscribers on both shards');
  // The bytes a msgpack subscriber is sent, to check them as a strict decoder would.
  const raw: Buffer[] = [];
  const rawWs = new WebSocket(`${s.url}/ws?format=msgpack&token=${tok}`, 'rt-actors.msgpack');
  t.teardown(() => rawWs.close());
  rawWs.on('message', (d: Buffer) => raw.push(Buffer.from(d)));
  await new Promise((r) => rawWs.once('message', r)); // welcome
  const { pack } = await import('msgpackr');
  rawWs.send(pack({ op: 'subscribe', channel: 'private-sur', ref: 1 }));

  const pub = subs[0]!;
  const reply = pub.next((f) => f.op === 'reply' && f.ref === 900);
  await new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + 5000;
    const check = () => (raw.length >= 2 ? resolve() : Date.now() > deadline ? reject(new Error('raw subscribe')) : setTimeout(check, 20));
    check();
  });
  // Raw text: the escape as a JSON client writes it.
  pub.sendRaw('{"op":"publish","ref":900,"channel":"private-sur","event":"e","data":{"s":"\\ud800x","\\udfff":"\\\\ud800","ok":"\\ud83d\\ude00"}}');
  t.equal((await reply).ok, true);
  t.equal((await api(s.http, '/api/publish', { channel: 'private-sur', event: 'e', data: { s: '\ud800x', '\udfff': '\\ud800', ok: '\u{1f600}' } })).status, 200);
  const want = { s: '\ufffdx', '\ufffd': '\\ud800', ok: '\u{1f600}' };
  for (const [i, c] of subs.entries()) {
    const got = await c.waitForMessages('private-sur', 2);
    t.same(got.map((m) => m.data), [want, want], `subscriber ${i} (${c.msgpack ? 'msgpack' : 'JSON'})`);
  }
  for (const c of subs.slice(0, 2)) {
    const h = await c.request({ op: 'history', channel: 'private-sur', limit: 5 });
    t.same(h.publications.map((p: { data: unknown }) => p.data), [want, want], `history (${c.msgpack ? 'msgpack' : 'JSON'})`);
  }
  await new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + 5000;
    const check = () => (raw.filter((b) => b.includes(FFFD)).length >= 2 ? resolve() : Date.now() > deadline ? reject(new Error('raw messages')) : setTimeout(check, 20));
    check();
  });
  t.notOk(raw.some((b) => b.includes(WTF8_D800)), 'no WTF-8 surrogate bytes in a msgpack frame');
});
