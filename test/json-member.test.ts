// memberText must give exactly JSON.stringify(JSON.parse(text)[key]), or undefined (the caller then
// serialises): checked on hand-picked edge cases and on random values written compactly and spaced out.
import t from 'tap';
import { memberText } from '../src/protocol/json-member.js';

/** The texts for which memberText gives something other than JSON.stringify's text (or undefined). */
function wrong(texts: string[], key = 'data'): string[] {
  return texts.filter((text) => {
    const got = memberText(text, key);
    return got !== undefined && got !== JSON.stringify(JSON.parse(text)[key]);
  });
}

t.test('edge cases: taken exactly, or left to JSON.stringify', async (t) => {
  const taken: [string, string][] = [
    ['{"channel":"a","event":"e","data":{"x":1,"y":[true,false,null],"s":"hé 🔑"}}', '{"x":1,"y":[true,false,null],"s":"hé 🔑"}'],
    ['{"data":1}', '1'],
    ['{"data":-12.5}', '-12.5'],
    ['{"data":"text"}', '"text"'],
    ['{"data":null}', 'null'],
    ['{"data":[]}', '[]'],
    ['{"data":{}}', '{}'],
    [' { "event" : "e" , "data" : {"a":[1,{"b":"}]"}]} } ', '{"a":[1,{"b":"}]"}]}'],
    ['{"data":1,"data":{"k":2}}', '{"k":2}'],
    ['{"datum":1,"data":2,"d":3}', '2'],
  ];
  for (const [text, want] of taken) {
    t.equal(memberText(text, 'data'), want, text);
    t.equal(memberText(text, 'data'), JSON.stringify(JSON.parse(text).data), `${text}: as JSON.stringify writes it`);
  }
  const left = [
    '{"data":1.0}', // written 1
    '{"data":1e2}', // written 100
    '{"data":-0}', // written 0
    '{"data":12345678901234567890}', // past 2^53
    '{"data":1e400}', // Infinity: written null
    '{"data":{"a": 1}}', // whitespace inside the value
    '{"data":[1,\n2]}',
    '{"data":"\\u0041"}', // an escape: written "A"
    '{"d\\u0061ta":1}', // an escaped key naming the member
    '{"data":"x","event":"a\\"b"}', // a backslash anywhere
    '{"event":"e"}', // absent
    '{"data":1.5,"data":1.50}', // the last one counts, and it is not canonical
    `{"data":"${'x'.repeat(20_000)}"}`, // longer than the scan takes
  ];
  for (const text of left) t.equal(memberText(text, 'data'), undefined, text.slice(0, 60));
  // Not an object, or not JSON at all (callers parse first, but the scan must not be fooled).
  for (const text of ['[1]', '"data"', '{"data":', '{"data":[1,2}', '{"data":tru}', '{"data" 1}', '{"data":1,}x', '']) {
    t.equal(memberText(text, 'data'), undefined, `refused: ${text}`);
  }
});

t.test('random values: compact text is taken exactly, spaced-out text is left alone', async (t) => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const str = (): string => ['', 'a', 'héllo', 'x y', '}]{[,:', '🔑', 'true', '-1e5'][rnd(8)]!;
  const value = (depth: number): unknown => {
    switch (rnd(depth > 3 ? 5 : 7)) {
      case 0: return rnd(2) === 0;
      case 1: return null;
      case 2: return [0, -1, 42, 3.25, -0.5, 1e21, 123456789012, 0.1 + 0.2][rnd(8)];
      case 3: return str();
      case 4: return rnd(1000) - 500;
      case 5: return Array.from({ length: rnd(4) }, () => value(depth + 1));
      default: return Object.fromEntries(Array.from({ length: rnd(4) }, (_, i) => [str() + i, value(depth + 1)]));
    }
  };
  const bodies = Array.from({ length: 2000 }, () => ({ channel: 'c', event: 'e', data: value(0) }));
  const compact = bodies.map((b) => JSON.stringify(b));
  const spaced = bodies.map((b) => JSON.stringify(b, null, 2));
  t.same(wrong(compact), [], 'compact: every text taken is JSON.stringify\'s');
  t.same(wrong(spaced), [], 'spaced out: every text taken is JSON.stringify\'s');
  const taken = compact.filter((c) => memberText(c, 'data') !== undefined).length;
  t.equal(taken, compact.length, 'compact bodies (numbers as JavaScript writes them) are all taken as they are');
  const spacedTaken = spaced.filter((c) => memberText(c, 'data') !== undefined).length;
  t.ok(spacedTaken < spaced.length, `spaced-out containers are left to JSON.stringify (${spaced.length - spacedTaken} of ${spaced.length})`);
});
