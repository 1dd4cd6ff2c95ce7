/**
 * The text/event-stream format, parsed from chunks of a fetch() body. Used where there is no
 * EventSource (Node) or where the client needs more than EventSource gives (HTTP status of a refused
 * stream, keep-alive comments).
 */
export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/** A hostile or broken server must not make the client buffer without end: one line, or one event's data lines together. */
const MAX_LINE = 16 * 1024 * 1024;

export class SseParser {
  private buf = '';
  private data: string[] = [];
  /** Characters in `data`: an event of many lines counts against MAX_LINE as much as one long line. */
  private dataSize = 0;
  private event = '';
  private id: string | undefined;
  /** A chunk ended in CR: if the next starts with LF, the two are one line break. */
  private pendingCR = false;

  constructor(
    private readonly onEvent: (e: SseEvent) => void,
    private readonly onComment?: (text: string) => void,
  ) {}

  push(chunk: string): void {
    if (this.pendingCR && chunk.startsWith('\n')) chunk = chunk.slice(1);
    this.pendingCR = chunk.endsWith('\r');
    const lines = (this.buf + chunk).split(/\r\n|\r|\n/);
    this.buf = lines.pop()!;
    if (this.buf.length > MAX_LINE) throw new Error('event stream line too long');
    for (const line of lines) this.line(line);
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) this.onEvent({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
      this.data = [];
      this.dataSize = 0;
      this.event = '';
      return;
    }
    if (line.charCodeAt(0) === 58 /* : */) {
      this.onComment?.(line.slice(1));
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') {
      this.dataSize += value.length + 1;
      if (this.dataSize > MAX_LINE) throw new Error('event stream event too long');
      this.data.push(value);
    }
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
  }
}
