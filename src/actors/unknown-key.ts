/**
 * Keys of a user's definition object that are not options, named with the option they were probably
 * meant to be: definitions load with their types erased, so a misspelt hook would otherwise be ignored.
 */

/** A message naming the first key of `obj` not in `known` (with a suggestion), or undefined. */
export function unknownKey(obj: object, known: readonly string[], what: string): string | undefined {
  for (const key of Object.keys(obj)) {
    if (known.includes(key)) continue;
    const hint = closest(key, known);
    return `"${key}" is not ${what}${hint ? ` (did you mean "${hint}"?)` : ''}; known: ${known.join(', ')}`;
  }
  return undefined;
}

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
