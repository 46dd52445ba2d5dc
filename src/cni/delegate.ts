/**
 * The configuration userfan hands the standard `bridge` plugin, with `host-local` IPAM, for one fan on this
 * host (flannel's way): attach to the fan bridge, at the fan's MTU, an address from the host's slice after
 * its host-reserve, the default route via the slice's .1. Pure.
 *
 * IP-in-IP: the bridge is the slice (250.0.28.0/24); the host routes the rest of the overlay into its TUN.
 * VXLAN: the whole overlay is one L2 segment (the bridge holds 250.0.28.1/8), so the container's address has
 * the overlay's prefix (250.0.28.5/8) and reaches other hosts' containers on-link; only the range is the slice.
 */
import { formatCidr, formatIPv4, parseIPv4 } from '../fan/addr.js';
import type { FanType } from '../fan/fan.js';
import { CniError, CODE } from './errors.js';
import type { NetConf } from './config.js';

/** One fan that is up here, as the plugin needs it. */
export interface FanHere {
  overlay: string;
  underlay: string;
  /** This host's slice, e.g. 250.0.28.0/24. */
  slice: string;
  bridge: string;
  /** The host keeps .1 to .hostReserve of its slice. */
  hostReserve: number;
  type: FanType;
  /** The bridge's MTU. */
  mtu: number;
}

/** The addresses containers get. */
export interface Pool {
  /** The prefix of a container's address: the slice (ipip), the overlay (vxlan). */
  subnet: string;
  gateway: string;
  rangeStart: string;
  rangeEnd: string;
  /** How many addresses the range holds. */
  size: number;
}

function cidr(text: string): { net: number; len: number } {
  const [a, l] = text.split('/');
  return { net: parseIPv4(a), len: Number(l) };
}

export function poolOf(fan: FanHere): Pool {
  const { net, len } = cidr(fan.slice);
  const first = net + fan.hostReserve + 1;
  const last = net + 2 ** (32 - len) - 2;
  if (first > last) throw new CniError(CODE.sliceExhausted, `slice ${fan.slice} of fan ${fan.overlay} has no address left for containers: host-reserve ${fan.hostReserve} keeps all of it`);
  const ov = cidr(fan.overlay);
  return {
    subnet: fan.type === 'vxlan' ? formatCidr(ov.net, ov.len) : fan.slice,
    gateway: formatIPv4(net + 1),
    rangeStart: formatIPv4(first),
    rangeEnd: formatIPv4(last),
    size: last - first + 1,
  };
}

/** Delegates (Debian's plugins 1.1) speak up to 1.0.0; a 1.1.0 configuration runs them at 1.0.0 (same result format). */
export function delegateVersion(v: string): string {
  return v === '1.1.0' ? '1.0.0' : v;
}

/** Where host-local keeps its files: `<dataDir>/ipam/<network name>/` (one file per address, and its lock). */
export const ipamDir = (dataDir: string) => `${dataDir}/ipam`;

/** The `bridge` plugin's configuration for this fan. */
export function bridgeConf(conf: NetConf, fan: FanHere): Record<string, unknown> {
  const pool = poolOf(fan);
  return {
    cniVersion: delegateVersion(conf.cniVersion),
    name: conf.name,
    type: 'bridge',
    bridge: fan.bridge,
    // userfan owns the bridge, its address and the NAT: the plugin adds a port, nothing else.
    isGateway: false,
    isDefaultGateway: false,
    ipMasq: false,
    hairpinMode: false,
    mtu: fan.mtu,
    ipam: {
      type: 'host-local',
      dataDir: ipamDir(conf.dataDir),
      ranges: [[{ subnet: pool.subnet, rangeStart: pool.rangeStart, rangeEnd: pool.rangeEnd, gateway: pool.gateway }]],
      routes: [{ dst: '0.0.0.0/0', gw: pool.gateway }],
    },
  };
}

/** The pool a stored bridge configuration hands out from (for messages). */
export function poolText(delegate: Record<string, unknown>): string {
  const r = (delegate.ipam as { ranges?: { rangeStart: string; rangeEnd: string }[][] } | undefined)?.ranges?.[0]?.[0];
  return r ? `${r.rangeStart}-${r.rangeEnd}` : '?';
}

/** A delegate's failure, said in the fan's terms where userfan knows better (an exhausted slice). */
export function explainDelegateError(e: CniError, fan: FanHere): CniError {
  if (/no IP addresses available/i.test(e.message)) {
    const pool = poolOf(fan);
    return new CniError(
      CODE.sliceExhausted,
      `slice ${fan.slice} of fan ${fan.overlay} is exhausted: all ${pool.size} container addresses (${pool.rangeStart}-${pool.rangeEnd}, after host-reserve ${fan.hostReserve}) are in use on this host`,
      e.message,
    );
  }
  return e;
}

/** The result a runtime gets: the bridge plugin's, in the configuration's version. */
export function adaptResult(result: Record<string, unknown>, cniVersion: string): Record<string, unknown> {
  return { ...result, cniVersion };
}

/** The answer to VERSION: the version asked for when it is supported, else the latest. */
export function versionAnswer(asked: unknown, supported: readonly string[], latest: string): { cniVersion: string; supportedVersions: string[] } {
  return { cniVersion: typeof asked === 'string' && supported.includes(asked) ? asked : latest, supportedVersions: [...supported] };
}

/**
 * The host side of the container's link in a bridge plugin result: the interface without a sandbox that
 * is not the bridge.
 */
export function hostInterface(result: Record<string, unknown>, bridge: string): string | undefined {
  const ifs = (result.interfaces ?? []) as { name?: string; sandbox?: string }[];
  return ifs.find((i) => !i.sandbox && i.name && i.name !== bridge)?.name;
}
