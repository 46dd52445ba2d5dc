/**
 * The IPv4 header (RFC 791) as offsets and allocation-free accessors over a Uint8Array, in the spirit of
 * smoltcp's `wire` and gVisor's `header`: a packet is bytes plus an offset; nothing is parsed into objects.
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-------+-------+-----------+---+-------------------------------+
 *  |Version|  IHL  |   DSCP    |ECN|          Total Length         |
 *  +-------+-------+-----------+---+-----+-------------------------+
 *  |         Identification        |Flags|     Fragment Offset     |
 *  +---------------+---------------+-----+-------------------------+
 *  |  Time to Live |    Protocol   |         Header Checksum       |
 *  +---------------+---------------+-------------------------------+
 *  |                       Source Address                          |
 *  |                    Destination Address                        |
 *  +---------------------------------------------------------------+
 */
export const IPV4_MIN_HEADER = 20;
export const PROTO_IPIP = 4;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

export const OFF_TOS = 1;
export const OFF_TOTAL_LEN = 2;
export const OFF_ID = 4;
export const OFF_FLAGS_FRAG = 6;
export const OFF_TTL = 8;
export const OFF_PROTO = 9;
export const OFF_CHECKSUM = 10;
export const OFF_SRC = 12;
export const OFF_DST = 16;

export const FLAG_DF = 0x4000;
export const FLAG_MF = 0x2000;
export const FRAG_OFFSET_MASK = 0x1fff;

export const ECN_MASK = 0x03;
export const ECN_NOT_ECT = 0;
export const ECN_ECT1 = 1;
export const ECN_ECT0 = 2;
export const ECN_CE = 3;

export function u16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}
export function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}
/**
 * The same 32 bits as an int32: what the per-packet path passes around (V8 keeps int32 values as small
 * integers; a uint32 above 2^31 is a heap number once it crosses a call that was not inlined).
 */
export function i32(b: Uint8Array, o: number): number {
  return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
}
export function putU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}
export function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

export const version = (b: Uint8Array, o: number): number => b[o] >>> 4;
/** Header length in bytes (IHL × 4). */
export const headerLength = (b: Uint8Array, o: number): number => (b[o] & 0x0f) << 2;
export const tos = (b: Uint8Array, o: number): number => b[o + OFF_TOS];
export const ecn = (b: Uint8Array, o: number): number => b[o + OFF_TOS] & ECN_MASK;
export const ttl = (b: Uint8Array, o: number): number => b[o + OFF_TTL];
export const protocol = (b: Uint8Array, o: number): number => b[o + OFF_PROTO];
export const source = (b: Uint8Array, o: number): number => u32(b, o + OFF_SRC);
export const destination = (b: Uint8Array, o: number): number => u32(b, o + OFF_DST);
