/**
 * Keys of a user's definition object that are not options, named with the option they were probably
 * meant to be: definitions load with their types erased, so a misspelt hook would otherwise be ignored.
 */
import { closest } from '../config/suggest.js';

/** A message naming the first key of `obj` not in `known` (with a suggestion), or undefined. */
export function unknownKey(obj: object, known: readonly string[], what: string): string | undefined {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const hint = closest(key, known);
    return `"${key}" is not ${what}${hint ? ` (did you mean "${hint}"?)` : ''}; known: ${known.join(', ')}`;
  }
  return undefined;
}
