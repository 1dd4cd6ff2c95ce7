/**
 * Which actor definition serves a channel: the first user definition (files in name order) whose
 * pattern matches, else the built-in one. Every shard loads the same files, so any shard can own any channel.
 */
import { channelAllowed } from '../auth/jwt.js';
import type { ActorDefinition, AnyActorDefinition } from './define.js';
import { importFolder } from './folder.js';
import { isHandlerDefinition } from './handlers.js';
import { timeHooks } from './hook-timing.js';
import { validateActorDefinition } from './validate-definition.js';
import { isHiddenChannel } from '../runtime/hidden-channels.js';

export const BUILTIN_ACTOR: AnyActorDefinition = { match: '*' };

export interface LoadedActor {
  file: string;
  def: AnyActorDefinition;
  matches(channel: string): boolean;
}


function matcher(match: ActorDefinition['match']): (channel: string) => boolean {
  const list = (Array.isArray(match) ? match : [match]) as Array<string | RegExp>;
  const globs = list.filter((m): m is string => typeof m === 'string');
  // test() with the g or y flag starts from the previous match's lastIndex: every other channel missed.
  const regexps = list.filter((m): m is RegExp => m instanceof RegExp).map((r) => (r.global || r.sticky ? new RegExp(r.source, r.flags.replace(/[gy]/g, '')) : r));
  return (ch) => channelAllowed(globs, ch) || regexps.some((r) => r.test(ch));
}

export async function loadActors(dir: string): Promise<LoadedActor[]> {
  if (!dir) return [];
  const out: LoadedActor[] = [];
  for (const { file, exported } of await importFolder(dir)) {
    // Request handler files (defineHandlers) share the folder; loadHandlers picks those up.
    if (isHandlerDefinition(exported)) continue;
    const def = validateActorDefinition(exported, file);
    out.push({ file, def: timeHooks(def), matches: matcher(def.match) });
  }
  return out;
}

export class ActorRegistry {
  constructor(private readonly loaded: LoadedActor[]) {}

  definitionFor(channel: string): AnyActorDefinition {
    return this.actorFor(channel).def;
  }

  /** The definition serving `channel` and the file it came from ('built-in' for the default actor). */
  actorFor(channel: string): { def: AnyActorDefinition; file: string } {
    // The server's own channels keep the built-in behaviour, whatever pattern an application's actor has.
    if (isHiddenChannel(channel)) return { def: BUILTIN_ACTOR, file: 'built-in' };
    for (const a of this.loaded) if (a.matches(channel)) return a;
    return { def: BUILTIN_ACTOR, file: 'built-in' };
  }

  get files(): string[] {
    return this.loaded.map((a) => a.file);
  }
}

/** One line per actor file and what it matches, for the start log. */
export function describeActors(loaded: readonly LoadedActor[]): string[] {
  return loaded.map((a) => {
    const list = (Array.isArray(a.def.match) ? a.def.match : [a.def.match]) as Array<string | RegExp>;
    return `actor ${a.file}: match ${list.map((m) => (typeof m === 'string' ? m : String(m))).join(', ')}`;
  });
}
