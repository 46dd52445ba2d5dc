/**
 * An independent reference for the Internet checksums, written from the RFCs and nothing else, so tests can
 * judge src/wire/checksum.ts and src/wire/tcp.ts instead of comparing them with themselves. Deliberately
 * plain and slow: one 16-bit word at a time, end-around carry at every step, pseudo-headers built as byte
 * arrays exactly as the RFCs draw them. It imports nothing from src/.
 *
 * - RFC 1071 §1: the checksum is the 16-bit one's complement of the one's complement sum of the 16-bit
 *   words covered; an odd last byte is padded with a zero byte on the right.
 * - RFC 791 §3.1: the IPv4 header checksum covers the header only, its own field taken as zero.
 * - RFC 793 §3.1 (and RFC 768 for UDP): the TCP checksum covers a 96-bit pseudo-header (source address,
 *   destination address, a zero byte, the protocol, the TCP length) and the whole segment, its own
 *   field taken as zero.
 * - CHECKSUM_PARTIAL (virtio-net VIRTIO_NET_HDR_F_NEEDS_CSUM, Linux skb): the field holds the folded,
 *   uncomplemented sum of the pseudo-header; whoever finishes it sums from csum_start to the end and
 *   stores the complement.
 */

/**
 * RFC 1071: the one's complement sum of the big-endian 16-bit words of the bytes of `pieces`, one after
 * the other (every piece but the last of even length), not complemented.
 */
export function rfc1071Sum(...pieces: ArrayLike<number>[]): number {
  let sum = 0;
  for (const bytes of pieces) {
    for (let i = 0; i < bytes.length; i += 2) {
      const word = bytes[i] * 256 + (i + 1 < bytes.length ? bytes[i + 1] : 0);
      sum += word;
      if (sum > 0xffff) sum -= 0xffff; // end-around carry
    }
  }
  return sum;
}

/** RFC 1071: the checksum, the one's complement of the sum. */
export function rfc1071Checksum(...pieces: ArrayLike<number>[]): number {
  return 0xffff - rfc1071Sum(...pieces);
}

const be16 = (b: Uint8Array, at: number) => b[at] * 256 + b[at + 1];

/** The IPv4 header of the packet at `pkt[ip]`, as a copy. */
function ipv4Header(pkt: Uint8Array, ip: number): Uint8Array {
  return pkt.slice(ip, ip + (pkt[ip] & 0x0f) * 4);
}

/** RFC 791: the header checksum the IPv4 header at `pkt[ip]` should carry. */
export function refIpv4HeaderChecksum(pkt: Uint8Array, ip = 0): number {
  const h = ipv4Header(pkt, ip);
  h[10] = h[11] = 0;
  return rfc1071Checksum(h);
}

/** RFC 791: whether the IPv4 header at `pkt[ip]` carries the checksum it should. */
export function refIpv4HeaderVerifies(pkt: Uint8Array, ip = 0): boolean {
  return rfc1071Sum(ipv4Header(pkt, ip)) === 0xffff;
}

/**
 * RFC 793 §3.1 / RFC 768: the pseudo-header of the packet at `pkt[ip]` (addresses from its IPv4 header,
 * the transport length from its total length), as the 12 bytes the RFC draws.
 */
export function refPseudoHeader(pkt: Uint8Array, ip: number, protocol: number): number[] {
  const ihl = (pkt[ip] & 0x0f) * 4;
  const l4Len = be16(pkt, ip + 2) - ihl;
  return [...pkt.subarray(ip + 12, ip + 20), 0, protocol, l4Len >>> 8, l4Len & 0xff];
}

/** The transport part of the packet at `pkt[ip]` (to its IPv4 total length), as a view. */
function transport(pkt: Uint8Array, ip: number): Uint8Array {
  return pkt.subarray(ip + (pkt[ip] & 0x0f) * 4, ip + be16(pkt, ip + 2));
}

/** RFC 793: the checksum the TCP segment of the IPv4 packet at `pkt[ip]` should carry. */
export function refTcpChecksum(pkt: Uint8Array, ip = 0): number {
  const t = transport(pkt, ip);
  // The segment with its checksum field taken as zero: the 16 bytes before it, zero, the rest after it.
  return rfc1071Checksum(refPseudoHeader(pkt, ip, 6), t.subarray(0, 16), [0, 0], t.subarray(18));
}

/** RFC 793: whether the TCP segment of the IPv4 packet at `pkt[ip]` carries a checksum that verifies. */
export function refTcpVerifies(pkt: Uint8Array, ip = 0): boolean {
  return rfc1071Sum(refPseudoHeader(pkt, ip, 6), transport(pkt, ip)) === 0xffff;
}

/** RFC 768: whether the UDP datagram of the IPv4 packet at `pkt[ip]` carries a checksum that verifies (0: none). */
export function refUdpVerifies(pkt: Uint8Array, ip = 0): boolean {
  const u = transport(pkt, ip);
  if (u[6] === 0 && u[7] === 0) return true;
  return rfc1071Sum(refPseudoHeader(pkt, ip, 17), u) === 0xffff;
}

/** CHECKSUM_PARTIAL: what the checksum field of a partial TCP (6) or UDP (17) packet holds. */
export function refPartialChecksum(pkt: Uint8Array, ip: number, protocol: number): number {
  return rfc1071Sum(refPseudoHeader(pkt, ip, protocol));
}

/** Writes the IPv4 header checksum of the packet at `pkt[ip]`, computed by the reference. */
export function putRefIpv4HeaderChecksum(pkt: Uint8Array, ip = 0): void {
  const c = refIpv4HeaderChecksum(pkt, ip);
  pkt[ip + 10] = c >>> 8;
  pkt[ip + 11] = c & 0xff;
}

/** Writes the TCP checksum of the packet at `pkt[ip]` (full, or partial with `partial`), computed by the reference. */
export function putRefTcpChecksum(pkt: Uint8Array, ip = 0, partial = false): void {
  const c = partial ? refPartialChecksum(pkt, ip, 6) : refTcpChecksum(pkt, ip);
  const at = ip + (pkt[ip] & 0x0f) * 4 + 16;
  pkt[at] = c >>> 8;
  pkt[at + 1] = c & 0xff;
}
