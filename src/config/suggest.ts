/**
 * "Did you mean …?" for a misspelt option: a flag, a config-file key or an RT_* variable. The name is
 * compared with punctuation and case removed (so `max_payload`, `max-payload` and `MAXPAYLOAD` all find
 * `maxPayload`), then by edit distance, so a typo is named instead of lost in the list of every option.
 */

const bare = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, '');

function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let before = prev;
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      // Two neighbours swapped ('prot') is one slip, not two.
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, before[j - 2]! + 1);
    }
    before = prev;
    prev = row;
  }
  return prev[b.length]!;
}

/** The candidate `name` most likely meant, or undefined when none is close. */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  const want = bare(name);
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(want, bare(c));
    if (d < bestD) [best, bestD] = [c, d];
  }
  // Up to one edit in four characters: 'prot' finds 'port', 'redis' does not find 'host'.
  return best !== undefined && bestD <= Math.max(1, Math.floor(want.length / 4)) ? best : undefined;
}

/** ' (did you mean X?)', or nothing. */
export function didYouMean(name: string, candidates: readonly string[], show: (c: string) => string = (c) => c): string {
  const c = closest(name, candidates);
  return c === undefined ? '' : ` (did you mean ${show(c)}?)`;
}
