/**
 * Which actor hook each shard is running right now, in shared memory. A shard stuck in a synchronous
 * hook cannot answer anything, so it writes this down before each hook and the main thread reads it
 * when the shard stops turning its event loop (see Supervisor.watchShards): the log then names the
 * hook, the actor's file and the channel instead of only "shard 1 is stuck".
 *
 * One slot of SLOT bytes per thread, written only by its thread: word 0 the nesting depth (a hook run
 * from inside another leaves the outer one's record), word 1 the label's length, word 2 the channel's,
 * a float at byte 16 when the outermost hook started (epoch ms), then the label and channel bytes.
 * The label and channel are written only when they change: a hot channel's hook costs a few stores.
 */
const SLOT = 512;
const LABEL_AT = 24;
const LABEL_MAX = 240;
const CHANNEL_AT = LABEL_AT + LABEL_MAX;
const CHANNEL_MAX = SLOT - CHANNEL_AT;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface Slot {
  i32: Int32Array;
  f64: Float64Array;
  u8: Uint8Array;
}

let mine: Slot | undefined;
let lastLabel: Uint8Array | undefined;
let lastChannel: string | undefined;

function slotOf(sab: SharedArrayBuffer, thread: number): Slot {
  const at = thread * SLOT;
  return { i32: new Int32Array(sab, at, 3), f64: new Float64Array(sab, at + 16, 1), u8: new Uint8Array(sab, at, SLOT) };
}

export function allocRunningCode(threads: number): SharedArrayBuffer {
  return new SharedArrayBuffer(threads * SLOT);
}

/** This thread records its hooks in slot `thread` (a shard, at start; other threads record nothing). */
export function recordRunningCode(sab: SharedArrayBuffer, thread: number): void {
  mine = slotOf(sab, thread);
  mine.i32[0] = 0;
  lastLabel = undefined;
  lastChannel = undefined;
}

/** A label's bytes, made once per hook of a definition (truncated to fit the slot). */
export function codeLabel(text: string): Uint8Array {
  const buf = new Uint8Array(LABEL_MAX);
  return buf.slice(0, encoder.encodeInto(text, buf).written);
}

export function enterCode(label: Uint8Array, channel: string, startedAt: number): void {
  const s = mine;
  if (!s || s.i32[0]++ > 0) return;
  if (label !== lastLabel) {
    lastLabel = label;
    s.u8.set(label, LABEL_AT);
    s.i32[1] = label.length;
  }
  if (channel !== lastChannel) {
    lastChannel = channel;
    s.i32[2] = encoder.encodeInto(channel, s.u8.subarray(CHANNEL_AT, CHANNEL_AT + CHANNEL_MAX)).written;
  }
  s.f64[0] = startedAt;
}

export function leaveCode(): void {
  if (mine && mine.i32[0]! > 0) mine.i32[0]!--;
}

export interface RunningCode {
  /** e.g. "onMessage of actor /srv/actors/chat.ts". */
  label: string;
  channel: string;
  /** When it started (epoch ms). */
  since: number;
}

/** What thread `thread` is running now, if it is in a hook (read by the main thread). */
export function runningCode(sab: SharedArrayBuffer, thread: number): RunningCode | undefined {
  const s = slotOf(sab, thread);
  if (s.i32[0]! <= 0) return undefined;
  // Copied out: TextDecoder does not read shared memory.
  const text = (at: number, len: number) => decoder.decode(s.u8.slice(at, at + Math.min(len, SLOT - at)));
  return { label: text(LABEL_AT, s.i32[1]!), channel: text(CHANNEL_AT, s.i32[2]!), since: s.f64[0]! };
}
