/**
 * A TCP super-frame from the TAP made into one VXLAN frame for the kernel to cut (TX GSO's UDP-tunnel form,
 * src/underlay/tx-gso.ts), in place, in the headroom the TAP read left in front of it (VXLAN_FRAME_HEADROOM);
 * and any other frame to a neighbour made into one VXLAN datagram the same way (vxlanPlain), so that all
 * of a flow's datagrams leave by one path with its source port:
 *
 *                                                   [ inner Ethernet + IPv4 + TCP + payload … ]
 *                                                   ^ f
 *   after:  [ vnet 10 ][ Ethernet 14 ][ IPv4 20 ][ UDP 8 ][ VXLAN 8 ][ inner frame … ]
 *           ^ f - VXLAN_FRAME_HEADROOM
 *
 * The virtio-net header says NEEDS_CSUM from the inner TCP header (the field holds the pseudo-header sum)
 * and gso_type TCPV4 (ECN kept) with the TAP's gso_size; offsets count from the outer Ethernet header, as
 * an AF_PACKET SOCK_RAW socket reads them. The outer headers are the kernel vxlan's: IPv4 without DF, TTL
 * 64, UDP to the VXLAN port from the inner flow's port (wire/vxlan.ts, vxlanSourcePort). When it cuts, the
 * kernel gives each segment its
 * outer IPv4 length, ID (id, id + 1, …) and checksum and its UDP length, but not a UDP checksum:
 * bpf_skb_adjust_room() marks SKB_GSO_UDP_TUNNEL, never its _CSUM form, so every segment keeps the one
 * the frame carries.
 *
 * That one is right for every segment of full size, without reading a byte of payload: a TCP/IPv4 segment
 * whose checksums are right sums to the complement of its TCP pseudo-header, so a VXLAN datagram carrying
 * it sums to what its headers and lengths say (Linux's local checksum offload, LCO). A shorter last
 * segment would need another value; so the frame stops at the last full segment, and the rest leaves as a
 * frame of its own (vxlanTail(), written over the end of the first once that was sent), its checksums all
 * computed here. A super-frame of one full segment (or less) is a frame without GSO, its TCP checksum
 * still left to the kernel (NEEDS_CSUM), the UDP checksum the same sum from the headers.
 */
import { checksum, sum16 } from '../wire/checksum.js';
import { ETH_HLEN, ETH_P_IP, putEthernet } from '../wire/ethernet.js';
import { FLAG_MF, FRAG_OFFSET_MASK, headerLength, i32, IPV4_MIN_HEADER, OFF_CHECKSUM, OFF_FLAGS_FRAG, OFF_ID, OFF_PROTO, OFF_TOTAL_LEN, PROTO_TCP, PROTO_UDP, putU16, putU32, u16 } from '../wire/ipv4.js';
import { fillTcpChecksum, OFF_FLAGS, OFF_SEQ, OFF_TCP_CHECKSUM, pseudoHeaderSum, TCP_CWR, TCP_FIN, TCP_MIN_HEADER, TCP_PSH, tcpHeaderLength } from '../wire/tcp.js';
import { putVnetHdr, putVnetNone, VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_HDR_LEN, vnetCsumOffset, vnetCsumStart, vnetFlags } from '../wire/virtio.js';
import { putVxlan, VXLAN_HLEN } from '../wire/vxlan.js';

const UDP_HLEN = 8;
/** The outer headers the TC program re-pushes as the encapsulation: IPv4, UDP, VXLAN and the inner Ethernet header. */
export const VXLAN_ENCAP_LEN = IPV4_MIN_HEADER + UDP_HLEN + VXLAN_HLEN + ETH_HLEN;
/** Bytes the frame starts before the inner Ethernet frame: virtio-net, Ethernet, IPv4, UDP, VXLAN. */
export const VXLAN_FRAME_HEADROOM = VNET_HDR_LEN + ETH_HLEN + IPV4_MIN_HEADER + UDP_HLEN + VXLAN_HLEN;
/** From the outer Ethernet header to the inner one (the frame's virtio-net offsets count from the outer). */
const INNER_AT = ETH_HLEN + IPV4_MIN_HEADER + UDP_HLEN + VXLAN_HLEN;
/** Outer TTL: the kernel's default, 64. */
const OUTER_TTL = 64;
const MAX_IP = 0xffff;

/** The outer headers of a frame: link addresses, underlay addresses (int32), ports, VNI and the first outer IPv4 ID. */
export class VxlanOuter {
  dstHi = 0;
  dstLo = 0;
  srcHi = 0;
  srcLo = 0;
  src = 0;
  dst = 0;
  /** The VXLAN port (destination). */
  port = 0;
  /** The flow's source port (vxlanSourcePort). */
  srcPort = 0;
  vni = 0;
  id = 0;
}

/** Where the frame vxlanFrame() or vxlanTail() wrote lies, and what vxlanTail() needs of the super-frame. */
export class VxlanCut {
  /** The frame: its first byte (the virtio-net header) and its length. */
  at = 0;
  length = 0;
  /** Inner bytes the frame carries, the inner headers once per segment. */
  bytes = 0;
  /** Payload bytes vxlanFrame() left for vxlanTail() (0: none), and where they start. */
  tail = 0;
  tailAt = 0;
  /** The super-frame's inner headers as the TAP gave them: where they are, their length, TCP flags, IPv4 ID, sequence number, gso_size. */
  f = 0;
  hl = 0;
  flags = 0;
  id = 0;
  seq = 0;
  gso = 0;
}

/** The one's-complement sum (unfolded) of the outer pseudo-header of a datagram of udpLen bytes. */
function pseudoSum(o: VxlanOuter, udpLen: number): number {
  const src = o.src;
  const dst = o.dst;
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + PROTO_UDP + udpLen;
}

/** The same and the UDP header (its checksum field 0). */
const outerSum = (o: VxlanOuter, udpLen: number): number => pseudoSum(o, udpLen) + o.srcPort + o.port + udpLen;

/** Folds and complements a UDP checksum sum; 0 is sent as 0xffff. */
function udpChecksum(s: number): number {
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  const c = ~s & 0xffff;
  return c === 0 ? 0xffff : c;
}

/**
 * The UDP checksum of a VXLAN datagram of `udpLen` bytes (UDP header included) with outer `o`, whose VXLAN
 * and inner Ethernet headers are at b[x, x + 22) and whose inner frame is a TCP/IPv4 segment with right
 * checksums, IPv4 header at b[ip], `tcpLen` bytes of TCP (the segment's, not necessarily the one at b[ip]:
 * only its addresses are read). 0 is sent as 0xffff.
 */
export function vxlanTcpChecksum(b: Uint8Array, x: number, o: VxlanOuter, udpLen: number, ip: number, tcpLen: number): number {
  let s = outerSum(o, udpLen);
  for (let i = 0; i < VXLAN_HLEN + ETH_HLEN; i += 2) s += (b[x + i] << 8) | b[x + i + 1];
  // The inner IPv4 header sums to 0xffff (nothing, in one's complement); the inner TCP part to the
  // complement of its pseudo-header.
  s += ~pseudoHeaderSum(b, ip, PROTO_TCP, tcpLen) & 0xffff;
  return udpChecksum(s);
}

/** Writes the outer Ethernet, IPv4, UDP (checksum field 0) and VXLAN headers in front of the inner frame at f. */
function outerHeaders(b: Uint8Array, f: number, fLen: number, o: VxlanOuter): void {
  const x = f - VXLAN_HLEN;
  putVxlan(b, x, o.vni);
  const u = x - UDP_HLEN;
  putU16(b, u, o.srcPort);
  putU16(b, u + 2, o.port);
  putU16(b, u + 4, UDP_HLEN + VXLAN_HLEN + fLen);
  putU16(b, u + 6, 0);
  const ip = u - IPV4_MIN_HEADER;
  b[ip] = 0x45;
  b[ip + 1] = 0;
  putU16(b, ip + OFF_TOTAL_LEN, IPV4_MIN_HEADER + UDP_HLEN + VXLAN_HLEN + fLen);
  putU16(b, ip + OFF_ID, o.id);
  putU16(b, ip + OFF_FLAGS_FRAG, 0);
  b[ip + 8] = OUTER_TTL;
  b[ip + OFF_PROTO] = PROTO_UDP;
  putU16(b, ip + OFF_CHECKSUM, 0);
  putU32(b, ip + 12, o.src);
  putU32(b, ip + 16, o.dst);
  putU16(b, ip + OFF_CHECKSUM, checksum(b, ip, IPV4_MIN_HEADER));
  putEthernet(b, ip - ETH_HLEN, o.dstHi, o.dstLo, o.srcHi, o.srcLo, ETH_P_IP);
}

/**
 * Builds the frame for the TCP super-frame at b[f, f + fLen) (an Ethernet frame carrying IPv4; gso: its
 * segments' payload size; ecn: keep ECN, as the TAP said) with outer headers `o` (o.id: the first outer
 * ID). Returns how many segments the kernel will cut it into, with the frame in `cut` (and, when the
 * payload is not a whole number of segments, the last one left in cut.tail for vxlanTail()): ≥ 2 for a
 * GSO frame; 1 for one full segment or less, a frame without GSO. Or 0, with nothing written, when it
 * cannot go whole: headers that do not add up, a checksum field without the pseudo-header sum, or too
 * long for an outer header. Then cut it in user space, which checks it again.
 */
export function vxlanFrame(b: Uint8Array, f: number, fLen: number, gso: number, ecn: boolean, o: VxlanOuter, cut: VxlanCut): number {
  const ip = f + ETH_HLEN;
  const ipLen = fLen - ETH_HLEN;
  if (f < VXLAN_FRAME_HEADROOM || gso <= 0 || b[f + 12] !== 0x08 || b[f + 13] !== 0) return 0;
  if (ipLen < IPV4_MIN_HEADER + TCP_MIN_HEADER || ipLen + VXLAN_ENCAP_LEN > MAX_IP) return 0;
  if (b[ip] >>> 4 !== 4 || b[ip + OFF_PROTO] !== PROTO_TCP) return 0;
  const ihl = headerLength(b, ip);
  if (ihl < IPV4_MIN_HEADER || u16(b, ip + OFF_TOTAL_LEN) !== ipLen) return 0;
  if ((u16(b, ip + OFF_FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK)) !== 0) return 0;
  if (ihl + TCP_MIN_HEADER > ipLen) return 0;
  const t = ip + ihl;
  const thl = tcpHeaderLength(b, t);
  const hl = ihl + thl;
  if (thl < TCP_MIN_HEADER || hl > ipLen) return 0;
  const payload = ipLen - hl;
  if (u16(b, t + OFF_TCP_CHECKSUM) !== pseudoHeaderSum(b, ip, PROTO_TCP, ipLen - ihl)) return 0;
  // Less than a segment: one segment of what there is.
  if (payload < gso) gso = payload;
  const segs = gso === 0 ? 1 : Math.floor(payload / gso);

  // Everything read. The frame takes the full segments; a shorter rest becomes the tail.
  const rest = payload - segs * gso;
  cut.f = f;
  cut.hl = hl;
  cut.flags = b[t + OFF_FLAGS];
  cut.id = u16(b, ip + OFF_ID);
  cut.seq = i32(b, t + OFF_SEQ);
  cut.gso = gso;
  cut.tail = rest;
  cut.tailAt = ip + hl + segs * gso;
  const len = hl + segs * gso;
  if (rest !== 0) {
    putU16(b, ip + OFF_TOTAL_LEN, len);
    putU16(b, ip + OFF_CHECKSUM, 0);
    putU16(b, ip + OFF_CHECKSUM, checksum(b, ip, ihl));
    b[t + OFF_FLAGS] = cut.flags & ~(TCP_FIN | TCP_PSH); // they belong to the last segment: the tail's
    putU16(b, t + OFF_TCP_CHECKSUM, pseudoHeaderSum(b, ip, PROTO_TCP, len - ihl));
  }
  const frameLen = ETH_HLEN + len;
  outerHeaders(b, f, frameLen, o);
  putU16(b, f - VXLAN_HLEN - 2, vxlanTcpChecksum(b, f - VXLAN_HLEN, o, UDP_HLEN + VXLAN_HLEN + ETH_HLEN + hl + gso, ip, thl + gso));
  const l2 = ETH_HLEN + VXLAN_ENCAP_LEN;
  cut.at = f - VXLAN_FRAME_HEADROOM;
  cut.length = frameLen + VXLAN_FRAME_HEADROOM;
  cut.bytes = frameLen + (segs - 1) * (ETH_HLEN + hl);
  const type = segs > 1 ? VNET_GSO_TCPV4 | (ecn ? VNET_GSO_ECN : 0) : VNET_GSO_NONE;
  putVnetHdr(b, cut.at, VNET_F_NEEDS_CSUM, type, l2 + hl, segs > 1 ? gso : 0, l2 + ihl, OFF_TCP_CHECKSUM);
  return segs;
}

/**
 * The segment vxlanFrame() left in cut.tail, as a frame of its own (virtio-net header without offloads,
 * every checksum computed), written right in front of its payload: over the end of vxlanFrame()'s frame,
 * which must have been sent. Its inner headers are the super-frame's with this segment's length, IPv4 ID,
 * sequence number and the flags a last segment keeps; outer headers `o`. The frame goes to `cut`.
 */
export function vxlanTail(b: Uint8Array, cut: VxlanCut, o: VxlanOuter): void {
  const hl = cut.hl;
  const segs = (cut.tailAt - cut.f - ETH_HLEN - hl) / cut.gso;
  const f = cut.tailAt - hl - ETH_HLEN;
  b.copyWithin(f, cut.f, cut.f + ETH_HLEN + hl);
  const ip = f + ETH_HLEN;
  const ihl = headerLength(b, ip);
  const t = ip + ihl;
  const len = hl + cut.tail;
  putU16(b, ip + OFF_TOTAL_LEN, len);
  putU16(b, ip + OFF_ID, (cut.id + segs) & 0xffff);
  putU16(b, ip + OFF_CHECKSUM, 0);
  putU16(b, ip + OFF_CHECKSUM, checksum(b, ip, ihl));
  putU32(b, t + OFF_SEQ, (cut.seq + segs * cut.gso) | 0);
  b[t + OFF_FLAGS] = cut.flags & ~TCP_CWR;
  fillTcpChecksum(b, ip, len);
  const frameLen = ETH_HLEN + len;
  outerHeaders(b, f, frameLen, o);
  putU16(b, f - VXLAN_HLEN - 2, vxlanTcpChecksum(b, f - VXLAN_HLEN, o, UDP_HLEN + VXLAN_HLEN + frameLen, ip, len - ihl));
  cut.at = f - VXLAN_FRAME_HEADROOM;
  cut.length = frameLen + VXLAN_FRAME_HEADROOM;
  cut.bytes = frameLen;
  putVnetNone(b, cut.at);
}

/**
 * Makes the frame at b[f, f + fLen), read from the TAP without GSO, one VXLAN datagram with outer `o`, in
 * place, its virtio-net header (at f - 10, the TAP's) read first. The UDP checksum is the kernel's job
 * (NEEDS_CSUM on the outer UDP header, which holds the pseudo-header sum), unless the TAP left the inner
 * TCP checksum partial: then that one stays the kernel's (its NEEDS_CSUM moved by the encapsulation) and
 * the UDP checksum is what the datagram will sum to once it is filled in, from the headers alone (the
 * kernel's LCO: the inner part from csum_start sums to the complement of the field it holds). Another
 * partial checksum (UDP) is finished here, as the socket's cut does: over a veth the kernel hands the
 * datagram on unfinished, and a userfan receiver knows only TCP's partial checksum when it sees one.
 * Returns 1, with the frame in `cut`; 0, with nothing written, for a partial checksum whose offsets lie
 * outside the frame (the socket's cut then answers for it).
 */
export function vxlanPlain(b: Uint8Array, f: number, fLen: number, o: VxlanOuter, cut: VxlanCut): number {
  const v = f - VNET_HDR_LEN;
  if (f < VXLAN_FRAME_HEADROOM || fLen + VXLAN_ENCAP_LEN - ETH_HLEN > MAX_IP) return 0;
  const udpLen = UDP_HLEN + VXLAN_HLEN + fLen;
  const at = f - VXLAN_FRAME_HEADROOM;
  let partialTcp = false;
  if ((vnetFlags(b, v) & VNET_F_NEEDS_CSUM) !== 0) {
    const start = vnetCsumStart(b, v);
    const off = vnetCsumOffset(b, v);
    if ((start & 1) !== 0 || start < ETH_HLEN + IPV4_MIN_HEADER || start + off + 2 > fLen) return 0;
    const ip = f + ETH_HLEN;
    partialTcp = b[f + 12] === 0x08 && b[f + 13] === 0 && b[ip + OFF_PROTO] === PROTO_TCP && start === ETH_HLEN + headerLength(b, ip) && off === OFF_TCP_CHECKSUM;
    if (partialTcp) {
      const partial = u16(b, f + start + off);
      outerHeaders(b, f, fLen, o);
      const x = f - VXLAN_HLEN;
      // VXLAN header, inner Ethernet and IPv4 headers to csum_start; the TCP part sums to ~partial.
      putU16(b, x - 2, udpChecksum(outerSum(o, udpLen) + sum16(b, x, VXLAN_HLEN + start) + (~partial & 0xffff)));
      putVnetHdr(b, at, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, INNER_AT + start + off + 2, 0, INNER_AT + start, off);
    } else {
      let c = ~sum16(b, f + start, fLen - start) & 0xffff;
      if (c === 0 && b[ip + OFF_PROTO] === PROTO_UDP && off === 6) c = 0xffff;
      putU16(b, f + start + off, c);
    }
  }
  if (!partialTcp) {
    outerHeaders(b, f, fLen, o);
    // As the kernel's CHECKSUM_PARTIAL has it: the field holds the pseudo-header sum, folded, not complemented.
    let s = pseudoSum(o, udpLen);
    s = (s & 0xffff) + (s >>> 16);
    putU16(b, f - VXLAN_HLEN - 2, (s & 0xffff) + (s >>> 16));
    putVnetHdr(b, at, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, ETH_HLEN + IPV4_MIN_HEADER + UDP_HLEN, 0, ETH_HLEN + IPV4_MIN_HEADER, 6);
  }
  cut.at = at;
  cut.length = fLen + VXLAN_FRAME_HEADROOM;
  cut.bytes = fLen;
  cut.tail = 0;
  return 1;
}
