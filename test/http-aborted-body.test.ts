// A client that goes away halfway through a request body (a process killed mid-upload, a dropped
// mobile connection) leaves nothing in flight: before, the body reader waited for the rest for good,
// so each such request stayed counted as in flight (a graceful shutdown then waited the whole
// --shutdown-timeout for it) and kept its handler and the chunks read so far.
import t from 'tap';
import net from 'node:net';
import { API_KEY, startServer } from './helpers/server.js';
import { until } from './helpers/redis.js';

async function inFlight(http: string): Promise<number> {
  const text = await fetch(http + '/metrics').then((r) => r.text());
  let n = 0;
  for (const line of text.split('\n')) if (line.startsWith('rt_http_requests_in_flight{')) n += Number(line.split(' ').pop());
  return n;
}

t.test('requests whose body never arrives whole are no longer in flight once their client is gone', async (t) => {
  const server = await startServer(t);
  const paths = ['/api/publish', '/api/batch', `/poll?sid=0.${'a'.repeat(22)}`, `/sse?sid=1.${'a'.repeat(22)}`];
  // A Socket.IO polling session whose POST is cut off mid-body keeps working (it is not taken for a
  // body over maxHttpBufferSize).
  const open = await fetch(`${server.http}/socket.io/?EIO=4&transport=polling`).then((r) => r.text());
  const sid = JSON.parse(open.slice(1)).sid as string;
  const sockets: net.Socket[] = [];
  for (let i = 0; i < 8; i++) {
    const s = net.connect(server.port, '127.0.0.1');
    await new Promise((r) => s.once('connect', r));
    s.on('error', () => {});
    // Half of a declared 4000-byte body: the server reads it and waits for the rest.
    s.write(`POST ${paths[i % paths.length]} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{"channel":"c","event":"e","data":"${'x'.repeat(2000)}`);
    sockets.push(s);
  }
  await until('the 8 requests are in flight', async () => ((await inFlight(server.http)) === 8 ? true : undefined));
  t.pass('every half-sent request is counted in flight');
  const cut = net.connect(server.port, '127.0.0.1');
  await new Promise((r) => cut.once('connect', r));
  cut.on('error', () => {});
  cut.write(`POST /socket.io/?EIO=4&transport=polling&sid=${sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4000\r\n\r\n40`);
  sockets.push(cut);
  for (const s of sockets) s.destroy();
  await until('no request in flight after their clients left', async () => ((await inFlight(server.http)) === 0 ? true : undefined), 10000);
  t.pass('nothing left in flight');
  // The server still answers requests that arrive whole.
  const ok = await fetch(server.http + '/api/publish', { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify({ channel: 'c', event: 'e', data: 1 }) });
  t.equal(ok.status, 200);
  const connect = await fetch(`${server.http}/socket.io/?EIO=4&transport=polling&sid=${sid}`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '40' });
  t.equal(connect.status, 200, 'the Socket.IO session still takes a whole POST');
  const joined = await fetch(`${server.http}/socket.io/?EIO=4&transport=polling&sid=${sid}`).then((r) => r.text());
  t.match(joined, /^40\{"sid"/, 'and joins the namespace');
});
