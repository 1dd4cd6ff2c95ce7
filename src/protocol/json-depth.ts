/**
 * A bound on how deeply JSON from clients and backends may nest. JSON.parse takes any depth (V8's is
 * not recursive), but what comes after is: JSON.stringify when the payload is kept as its text
 * (encoded-payload.ts), the codecs, history, Redis. Past a few thousand levels those overflow the stack
 * and the request failed as `internal`. The bound is the msgpack one, so a value is accepted or refused
 * alike whichever encoding it came in.
 */
import { MAX_MSGPACK_DEPTH } from './plain-msgpack.js';

/** Levels of arrays and objects, the outermost counting as 1 (as MAX_MSGPACK_DEPTH counts them). */
export const MAX_JSON_DEPTH = MAX_MSGPACK_DEPTH;

/**
 * True when the JSON `text` nests deeper than `max`. Run on every frame and body, so it is cheap when
 * the answer is obviously no: text with at most `max` opening brackets cannot nest deeper, and counting
 * them is a handful of indexOf calls (a memchr). Only text with more brackets is scanned, skipping
 * strings with indexOf too; that scan costs a fraction of the JSON.parse that preceded it.
 */
export function jsonNestsDeeper(text: string, max = MAX_JSON_DEPTH): boolean {
  let brackets = 0;
  for (let i = text.indexOf('{'); i >= 0 && brackets <= max; i = text.indexOf('{', i + 1)) brackets++;
  for (let i = text.indexOf('['); i >= 0 && brackets <= max; i = text.indexOf('[', i + 1)) brackets++;
  if (brackets <= max) return false;
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      // To the closing quote: the next one not escaped, i.e. not after an odd run of backslashes.
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return false;
        let k = j - 1;
        while (text.charCodeAt(k) === 92 /* \ */) k--;
        if ((j - k) % 2 === 1) break;
      }
      i = j;
    } else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > max) return true;
    } else if (c === 93 /* ] */ || c === 125 /* } */) {
      depth--;
    }
  }
  return false;
}
