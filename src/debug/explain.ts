/**
 * `userfan explain`: what the Fan computes for one overlay address, in words and as JSON. Teaching and
 * debugging aid; uses the same Fan and FanTable arithmetic as the data plane.
 */
import { formatCidr, formatIPv4 } from '../fan/addr.js';
import { bridgeNameFor, Fan } from '../fan/fan.js';
import { ConfigError } from '../fan/errors.js';
import { FanTable, NO_FAN, NO_HOST } from '../fan/table.js';
import { defaultVni, VXLAN_PORT, VXLAN_SOURCE_PORT_MAX, VXLAN_SOURCE_PORT_MIN } from '../wire/vxlan.js';

export interface Explanation {
  address: string;
  fan: string;
  underlayHost: string;
  slice: string;
  bridge: string;
  hostAddress: string;
  /** Whether the address is in this host's own slice (known when the underlay named this host's address). */
  local: boolean;
  /** How the slice length comes about. */
  sliceRule: string;
  /**
   * The outer headers a packet to `address` from this host would carry (absent when local): IP-in-IP
   * (protocol 4), or, for the VXLAN type, UDP (17) from and to `port` with the `vni`.
   */
  outer?: { source: string; destination: string; protocol: 4 | 17; port?: number; vni?: number };
}

/** The VXLAN type's settings (its port and VNI); without them a VXLAN fan gets the defaults (8472, overlay >> 8). */
export interface VxlanSettings {
  port: number;
  vni: number;
}

export function explainAddress(fan: Fan, address: number, text: string, hostKnown = true, vxlan?: VxlanSettings): Explanation {
  const table = new FanTable([fan]);
  const host = table.underlayHostOf(address) >>> 0; // the table answers in int32
  const fanText = fan.toString();
  if (host === NO_FAN) throw new ConfigError('address', text, `is not in the overlay ${formatCidr(fan.overlay.net, fan.overlay.len)} of fan ${fanText}`);
  if (host === NO_HOST) {
    throw new ConfigError('address', text, `its slice belongs to the network or broadcast address of the underlay ${formatCidr(fan.underlay.net, fan.underlay.len)}, which no host can own`);
  }
  const slice = fan.sliceOf(host);
  const local = hostKnown && host === fan.localHost;
  const source = hostKnown ? formatIPv4(fan.localHost) : `this host's address in ${formatCidr(fan.underlay.net, fan.underlay.len)}`;
  const vx = vxlan ?? (fan.type === 'vxlan' ? { port: VXLAN_PORT, vni: defaultVni(fan.overlay.net) } : undefined);
  const wire = vx ? { protocol: 17 as const, port: vx.port, vni: vx.vni } : { protocol: 4 as const };
  // The VXLAN type's bridge is named after the overlay on every host (one L2 segment), not after the slice.
  const named = vx ? bridgeNameFor(fan.overlay.net, fan.overlay.len) : bridgeNameFor(slice, fan.sliceLen);
  return {
    address: formatIPv4(address),
    fan: fanText,
    underlayHost: formatIPv4(host),
    slice: formatCidr(slice, fan.sliceLen),
    bridge: fan.flags.bridge && local ? fan.flags.bridge : named,
    hostAddress: formatIPv4((slice + 1) >>> 0),
    local,
    sliceRule: `each host owns a /${fan.sliceLen}: overlay /${fan.overlay.len} + (32 - underlay /${fan.underlay.len}); the underlay host bits become the next ${32 - fan.underlay.len} overlay bits`,
    outer: local ? undefined : { source, destination: formatIPv4(host), ...wire },
  };
}

export function formatExplanation(e: Explanation): string {
  const lines = [
    `${e.address} is in fan ${e.fan}`,
    `  underlay host   ${e.underlayHost}${e.local ? ' (this host)' : ''}`,
    `  slice           ${e.slice}   (${e.sliceRule})`,
    `  bridge          ${e.bridge} on ${e.underlayHost}`,
    `  host address    ${e.hostAddress} (the bridge; containers' gateway)`,
  ];
  if (e.outer) lines.push(`  on the wire     ${wireText(e.outer)}`);
  else lines.push('  on the wire     nothing: the address is in this host\'s own slice, delivered on the bridge');
  return lines.join('\n');
}

/** The outer headers in words: IP-in-IP, or the VXLAN type's UDP datagram. */
export function wireText(o: NonNullable<Explanation['outer']>): string {
  if (o.protocol === 4) return `IPv4 ${o.source} > ${o.destination} protocol 4 (IP-in-IP), inner packet unchanged`;
  return `IPv4 ${o.source} > ${o.destination} UDP ${VXLAN_SOURCE_PORT_MIN}-${VXLAN_SOURCE_PORT_MAX} > ${o.port} (the source port a hash of the inner flow), VXLAN VNI ${o.vni}, the Ethernet frame unchanged (an ARP for the address too)`;
}
