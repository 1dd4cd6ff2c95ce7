// A strict parser of the Prometheus text exposition format (0.0.4), for tests: it throws on anything a
// Prometheus server would reject or misread (bad names, bad escapes, duplicate series, samples outside
// their family, histogram buckets that are not cumulative or do not end in +Inf = _count).

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  help?: string;
  samples: Sample[];
}

const METRIC = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function parseValue(s: string, line: number): number {
  if (s === 'NaN') return NaN;
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`line ${line}: bad value ${JSON.stringify(s)}`);
  return Number(s);
}

function parseLabels(src: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1; // after '{'
  for (;;) {
    if (src[i] === '}') return { labels, rest: src.slice(i + 1) };
    const eq = src.indexOf('=', i);
    if (eq < 0) throw new Error(`line ${line}: label without "="`);
    const name = src.slice(i, eq);
    if (!LABEL.test(name)) throw new Error(`line ${line}: bad label name ${JSON.stringify(name)}`);
    if (name in labels) throw new Error(`line ${line}: label ${name} twice`);
    if (src[eq + 1] !== '"') throw new Error(`line ${line}: label value must be quoted`);
    let j = eq + 2;
    let v = '';
    for (;;) {
      const c = src[j];
      if (c === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (c === '"') break;
      if (c === '\\') {
        const n = src[j + 1];
        if (n === 'n') v += '\n';
        else if (n === '\\' || n === '"') v += n;
        else throw new Error(`line ${line}: bad escape \\${n}`);
        j += 2;
        continue;
      }
      if (c === '\n') throw new Error(`line ${line}: raw newline in label value`);
      v += c;
      j++;
    }
    labels[name] = v;
    i = j + 1;
    if (src[i] === ',') i++;
    else if (src[i] !== '}') throw new Error(`line ${line}: expected "," or "}" after a label`);
  }
}

/** The family a sample name belongs to, given the families declared so far. */
function familyOf(name: string, families: Map<string, Family>): Family | undefined {
  const f = families.get(name);
  if (f) return f;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = families.get(name.slice(0, -suffix.length));
    if (base && (base.type === 'histogram' || (base.type === 'summary' && suffix !== '_bucket'))) return base;
  }
  return undefined;
}

export function parsePrometheus(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, Family>();
  const seen = new Set<string>();
  let current: Family | undefined;
  const closed = new Set<string>();
  text
    .slice(0, -1)
    .split('\n')
    .forEach((raw, idx) => {
      const line = idx + 1;
      if (raw === '') throw new Error(`line ${line}: empty line`);
      if (raw.startsWith('#')) {
        const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
        if (!m) return; // a plain comment
        const [, kind, name, rest] = m as unknown as [string, string, string, string];
        if (!METRIC.test(name)) throw new Error(`line ${line}: bad metric name ${name}`);
        let f = families.get(name);
        if (f && closed.has(name)) throw new Error(`line ${line}: family ${name} declared again after other families`);
        if (!f) {
          if (current) closed.add(current.name);
          f = { name, type: 'untyped', samples: [] };
          families.set(name, f);
          current = f;
        }
        if (kind === 'TYPE') {
          if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`line ${line}: bad type ${rest}`);
          if (f.samples.length) throw new Error(`line ${line}: TYPE of ${name} after its samples`);
          f.type = rest as Family['type'];
        } else {
          if (f.help !== undefined) throw new Error(`line ${line}: HELP of ${name} twice`);
          f.help = rest;
        }
        return;
      }
      const nm = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(raw);
      if (!nm) throw new Error(`line ${line}: bad sample ${JSON.stringify(raw)}`);
      const name = nm[1]!;
      let rest = raw.slice(name.length);
      let labels: Record<string, string> = {};
      if (rest.startsWith('{')) ({ labels, rest } = parseLabels(rest, line));
      const vm = /^ (\S+)( -?\d+)?$/.exec(rest);
      if (!vm) throw new Error(`line ${line}: expected " <value>" after the series in ${JSON.stringify(raw)}`);
      const value = parseValue(vm[1]!, line);
      const f = familyOf(name, families);
      if (!f) throw new Error(`line ${line}: sample ${name} has no # TYPE`);
      if (f !== current) throw new Error(`line ${line}: sample ${name} is not next to its family's other samples`);
      if (f.type === 'counter' && !(value >= 0)) throw new Error(`line ${line}: counter ${name} is ${value}`);
      const key = name + JSON.stringify(Object.entries(labels).sort());
      if (seen.has(key)) throw new Error(`line ${line}: duplicate series ${raw}`);
      seen.add(key);
      f.samples.push({ name, labels, value });
    });
  for (const f of families.values()) if (f.type === 'histogram') checkHistogram(f);
  return families;
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: { le: number; v: number }[]; count?: number; sum?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { buckets: [] }));
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}_bucket without le`);
      g.buckets.push({ le: parseValue(le, 0), v: s.value });
    } else if (s.name === `${f.name}_count`) g.count = s.value;
    else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else throw new Error(`histogram ${f.name} has a sample ${s.name}`);
  }
  for (const [key, g] of groups) {
    if (g.count === undefined || g.sum === undefined) throw new Error(`histogram ${f.name}${key}: missing _count or _sum`);
    for (let i = 1; i < g.buckets.length; i++) {
      if (!(g.buckets[i]!.le > g.buckets[i - 1]!.le)) throw new Error(`histogram ${f.name}${key}: le not ascending`);
      if (g.buckets[i]!.v < g.buckets[i - 1]!.v) throw new Error(`histogram ${f.name}${key}: buckets not cumulative`);
    }
    const last = g.buckets[g.buckets.length - 1];
    if (!last || last.le !== Infinity) throw new Error(`histogram ${f.name}${key}: no +Inf bucket`);
    if (last.v !== g.count) throw new Error(`histogram ${f.name}${key}: +Inf bucket ${last.v} != _count ${g.count}`);
  }
}

/** Sum of a family's samples (by sample name) whose labels include `match`. */
export function valueOf(families: Map<string, Family>, sample: string, match: Record<string, string> = {}): number {
  const base = sample.replace(/_(bucket|sum|count)$/, '');
  const f = families.get(sample) ?? families.get(base);
  if (!f) throw new Error(`no family for ${sample}`);
  let n = 0;
  for (const s of f.samples) if (s.name === sample && Object.entries(match).every(([k, v]) => s.labels[k] === v)) n += s.value;
  return n;
}
