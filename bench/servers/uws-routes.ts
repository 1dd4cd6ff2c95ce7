/**
 * The plain uWebSockets.js baseline's routes, shared by the one-thread server (child.ts) and the
 * threaded one (uws-threads.ts): `/ws` answers the native protocol's subscribe with a uWS topic
 * subscription, and `POST /publish` is a backend's publish, as small as it gets (parse, build the
 * frame, publish, answer). rt-actors' counterparts are `/ws` and `POST /api/publish`.
 */
import type { TemplatedApp } from 'uWebSockets.js';

/** A publication's wire frame, as rt-actors' native JSON protocol writes it. */
export function frameOf(channel: string, event: string, data: string): string {
  return `{"op":"message","channel":${JSON.stringify(channel)},"event":${JSON.stringify(event)},"data":${data}}`;
}

/** Registers the routes; `publish` gets each POSTed publication's channel and frame. */
export function uwsRoutes(app: TemplatedApp, publish: (channel: string, frame: string) => void): void {
  app.ws('/ws', {
    maxBackpressure: 64 * 1024 * 1024,
    open: (ws) => {
      ws.send(JSON.stringify({ op: 'welcome' }));
    },
    message: (ws, msg) => {
      const f = JSON.parse(Buffer.from(msg).toString());
      if (f.op === 'subscribe') {
        ws.subscribe(f.channel);
        ws.send(JSON.stringify({ op: 'reply', ref: f.ref, ok: true }));
      }
    },
  });
  app.post('/publish', (res) => {
    let body = Buffer.alloc(0);
    res.onAborted(() => {});
    res.onData((chunk, last) => {
      body = Buffer.concat([body, Buffer.from(chunk)]);
      if (!last) return;
      const p = JSON.parse(body.toString()) as { channel: string; event: string; data: unknown };
      publish(p.channel, frameOf(p.channel, p.event, JSON.stringify(p.data)));
      res.cork(() => res.writeHeader('content-type', 'application/json').end('{"ok":true}'));
    });
  });
}
