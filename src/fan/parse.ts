/**
 * Parsing fans the way users already write them for fanctl:
 *   -o 250.0.0.0/8 -u 172.30.0.28/16      an overlay and this host's underlay address with its width
 *   -u eth0/16                            an interface and a width (the interface's IPv4 address)
 *   -u 172.30.0.0/16                      a network: this host's address in it is looked up
 * and lines of /etc/network/fan: `OVERLAY UNDERLAY [flags…]`, `#` comments, blank lines, flags
 * `dhcp`, `off`, `host-reserve N`, `bridge NAME`.
 *
 * CIDRs are validated with ip-num; errors are ConfigErrors that name the field and the rule.
 */
import { networkInterfaces } from 'node:os';
import { IPv4CidrRange } from 'ip-num';
import { formatCidr, formatIPv4, parseIPv4, prefixMask } from './addr.js';
import { ConfigError } from './errors.js';
import { DEFAULT_FLAGS, Fan, type FanFlags, type Prefix, validateFan } from './fan.js';

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
  let range: IPv4CidrRange;
  try {
    range = IPv4CidrRange.fromCidr(text.trim());
  } catch (e) {
    throw new ConfigError(field, text, `${m[1]} is not an IPv4 address (four decimal octets 0-255)`);
  }
  void range; // validated by ip-num; the numbers below are the per-packet form
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
  readonly flags: FanFlags;
}

const BRIDGE_NAME = /^[A-Za-z0-9_.-]{1,15}$/;

/** Parse the /etc/network/fan format; throws ConfigError naming the line number. */
export function parseConfigText(text: string): FanLine[] {
  const out: FanLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const lineNo = i + 1;
    const body = raw.replace(/#.*/, '').trim();
    if (!body) return;
    const words = body.split(/\s+/);
    if (words.length < 2) throw new ConfigError(`line ${lineNo}`, raw.trim(), 'expected OVERLAY UNDERLAY [flags…], e.g. 250.0.0.0/8 eth0/16 dhcp');
    const [overlay, underlay, ...rest] = words;
    let dhcp = false;
    let off = false;
    let hostReserve = DEFAULT_FLAGS.hostReserve;
    let bridge: string | undefined;
    for (let k = 0; k < rest.length; k++) {
      const w = rest[k];
      if (w === 'dhcp') dhcp = true;
      else if (w === 'off') off = true;
      else if (w === 'host-reserve' || w === 'bridge') {
        const v = rest[++k];
        if (v === undefined) throw new ConfigError(`line ${lineNo}`, raw.trim(), `flag ${w} needs a value`);
        if (w === 'host-reserve') {
          if (!/^\d+$/.test(v)) throw new ConfigError(`line ${lineNo}`, raw.trim(), `host-reserve takes a whole number, not ${v}`);
          hostReserve = Number(v);
        } else {
          if (!BRIDGE_NAME.test(v)) throw new ConfigError(`line ${lineNo}`, raw.trim(), `bridge name ${v} must be 1-15 characters of letters, digits, . _ -`);
          bridge = v;
        }
      } else {
        throw new ConfigError(`line ${lineNo}`, raw.trim(), `unknown flag ${w}; known flags: dhcp, off, host-reserve N, bridge NAME`);
      }
    }
    out.push({ line: lineNo, overlay, underlay, flags: { dhcp, off, hostReserve, bridge } });
  });
  return out;
}

export { ConfigError };
