/**
 * Parsing fans the way users already write them for fanctl:
 *   -o 250.0.0.0/8 -u 172.30.0.28/16      an overlay and this host's underlay address with its width
 *   -u eth0/16                            an interface and a width (the interface's IPv4 address)
 *   -u 172.30.0.0/16                      a network: this host's address in it is looked up
 * and lines of /etc/network/fan, fanctl 0.12's `UNDERLAY OVERLAY [--dhcp] [--enable] [--bridge=NAME]
 * [--host-reserve=N] [--type=ipip|vxlan]` and 0.3's `OVERLAY UNDERLAY [dhcp] [off] [host-reserve N] [bridge NAME]`,
 * `#` comments, blank lines.
 *
 * CIDRs are validated with ip-num; errors are ConfigErrors that name the field and the rule.
 */
import { createRequire } from 'node:module';
import { networkInterfaces } from 'node:os';
import type { Validator as IpNumValidator } from 'ip-num';
import { formatCidr, formatIPv4, parseIPv4, prefixMask } from './addr.js';
import { ConfigError } from './errors.js';
import { DEFAULT_FLAGS, Fan, FAN_TYPES, type FanFlags, type FanType, type Prefix, validateFan } from './fan.js';

/**
 * ip-num's validator, through require() of its own file: ip-num's index loads every class it has (IPv6,
 * pools, ranges), which a daemon would carry for days to check two CIDRs once; the validator alone is
 * ~1.5 MiB less RSS (docs/performance.md, scale). Imported as an ES module, Node 20 left the daemon
 * ~12 MiB more RSS than require() does.
 */
const { Validator } = createRequire(import.meta.url)('ip-num/dist/src/Validator.js') as { Validator: typeof IpNumValidator };

/** An IPv4 address of an interface of this host. */
export interface LocalAddress {
  readonly iface: string;
  readonly address: number;
  readonly prefixLen: number;
}

/** The IPv4 addresses of this host's interfaces (in the current network namespace). */
export function localAddresses(): LocalAddress[] {
  const out: LocalAddress[] = [];
  for (const [iface, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family !== 'IPv4') continue;
      const len = Number(a.cidr?.split('/')[1] ?? 32);
      out.push({ iface, address: parseIPv4(a.address), prefixLen: len });
    }
  }
  return out;
}

/** Parse "a.b.c.d/len" with ip-num. Returns the address as written (host bits kept) and the length. */
export function parseCidr(field: string, text: string): { address: number; len: number } {
  const m = /^([^/\s]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m) throw new ConfigError(field, text, 'must be in CIDR form ADDRESS/LENGTH, e.g. 250.0.0.0/8');
  const len = Number(m[2]);
  if (len > 32) throw new ConfigError(field, text, `prefix length ${len} is out of range: it must be 0 to 32`);
  const [valid] = Validator.isValidIPv4CidrNotation(text.trim());
  if (!valid) throw new ConfigError(field, text, `${m[1]} is not an IPv4 address (four decimal octets 0-255)`);
  // validated by ip-num; the numbers below are the per-packet form
  return { address: parseIPv4(m[1]), len };
}

/** The overlay: a network address with no host bits, e.g. 250.0.0.0/8. */
export function parseOverlay(text: string, field = 'overlay'): Prefix {
  const { address, len } = parseCidr(field, text);
  if (len === 0) throw new ConfigError(field, text, 'an overlay of /0 would swallow every address; use e.g. 250.0.0.0/8');
  const net = (address & prefixMask(len)) >>> 0;
  if (net !== address) {
    throw new ConfigError(field, text, `host bits are set; an overlay must be a network address, e.g. ${formatCidr(net, len)}`);
  }
  return { net, len };
}

export interface ParsedUnderlay {
  readonly prefix: Prefix;
  /** This host's address in the underlay. */
  readonly localHost: number;
  /** The interface the address was found on, when it was looked up. */
  readonly iface?: string;
}

/**
 * The underlay: `172.30.0.28/16` (this host's address and the width), `eth0/16` (an interface's address),
 * or `172.30.0.0/16` (a network: this host's address in it is looked up among `addresses`).
 */
export function parseUnderlay(text: string, addresses: () => LocalAddress[] = localAddresses, field = 'underlay'): ParsedUnderlay {
  const t = text.trim();
  const ifm = /^([A-Za-z_][\w.@-]{0,14})\/(\d{1,2})$/.exec(t);
  if (ifm && !/^\d/.test(ifm[1])) {
    const len = Number(ifm[2]);
    if (len > 32) throw new ConfigError(field, text, `prefix length ${len} is out of range: it must be 0 to 32`);
    const found = addresses().find((a) => a.iface === ifm[1]);
    if (!found) throw new ConfigError(field, text, `interface ${ifm[1]} has no IPv4 address on this host`);
    return checkUnderlayRange(field, text, { prefix: { net: (found.address & prefixMask(len)) >>> 0, len }, localHost: found.address, iface: found.iface });
  }
  const { address, len } = parseCidr(field, t);
  const net = (address & prefixMask(len)) >>> 0;
  if (address === net && len < 31) {
    // A network: find this host's address inside it.
    const found = addresses().find((a) => ((a.address & prefixMask(len)) >>> 0) === net);
    if (!found) {
      throw new ConfigError(field, text, `no interface on this host has an address in ${formatCidr(net, len)}; give the address, e.g. ${formatIPv4(net + 1)}/${len}`);
    }
    return checkUnderlayRange(field, text, { prefix: { net, len }, localHost: found.address, iface: found.iface });
  }
  return checkUnderlayRange(field, text, { prefix: { net, len }, localHost: address });
}

function checkUnderlayRange(field: string, text: string, u: ParsedUnderlay): ParsedUnderlay {
  const first = u.prefix.net >>> 24;
  if (first === 0 || first === 127 || first >= 224) {
    throw new ConfigError(field, text, 'an underlay must be a unicast network (not 0/8, 127/8, multicast or class E)');
  }
  return u;
}

/** Build and validate one fan from what the user wrote. */
export function parseFan(
  overlayText: string,
  underlayText: string,
  flags: Partial<FanFlags> = {},
  addresses: () => LocalAddress[] = localAddresses,
): Fan {
  const overlay = parseOverlay(overlayText);
  const underlay = parseUnderlay(underlayText, addresses);
  const fan = new Fan(overlay, underlay.prefix, underlay.localHost, { ...DEFAULT_FLAGS, ...flags });
  validateFan(fan, overlayText, underlayText);
  return fan;
}

/** One line of /etc/network/fan. */
export interface FanLine {
  readonly line: number;
  readonly overlay: string;
  readonly underlay: string;
  /** With the encapsulation (`--type=`) in flags.type when the line names one. */
  readonly flags: FanFlags;
}

const BRIDGE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** What a config line may say after its two CIDRs: fanctl 0.12's options, then 0.3's bare words. */
export const KNOWN_FLAGS = `--dhcp, --enable, --bridge=NAME, --host-reserve=N, --type=${FAN_TYPES.join('|')}, and 0.3's dhcp, off, bridge NAME, host-reserve N`;

/** The `/LEN` of `ADDRESS/LEN` or `IFACE/LEN` as written; undefined when there is none. */
function prefixLenOf(word: string): number | undefined {
  const m = /\/(\d{1,2})$/.exec(word);
  return m ? Number(m[1]) : undefined;
}

/**
 * Which of a line's two CIDRs is the overlay. A slice is the overlay plus the underlay's host bits and must
 * keep host bits of its own, so the overlay always has the shorter prefix: 0.3 wrote it first (`OVERLAY
 * UNDERLAY`), 0.12 writes it second (`UNDERLAY OVERLAY`), and either order reads the same, never ambiguous.
 */
function orderCidrs(a: string, b: string, field: string, raw: string): { overlay: string; underlay: string } {
  const [la, lb] = [prefixLenOf(a), prefixLenOf(b)];
  if (la === undefined || lb === undefined) {
    throw new ConfigError(field, raw, `${la === undefined ? a : b} is not ADDRESS/LENGTH or IFACE/LENGTH: expected UNDERLAY OVERLAY [--flags], or 0.3's OVERLAY UNDERLAY [flags]`);
  }
  if (la === lb) throw new ConfigError(field, raw, `both prefixes are /${la}: the overlay must be the shorter one (each host's slice needs host bits), e.g. 198.18.0.0/16 250.0.0.0/8`);
  return la < lb ? { overlay: a, underlay: b } : { overlay: b, underlay: a };
}

/**
 * The flags after the CIDRs. 0.12 spells them `--name` / `--name=VALUE` (`--name VALUE` is taken too), 0.3
 * as bare words with the value in the next word; both may be mixed on one line. Anything else is refused,
 * so a typo never comes up as a fan without the flag the user meant.
 */
function parseLineFlags(words: string[], field: string, raw: string): FanFlags {
  const bad = (rule: string) => new ConfigError(field, raw, rule);
  let [dhcp, off, enable, hostReserve, bridge] = [false, false, false, DEFAULT_FLAGS.hostReserve, undefined as string | undefined];
  let type: FanType | undefined;
  for (let k = 0; k < words.length; k++) {
    const w = words[k];
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(w);
    const [name, dashed] = m ? [m[1], true] : [w, false];
    let v = m?.[2];
    const known = name === 'dhcp' || name === 'host-reserve' || name === 'bridge' || (dashed ? name === 'enable' || name === 'type' : name === 'off');
    if (!known) throw bad(`unknown flag ${w}; known flags: ${KNOWN_FLAGS}`);
    if (name === 'dhcp' || name === 'off' || name === 'enable') {
      if (v !== undefined) throw bad(`flag ${w} takes no value`);
      if (name === 'dhcp') dhcp = true;
      else if (name === 'off') off = true;
      else enable = true;
      continue;
    }
    if (v === undefined && words[k + 1] !== undefined && !words[k + 1].startsWith('-')) v = words[++k];
    if (!v) throw bad(`flag ${m ? `--${name}` : name} needs a value`);
    if (name === 'host-reserve') {
      if (!/^\d+$/.test(v)) throw bad(`host-reserve takes a whole number, not ${v}`);
      hostReserve = Number(v);
    } else if (name === 'bridge') {
      if (!BRIDGE_NAME.test(v)) throw bad(`bridge name ${v} must be 1-15 characters of letters, digits, . _ -`);
      bridge = v;
    } else if ((FAN_TYPES as readonly string[]).includes(v)) type = v as FanType;
    else throw bad(`type ${v} is not known: it must be ${FAN_TYPES.join(' or ')}`);
  }
  return { dhcp, off, hostReserve, bridge, ...(enable ? { enable } : {}), ...(type ? { type } : {}) };
}

/**
 * Parse the /etc/network/fan format, 0.12's lines (`UNDERLAY OVERLAY --dhcp --enable`) and 0.3's
 * (`OVERLAY UNDERLAY dhcp`) alike; `#` starts a comment, blank lines are skipped. Throws a ConfigError
 * naming the line number.
 */
export function parseConfigText(text: string): FanLine[] {
  const out: FanLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const lineNo = i + 1;
    const body = raw.replace(/#.*/, '').trim();
    if (!body) return;
    const words = body.split(/\s+/);
    const field = `line ${lineNo}`;
    if (words.length < 2) throw new ConfigError(field, raw.trim(), 'expected OVERLAY UNDERLAY [flags…] (0.3) or UNDERLAY OVERLAY [--flags] (0.12), e.g. 198.18.0.0/16 250.0.0.0/8 --dhcp');
    const { overlay, underlay } = orderCidrs(words[0], words[1], field, raw.trim());
    out.push({ line: lineNo, overlay, underlay, flags: parseLineFlags(words.slice(2), field, raw.trim()) });
  });
  return out;
}

export { ConfigError };
