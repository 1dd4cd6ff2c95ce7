/**
 * Resolves the configuration from its four sources and validates every value, so a bad setting stops
 * the server at start with a message naming the key and what it accepts — never later, at runtime.
 */
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { OPTIONS, DEFAULT_WORKERS, envOf, flagOf, type OptionSpec, type ServerConfig } from './schema.js';
import { closest, didYouMean } from './suggest.js';

export class ConfigError extends Error {
  readonly code = 'config_invalid';
  readonly key: string;
  constructor(key: string, message: string) {
    super(message);
    this.name = 'ConfigError';
    this.key = key;
  }
}

export type ConfigSource = 'flag' | 'env' | 'file' | 'code' | 'default';

const UNITS: Record<string, number> = { b: 1, kb: 1024, k: 1024, mb: 1024 ** 2, m: 1024 ** 2, gb: 1024 ** 3, g: 1024 ** 3 };
const DURATION: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

function describe(spec: OptionSpec): string {
  switch (spec.type) {
    case 'int': return `an integer${range(spec)}`;
    case 'bool': return 'true or false (also 1/0, yes/no)';
    case 'enum': return `one of ${spec.choices!.join(', ')}`;
    case 'list': return spec.choices ? `a comma-separated list of ${spec.choices.join(', ')}` : 'a comma-separated list';
    case 'duration': return `a duration in seconds or with a unit (ms, s, m, h, d)${range(spec)}`;
    case 'bytes': return `a size in bytes or with a unit (kb, mb, gb)${range(spec)}`;
    case 'workers': return `'auto' or an integer${range(spec)}`;
    case 'json': return 'a JSON value (in the config file, or as JSON text in a flag or the environment)';
    default: return 'a string';
  }
}

function range(spec: OptionSpec): string {
  if (spec.min !== undefined && spec.max !== undefined) return ` from ${spec.min} to ${spec.max}`;
  if (spec.min !== undefined) return ` of at least ${spec.min}`;
  return '';
}

/** The config file being read, so that an error in it names the file (see loadConfig). */
let filePath = '';

function bad(spec: OptionSpec, source: ConfigSource, raw: unknown): never {
  const where = nameOf(spec, source);
  const layer = source === 'file' && filePath ? `file ${filePath}` : source;
  throw new ConfigError(spec.key, `invalid value ${JSON.stringify(raw)} for ${where} (${layer}): expected ${describe(spec)}`);
}

function checkRange(spec: OptionSpec, source: ConfigSource, raw: unknown, n: number): number {
  if (!Number.isFinite(n)) bad(spec, source, raw);
  if (spec.min !== undefined && n < spec.min) bad(spec, source, raw);
  if (spec.max !== undefined && n > spec.max) bad(spec, source, raw);
  return n;
}

/** Converts one raw value (string from argv/env, or any JSON value) to the option's type. */
export function coerce(spec: OptionSpec, raw: unknown, source: ConfigSource): unknown {
  switch (spec.type) {
    case 'string':
      if (typeof raw !== 'string') bad(spec, source, raw);
      return raw;
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isInteger(n)) bad(spec, source, raw);
      return checkRange(spec, source, raw, n);
    }
    case 'workers': {
      if (raw === 'auto') return DEFAULT_WORKERS();
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isInteger(n)) bad(spec, source, raw);
      return checkRange(spec, source, raw, n);
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      // Any case: .env files and compose files often say TRUE or True.
      if (typeof raw === 'string' && /^(true|1|yes)$/i.test(raw.trim())) return true;
      if (typeof raw === 'string' && /^(false|0|no)$/i.test(raw.trim())) return false;
      return bad(spec, source, raw);
    case 'enum':
      if (typeof raw !== 'string' || !spec.choices!.includes(raw)) bad(spec, source, raw);
      return raw;
    case 'list': {
      let items: string[];
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) items = raw;
      else if (typeof raw === 'string') items = raw.split(',').map((s) => s.trim()).filter(Boolean);
      else bad(spec, source, raw);
      // A list with choices (e.g. transports) names things that must exist: a typo fails the start.
      if (spec.choices && items.some((x) => !spec.choices!.includes(x))) bad(spec, source, raw);
      return items;
    }
    case 'duration': {
      if (typeof raw === 'number') return checkRange(spec, source, raw, raw);
      const m = typeof raw === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim()) : null;
      if (!m) bad(spec, source, raw);
      return checkRange(spec, source, raw, Number(m[1]) * DURATION[m[2] ?? 's']!);
    }
    case 'json':
      if (typeof raw !== 'string') return raw;
      try {
        return JSON.parse(raw);
      } catch {
        return bad(spec, source, raw);
      }
    case 'bytes': {
      if (typeof raw === 'number') return checkRange(spec, source, raw, Math.floor(raw));
      const m = typeof raw === 'string' ? /^(\d+(?:\.\d+)?)\s*(b|kb?|mb?|gb?)?$/i.exec(raw.trim()) : null;
      if (!m) bad(spec, source, raw);
      return checkRange(spec, source, raw, Math.floor(Number(m[1]) * UNITS[(m[2] ?? 'b').toLowerCase()]!));
    }
  }
}

export interface ConfigInputs {
  /** Parsed CLI flags, keyed by camelCase key, values still raw strings (or true for bare booleans). */
  flags?: Partial<Record<keyof ServerConfig, unknown>>;
  env?: Record<string, string | undefined>;
  /** Options passed from code (createServer); they rank with CLI flags. */
  code?: Partial<Record<keyof ServerConfig, unknown>>;
}

const quote = (k: string) => `"${k}"`;

/**
 * One warning per RT_* variable that names no option: unlike a flag or a config-file key it cannot stop
 * the start (the environment is shared with other programs), but a typo must not be silently ignored.
 */
export function unknownEnvironment(env: Record<string, string | undefined>): { variable: string; message: string }[] {
  const official = OPTIONS.map((o) => envOf(o.key));
  // The name derived from the flag, where the option's variable is another (RT_REDIS -> RT_REDIS_URL).
  const derived = new Map(OPTIONS.filter((o) => o.env).map((o) => ['RT_' + flagOf(o.key).replace(/-/g, '_').toUpperCase(), o.env!]));
  return Object.keys(env)
    .filter((v) => v.startsWith('RT_') && !official.includes(v))
    .map((variable) => {
      const meant = derived.get(variable) ?? closest(variable, official);
      return { variable, message: `environment variable ${variable} names no rt-actors option and is ignored${meant ? ` (did you mean ${meant}?)` : ''}; the variables are listed in docs/configuration.md` };
    });
}

/** Where each option of a loaded configuration came from (see ignoredOptions). */
const SOURCES = new WeakMap<ServerConfig, Partial<Record<keyof ServerConfig, ConfigSource>>>();

const WHERE: Partial<Record<ConfigSource, string>> = { file: ' (config file)', code: ' (createServer option)' };

/** How an option is named to the user, by where it was set. */
function nameOf(spec: OptionSpec, source: ConfigSource): string {
  return source === 'flag' ? `--${flagOf(spec.key)}` : source === 'env' ? envOf(spec.key) : spec.key;
}

/**
 * An option as the user wrote it, for errors found after loading: `--auth-endpoint`, `RT_AUTH_ENDPOINT`
 * or `authEndpoint (config file)`; the flag when it was not set or the configuration was not loaded here.
 */
export function optionName(config: ServerConfig, key: keyof ServerConfig, { where = true } = {}): string {
  const spec = OPTIONS.find((o) => o.key === key)!;
  const source = SOURCES.get(config)?.[key];
  if (!source || source === 'default') return `--${flagOf(key)}`;
  return `${nameOf(spec, source)}${where ? WHERE[source] ?? '' : ''}`;
}

/**
 * `message`, written with flags (`--redis: …`), with each option it names as the user set it: a check
 * made outside the loader (a Redis URL, a TLS file, the actors folder) reads its option's value alone.
 */
export function namedAsSet(config: ServerConfig, message: string): string {
  return message.replace(/--([a-z][a-z0-9-]*)/g, (flag, name: string) => {
    const spec = OPTIONS.find((o) => flagOf(o.key) === name);
    return spec ? optionName(config, spec.key) : flag;
  });
}

/**
 * One warning per option set (not defaulted) that has no effect because what it depends on is off:
 * --dashboard-token without --dashboard, --redis-prefix without --redis, and so on (the schema's
 * `needs`). They are not refused, since turning a feature off should not require unsetting its
 * settings, but they are not accepted in silence either.
 */
export function ignoredOptions(config: ServerConfig): { key: string; message: string }[] {
  const sources = SOURCES.get(config) ?? {};
  const on = (k: keyof ServerConfig) => {
    const v = config[k] as unknown;
    return Array.isArray(v) ? v.length > 0 : !!v;
  };
  const ignored = OPTIONS.filter((o) => o.needs && sources[o.key] && sources[o.key] !== 'default' && !o.needs.some(on)).map((o) => ({
    key: o.key,
    message: `${nameOf(o, sources[o.key]!)}${WHERE[sources[o.key]!] ?? ''} has no effect without ${o.needs!.map((k) => `--${flagOf(k)}`).join(' or ')}: it is ignored`,
  }));
  for (const o of OPTIONS) {
    const src = sources[o.key];
    if (!o.needsTransport || !src || src === 'default' || config.transports.includes(o.needsTransport)) continue;
    ignored.push({ key: o.key, message: `${nameOf(o, src)}${WHERE[src] ?? ''} has no effect: --transports (${config.transports.join(',') || 'none'}) leaves out ${o.needsTransport}; it is ignored` });
  }
  // Partly without effect: the Pusher protocol has no token at connect, so nothing can be required of
  // its connections. Said, so that no operator believes every connection is authenticated.
  const source = sources.requireAuth;
  if (config.requireAuth && source && (on('pusherAppId') || on('pusherApps'))) {
    const spec = OPTIONS.find((o) => o.key === 'requireAuth')!;
    ignored.push({
      key: 'requireAuth',
      message: `${nameOf(spec, source)}${WHERE[source] ?? ''} does not apply to Pusher connections (/app/<key>): the Pusher protocol brings no token at connect, so they join public channels without one; their private-/presence- channels need the backend's signature`,
    });
  }
  // Without a key no token can be verified: every connection but Pusher's would be refused, which a
  // new user otherwise learns only from the first client's 401.
  if (config.requireAuth && source && !on('jwtSecret') && !on('jwtPublicKey') && !on('jwksUrl')) {
    const spec = OPTIONS.find((o) => o.key === 'requireAuth')!;
    ignored.push({
      key: 'requireAuth',
      message: `${nameOf(spec, source)}${WHERE[source] ?? ''} without --jwt-secret, --jwt-public-key or --jwks-url: no token can be verified, so every connection that needs one is refused (401)`,
    });
  }
  return ignored;
}

/** A config file's JSON object; a ConfigError (key `config`) says why it cannot be one. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('config', `cannot read config file ${path}: ${(err as Error).message}`);
  }
  let file: unknown;
  try {
    // Editors on Windows save UTF-8 with a byte order mark, which JSON.parse takes for a stray token.
    file = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new ConfigError('config', `config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (!file || typeof file !== 'object' || Array.isArray(file)) throw new ConfigError('config', `config file ${path} must hold a JSON object`);
  return file as Record<string, unknown>;
}

export function loadConfig(inputs: ConfigInputs = {}): ServerConfig {
  const env = inputs.env ?? {};
  const known = new Set(OPTIONS.map((o) => o.key as string));
  for (const k of Object.keys(inputs.code ?? {})) {
    if (!known.has(k)) throw new ConfigError(k, `unknown option "${k}"${didYouMean(k, [...known], quote)}; known options: ${[...known].join(', ')}`);
  }

  const configPath = (inputs.flags?.config ?? inputs.code?.config ?? env[envOf('config')]) as string | undefined;
  let file: Record<string, unknown> = {};
  if (configPath) {
    file = readConfigFile(configPath);
    for (const k of Object.keys(file)) {
      // A config file naming another one would make precedence ambiguous: files do not nest.
      if (k === 'config') throw new ConfigError('config', `key "config" is not allowed inside a config file (${configPath}): config files do not nest; pass one file with --config or RT_CONFIG`);
      if (!known.has(k)) {
        const inFile = [...known].filter((key) => key !== 'config');
        throw new ConfigError(k, `unknown key "${k}" in ${configPath}${didYouMean(k, inFile, quote)}; known keys: ${inFile.join(', ')}`);
      }
    }
  }

  filePath = configPath ?? '';
  try {
    return resolve(inputs, env, file);
  } finally {
    filePath = '';
  }
}

function resolve(inputs: ConfigInputs, env: Record<string, string | undefined>, file: Record<string, unknown>): ServerConfig {
  const out: Record<string, unknown> = {};
  const sources: Partial<Record<keyof ServerConfig, ConfigSource>> = {};
  for (const spec of OPTIONS) {
    const flag = inputs.flags?.[spec.key];
    const code = inputs.code?.[spec.key];
    const envVal = env[envOf(spec.key)] || spec.envAliases?.map((a) => env[a]).find((v) => v !== undefined && v !== '');
    const layers = ([[flag, 'flag'], [code, 'code'], [envVal || undefined, 'env'], [file[spec.key], 'file']] as [unknown, ConfigSource][]).filter(([v]) => v !== undefined);
    // Every layer is checked, not only the winner: a bad value in the file must not wait, hidden by
    // a flag, for the day that flag is dropped.
    const values = layers.map(([v, source]) => coerce(spec, v, source));
    const source: ConfigSource = layers[0]?.[1] ?? 'default';
    sources[spec.key] = source;
    if (source !== 'default') out[spec.key] = values[0];
    else out[spec.key] = spec.type === 'workers' || spec.type === 'duration' || spec.type === 'bytes' ? coerce(spec, spec.default, 'default') : spec.default;
  }
  const cfg = out as unknown as ServerConfig;
  SOURCES.set(cfg, sources);
  if (cfg.jwtSecret && cfg.jwtPublicKey) {
    throw new ConfigError('jwtSecret', `set either ${optionName(cfg, 'jwtSecret')} for HS256 or ${optionName(cfg, 'jwtPublicKey')} for RS256/ES256, not both`);
  }
  if (cfg.ringQueueLow >= cfg.ringQueueHigh) {
    throw new ConfigError('ringQueueLow', `${optionName(cfg, 'ringQueueLow')} (${cfg.ringQueueLow}) must be less than ${optionName(cfg, 'ringQueueHigh')} (${cfg.ringQueueHigh})`);
  }
  if (cfg.jwksUrl && cfg.jwtPublicKey) {
    throw new ConfigError('jwksUrl', `set either ${optionName(cfg, 'jwksUrl')} for keys from an identity provider or ${optionName(cfg, 'jwtPublicKey')} for one fixed key, not both`);
  }
  checkRingMemory(cfg);
  return cfg;
}

/**
 * Every pair of threads (the shards and the main thread) has a ring each way, allocated at start: with
 * many shards that is (shards + 1)² rings. Refused above half of this machine's memory, where the start
 * would otherwise crawl through allocating it, or fail without saying why.
 */
function checkRingMemory(cfg: ServerConfig): void {
  const threads = cfg.workers + 1;
  const bytes = threads * (threads - 1) * cfg.ringSize;
  const limit = totalmem() / 2;
  if (bytes <= limit) return;
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
  throw new ConfigError(
    'workers',
    `${cfg.workers} shards with --ring-size=${cfg.ringSize} need ${gib(bytes)} of rings (a ring each way between every two of the ${threads} threads), more than half of this machine's ${gib(totalmem())}: lower --workers (one per core is the default) or --ring-size`,
  );
}
