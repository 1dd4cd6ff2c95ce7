/**
 * The text of one member of a JSON object's text, taken from the text instead of re-serialising the
 * parsed value: the HTTP API parses a publish body (to validate it) and then needs the payload's JSON
 * text, which travels as such to every wire frame (encoded-payload.ts). JSON.stringify of the parsed
 * payload was 5 % of the CPU of `POST /api/publish` (docs/benchmarks.md, seventh session).
 *
 * The text returned is exactly what JSON.stringify(JSON.parse(text)[key]) gives, or undefined and the
 * caller serialises: only text that JSON.stringify would write the same way is taken, that is without a
 * backslash anywhere in the body (an escape may be written differently, and an escaped key may name the
 * member), without whitespace between the value's tokens, and with every number as String(Number(n))
 * writes it (not 1.0, 1e2, -0, or an integer past 2^53). One difference is let through: an object with
 * a key twice keeps both in the text (JSON.stringify keeps the last), which every JSON parser reads as
 * the same value.
 *
 * Written here rather than taken from a library: it is a scan of a text JSON.parse has just accepted,
 * and its point is to cost less than the JSON.stringify it saves.
 */

/** Bodies longer than this are serialised: the scan is JavaScript, JSON.stringify native code. */
const MAX_SCAN = 16 * 1024;

const QUOTE = 0x22;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACK = 0x5b;
const RBRACK = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipWs(t: string, i: number): number {
  while (isWs(t.charCodeAt(i))) i++;
  return i;
}

/** Where a number starts: a minus or a digit. */
function isNumStart(c: number): boolean {
  return c === 0x2d || (c >= 0x30 && c <= 0x39);
}

/** Number characters: digits, sign, point, exponent. */
function isNumChar(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
}

/** Set by scanValue: false when the value's text is not what JSON.stringify writes. */
let canonical = true;

/** The end of the string starting at t[i] === '"' (no backslash in `t`: the next quote ends it), or -1. */
function stringEnd(t: string, i: number): number {
  const q = t.indexOf('"', i + 1);
  return q < 0 ? -1 : q + 1;
}

function numberEnd(t: string, i: number): number {
  const start = i;
  while (isNumChar(t.charCodeAt(i))) i++;
  const n = t.slice(start, i);
  if (String(Number(n)) !== n) canonical = false;
  return i;
}

/** The end of the value starting at t[i], or -1; clears `canonical` for text JSON.stringify writes otherwise. */
function scanValue(t: string, i: number): number {
  const c = t.charCodeAt(i);
  if (c === QUOTE) return stringEnd(t, i);
  if (c === LBRACE || c === LBRACK) {
    let depth = 0;
    const n = t.length;
    while (i < n) {
      const d = t.charCodeAt(i);
      if (d === QUOTE) {
        i = stringEnd(t, i);
        if (i < 0) return -1;
        continue;
      }
      if (d === LBRACE || d === LBRACK) depth++;
      else if (d === RBRACE || d === RBRACK) {
        if (--depth === 0) return i + 1;
      } else if (isWs(d)) canonical = false;
      else if (isNumStart(d)) {
        i = numberEnd(t, i);
        continue;
      }
      // ':', ',', and the letters of true, false and null
      i++;
    }
    return -1;
  }
  if (isNumStart(c)) return numberEnd(t, i);
  for (const lit of ['true', 'false', 'null']) if (t.startsWith(lit, i)) return i + lit.length;
  return -1;
}

/**
 * JSON.stringify(JSON.parse(text)[key]) read off `text`, the JSON text of an object that JSON.parse
 * accepted; undefined when it cannot be read off exactly (see above) or the member is absent.
 */
export function memberText(text: string, key: string): string | undefined {
  if (text.length > MAX_SCAN || text.includes('\\')) return undefined;
  let i = skipWs(text, 0);
  if (text.charCodeAt(i) !== LBRACE) return undefined;
  i = skipWs(text, i + 1);
  let found: string | undefined;
  let more = false; // after a comma: another member must follow
  while (text.charCodeAt(i) === QUOTE) {
    const keyEnd = stringEnd(text, i);
    if (keyEnd < 0) return undefined;
    const isKey = keyEnd - i - 2 === key.length && text.startsWith(key, i + 1);
    i = skipWs(text, keyEnd);
    if (text.charCodeAt(i) !== COLON) return undefined;
    const start = skipWs(text, i + 1);
    canonical = true;
    const end = scanValue(text, start);
    if (end < 0) return undefined;
    // The last member of a name is the one JSON.parse keeps.
    if (isKey) found = canonical ? text.slice(start, end) : undefined;
    i = skipWs(text, end);
    more = text.charCodeAt(i) === COMMA;
    if (!more) break;
    i = skipWs(text, i + 1);
  }
  if (more || text.charCodeAt(i) !== RBRACE || skipWs(text, i + 1) !== text.length) return undefined;
  return found;
}
