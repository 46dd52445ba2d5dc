/**
 * Building IPv4 packets field by field, with correct checksums unless told otherwise: for tests, the hostile
 * sender and other tools. Allocates; never used on the per-packet path.
 */
import { checksum } from './checksum.js';
import { putU16, putU32 } from './ipv4.js';

export interface PacketSpec {
  src: number;
  dst: number;
  protocol?: number;
  tos?: number;
  ttl?: number;
  id?: number;
  df?: boolean;
  mf?: boolean;
  fragOffset?: number;
  options?: Uint8Array; // multiple of 4 bytes
  payload?: Uint8Array;
}

/** An IPv4 packet as bytes. */
export function ipv4Packet(s: PacketSpec): Uint8Array {
  const opts = s.options ?? new Uint8Array(0);
  const payload = s.payload ?? new Uint8Array(0);
  const hl = 20 + opts.length;
  const b = new Uint8Array(hl + payload.length);
  b[0] = 0x40 | (hl >>> 2);
  b[1] = s.tos ?? 0;
  putU16(b, 2, b.length);
  putU16(b, 4, s.id ?? 0x1234);
  putU16(b, 6, (s.df ? 0x4000 : 0) | (s.mf ? 0x2000 : 0) | (s.fragOffset ?? 0));
  b[8] = s.ttl ?? 64;
  b[9] = s.protocol ?? 17;
  putU32(b, 12, s.src);
  putU32(b, 16, s.dst);
  b.set(opts, 20);
  putU16(b, 10, checksum(b, 0, hl));
  b.set(payload, hl);
  return b;
}

/** Copy `p` into a fresh buffer after `headroom` bytes; returns the buffer. */
export function withHeadroom(p: Uint8Array, headroom = 20): Uint8Array {
  const b = new Uint8Array(headroom + p.length);
  b.set(p, headroom);
  return b;
}

/** An ICMP echo request body (type 8) with a correct checksum. */
export function icmpEcho(id: number, seq: number, data: Uint8Array = new Uint8Array(16)): Uint8Array {
  const b = new Uint8Array(8 + data.length);
  b[0] = 8;
  putU16(b, 4, id);
  putU16(b, 6, seq);
  b.set(data, 8);
  putU16(b, 2, checksum(b, 0, b.length));
  return b;
}

/** A UDP datagram (header + payload) with a correct checksum over the IPv4 pseudo-header. */
export function udpDatagram(src: number, dst: number, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const len = 8 + payload.length;
  const pseudo = new Uint8Array(12 + len);
  putU32(pseudo, 0, src);
  putU32(pseudo, 4, dst);
  pseudo[9] = 17;
  putU16(pseudo, 10, len);
  const u = pseudo.subarray(12);
  putU16(u, 0, sport);
  putU16(u, 2, dport);
  putU16(u, 4, len);
  u.set(payload, 8);
  const c = checksum(pseudo, 0, pseudo.length);
  putU16(u, 6, c === 0 ? 0xffff : c);
  return Uint8Array.from(u);
}
