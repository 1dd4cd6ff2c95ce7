/**
 * The checks an actor file's default export passes before the server serves a channel with it. Types
 * are erased, not checked, when actor files load, so these are what stands between a typo and an
 * option silently ignored.
 */
import type { AnyActorDefinition } from './define.js';
import { unknownKey } from './unknown-key.js';

const HOOKS = ['init', 'authorize', 'onJoin', 'onLeave', 'onMessage', 'onPublish', 'onTimer', 'onComputed', 'onStop'] as const;
const OPTIONS: readonly string[] = ['match', 'history', 'clientPublish', ...HOOKS];

/**
 * Types are erased, not checked, when actor files load: a misspelt hook (`onMesage`) or a history bound of
 * the wrong kind would otherwise be ignored silently (a ttl that is not a number kept history, and so the
 * actor, forever).
 */
function validateOptions(d: Record<string, unknown>, file: string): void {
  const bad = unknownKey(d, OPTIONS, 'an actor option');
  if (bad) throw new Error(`${file}: ${bad}`);
  if (d.clientPublish !== undefined && typeof d.clientPublish !== 'boolean') throw new Error(`${file}: "clientPublish" must be true or false`);
  const h = d.history as Record<string, unknown> | undefined;
  if (h === undefined) return;
  if (!h || typeof h !== 'object' || Array.isArray(h)) throw new Error(`${file}: "history" must be { size?, ttlSeconds? }`);
  for (const key of Object.keys(h)) {
    if (key !== 'size' && key !== 'ttlSeconds') throw new Error(`${file}: "history.${key}" is not a history option (size, ttlSeconds)`);
  }
  // The same bounds as --history-size and --history-ttl.
  if (h.size !== undefined && !(Number.isInteger(h.size) && (h.size as number) >= 0 && (h.size as number) <= 1_000_000)) {
    throw new Error(`${file}: "history.size" must be an integer from 0 to 1000000`);
  }
  if (h.ttlSeconds !== undefined && !(typeof h.ttlSeconds === 'number' && Number.isFinite(h.ttlSeconds) && h.ttlSeconds >= 1)) {
    throw new Error(`${file}: "history.ttlSeconds" must be a number of seconds, at least 1`);
  }
}

/** What the loader checks in an actor file's export (`file` names it in the error); the test kit runs it too. */
export function validateActorDefinition(def: unknown, file: string): AnyActorDefinition {
  const d = def as AnyActorDefinition | undefined;
  if (!d || typeof d !== 'object') throw new Error(`${file}: the default export must be defineActor({ match, ... }) or defineHandlers({ ... }); helper modules go in a subfolder or a file whose name starts with "_"`);
  const list = Array.isArray(d.match) ? d.match : [d.match];
  if (list.length === 0 || !list.every((m) => typeof m === 'string' || m instanceof RegExp)) {
    throw new Error(`${file}: "match" must be a channel name or glob, a RegExp, or a list of them`);
  }
  for (const hook of HOOKS) {
    if (d[hook] !== undefined && typeof d[hook] !== 'function') throw new Error(`${file}: "${hook}" must be a function`);
  }
  validateOptions(d as unknown as Record<string, unknown>, file);
  return d;
}

