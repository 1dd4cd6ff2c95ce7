/**
 * The client's address as limits, logs and handlers see it. Behind a reverse proxy every socket comes
 * from the proxy, so the address the proxy saw is taken from `X-Forwarded-For` (the rightmost entry
 * that is not itself a trusted proxy: entries further left were written by the client and prove
 * nothing) or `X-Real-IP` — but only when the socket's peer is in --trust-proxy. From anyone else
 * those headers are ignored, or any client could pick the address its limits are counted against.
 */
import { BlockList, isIP } from 'node:net';
import type { HttpRequest } from 'uWebSockets.js';

/** Named ranges accepted in --trust-proxy besides addresses and CIDRs. */
const NAMED: Record<string, readonly string[]> = {
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'],
  linklocal: ['169.254.0.0/16', 'fe80::/10'],
};

/** A forwarded chain longer than this is not from a real proxy chain; only its tail is read. */
const MAX_HOPS = 32;

/**
 * Canonical text of an IP address: IPv4 dotted, IPv6 compressed lower-case, IPv4-mapped IPv6 as IPv4
 * (a dual-stack listener reports IPv4 peers that way). Accepts `[v6]`, `[v6]:port` and `v4:port` as
 * proxies write them. Undefined when the text is not an address.
 */
export function normalizeIp(text: string): string | undefined {
  let s = text.trim();
  if (s.startsWith('[')) {
    const end = s.indexOf(']');
    if (end < 0) return undefined;
    s = s.slice(1, end);
  } else if (s.includes('.') && s.indexOf(':') > 0 && s.indexOf(':') === s.lastIndexOf(':')) {
    s = s.slice(0, s.indexOf(':'));
  }
  const version = isIP(s);
  if (version === 4) return s;
  if (version !== 6) return undefined;
  let canon: string;
  try {
    canon = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  } catch {
    return undefined; // zone ids and the like: not a public client address
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canon);
  if (mapped) {
    const hi = parseInt(mapped[1]!, 16);
    const lo = parseInt(mapped[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return canon;
}

export class ProxyTrust {
  private readonly list = new BlockList();
  readonly enabled: boolean;

  /** `entries`: addresses, CIDRs (`10.0.0.0/8`, `fd00::/8`) or loopback / private / linklocal; throws naming a bad one. */
  constructor(entries: readonly string[]) {
    for (const raw of entries) {
      const entry = raw.trim();
      if (entry === '') continue;
      for (const item of NAMED[entry.toLowerCase()] ?? [entry]) this.add(item, entry);
    }
    this.enabled = entries.some((e) => e.trim() !== '');
  }

  private add(item: string, original: string): void {
    const slash = item.indexOf('/');
    const addr = normalizeIp(slash < 0 ? item : item.slice(0, slash));
    const type = addr && isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    const bits = slash < 0 ? undefined : item.slice(slash + 1);
    const max = type === 'ipv6' ? 128 : 32;
    if (!addr || (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > max))) {
      throw new Error(
        `"${original}" is not an IP address, a CIDR range (e.g. 10.0.0.0/8, fd00::/8) or one of ${Object.keys(NAMED).join(', ')}`,
      );
    }
    if (bits === undefined) this.list.addAddress(addr, type);
    else this.list.addSubnet(addr, Number(bits), type);
  }

  trusts(addr: string): boolean {
    return this.list.check(addr, isIP(addr) === 6 ? 'ipv6' : 'ipv4');
  }

  /**
   * The client address for a connection whose socket peer is `peer`: the peer itself unless it is a
   * trusted proxy that says who it forwarded for.
   */
  clientAddress(peer: string, forwardedFor: string | undefined, realIp: string | undefined): string {
    const from = normalizeIp(peer) ?? peer;
    if (!this.enabled || !this.trusts(from)) return from;
    if (forwardedFor) {
      const hops = forwardedFor.split(',');
      let client = from;
      for (let i = hops.length - 1; i >= 0 && i >= hops.length - MAX_HOPS; i--) {
        const hop = normalizeIp(hops[i]!);
        if (hop === undefined) break; // garbage left of here was not written by a proxy we trust
        client = hop;
        if (!this.trusts(hop)) break;
      }
      return client;
    }
    if (realIp) return normalizeIp(realIp) ?? from;
    return from;
  }
}

let current = new ProxyTrust([]);

/** The forwarding headers' names as bytes: uWS.js converts a string argument to UTF-8 at every call. */
const FORWARDING_KEYS = { 'x-forwarded-for': Buffer.from('x-forwarded-for'), 'x-real-ip': Buffer.from('x-real-ip') };

/**
 * A forwarding header as one value, however many lines it came in. uWS's getHeader gives the first
 * line only, and that is the one the client wrote when a proxy adds a line of its own rather than
 * extending the client's (HAProxy's `option forwardfor`): several lines of X-Forwarded-For are one
 * comma-separated list in order (RFC 9110 §5.3), and of X-Real-IP, a single address, the last line is
 * the one a proxy appended. Reads every header only when the first line is there at all.
 */
export function forwardingHeader(req: HttpRequest, name: 'x-forwarded-for' | 'x-real-ip'): string {
  const first = req.getHeader(FORWARDING_KEYS[name]);
  if (!first) return '';
  const lines: string[] = [];
  req.forEach((key, value) => {
    if (key === name) lines.push(value);
  });
  if (lines.length < 2) return first;
  return name === 'x-real-ip' ? lines[lines.length - 1]! : lines.join(',');
}

/** Sets this thread's trusted proxies (each shard does so at start, from --trust-proxy). */
export function setTrustedProxies(trust: ProxyTrust): void {
  current = trust;
}

/** The client address of a request whose socket peer is `peer` (uWS's getRemoteAddressAsText). */
export function clientAddress(peer: ArrayBuffer | string, header: (name: 'x-forwarded-for' | 'x-real-ip') => string | undefined): string {
  const text = typeof peer === 'string' ? peer : Buffer.from(peer).toString();
  if (!current.enabled) {
    // Without proxies the answer depends on the peer text alone: normalised once per address.
    let ip = normalizedPeers.get(text);
    if (ip === undefined) {
      if (normalizedPeers.size >= 4096) normalizedPeers.clear();
      normalizedPeers.set(text, (ip = interned(normalizeIp(text) ?? text)));
    }
    return ip;
  }
  return interned(current.clientAddress(text, header('x-forwarded-for') || undefined, header('x-real-ip') || undefined));
}

/**
 * Addresses seen lately, so the connections of one address (a NAT, a proxy not trusted, a benchmark)
 * share one string: each connection keeps its address until it closes, 32 B of heap apiece otherwise.
 */
const recent = new Map<string, string>();
/** Peer text as uWS gives it → its normalised, interned address (the no-proxy path). */
const normalizedPeers = new Map<string, string>();
function interned(ip: string): string {
  const known = recent.get(ip);
  if (known !== undefined) return known;
  if (recent.size >= 4096) recent.clear();
  recent.set(ip, ip);
  return ip;
}
