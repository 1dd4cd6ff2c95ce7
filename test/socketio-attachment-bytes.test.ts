// --socketio-max-http-buffer-size bounds one Socket.IO message, binary attachments included: a packet
// announcing attachments whose total passes it closes the session, as an oversized single message
// does. Before, each attachment was checked alone, so one packet could hold 10 times the limit (a
// client that never sent its last attachment kept the others buffered for as long as it stayed).
import t, { type Test } from 'tap';
import { startServer } from './helpers/server.js';
import { RawSocket } from './helpers/raw-eio.js';

const LIMIT = 4096;

async function open(t: Test, port: number): Promise<RawSocket> {
  const s = new RawSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
  t.teardown(() => s.ws.terminate());
  await s.opened;
  t.match(await s.next(), /^0\{/, 'engine.io open');
  s.ws.send('40');
  t.match(await s.next({ skipPings: true }), /^40\{/, 'namespace joined');
  return s;
}

t.test('attachments adding up past the limit close the session; within it, the packet goes through', async (t) => {
  const srv = await startServer(t, { socketioMaxHttpBufferSize: LIMIT });
  const chunk = Buffer.alloc(LIMIT * 0.6, 1);

  const within = await open(t, srv.port);
  // One attachment well within the limit, then an acked subscribe as the sentinel: its ack proves the
  // session is still up and the binary packet was taken.
  within.ws.send('451-["nohandler",{"_placeholder":true,"num":0}]');
  within.ws.send(chunk);
  within.ws.send('421["subscribe",{"channel":"news"}]');
  for (;;) {
    const m = await within.next({ skipPings: true });
    if (typeof m === 'string' && m.startsWith('431')) break;
  }
  t.pass('a packet within the limit is taken and the session goes on');

  const over = await open(t, srv.port);
  over.ws.send('452-["nohandler",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
  over.ws.send(chunk);
  over.ws.send(chunk);
  over.ws.send('421["subscribe",{"channel":"news"}]');
  let acked = false;
  for (;;) {
    let m;
    try {
      m = await over.next({ skipPings: true });
    } catch {
      break; // closed
    }
    if (typeof m === 'string' && m.startsWith('431')) {
      acked = true;
      break;
    }
  }
  t.notOk(acked, 'the subscribe after the oversized packet is not answered: the session was closed');
  t.ok(over.closed, 'closed');
});
