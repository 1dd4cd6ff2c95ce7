/**
 * Request handlers (docs/actors.md "Request handlers"): TypeScript functions beside the channel actors
 * that answer client events which are not channel operations — `socket.emit('order.place', data, ack)`
 * from Socket.IO, `{ "op": "rpc", "event": "order.place", "data": … }` from native clients. They run on
 * the connection's own shard, so they see the connection directly; a file default-exports
 * `defineHandlers({ namespace, events, onConnect, onDisconnect })`.
 */
import { RtError } from '../errors.js';
import { importFolder } from './folder.js';
import { unknownKey } from './unknown-key.js';
import { isThenable } from './mailbox.js';
import { within } from './clock.js';
import { codeLabel, enterCode, leaveCode } from '../runtime/running-code.js';

/** What a handler sees of the connection that sent the event. */
export interface Connection {
  /** Socket id: for Socket.IO the client's `socket.id`, for native clients the welcome's `socket_id`. */
  readonly socketId: string;
  /** User id from the connection's token (`sub`), when it presented one. */
  readonly userId?: string;
  /** `user_info` from the token. */
  readonly userInfo?: unknown;
  /**
   * The Socket.IO CONNECT payload (`io(url, { auth })`) exactly as the client sent it; `{}` for native
   * clients. Recovering clients (socket.io-client ≥ 4.6) add their `pid` and `offset` to it.
   */
  readonly auth: Readonly<Record<string, unknown>>;
  /** 'socket.io' or the native transport's name ('ws', 'poll', …). */
  readonly transport: string;
  /** Socket.IO namespace; '/' for native clients. */
  readonly namespace: string;
  /** Request that opened the connection: a few headers, the query string, the peer address. */
  readonly handshake: Readonly<Handshake>;
  /** Scratch space kept for the connection's life (per namespace for Socket.IO). */
  readonly data: Record<string, unknown>;
  /** Channels the connection is subscribed to. */
  channels(): string[];
  /** Sends an event to this connection only: Socket.IO receives `(event, ...args)`; native clients a `message` frame. */
  emit(event: string, ...args: unknown[]): void;
  /**
   * Sends an event and waits for the client's acknowledgement; resolves with its first argument.
   * Socket.IO only; rejects with code `timeout` after `timeoutMs` (default 10 s).
   */
  emitWithAck(event: string, ...args: unknown[]): Promise<unknown>;
  /** Publishes to a channel as the server (not subject to the client publish policy). */
  publish(channel: string, event: string, data: unknown, opts?: { excludeSelf?: boolean }): Promise<{ offset: number }>;
  /** Sends to every connection of a user, on every shard. */
  publishToUser(user: string, event: string, data: unknown): void;
  /** Closes the connection (Socket.IO: disconnects this namespace; the client does not reconnect). */
  disconnect(reason?: string): void;
}

export interface Handshake {
  headers: Record<string, string>;
  query: Record<string, string>;
  address: string;
}

const ACK_ARGS = Symbol.for('rt-actors.ackArgs');

/** Several values for one Socket.IO acknowledgement (see ackArgs). */
export interface AckArgs {
  readonly [ACK_ARGS]: readonly unknown[];
}

/**
 * Return `ackArgs(a, b, …)` from a handler to call the client's ack callback with several arguments
 * (`socket.emit('x', data, (a, b) => …)`). A plain return value is one argument. Native rpc clients
 * receive the values as an array.
 */
export function ackArgs(...args: unknown[]): AckArgs {
  return { [ACK_ARGS]: args };
}

/** The ack arguments a handler's return value stands for. */
export function ackArgsOf(v: unknown): unknown[] {
  if (v === undefined) return [];
  if (v !== null && typeof v === 'object' && ACK_ARGS in v) return [...(v as AckArgs)[ACK_ARGS]];
  return [v];
}

/** A handler's return value as one reply value (native rpc): several ack values become an array. */
export function replyValueOf(v: unknown): unknown {
  if (v !== null && typeof v === 'object' && ACK_ARGS in v) return [...(v as AckArgs)[ACK_ARGS]];
  return v;
}

/** A handler: its return value (or resolved value) answers the client's ack callback / rpc reply. */
export type EventHandler = (conn: Connection, ...args: any[]) => unknown;

export interface HandlerDefinition {
  /** Socket.IO namespace these handlers serve (default '/'). Native clients use the '/' handlers. */
  namespace?: string;
  /**
   * A Socket.IO client connects to the namespace. Throw (e.g. a HandlerError) to refuse: the client
   * receives a connect_error with the message and `data: { code }`. Events emitted here reach the
   * client right after the namespace's CONNECT packet.
   */
  onConnect?(conn: Connection): void | Promise<void>;
  /** A Socket.IO client left the namespace (any reason). */
  onDisconnect?(conn: Connection, reason: string): void | Promise<void>;
  /** Event name → handler. */
  events: Record<string, EventHandler>;
}

const BRAND = Symbol.for('rt-actors.handlers');

/** Identity function that gives a handler file its types (and marks it as handlers, not a channel actor). */
export function defineHandlers(def: HandlerDefinition): HandlerDefinition {
  Object.defineProperty(def, BRAND, { value: true, enumerable: false });
  return def;
}

/** Throw from a handler to answer with your own error code; the client sees `{ error: { code, message } }`. */
export class HandlerError extends RtError {
  constructor(code: string, message: string) {
    super(code, message, 400);
    this.name = 'HandlerError';
  }
}

/** Whether a module's default export is a handler definition rather than a channel actor. */
export function isHandlerDefinition(d: unknown): d is HandlerDefinition {
  if (!d || typeof d !== 'object') return false;
  if ((d as Record<symbol, unknown>)[BRAND] === true) return true;
  return 'events' in d && !('match' in d);
}

/** Event names that are channel operations of the gateway and cannot be handled by user code. */
export const RESERVED_HANDLER_EVENTS: ReadonlySet<string> = new Set(['subscribe', 'unsubscribe', 'client event']);

export function validNamespace(nsp: unknown): nsp is string {
  return typeof nsp === 'string' && nsp.length > 0 && nsp.length <= 200 && /^\/[\x21-\x7e]*$/.test(nsp) && !nsp.includes(',');
}

interface LoadedHandlers {
  file: string;
  def: HandlerDefinition;
}

export interface NamespaceHandlers {
  readonly namespace: string;
  readonly events: ReadonlyMap<string, EventHandler>;
  readonly onConnect: ReadonlyArray<NonNullable<HandlerDefinition['onConnect']>>;
  readonly onDisconnect: ReadonlyArray<NonNullable<HandlerDefinition['onDisconnect']>>;
}

function validate(def: HandlerDefinition, file: string): void {
  const bad = unknownKey(def, ['namespace', 'events', 'onConnect', 'onDisconnect'], 'a handler option');
  if (bad) throw new Error(`${file}: ${bad}`);
  if (def.namespace !== undefined && !validNamespace(def.namespace)) {
    throw new Error(`${file}: "namespace" must start with "/" and hold printable ASCII without commas`);
  }
  if (!def.events || typeof def.events !== 'object' || Array.isArray(def.events)) throw new Error(`${file}: "events" must be an object of event name → function`);
  for (const [name, fn] of Object.entries(def.events)) {
    if (typeof fn !== 'function') throw new Error(`${file}: handler for "${name}" must be a function`);
    if (RESERVED_HANDLER_EVENTS.has(name)) throw new Error(`${file}: "${name}" is a channel operation of the gateway and cannot have a handler`);
  }
  for (const hook of ['onConnect', 'onDisconnect'] as const) {
    if (def[hook] !== undefined && typeof def[hook] !== 'function') throw new Error(`${file}: "${hook}" must be a function`);
  }
}

/** `fn` bound to `self`, named in the thread's running-code slot while it runs (a stuck shard says which). */
function marked<F extends (...args: never[]) => unknown>(fn: F, self: unknown, text: string): F {
  const label = codeLabel(text);
  return function (...args: Parameters<F>) {
    enterCode(label, '', Date.now());
    try {
      return fn.apply(self, args);
    } finally {
      leaveCode();
    }
  } as F;
}

/** The handlers of every namespace, merged from all handler files. */
export class HandlerRegistry {
  private readonly byNsp = new Map<string, NamespaceHandlers>();
  /** One line per handler file and what it serves, for the start log. */
  readonly summary: string[] = [];

  constructor(loaded: LoadedHandlers[]) {
    for (const { file, def } of loaded) {
      this.summary.push(`handlers ${file}: namespace ${def.namespace ?? '/'}, events ${Object.keys(def.events).join(', ') || '(none)'}`);
      const nsp = def.namespace ?? '/';
      let h = this.byNsp.get(nsp) as { namespace: string; events: Map<string, EventHandler>; onConnect: unknown[]; onDisconnect: unknown[] } | undefined;
      if (!h) this.byNsp.set(nsp, (h = { namespace: nsp, events: new Map(), onConnect: [], onDisconnect: [] }) as unknown as NamespaceHandlers);
      for (const [name, fn] of Object.entries(def.events)) {
        if (h.events.has(name)) throw new Error(`${file}: event "${name}" of namespace ${nsp} already has a handler in another file`);
        h.events.set(name, marked(fn, def.events, `the handler of event "${name}" (namespace ${nsp}) of ${file}`));
      }
      if (def.onConnect) h.onConnect.push(marked(def.onConnect, def, `onConnect (namespace ${nsp}) of ${file}`));
      if (def.onDisconnect) h.onDisconnect.push(marked(def.onDisconnect, def, `onDisconnect (namespace ${nsp}) of ${file}`));
    }
  }

  namespaces(): string[] {
    return [...this.byNsp.keys()];
  }

  get(nsp: string): NamespaceHandlers | undefined {
    return this.byNsp.get(nsp);
  }

  handler(nsp: string, event: string): EventHandler | undefined {
    return this.byNsp.get(nsp)?.events.get(event);
  }
}

/** Loads the handler files among the --actors folder's modules (the others are channel actors). */
export async function loadHandlers(dir: string): Promise<HandlerRegistry> {
  if (!dir) return new HandlerRegistry([]);
  const out: LoadedHandlers[] = [];
  for (const { file, exported } of await importFolder(dir)) {
    if (!isHandlerDefinition(exported)) continue;
    validate(exported, file);
    out.push({ file, def: exported });
  }
  return new HandlerRegistry(out);
}

/**
 * Runs a handler and turns what it returns or throws into one outcome. User code may throw anything;
 * only RtErrors (HandlerError, ActorError) show their code and message to the client. A handler that has
 * not settled after `deadlineMs` (--actor-hook-timeout, as for actor hooks) is answered `handler_timeout`:
 * a client must not wait forever on a backend that never answers. The call itself cannot be stopped; what
 * it returns later is dropped.
 */
export async function runHandler(fn: EventHandler, conn: Connection, args: unknown[], log: (msg: string, err: unknown) => void, deadlineMs: number): Promise<unknown> {
  try {
    const result = fn(conn, ...args);
    if (!isThenable(result)) return result;
    return await within(result, deadlineMs, () => {
      log(`request handler did not answer within ${deadlineMs} ms (namespace ${conn.namespace}); answered handler_timeout`, undefined);
      return new RtError('handler_timeout', `the request handler did not answer within ${deadlineMs} ms`, 504);
    });
  } catch (err) {
    if (err instanceof RtError) throw err;
    log(`request handler failed (namespace ${conn.namespace}):`, err);
    throw new RtError('handler_failed', 'the request handler failed', 500);
  }
}
