/**
 * A raw Engine.IO endpoint that echoes every message back (--engineio-echo-path): what the official
 * Engine.IO protocol test suite talks to. Off by default; it carries no Socket.IO and no channels.
 */
import type { EioSession, SessionListener, SessionOwner } from './engine.js';

class EchoListener implements SessionListener {
  constructor(private readonly session: EioSession) {}

  onMessage(data: string | Uint8Array): void {
    this.session.send([typeof data === 'string' ? '4' + data : data]);
  }
  onClose(): void {}
  onTransport(): void {}
  settled(): Promise<void> {
    return Promise.resolve();
  }
  exportState(): unknown {
    return null;
  }
  released(): void {}
}

export const echoOwner: SessionOwner = {
  open: (session) => new EchoListener(session),
  restore: (session) => new EchoListener(session),
};
