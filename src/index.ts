export { version } from './version.js';
export { createServer, startServer, type RtServer, type ServerOptions, type ThreadOptions } from './server.js';
export {
  defineActor,
  ActorError,
  type ActorDefinition,
  type ActorContext,
  type ActorTimers,
  type ComputeResult,
  type EventMap,
  type JoinResult,
  type MessageOf,
  type MessageReply,
  type StopReason,
  type Subscriber,
  type OutgoingMessage,
  type PublishDelivery,
} from './actors/define.js';
export { defineHandlers, HandlerError, ackArgs, type AckArgs, type HandlerDefinition, type Connection, type EventHandler, type Handshake } from './actors/handlers.js';
export { MemoryClient, type MemoryIdentity } from './transports/memory.js';
export { RtError } from './errors.js';
export { ConfigError, loadConfig } from './config/load.js';
export { OPTIONS, type ServerConfig } from './config/schema.js';
export { signJwt, type JwtClaims } from './auth/jwt.js';
export { createLogger, type Logger, type LogLevel, type LogFormat, type LogOptions } from './log.js';
export type { Member, Publication, StreamPosition } from './protocol/native.js';
