/**
 * owner(channel): which shard's actor owns a channel. FNV-1a over UTF-16 code units is stable across
 * threads and processes and cheap enough to run on every publish.
 */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export function ownerOf(channel: string, shards: number): number {
  return hashString(channel) % shards;
}

/** Socket ids are `<thread>.<unique>` so any thread can tell where a socket lives from its id alone. */
export function threadOfSocket(id: string): number {
  const dot = id.indexOf('.');
  if (dot <= 0) return -1;
  const n = Number(id.slice(0, dot));
  return Number.isInteger(n) ? n : -1;
}
