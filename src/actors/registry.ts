/**
 * Which actor definition serves a channel: the first user definition (files in name order) whose
 * pattern matches, else the built-in one. Every shard loads the same files, so any shard can own any channel.
 */
import { basename } from 'node:path';
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
    out.push({ file, def: timeHooks(def, file), matches: matcher(def.match) });
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

function patternsOf(def: AnyActorDefinition): Array<string | RegExp> {
  return (Array.isArray(def.match) ? def.match : [def.match]) as Array<string | RegExp>;
}

/**
 * Warnings for actor files that can never serve a channel, each of their patterns being matched by an
 * earlier file's (the first match wins: two files with one pattern, or 'chat-*' before 'chat-vip-*').
 * A glob covers another when it matches that pattern's text: each `*` of the later one falls inside a `*`
 * of the earlier one. RegExps are compared with RegExps only, by source and flags.
 */
export function shadowedActors(loaded: readonly LoadedActor[]): string[] {
  const out: string[] = [];
  loaded.forEach((a, i) => {
    const by = new Map<string, string[]>();
    const covered = patternsOf(a.def).every((p) => {
      for (const e of loaded.slice(0, i)) {
        const q = patternsOf(e.def).find((q) => (typeof q === 'string' ? typeof p === 'string' && channelAllowed([q], p) : p instanceof RegExp && q.source === p.source && q.flags.replace(/[gy]/g, '') === p.flags.replace(/[gy]/g, '')));
        if (q === undefined) continue;
        const name = basename(e.file);
        by.set(name, [...(by.get(name) ?? []), String(q)]);
        return true;
      }
      return false;
    });
    if (!covered) return;
    const which = [...by].map(([f, ps]) => `${f}: ${[...new Set(ps)].join(', ')}`).join('; ');
    out.push(`actor ${a.file} never serves a channel: every pattern of its match is matched by an earlier file (${which}); files load in name order and the first match serves a channel`);
  });
  return out;
}

/** One line per actor file and what it matches, for the start log. */
export function describeActors(loaded: readonly LoadedActor[]): string[] {
  return loaded.map((a) => {
    const list = (Array.isArray(a.def.match) ? a.def.match : [a.def.match]) as Array<string | RegExp>;
    return `actor ${a.file}: match ${list.map((m) => (typeof m === 'string' ? m : String(m))).join(', ')}`;
  });
}
