/**
 * A TCP super-packet from the TUN made into one frame for the kernel to cut (TX GSO, src/underlay/tx-gso.ts),
 * in place, in the headroom the TUN read left in front of it (at least GSO_FRAME_HEADROOM bytes):
 *
 *                                 [ inner IPv4 + TCP + payload … ]
 *                                 ^ ip
 *   after:  [ vnet 10 ][ Ethernet 14 ][ outer IPv4 20 ][ inner … unchanged ]
 *           ^ ip - GSO_FRAME_HEADROOM
 *
 * The virtio-net header says NEEDS_CSUM from the inner TCP header (the field holds the pseudo-header sum,
 * as the TUN gave it) and gso_type TCPV4 (ECN kept) with the TUN's gso_size; offsets count from the
 * Ethernet header, as an AF_PACKET SOCK_RAW socket reads them. The outer header is wire/ipip.ts's
 * encapsulate() of the whole packet (its length fits: at most 65535 bytes). The kernel gives each
 * segment its own outer length, ID (id, id + 1, …) and checksum when it cuts.
 */
import { ETH_HLEN, ETH_P_IP, putEthernet } from '../wire/ethernet.js';
import { encapsulate, OUTER_HEADER_LEN } from '../wire/ipip.js';
import { FLAG_MF, FRAG_OFFSET_MASK, headerLength, IPV4_MIN_HEADER, OFF_FLAGS_FRAG, OFF_PROTO, OFF_TOTAL_LEN, PROTO_TCP, u16 } from '../wire/ipv4.js';
import { OFF_TCP_CHECKSUM, pseudoHeaderSum, TCP_MIN_HEADER, tcpHeaderLength } from '../wire/tcp.js';
import { putVnetHdr, VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_TCPV4, VNET_HDR_LEN } from '../wire/virtio.js';

/** Bytes the frame starts before the inner IPv4 header: virtio-net header, Ethernet, outer IPv4. */
export const GSO_FRAME_HEADROOM = VNET_HDR_LEN + ETH_HLEN + OUTER_HEADER_LEN;
const MAX_IP = 0xffff;

/**
 * Builds the frame for the TCP super-packet at b[ip, ip + ipLen) (gso: its segments' payload size; ecn:
 * keep ECN, as the TUN said), to the neighbour with MAC (dstHi, dstLo) from this host's (srcHi, srcLo)
 * (NeighbourTable's form: bytes 0–3 as an int32, bytes 4–5), outer addresses src → dst (int32), TTL ttl
 * (0: the inner one's), first outer ID id. Returns how many segments the kernel will cut it into (≥ 2),
 * with the frame at ip - GSO_FRAME_HEADROOM, ipLen + GSO_FRAME_HEADROOM bytes long; or 0, with nothing
 * written, when the packet cannot go whole: headers that do not add up, a checksum field without the
 * pseudo-header sum, one segment's worth of payload or less, or too long for an outer header. Then cut
 * it in user space, which checks it again.
 */
export function gsoFrame(
  b: Uint8Array, ip: number, ipLen: number, gso: number, ecn: boolean, dstHi: number, dstLo: number, srcHi: number, srcLo: number,
  src: number, dst: number, ttl: number, id: number,
): number {
  if (ip < GSO_FRAME_HEADROOM || gso <= 0) return 0;
  if (ipLen < IPV4_MIN_HEADER + TCP_MIN_HEADER || ipLen + OUTER_HEADER_LEN > MAX_IP) return 0;
  if (b[ip] >>> 4 !== 4 || b[ip + OFF_PROTO] !== PROTO_TCP) return 0;
  const ihl = headerLength(b, ip);
  if (ihl < IPV4_MIN_HEADER || u16(b, ip + OFF_TOTAL_LEN) !== ipLen) return 0;
  if ((u16(b, ip + OFF_FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK)) !== 0) return 0;
  if (ihl + TCP_MIN_HEADER > ipLen) return 0;
  const thl = tcpHeaderLength(b, ip + ihl);
  const hl = ihl + thl;
  if (thl < TCP_MIN_HEADER || hl > ipLen) return 0;
  const payload = ipLen - hl;
  if (payload <= gso) return 0;
  if (u16(b, ip + ihl + OFF_TCP_CHECKSUM) !== pseudoHeaderSum(b, ip, PROTO_TCP, ipLen - ihl)) return 0;

  // Everything read; now the headers, back to front.
  const o = encapsulate(b, ip, ipLen, src, dst, ttl, id);
  const e = o - ETH_HLEN;
  putEthernet(b, e, dstHi, dstLo, srcHi, srcLo, ETH_P_IP);
  const l2 = ETH_HLEN + OUTER_HEADER_LEN;
  putVnetHdr(b, e - VNET_HDR_LEN, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4 | (ecn ? VNET_GSO_ECN : 0), l2 + hl, gso, l2 + ihl, OFF_TCP_CHECKSUM);
  return Math.ceil(payload / gso);
}
