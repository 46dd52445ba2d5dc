/**
 * `up` on a bridge that exists already: Docker's (`docker network create -d bridge --subnet 250.0.28.0/24
 * --gateway 250.0.28.1 -o com.docker.network.bridge.name=fan-250-0-28 …`), LXC's or one made by hand. userfan
 * adopts it when it already holds this host's fan address, uses it as its own would be used, and leaves it
 * (and its address) in place at `down`. Anything else is refused before `up` makes anything, with one line
 * saying what to fix.
 *
 * What the kernel's routing needs, and so which address is accepted:
 * - IP-in-IP: slice.1 with the slice's prefix (250.0.28.1/24, as Docker makes it from --subnet). A wider
 *   prefix puts a connected route on the bridge that covers other hosts' slices: at the overlay's own
 *   prefix (/8) it is the very route `up` needs into the TUN (the kernel answers "File exists"), and in
 *   between (/16) it takes other hosts' slices from the TUN. A longer one leaves part of the slice to the TUN.
 * - VXLAN: slice.1 with the overlay's prefix (250.0.28.1/8, what userfan gives its own bridge: the whole
 *   overlay is one segment), or with the slice's (Docker's --subnet 250.0.28.0/24): then `up` adds the
 *   overlay's route on the bridge (250.0.0.0/8 dev BRIDGE src 250.0.28.1), so this host reaches the other
 *   hosts' containers through the TAP port, and routes its containers' traffic there; `down` removes it.
 *
 * Besides slice.1, the addresses host-reserve N gives the host (slice.2 to slice.N, with the same prefix,
 * as userfan and fanctl put them on their own bridges) are accepted: a bridge `up --keep-bridge` left.
 *
 * MTU: Docker leaves its bridge at 1500 until a container joins (com.docker.network.driver.mtu sets the
 * containers' veths, not the bridge; seen with Docker 20.10), so a bridge above the fan's MTU is lowered to
 * it; a port above the fan's MTU (a container that would send frames the fan cannot carry) is refused.
 */
import { formatCidr, formatIPv4, prefixMask } from '../fan/addr.js';
import { ConfigError } from '../fan/errors.js';
import type { Fan } from '../fan/fan.js';
import { prefixesOverlap } from '../fan/table.js';

/** A device that exists under the bridge's name, as `ip -d link` and `ip addr` show it. */
export interface ExistingLink {
  /** `ip -d link`'s kind: "bridge", "veth", "tun", … ("" for a plain device). */
  kind: string;
  mtu: number;
  /** Its IPv4 addresses. */
  addresses: { address: number; len: number }[];
  /** Its ports (devices whose master it is). */
  ports: { name: string; mtu: number }[];
}

/** What `up` does to a bridge it adopts. */
export interface Adoption {
  /** The fan address it holds, e.g. "250.0.28.1/24". */
  address: string;
  /** Lower the bridge's MTU to this (it was above the fan's; no port is). */
  mtu?: number;
  /** Add the overlay's route on the bridge (VXLAN, on a bridge holding slice.1 with the slice's prefix). */
  overlayRoute: boolean;
}

/** The prefix lengths of slice.1 on the bridge that the kernel's routing can live with (see the head of this file). */
export function acceptedPrefixes(fan: Fan): number[] {
  return fan.type === 'vxlan' ? [fan.overlay.len, fan.sliceLen] : [fan.sliceLen];
}

/** How to make the bridge right, for the error's last words. */
function howToFix(fan: Fan): string {
  const want = formatCidr(fan.hostAddress, fan.sliceLen);
  const slice = formatCidr(fan.localSlice, fan.sliceLen);
  return `give it ${want} (for Docker: docker network create -d bridge --subnet ${slice} --gateway ${formatIPv4(fan.hostAddress)} -o com.docker.network.bridge.name=${fan.bridge} …), or name another bridge with --bridge`;
}

/**
 * Whether `up` may adopt `link`, the device named as this fan's bridge, and how; ConfigError (one line,
 * field "bridge") when it may not. `fanMtu`: the underlay's MTU less the type's overhead.
 */
export function planAdoption(fan: Fan, fanMtu: number, link: ExistingLink): Adoption {
  const fail = (rule: string) => new ConfigError('bridge', fan.bridge, rule);
  if (link.kind !== 'bridge') throw fail(`exists on this host as a ${link.kind || 'plain'} device, not a bridge (is this fan already up? see userfan show): remove it or name another with --bridge`);
  const mine = link.addresses.find((a) => a.address === fan.hostAddress);
  const inOverlay = link.addresses.filter((a) => prefixesOverlap({ net: (a.address & prefixMask(a.len)) >>> 0, len: a.len }, fan.overlay));
  const reserved = (a: { address: number; len: number }) => mine !== undefined && a.len === mine.len && a.address > mine.address && a.address < mine.address + fan.flags.hostReserve;
  const others = inOverlay.filter((a) => a !== mine && !reserved(a)).map((a) => formatCidr(a.address, a.len));
  if (!mine) {
    const holds = others.length ? `holds ${others.join(', ')}, not this host's fan address ${formatIPv4(fan.hostAddress)}` : `holds no address of the fan (this host's is ${formatIPv4(fan.hostAddress)})`;
    throw fail(`exists with no fan address to adopt: it ${holds}: ${howToFix(fan)}`);
  }
  const accepted = acceptedPrefixes(fan);
  if (!accepted.includes(mine.len)) {
    const wants = accepted.map((l) => formatCidr(fan.hostAddress, l)).join(' or ');
    throw fail(`holds ${formatCidr(mine.address, mine.len)}, where ${fan.type === 'vxlan' ? 'a VXLAN' : 'an IP-in-IP'} fan needs ${wants} (another prefix takes routes the fan needs): change its address, or name another bridge with --bridge`);
  }
  if (others.length) throw fail(`holds ${others.join(', ')} besides ${formatCidr(mine.address, mine.len)}, in the overlay ${formatCidr(fan.overlay.net, fan.overlay.len)}: remove ${others.length > 1 ? 'them' : 'it'} (ip addr del … dev ${fan.bridge})`);
  const big = link.ports.find((p) => p.mtu > fanMtu);
  if (big) throw fail(`has a port ${big.name} with MTU ${big.mtu}, above the fan's ${fanMtu}: its container would send packets the fan cannot carry; give it MTU ${fanMtu} (for Docker: -o com.docker.network.driver.mtu=${fanMtu} on the network)`);
  return {
    address: formatCidr(mine.address, mine.len),
    ...(link.mtu > fanMtu ? { mtu: fanMtu } : {}),
    overlayRoute: fan.type === 'vxlan' && mine.len !== fan.overlay.len,
  };
}
