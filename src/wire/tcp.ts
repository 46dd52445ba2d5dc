/**
 * The TCP header (RFC 9293) as offsets and allocation-free accessors over a Uint8Array, like ipv4.ts, and
 * the TCP checksum over the IPv4 pseudo-header. `t` is the offset of the TCP header, `ip` of the IPv4
 * header in front of it.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-------------------------------+-------------------------------+
 *  |          Source Port          |       Destination Port        |
 *  +-------------------------------+-------------------------------+
 *  |                        Sequence Number                        |
 *  |                    Acknowledgment Number                      |
 *  +-------+-------+-+-+-+-+-+-+-+-+-------------------------------+
 *  |  Data |       |C|E|U|A|P|R|S|F|                               |
 *  | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
 *  +-------+-------+-+-+-+-+-+-+-+-+-------------------------------+
 *  |           Checksum            |         Urgent Pointer        |
 *  +-------------------------------+-------------------------------+
 */
import { headerLength, OFF_DST, OFF_SRC, PROTO_TCP, u16, u32, putU16 } from './ipv4.js';
import { sum16 } from './checksum.js';

export const TCP_MIN_HEADER = 20;

export const OFF_SPORT = 0;
export const OFF_DPORT = 2;
export const OFF_SEQ = 4;
export const OFF_ACK = 8;
export const OFF_DATA_OFFSET = 12;
export const OFF_FLAGS = 13;
export const OFF_WINDOW = 14;
export const OFF_TCP_CHECKSUM = 16;
export const OFF_URGENT = 18;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export const srcPort = (b: Uint8Array, t: number): number => u16(b, t + OFF_SPORT);
export const dstPort = (b: Uint8Array, t: number): number => u16(b, t + OFF_DPORT);
export const seqNumber = (b: Uint8Array, t: number): number => u32(b, t + OFF_SEQ);
export const ackNumber = (b: Uint8Array, t: number): number => u32(b, t + OFF_ACK);
/** Header length in bytes (data offset × 4). */
export const tcpHeaderLength = (b: Uint8Array, t: number): number => (b[t + OFF_DATA_OFFSET] >>> 4) << 2;
export const tcpFlags = (b: Uint8Array, t: number): number => b[t + OFF_FLAGS];
export const window = (b: Uint8Array, t: number): number => u16(b, t + OFF_WINDOW);
export const tcpChecksumField = (b: Uint8Array, t: number): number => u16(b, t + OFF_TCP_CHECKSUM);


/**
 * The folded one's-complement sum of the IPv4 pseudo-header (source, destination, zero, protocol, length)
 * for a transport segment of `l4Len` bytes behind the header at `ip`. Not complemented.
 */
export function pseudoHeaderSum(b: Uint8Array, ip: number, protocol: number, l4Len: number): number {
  const s =
    u16(b, ip + OFF_SRC) + u16(b, ip + OFF_SRC + 2) + u16(b, ip + OFF_DST) + u16(b, ip + OFF_DST + 2) + protocol + l4Len;
  // At most 6 × 0xffff: two folds suffice.
  const f = (s & 0xffff) + (s >>> 16);
  return (f & 0xffff) + (f >>> 16);
}

/**
 * The TCP checksum the segment at b[ip, ip+ipLen) should carry (IPv4 header at ip, TCP behind its IHL):
 * computed over the pseudo-header and the segment with the checksum field taken as 0. Writes nothing.
 */
export function tcpChecksum(b: Uint8Array, ip: number, ipLen: number): number {
  const t = ip + headerLength(b, ip);
  const l4 = ip + ipLen - t;
  const field = u16(b, t + OFF_TCP_CHECKSUM);
  // Sum with the field included, then take the field back out (one's-complement subtraction = adding ~field).
  let s = pseudoHeaderSum(b, ip, PROTO_TCP, l4) + sum16(b, t, l4) + (~field & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Computes and writes the TCP checksum of the segment at b[ip, ip+ipLen). */
export function fillTcpChecksum(b: Uint8Array, ip: number, ipLen: number): void {
  const t = ip + headerLength(b, ip);
  putU16(b, t + OFF_TCP_CHECKSUM, 0);
  let s = pseudoHeaderSum(b, ip, PROTO_TCP, ip + ipLen - t) + sum16(b, t, ip + ipLen - t);
  s = (s & 0xffff) + (s >>> 16);
  putU16(b, t + OFF_TCP_CHECKSUM, ~s & 0xffff);
}

/** True when the TCP checksum of the segment at b[ip, ip+ipLen) verifies (the sum with the field is 0xffff). */
export function tcpChecksumVerifies(b: Uint8Array, ip: number, ipLen: number): boolean {
  const t = ip + headerLength(b, ip);
  return tcpSumVerifies(b, ip, ipLen, sum16(b, t, ip + ipLen - t));
}

/** tcpChecksumVerifies() given `tcpSum`, the folded sum16 of the TCP part (computed elsewhere, e.g. batched). */
export function tcpSumVerifies(b: Uint8Array, ip: number, ipLen: number, tcpSum: number): boolean {
  const l4 = ipLen - headerLength(b, ip);
  let s = pseudoHeaderSum(b, ip, PROTO_TCP, l4) + tcpSum;
  s = (s & 0xffff) + (s >>> 16);
  return s === 0xffff;
}

/**
 * The value a CHECKSUM_PARTIAL (virtio NEEDS_CSUM) TCP segment carries in its checksum field: the folded
 * pseudo-header sum for its length, not complemented (Linux: ~tcp_v4_check(len, saddr, daddr, 0)). Whoever
 * finishes the checksum sums from the TCP header to the end, field included, and stores the complement.
 */
export function partialTcpChecksum(b: Uint8Array, ip: number, ipLen: number): number {
  const hl = headerLength(b, ip);
  return pseudoHeaderSum(b, ip, PROTO_TCP, ipLen - hl);
}
