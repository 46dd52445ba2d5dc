/**
 * The Fan's VXLAN type (RFC 7348 as the Fan-patched kernel and LXD use it): Ethernet frames in VXLAN over
 * UDP (port 8472), VNI = overlay >> 8. The remote host is computed from the frame, never learnt: an IPv4
 * frame's inner destination, an ARP frame's target address (request or reply), mapped through the fan
 * (../shared/VXLAN-FAN.md §3). Nothing else crosses the fan; there is no flooding.
 *
 *   VXLAN header: 08 00 00 00 | VNI (24 bits) | 00      then the Ethernet frame, unpadded, no FCS
 *
 * The outer IPv4 and UDP headers: outer DF clear, UDP checksum on, destination port the VXLAN port, and
 * the source port, as the kernel's vxlan sets it, a hash of the inner flow in the ephemeral range
 * (vxlanSourcePort): all of one flow's datagrams carry one port, so that a receiver spreading by the
 * outer 4-tuple (a NIC's RSS, GRO, an SO_REUSEPORT group) keeps each flow on one queue, in order.
 */
import { NO_FAN, NO_HOST, type FanTable } from '../fan/table.js';
import { Drop } from './drops.js';
import { ETH_HLEN, ETH_P_ARP, ETH_P_IP, OFF_ETH_SRC, OFF_ETH_TYPE } from './ethernet.js';
import { i32, IPV4_MIN_HEADER, OFF_DST, OFF_SRC } from './ipv4.js';
import { ROUTE_DST, ROUTE_SRC } from './ipip.js';

export const VXLAN_HLEN = 8;
export const VXLAN_PORT = 8472;
/** The I flag: a valid VNI follows. */
export const VXLAN_FLAG_I = 0x08;
export const MAX_VNI = 0xffffff;
/** The outer UDP source ports: Linux's default ephemeral range, 32768-60999, as udp_flow_src_port() maps its hash into it. */
export const VXLAN_SOURCE_PORT_MIN = 32768;
export const VXLAN_SOURCE_PORT_MAX = 60999;
const SOURCE_PORT_SPAN = VXLAN_SOURCE_PORT_MAX - VXLAN_SOURCE_PORT_MIN;
const HASH_MULTIPLIER = 0x9e3779b1;
const PROTO_TCP = 6;
const PROTO_UDP = 17;
/** An ARP packet for IPv4 over Ethernet: 28 bytes; sender protocol address at 14, target at 24. */
const ARP_LEN = 28;
const ARP_SPA = 14;
const ARP_TPA = 24;

/** The Fan's VNI for an overlay: its network address >> 8 (250.0.0.0/8: 16384000). */
export const defaultVni = (overlayNet: number): number => overlayNet >>> 8;

/** Writes the 8-byte VXLAN header at b[at]. */
export function putVxlan(b: Uint8Array, at: number, vni: number): void {
  b[at] = VXLAN_FLAG_I;
  b[at + 1] = 0;
  b[at + 2] = 0;
  b[at + 3] = 0;
  b[at + 4] = vni >>> 16;
  b[at + 5] = vni >>> 8;
  b[at + 6] = vni;
  b[at + 7] = 0;
}

/**
 * The outer UDP source port for the Ethernet frame at b[f, f + len): a hash of its inner flow (IPv4: the
 * addresses and protocol, and the ports of TCP and UDP when not a fragment; ARP: the two addresses)
 * mapped into 32768-60999 as the kernel maps its flow hash (hash × span >> 32). The kernel's hash has a
 * secret and another function, so the ports differ from its, but a receiver never checks them; what
 * matters is one port per flow, and flows spread over the range. Reads nothing past len.
 */
export function vxlanSourcePort(b: Uint8Array, f: number, len: number): number {
  let x = 0;
  const type = len >= ETH_HLEN ? (b[f + OFF_ETH_TYPE] << 8) | b[f + OFF_ETH_TYPE + 1] : 0;
  const p = f + ETH_HLEN;
  if (type === ETH_P_IP && len >= ETH_HLEN + IPV4_MIN_HEADER) {
    const proto = b[p + 9];
    x = i32(b, p + OFF_SRC) ^ i32(b, p + OFF_DST) ^ proto;
    const l4 = p + (b[p] & 0x0f) * 4;
    const notFragment = (((b[p + 6] << 8) | b[p + 7]) & 0x3fff) === 0;
    if ((proto === PROTO_TCP || proto === PROTO_UDP) && notFragment && l4 + 4 <= f + len) x ^= i32(b, l4);
  } else if (type === ETH_P_ARP && len >= ETH_HLEN + ARP_LEN) {
    x = i32(b, p + ARP_SPA) ^ i32(b, p + ARP_TPA) ^ 1;
  }
  x ^= x >>> 16; // the ports' high half reaches the bits the multiplication carries up
  const h = Math.imul(x, HASH_MULTIPLIER) >>> 0;
  return VXLAN_SOURCE_PORT_MIN + Math.floor((h * SOURCE_PORT_SPAN) / 0x100000000);
}

/**
 * The overlay address that decides where the frame at b[off, off+len) goes (IPv4: the destination; ARP:
 * the target), as int32 in out[0], and 0; or a drop code.
 */
function frameKey(b: Uint8Array, off: number, len: number, out: Int32Array): number {
  if (len < ETH_HLEN) return Drop['tx-malformed'];
  const type = (b[off + OFF_ETH_TYPE] << 8) | b[off + OFF_ETH_TYPE + 1];
  if (type === ETH_P_IP) {
    if (len < ETH_HLEN + IPV4_MIN_HEADER) return Drop['tx-malformed'];
    out[0] = i32(b, off + ETH_HLEN + OFF_DST);
    return 0;
  }
  if (type === ETH_P_ARP) {
    if (len < ETH_HLEN + ARP_LEN) return Drop['tx-malformed'];
    out[0] = i32(b, off + ETH_HLEN + ARP_TPA);
    return 0;
  }
  return Drop['tx-not-ipv4-or-arp'];
}

/**
 * Where a frame read from the TAP goes: 0, with the remote host and this host's address in that fan in
 * `route` (as wire/ipip.ts's egressRoute gives them), or a drop code.
 */
export function vxlanRoute(b: Uint8Array, off: number, len: number, fans: FanTable, route: Int32Array): number {
  const bad = frameKey(b, off, len, route);
  if (bad !== 0) return bad;
  const key = route[0];
  const host = fans.underlayHostOf(key);
  if (host === NO_FAN) return Drop['tx-no-fan'];
  if (host === NO_HOST) return Drop['tx-no-underlay-host'];
  if (fans.isLocalUnderlay(host)) return Drop['tx-local-destination'];
  route[ROUTE_DST] = host;
  route[ROUTE_SRC] = fans.localHostFor(key);
  return 0;
}

/**
 * Checks a VXLAN datagram that arrived at b[off, off+len) (the UDP payload) from underlay host outerSrc
 * (int32) and returns the offset of its Ethernet frame (length len - VXLAN_HLEN), or a negative drop
 * code: the header (I flag alone, reserved bits zero, this VNI), the frame (IPv4 or ARP, whole enough,
 * a unicast non-zero source MAC), and userfan's anti-spoofing: the sender is a host of the underlay, the
 * inner source address (ARP: the sender address) lies in that host's slice, and the destination (ARP:
 * the target) lies in this host's slice. Nothing is written.
 */
export function vxlanDecap(b: Uint8Array, off: number, len: number, fans: FanTable, vni: number, outerSrc: number): number {
  if (len < VXLAN_HLEN + ETH_HLEN) return -Drop['rx-vxlan-truncated'];
  if (b[off] !== VXLAN_FLAG_I || b[off + 1] !== 0 || b[off + 2] !== 0 || b[off + 3] !== 0 || b[off + 7] !== 0) return -Drop['rx-vxlan-flags'];
  if (((b[off + 4] << 16) | (b[off + 5] << 8) | b[off + 6]) !== vni) return -Drop['rx-vxlan-vni'];
  const f = off + VXLAN_HLEN;
  const flen = len - VXLAN_HLEN;
  const m = f + OFF_ETH_SRC;
  if ((b[m] & 1) !== 0 || (b[m] | b[m + 1] | b[m + 2] | b[m + 3] | b[m + 4] | b[m + 5]) === 0) return -Drop['rx-vxlan-bad-mac'];
  const type = (b[f + OFF_ETH_TYPE] << 8) | b[f + OFF_ETH_TYPE + 1];
  const p = f + ETH_HLEN;
  let src: number;
  let dst: number;
  if (type === ETH_P_IP) {
    if (flen < ETH_HLEN + IPV4_MIN_HEADER) return -Drop['rx-truncated-inner'];
    if (b[p] >>> 4 !== 4) return -Drop['rx-inner-not-ipv4'];
    src = i32(b, p + OFF_SRC);
    dst = i32(b, p + OFF_DST);
  } else if (type === ETH_P_ARP) {
    if (flen < ETH_HLEN + ARP_LEN) return -Drop['rx-truncated-inner'];
    src = i32(b, p + ARP_SPA);
    dst = i32(b, p + ARP_TPA);
  } else {
    return -Drop['rx-vxlan-ethertype'];
  }
  if (fans.isLocalUnderlay(outerSrc)) return -Drop['rx-from-self'];
  if (!fans.inUnderlay(outerSrc)) return -Drop['rx-outer-source-not-underlay'];
  if (fans.fanIndexOf(dst) < 0) return -Drop['rx-foreign-overlay'];
  if (!fans.senderOwns(src, outerSrc)) return -Drop['rx-spoofed-source'];
  if (!fans.isLocal(dst)) return -Drop['rx-not-local'];
  return f;
}
