/**
 * A small metrics registry over shared memory: labelled counters, gauges and histograms, one block of
 * Float64 slots per thread. Each thread writes only its own block (no atomics needed: one writer per
 * slot), and whichever shard answers /metrics or /api/stats reads every block and sums or lists them.
 *
 * Label values are enumerated up front (transports, reasons, routes, statuses are small fixed sets), so
 * the layout is a pure function of the catalogue below and identical in every thread. A value outside
 * the set is counted under "other" when the family has it, and dropped otherwise.
 */
import { FAMILIES, type FamilyName } from './metric-families.js';

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface FamilySpec {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  /** Label names in order, each with every value it may take. */
  readonly labels?: Readonly<Record<string, readonly string[]>>;
  /** Upper bounds of histogram buckets (seconds), ascending; +Inf is implied. */
  readonly buckets?: readonly number[];
  /** Listed per thread (a `thread` label) instead of summed over the host. */
  readonly perThread?: boolean;
  /** Per-thread figures only shards have (the main thread, the last block, is not listed). */
  readonly shardsOnly?: boolean;
}

export type Labels = Readonly<Record<string, string>>;

interface Layout {
  spec: FamilySpec;
  labelNames: string[];
  /** Per label: value → index. */
  index: Map<string, number>[];
  strides: number[];
  combos: number;
  /**
   * Slots per series: 1; 2 for a gauge with several labels (the value, then 1 once it was ever set: such
   * a family lists only the combinations that occurred, and one that went back to 0 still occurred);
   * buckets + 1 (+Inf) + sum + count for a histogram.
   */
  width: number;
  offset: number;
}

function buildLayout(families: readonly FamilySpec[]): { byName: Map<string, Layout>; slots: number } {
  const byName = new Map<string, Layout>();
  let offset = 0;
  for (const spec of families) {
    const labelNames = Object.keys(spec.labels ?? {});
    const values = labelNames.map((l) => spec.labels![l]!);
    const strides: number[] = [];
    let combos = 1;
    for (let i = values.length - 1; i >= 0; i--) {
      strides[i] = combos;
      combos *= values[i]!.length;
    }
    const width = spec.type === 'histogram' ? spec.buckets!.length + 3 : spec.type === 'gauge' && labelNames.length > 1 ? 2 : 1;
    byName.set(spec.name, { spec, labelNames, index: values.map((v) => new Map(v.map((x, i) => [x, i]))), strides, combos, width, offset });
    offset += combos * width;
  }
  return { byName, slots: offset };
}

const LAYOUT = buildLayout(FAMILIES);

/** Index of a series in one thread's block, or -1 when a label value is unknown and there is no "other". */
function slotIn(l: Layout, labels?: Labels): number {
  let combo = 0;
  for (let i = 0; i < l.labelNames.length; i++) {
    const v = labels?.[l.labelNames[i]!] ?? '';
    const idx = l.index[i]!.get(v) ?? l.index[i]!.get('other');
    if (idx === undefined) return -1;
    combo += idx * l.strides[i]!;
  }
  return l.offset + combo * l.width;
}

function marks(l: Layout): boolean {
  return l.spec.type === 'gauge' && l.width === 2;
}

/** A pre-resolved series: hot paths keep one and skip the label lookups. */
export class Series {
  constructor(
    private readonly f: Float64Array,
    private readonly at: number,
    private readonly buckets?: readonly number[],
    /** A gauge that marks itself as having occurred (Layout.width 2). */
    private readonly marks = false,
  ) {}
  inc(n = 1): void {
    if (this.at < 0) return;
    this.f[this.at] += n;
    if (this.marks) this.f[this.at + 1] = 1;
  }
  set(v: number): void {
    if (this.at < 0) return;
    this.f[this.at] = v;
    if (this.marks) this.f[this.at + 1] = 1;
  }
  /** Histogram: records one observation (seconds). */
  observe(v: number): void {
    if (this.at < 0) return;
    const b = this.buckets!;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.f[this.at + i] += 1;
    this.f[this.at + b.length + 1] += v;
    this.f[this.at + b.length + 2] += 1;
  }
}

export class Metrics {
  private readonly f: Float64Array;
  private readonly base: number;
  constructor(
    readonly sab: SharedArrayBuffer,
    readonly threads: number,
    /** The thread this instance writes for. */
    readonly thread: number,
  ) {
    this.f = new Float64Array(sab);
    this.base = thread * LAYOUT.slots;
  }

  static alloc(threads: number): SharedArrayBuffer {
    return new SharedArrayBuffer(threads * LAYOUT.slots * 8);
  }

  private slot(name: FamilyName, labels?: Labels): number {
    return slotIn(LAYOUT.byName.get(name)!, labels);
  }

  series(name: FamilyName, labels?: Labels): Series {
    const l = LAYOUT.byName.get(name)!;
    const s = slotIn(l, labels);
    return new Series(this.f, s < 0 ? -1 : this.base + s, l.spec.buckets, marks(l));
  }

  inc(name: FamilyName, labels?: Labels, n = 1): void {
    const l = LAYOUT.byName.get(name)!;
    const s = slotIn(l, labels);
    if (s < 0) return;
    this.f[this.base + s] += n;
    if (marks(l)) this.f[this.base + s + 1] = 1;
  }

  set(name: FamilyName, labels: Labels | undefined, v: number): void {
    const l = LAYOUT.byName.get(name)!;
    const s = slotIn(l, labels);
    if (s < 0) return;
    this.f[this.base + s] = v;
    if (marks(l)) this.f[this.base + s + 1] = 1;
  }

  observe(name: FamilyName, labels: Labels | undefined, v: number): void {
    this.series(name, labels).observe(v);
  }

  /**
   * Zeroes this thread's gauges: a replaced shard starts with no connections. Its counters go on from
   * where the dead shard left them, so host totals never go backwards.
   */
  resetGauges(): void {
    // Values only: a series that occurred before the restart still did (see Layout.width).
    for (const l of LAYOUT.byName.values()) {
      if (l.spec.type !== 'gauge') continue;
      for (let c = 0; c < l.combos; c++) this.f[this.base + l.offset + c * l.width] = 0;
    }
  }

  /** One thread's value of a counter or gauge series (`thread` defaults to every thread, summed). */
  value(name: FamilyName, labels?: Labels, thread?: number): number {
    const s = this.slot(name, labels);
    if (s < 0) return 0;
    if (thread !== undefined) return this.f[thread * LAYOUT.slots + s]!;
    let n = 0;
    for (let t = 0; t < this.threads; t++) n += this.f[t * LAYOUT.slots + s]!;
    return n;
  }

  /**
   * Every series of a family with its labels and value summed over threads (or per thread with
   * `perThread`); zero series are left out. Histograms are not listed here (see render).
   */
  list(name: FamilyName, perThread = false): { labels: Record<string, string>; value: number; thread?: number }[] {
    const l = LAYOUT.byName.get(name)!;
    const out: { labels: Record<string, string>; value: number; thread?: number }[] = [];
    const names = l.labelNames.map((_, i) => [...l.index[i]!.keys()]);
    for (let c = 0; c < l.combos; c++) {
      const labels = comboLabels(l, names, c);
      const at = l.offset + c * l.width;
      if (perThread) {
        for (let t = 0; t < this.threads; t++) {
          const v = this.f[t * LAYOUT.slots + at]!;
          if (v !== 0) out.push({ labels, value: v, thread: t });
        }
      } else {
        let v = 0;
        for (let t = 0; t < this.threads; t++) v += this.f[t * LAYOUT.slots + at]!;
        if (v !== 0) out.push({ labels, value: v });
      }
    }
    return out;
  }

  /**
   * Prometheus text exposition (format 0.0.4) of every family. Counters and gauges with one label or
   * none list every series, zeros included (so rate() sees a counter from its first increment);
   * families with several labels, and labelled histograms, list only series that moved (a gauge's
   * once set, so one back at 0 reads 0 rather than vanishing).
   */
  render(threadName: (t: number) => string): string {
    const lines: string[] = [];
    for (const l of LAYOUT.byName.values()) {
      const { spec } = l;
      lines.push(`# HELP ${spec.name} ${spec.help}`, `# TYPE ${spec.name} ${spec.type}`);
      const names = l.labelNames.map((_, i) => [...l.index[i]!.keys()]);
      const showZeros = l.labelNames.length <= 1;
      for (let c = 0; c < l.combos; c++) {
        const labels = comboLabels(l, names, c);
        const at = l.offset + c * l.width;
        const listed = spec.shardsOnly ? this.threads - 1 : this.threads;
        const groups = spec.perThread ? Array.from({ length: listed }, (_, t) => [t]) : [Array.from({ length: this.threads }, (_, t) => t)];
        for (const threads of groups) {
          const sum = (i: number) => threads.reduce((n, t) => n + this.f[t * LAYOUT.slots + at + i]!, 0);
          const lab = spec.perThread ? { thread: threadName(threads[0]!), ...labels } : labels;
          if (spec.type !== 'histogram') {
            const v = sum(0);
            if (v !== 0 || showZeros || (marks(l) && sum(1) > 0)) lines.push(`${spec.name}${fmtLabels(lab)} ${fmtValue(v)}`);
            continue;
          }
          const b = spec.buckets!;
          const count = sum(b.length + 2);
          // Labelled histograms (e.g. per actor hook) list only the series that were observed.
          if (count === 0 && l.labelNames.length > 0) continue;
          let cum = 0;
          for (let i = 0; i <= b.length; i++) {
            cum += sum(i);
            lines.push(`${spec.name}_bucket${fmtLabels({ ...lab, le: i < b.length ? String(b[i]) : '+Inf' })} ${fmtValue(cum)}`);
          }
          lines.push(`${spec.name}_sum${fmtLabels(lab)} ${fmtValue(sum(b.length + 1))}`, `${spec.name}_count${fmtLabels(lab)} ${fmtValue(count)}`);
        }
      }
    }
    return lines.join('\n') + '\n';
  }

  /** Histogram totals summed over threads: count, sum and cumulative bucket counts (for /api/stats). */
  histogram(name: FamilyName, labels?: Labels): { count: number; sum: number; buckets: { le: number; count: number }[] } {
    const l = LAYOUT.byName.get(name)!;
    const s = this.slot(name, labels);
    const b = l.spec.buckets!;
    const at = (i: number) => {
      let n = 0;
      for (let t = 0; t < this.threads; t++) n += this.f[t * LAYOUT.slots + s + i]!;
      return n;
    };
    let cum = 0;
    const buckets = b.map((le, i) => ({ le, count: (cum += at(i)) }));
    return { count: at(b.length + 2), sum: at(b.length + 1), buckets };
  }
}

function comboLabels(l: Layout, names: string[][], c: number): Record<string, string> {
  const labels: Record<string, string> = {};
  for (let i = 0; i < l.labelNames.length; i++) labels[l.labelNames[i]!] = names[i]![Math.floor(c / l.strides[i]!) % names[i]!.length]!;
  return labels;
}

function fmtLabels(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

function fmtValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/**
 * The registry of the current thread. Each worker thread has its own module instance, so this is per
 * thread; a shard binds it to the host's shared block at start. Until then (or in code running outside
 * a server) writes land in a private scratch block nobody reads.
 */
let current = new Metrics(Metrics.alloc(1), 1, 0);

export function metrics(): Metrics {
  return current;
}

export function bindThreadMetrics(m: Metrics): void {
  current = m;
}
