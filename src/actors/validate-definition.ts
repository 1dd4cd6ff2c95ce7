/**
 * The checks an actor file's default export passes before the server serves a channel with it. Types
 * are erased, not checked, when actor files load, so these are what stands between a typo and an
 * option silently ignored.
 */
import type { AnyActorDefinition } from './define.js';

const HOOKS = ['init', 'authorize', 'onJoin', 'onLeave', 'onMessage', 'onPublish', 'onTimer', 'onComputed', 'onStop'] as const;
const OPTIONS: readonly string[] = ['match', 'history', 'clientPublish', ...HOOKS];

/** The option a misspelt key was probably meant to be: same letters but for case, or at most two edits. */
function closest(key: string, known: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: { name: string; d: number } | undefined;
  for (const name of known) {
    const d = editDistance(lower, name.toLowerCase());
    if (d <= 2 && (!best || d < best.d)) best = { name, d };
  }
  return best?.name;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * Types are erased, not checked, when actor files load: a misspelt hook (`onMesage`) or a history bound of
 * the wrong kind would otherwise be ignored silently (a ttl that is not a number kept history, and so the
 * actor, forever).
 */
function validateOptions(d: Record<string, unknown>, file: string): void {
  for (const key of Object.keys(d)) {
    if (OPTIONS.includes(key)) continue;
    const hint = closest(key, OPTIONS);
    throw new Error(`${file}: "${key}" is not an actor option${hint ? ` (did you mean "${hint}"?)` : ''}; actor options: ${OPTIONS.join(', ')}`);
  }
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

