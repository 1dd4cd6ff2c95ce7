/**
 * Errors that cross a boundary (to a client, to the HTTP API, between threads) carry a stable `code`
 * so clients can branch on it; the message is for humans and may change.
 */
export type ErrorCode =
  | 'bad_request'
  | 'bad_json'
  | 'bad_frame'
  | 'unknown_op'
  | 'invalid_channel'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'payload_too_large'
  | 'too_many_channels'
  | 'not_subscribed'
  | 'already_subscribed'
  | 'publish_refused'
  | 'refused'
  | 'rate_limited'
  | 'unavailable'
  | 'timeout'
  | 'internal'
  | (string & {});

export class RtError extends Error {
  readonly code: ErrorCode;
  /** HTTP status used when this error answers an HTTP request. */
  readonly status: number;
  constructor(code: ErrorCode, message: string, status = 400) {
    super(message);
    this.name = 'RtError';
    this.code = code;
    this.status = status;
  }
  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Turns anything thrown into the `{ code, message }` shape clients see, without leaking internals. */
export function toErrorBody(err: unknown): { code: string; message: string } {
  if (err instanceof RtError) return err.toJSON();
  if (err && typeof err === 'object' && typeof (err as { code?: unknown }).code === 'string' && typeof (err as { message?: unknown }).message === 'string') {
    const e = err as { code: string; message: string };
    if (/^[a-z_]+$/.test(e.code)) return { code: e.code, message: e.message };
  }
  return { code: 'internal', message: 'internal error' };
}

/** The server could not bind its port (in use, or not permitted): the CLI exits with code 3. */
export class ListenError extends Error {
  readonly code = 'listen_failed';
  constructor(message: string) {
    super(message);
    this.name = 'ListenError';
  }
}

/**
 * A decoded JSON/msgpack value's type for an error message: 'null', 'array' or its typeof. Messages
 * quote only strings as sent; String() of a hostile object ({"toString":1}) throws.
 */
export function valueType(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}
