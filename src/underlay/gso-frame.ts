/**
 * A TCP super-packet from the TUN made into one frame for the kernel to cut (TX GSO, src/io/tx-gso.ts),
 * in place, in the headroom the TUN read left in front of it:
 *
 *   before:             [ vnet (TUN's) 10 ][ inner IPv4 + TCP + payload … ]
 *                       ^ v
 *   after:  [ vnet 10 ][ Ethernet 14 ][ outer IPv4 20 ][ inner … unchanged ]
 *           ^ v - GSO_FRAME_HEADROOM
 *
 * The new virtio-net header says NEEDS_CSUM from the inner TCP header (the field holds the pseudo-header
 * sum, as the TUN gave it) and gso_type TCPV4 (ECN kept) with the TUN's gso_size; offsets count from the
 * Ethernet header, as an AF_PACKET SOCK_RAW socket reads them. The outer header is wire/ipip.ts's
 * encapsulate() of the whole packet (its length fits: at most 65535 bytes). The kernel gives each
 * segment its own outer length, ID (id, id + 1, …) and checksum when it cuts.
 */
import { encapsulate, OUTER_HEADER_LEN } from '../wire/ipip.js';
import { FLAG_MF, FRAG_OFFSET_MASK, IPV4_MIN_HEADER, OFF_FLAGS_FRAG, OFF_PROTO, OFF_TOTAL_LEN, PROTO_TCP, u16 } from '../wire/ipv4.js';
import { OFF_DATA_OFFSET, OFF_TCP_CHECKSUM, pseudoHeaderSum, TCP_MIN_HEADER } from '../wire/tcp.js';
import { putVnetHdr, VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_TCPV4, VNET_HDR_LEN, vnetFlags, vnetGsoSize, vnetGsoType } from '../wire/virtio.js';

export const ETH_HLEN = 14;
const ETH_P_IP = 0x0800;
/** Bytes the frame starts before the TUN's virtio-net header: its own header, Ethernet, outer IPv4, minus the TUN's header. */
export const GSO_FRAME_HEADROOM = ETH_HLEN + OUTER_HEADER_LEN;
const MAX_IP = 0xffff;

/** Writes a MAC kept as (bytes 0–3 as an int32, bytes 4–5) at b[at, at + 6). */
function putMac(b: Uint8Array, at: number, hi: number, lo: number): void {
  b[at] = hi >>> 24;
  b[at + 1] = hi >>> 16;
  b[at + 2] = hi >>> 8;
  b[at + 3] = hi;
  b[at + 4] = lo >>> 8;
  b[at + 5] = lo;
}

/**
 * Builds the frame for the packet read at b[v, v + vlen) (virtio-net header first), to the neighbour
 * with MAC (dstHi, dstLo) from this host's (srcHi, srcLo) (NeighbourTable's form: bytes 0–3 as an int32,
 * bytes 4–5), outer addresses src → dst (int32), TTL ttl (0: the inner one's), first outer ID id.
 * Returns how many segments the kernel will cut it into (≥ 2), with the frame at v - GSO_FRAME_HEADROOM,
 * vlen + GSO_FRAME_HEADROOM bytes long; or 0, with nothing written, when the packet cannot go whole:
 * not a TCPV4 super-packet with NEEDS_CSUM, headers that do not add up, a checksum field without the
 * pseudo-header sum, one segment's worth of payload or less, or too long for an outer header. Then cut
 * it in user space (src/offload/segment.ts), which checks it again.
 */
export function gsoFrame(
  b: Uint8Array, v: number, vlen: number, dstHi: number, dstLo: number, srcHi: number, srcLo: number,
  src: number, dst: number, ttl: number, id: number,
): number {
  const gsoType = vnetGsoType(b, v);
  if ((gsoType & ~VNET_GSO_ECN) !== VNET_GSO_TCPV4 || (vnetFlags(b, v) & VNET_F_NEEDS_CSUM) === 0) return 0;
  if (v < GSO_FRAME_HEADROOM) return 0;
  const gso = vnetGsoSize(b, v);
  const ip = v + VNET_HDR_LEN;
  const ipLen = vlen - VNET_HDR_LEN;
  if (ipLen < IPV4_MIN_HEADER + TCP_MIN_HEADER || ipLen + OUTER_HEADER_LEN > MAX_IP || gso === 0) return 0;
  if (b[ip] >>> 4 !== 4 || b[ip + OFF_PROTO] !== PROTO_TCP) return 0;
  const ihl = (b[ip] & 0x0f) << 2;
  if (ihl < IPV4_MIN_HEADER || u16(b, ip + OFF_TOTAL_LEN) !== ipLen) return 0;
  if ((u16(b, ip + OFF_FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK)) !== 0) return 0;
  if (ihl + TCP_MIN_HEADER > ipLen) return 0;
  const thl = (b[ip + ihl + OFF_DATA_OFFSET] >>> 4) << 2;
  const hl = ihl + thl;
  if (thl < TCP_MIN_HEADER || hl > ipLen) return 0;
  const payload = ipLen - hl;
  if (payload <= gso) return 0;
  if (u16(b, ip + ihl + OFF_TCP_CHECKSUM) !== pseudoHeaderSum(b, ip, PROTO_TCP, ipLen - ihl)) return 0;

  // Everything read; now the headers, back to front (the outer header overwrites the TUN's vnet header).
  const o = encapsulate(b, ip, ipLen, src, dst, ttl, id);
  const e = o - ETH_HLEN;
  putMac(b, e, dstHi, dstLo);
  putMac(b, e + 6, srcHi, srcLo);
  b[e + 12] = ETH_P_IP >>> 8;
  b[e + 13] = ETH_P_IP & 0xff;
  const l2 = ETH_HLEN + OUTER_HEADER_LEN;
  putVnetHdr(b, e - VNET_HDR_LEN, VNET_F_NEEDS_CSUM, gsoType, l2 + hl, gso, l2 + ihl, OFF_TCP_CHECKSUM);
  return Math.ceil(payload / gso);
}
