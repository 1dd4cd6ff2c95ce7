/**
 * User ids in signed JSON (Pusher presence `channel_data.user_id` and sign-in `user_data.id`, an auth
 * endpoint's `channel_data`, a JWT's `sub`). Laravel signs its ids as JSON integers, and 64-bit ids
 * (bigint keys, snowflakes) do not survive JSON.parse:
 * 12345678901234567891 and …892 both become 12345678901234567000, merging two users into one member.
 * So a number's id is the digits as they were signed, read back from the raw text.
 */

const MAX_ID_LENGTH = 200;

/**
 * The id `value` (what JSON.parse gave at `path`, a chain of object keys, in `raw`) stands for: a
 * string of 1-200 characters as is, a number as the text it was sent as (an integer's exact digits),
 * else undefined.
 */
export function signedUserId(value: unknown, raw: string, path: readonly string[]): string | undefined {
  let id = value;
  if (typeof value === 'number') {
    const text = Number.isSafeInteger(value) ? undefined : valueTextAt(raw, path);
    id = text !== undefined && /^-?\d+$/.test(text) ? text : String(value);
  }
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_ID_LENGTH ? id : undefined;
}

/** The literal text of the value at `path` in `raw`, valid JSON; undefined where a key is missing. */
export function valueTextAt(raw: string, path: readonly string[]): string | undefined {
  let text: string | undefined = raw;
  for (const key of path) {
    if (text === undefined) return undefined;
    text = topLevelValueText(text, key);
  }
  return text;
}

/** The literal text of `key`'s value in the JSON object `raw` (the last one, as JSON.parse keeps). */
function topLevelValueText(raw: string, key: string): string | undefined {
  let i = skipWs(raw, 0);
  if (raw[i] !== '{') return undefined;
  let found: string | undefined;
  i = skipWs(raw, i + 1);
  while (i < raw.length && raw[i] !== '}') {
    const keyEnd = endOfString(raw, i);
    const k = JSON.parse(raw.slice(i, keyEnd)) as string;
    i = skipWs(raw, skipWs(raw, keyEnd) + 1); // past ':'
    const end = endOfValue(raw, i);
    if (k === key) found = raw.slice(i, end);
    i = skipWs(raw, end);
    if (raw[i] === ',') i = skipWs(raw, i + 1);
  }
  return found;
}

function skipWs(s: string, i: number): number {
  while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r')) i++;
  return i;
}

/** `i` is at an opening quote; returns the index past the closing one. */
function endOfString(s: string, i: number): number {
  for (i++; i < s.length && s[i] !== '"'; i++) if (s[i] === '\\') i++;
  return i + 1;
}

function endOfValue(s: string, i: number): number {
  const c = s[i];
  if (c === '"') return endOfString(s, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    while (i < s.length) {
      const ch = s[i];
      if (ch === '"') {
        i = endOfString(s, i);
        continue;
      }
      if (ch === '{' || ch === '[') depth++;
      else if (ch === '}' || ch === ']') {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return i;
  }
  while (i < s.length && s[i] !== ',' && s[i] !== '}' && s[i] !== ']' && s[i] !== ' ' && s[i] !== '\t' && s[i] !== '\n' && s[i] !== '\r') i++;
  return i;
}
