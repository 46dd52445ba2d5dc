/**
 * `userfan explain ADDRESS [--from SOURCE]` against the fans that are up in this namespace: where the
 * address lives, and, with --from, every step one packet takes from a source container to it. The Fan's
 * mapping is a function of the addresses, so both ends of the walk are computed, not looked up.
 */
import { readFileSync } from 'node:fs';
import { formatCidr, formatIPv4, parseIPv4 } from '../fan/addr.js';
import { ConfigError } from '../fan/errors.js';
import { Fan, bridgeNameFor } from '../fan/fan.js';
import { parseOverlay } from '../fan/parse.js';
import { run } from '../io/exec.js';
import type { DaemonState } from '../control/state.js';
import { kernelNeighbour } from '../underlay/neighbours.js';
import { explainAddress, wireText, type Explanation } from './explain.js';
import { VXLAN_SOURCE_PORT_MAX, VXLAN_SOURCE_PORT_MIN } from '../wire/vxlan.js';

export interface UpFan {
  fan: Fan;
  tun: string;
  daemon: DaemonState;
}

/** The fans of the running daemons, as Fan objects. */
export function fansUp(states: DaemonState[]): UpFan[] {
  return states.flatMap((s) =>
    s.fans.map((r) => {
      const o = parseOverlay(r.overlay);
      const [unet, ulen] = r.underlay.split('/');
      return { fan: new Fan(o, { net: parseIPv4(unet), len: Number(ulen) }, parseIPv4(r.localHost), r.flags), tun: s.host.tun ?? s.id, daemon: s };
    }),
  );
}

function mtuOf(dev: string): number | undefined {
  try {
    return Number(readFileSync(`/sys/class/net/${dev}/mtu`, 'utf8').trim());
  } catch {
    return undefined;
  }
}

async function routeGet(addr: string): Promise<string> {
  const r = await run(['ip', 'route', 'get', addr], { allowFail: true });
  return (r.code === 0 ? r.stdout : r.stderr).split('\n')[0].trim().replace(/\s+/g, ' ');
}

export interface LiveExplanation extends Explanation {
  tun: string;
  tunMtu?: number;
  route: string;
  underlayRoute?: string;
  steps?: string[];
}

function find(up: UpFan[], text: string): { u: UpFan; addr: number } {
  let addr: number;
  try {
    addr = parseIPv4(text);
  } catch {
    throw new ConfigError('address', text, 'is not an IPv4 address (four decimal octets 0-255)');
  }
  if (up.length === 0) throw new ConfigError('address', text, 'no fan is up in this network namespace; give -o OVERLAY -u UNDERLAY to explain without one');
  const u = up.find((x) => x.fan.underlayHostOf(addr) !== undefined);
  if (!u) throw new ConfigError('address', text, `is in none of the overlays that are up (${up.map((x) => formatCidr(x.fan.overlay.net, x.fan.overlay.len)).join(', ')})`);
  return { u, addr };
}

/** How the encapsulated packet leaves the sending host: the raw socket, or a TCP super-packet whole by MAC (TX GSO). */
function sendStep(u: UpFan, srcHost: number, dstHost: number, underlayRoute: string | undefined): string {
  const viaKernel = `the raw socket sends it on the underlay${srcHost === u.fan.localHost && underlayRoute ? ` (${underlayRoute})` : ''}`;
  if (srcHost !== u.fan.localHost || u.daemon.send !== 'gso') return viaKernel;
  const n = kernelNeighbour(dstHost);
  const whole = n ? ` to ${n.mac} on ${n.dev}, the kernel's ARP entry for ${formatIPv4(dstHost)}` : ` by MAC once the kernel has an ARP entry for ${formatIPv4(dstHost)}`;
  return `${viaKernel}; a TCP super-packet instead leaves whole through an AF_PACKET socket${whole}, and the kernel cuts it (--send gso, TX GSO: \`show --json\` says whether it is on)`;
}

/**
 * The VXLAN type's walk from S (on srcHost) to D (on dstHost): the whole overlay is one L2 segment, so S
 * asks for D's MAC first, and that ARP frame takes the same way as the frames after it.
 */
function vxlanSteps(u: UpFan, S: string, D: string, srcHost: number, dstHost: number, live: LiveExplanation): string[] {
  const f = u.fan;
  const x = u.daemon.vxlan ?? { port: live.outer?.port ?? 0, vni: live.outer?.vni ?? 0 };
  const here = (h: number) => (h === f.localHost ? 'this host' : 'host');
  const br = (h: number) => (h === f.localHost ? f.bridge : live.bridge);
  const tap = (h: number) => (h === f.localHost ? `the TAP ${u.tun}` : 'its userfan TAP (or the kernel\'s fan vxlan device)');
  const sliceOf = (h: number) => formatCidr(f.sliceOf(h), f.sliceLen);
  const hostOf = (h: number) => `${here(h)} ${formatIPv4(h)}`;
  return [
    `${S} and ${D} share one L2 segment (${formatCidr(f.overlay.net, f.overlay.len)} on bridge ${br(srcHost)}, ${hostOf(srcHost)}): ${S} asks who has ${D} (ARP), then sends its frames to the MAC that answers`,
    `the bridge ${br(srcHost)} passes each frame, the ARP broadcast included, to ${tap(srcHost)} (MTU ${live.tunMtu ?? '?'})`,
    `a worker reads it in a batch and maps the ARP target or the IPv4 destination ${D}: host bits → underlay host ${formatIPv4(dstHost)}, slice ${sliceOf(dstHost)}; nothing is flooded`,
    `it writes the VXLAN header in front (VNI ${x.vni}): a UDP datagram ${formatIPv4(srcHost)} > ${formatIPv4(dstHost)}:${x.port}, DF clear, UDP checksum on (50 bytes of overhead)`,
    u.daemon.send === 'gso' && srcHost === f.localHost
      ? `once the kernel has an ARP entry for ${formatIPv4(dstHost)}, every frame leaves by MAC through an AF_PACKET socket from a source port hashed from its inner flow (${VXLAN_SOURCE_PORT_MIN}-${VXLAN_SOURCE_PORT_MAX}, as the kernel's vxlan), a TCP super-frame whole for the kernel to cut as its own VXLAN (TX GSO: \`show --json\` says whether it is on); without one, through the worker's UDP socket from port ${x.port}, a super-frame by UDP GSO`
      : `it leaves through the worker's UDP socket from port ${x.port}; a TCP super-frame by UDP GSO: the kernel makes each segment its datagram`,
    `on ${formatIPv4(dstHost)} a userfan worker (or the kernel's fan vxlan) receives it on UDP ${x.port} and checks: VNI, flags, source MAC, ${S} (or the ARP sender) in the slice of the sender ${formatIPv4(srcHost)} (anti-spoofing), ${D} in its own slice`,
    `it writes the frame to ${tap(dstHost)}; the bridge ${br(dstHost)} there delivers it to ${D}`,
    `${D} receives it; its ARP reply and every reply take the same steps back with the roles swapped`,
  ];
}

export async function explainLive(up: UpFan[], text: string, fromText?: string): Promise<LiveExplanation> {
  const { u, addr } = find(up, text);
  const e = explainAddress(u.fan, addr, text, true, u.daemon.vxlan);
  const live: LiveExplanation = { ...e, tun: u.tun, tunMtu: mtuOf(u.tun), route: await routeGet(e.address) };
  if (e.outer) live.underlayRoute = await routeGet(e.outer.destination);
  if (fromText === undefined) return live;

  const { u: su, addr: src } = find(up, fromText);
  if (su.fan !== u.fan) throw new ConfigError('--from', fromText, `is in fan ${su.fan}, the destination in ${u.fan}: the Fan carries packets within one overlay`);
  const f = u.fan;
  const srcHost = f.underlayHostOf(src)!;
  const dstHost = f.underlayHostOf(addr)!;
  const sliceOf = (h: number) => formatCidr(f.sliceOf(h), f.sliceLen);
  const brOf = (h: number) => (h === f.localHost ? f.bridge : bridgeNameFor(f.sliceOf(h), f.sliceLen));
  const gw = (h: number) => formatIPv4((f.sliceOf(h) + 1) >>> 0);
  const S = formatIPv4(src);
  const D = e.address;
  const here = (h: number) => (h === f.localHost ? 'this host' : 'host');
  const steps: string[] = [];
  if (srcHost !== dstHost && u.fan.type === 'vxlan') {
    live.steps = vxlanSteps(u, S, D, srcHost, dstHost, live);
    return live;
  }
  if (srcHost === dstHost) {
    steps.push(`${S} and ${D} are both in ${sliceOf(srcHost)} on ${here(srcHost)} ${formatIPv4(srcHost)}: the bridge ${brOf(srcHost)} switches the packet; nothing is encapsulated`);
  } else {
    const mtu = live.tunMtu ?? '?';
    steps.push(`${S} sends to ${D} through its gateway ${gw(srcHost)} on bridge ${brOf(srcHost)} (${here(srcHost)} ${formatIPv4(srcHost)}, slice ${sliceOf(srcHost)})`);
    steps.push(`${formatIPv4(srcHost)} routes ${formatCidr(f.overlay.net, f.overlay.len)} into the TUN ${srcHost === f.localHost ? u.tun : '(its userfan TUN or tunl0)'} (MTU ${mtu}; a larger packet with DF gets ICMP fragmentation-needed from ${gw(srcHost)})`);
    steps.push(`a worker reads it in a batch and maps ${D}: (${D} & ~/${f.overlay.len}) >>> ${f.shift} = host bits → underlay host ${formatIPv4(dstHost)}, slice ${sliceOf(dstHost)}`);
    steps.push(`it writes the outer header in front: IPv4 ${formatIPv4(srcHost)} > ${formatIPv4(dstHost)} protocol 4, TTL ${u.daemon.ttl || 'inherited'}, DF and DSCP copied, ECN per RFC 6040 (20 bytes of overhead)`);
    steps.push(sendStep(u, srcHost, dstHost, live.underlayRoute));
    steps.push(`on ${formatIPv4(dstHost)} a userfan worker (or kernel ipip) receives it and checks: outer and inner headers, inner source ${S} in the slice of the sender ${formatIPv4(srcHost)} (anti-spoofing), ${D} in its own slice`);
    steps.push(`it strips the outer header and writes ${S} > ${D} to its TUN; the kernel routes it onto bridge ${brOf(dstHost)} (${gw(dstHost)})`);
    steps.push(`${D} receives it; a reply takes the same steps back with the roles swapped`);
  }
  live.steps = steps;
  return live;
}

export function formatLive(e: LiveExplanation): string {
  const lines = [
    `${e.address} is in fan ${e.fan}${e.local ? ' (this host\'s slice)' : ''}`,
    `  underlay host   ${e.underlayHost}`,
    `  slice           ${e.slice} on bridge ${e.bridge} (${e.hostAddress})`,
    `  route here      ${e.route}`,
    `  tunnel          ${e.tun}, MTU ${e.tunMtu ?? '?'}`,
  ];
  if (e.outer) lines.push(`  on the wire     ${wireText(e.outer)}`, `  underlay route  ${e.underlayRoute}`);
  if (e.steps) {
    lines.push('', 'one packet, step by step:');
    e.steps.forEach((s, i) => lines.push(`  ${i + 1}. ${s}`));
  }
  return lines.join('\n');
}
