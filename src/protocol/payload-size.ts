/**
 * The size of a client publish's payload, as `--max-whisper-size` counts it: the bytes of its JSON text
 * (strings by their UTF-8 length, binaries by their length), counted only until `cap` is passed so a
 * large payload costs no more than the limit. The same measure on every transport, whatever else the
 * frame carries (op, ref, channel, event).
 */
export function payloadSize(v: unknown, cap: number): number {
  let n = 0;
  const walk = (x: unknown, depth: number): void => {
    if (n > cap || depth > 64) return;
    if (x === null || x === undefined) n += 4;
    else if (typeof x === 'boolean') n += x ? 4 : 5;
    else if (typeof x === 'number') n += String(x).length;
    else if (typeof x === 'string') n += Buffer.byteLength(x) + 2;
    else if (x instanceof ArrayBuffer || ArrayBuffer.isView(x)) n += x.byteLength;
    else if (Array.isArray(x)) {
      n += 1 + Math.max(x.length, 1);
      for (const y of x) walk(y, depth + 1);
    } else if (typeof x === 'object') {
      n += 1;
      let keys = 0;
      for (const k in x as Record<string, unknown>) {
        keys++;
        n += Buffer.byteLength(k) + 4;
        walk((x as Record<string, unknown>)[k], depth + 1);
      }
      if (keys === 0) n += 1;
    } else n += 4;
  };
  walk(v, 0);
  return n;
}
