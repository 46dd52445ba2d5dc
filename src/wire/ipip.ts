/**
 * IP-in-IP (RFC 2003) as the Fan uses it: encapsulate in place in front of an inner packet, and
 * decapsulate with every check the receive path needs, each failure a drop code (drops.ts).
 *
 * Both work on a Uint8Array holding the packet at an offset, write nothing but header bytes, and allocate
 * nothing: they are the per-packet path.
 */
import { FanTable, NO_FAN, NO_HOST } from '../fan/table.js';
import { onesSum, fold, updateChecksum } from './checksum.js';
import { decapEcn, ECN_DROP, encapEcn } from './ecn.js';
import { Drop } from './drops.js';
import { ECN_MASK, FLAG_DF, FLAG_MF, FRAG_OFFSET_MASK, headerLength, i32, IPV4_MIN_HEADER, OFF_CHECKSUM, OFF_DST, OFF_FLAGS_FRAG, OFF_PROTO, OFF_SRC, OFF_TOS, OFF_TOTAL_LEN, OFF_TTL, PROTO_IPIP, u16, putU16, putU32 } from './ipv4.js';

/** Bytes of outer header IP-in-IP adds (IHL 5, no options). */
export const OUTER_HEADER_LEN = 20;
/** Linux's default outer TTL for ipip tunnels. */
export const DEFAULT_TTL = 64;

/**
 * Write the outer IPv4 header in the 20 bytes before the inner packet at b[innerOff, innerOff+innerLen)
 * and return the outer packet's offset (innerOff - 20). The inner header must already be valid (see
 * egressRoute).
 *
 * Outer fields: version 4, IHL 5; TOS = inner DSCP with ECN per RFC 6040 normal mode (an inner CE goes
 * out as ECT(0), as Linux does); total length; identification `id`; DF copied from the inner header;
 * TTL `ttl` (0 = inherit the inner TTL); protocol 4; header checksum; source and destination.
 */
export function encapsulate(b: Uint8Array, innerOff: number, innerLen: number, src: number, dst: number, ttl: number, id: number): number {
  const o = innerOff - OUTER_HEADER_LEN;
  if (o < 0) throw new RangeError('encapsulate: no headroom for the outer header');
  const innerTos = b[innerOff + OFF_TOS];
  const tos = (innerTos & ~ECN_MASK & 0xff) | encapEcn(innerTos & ECN_MASK);
  const total = innerLen + OUTER_HEADER_LEN;
  const df = u16(b, innerOff + OFF_FLAGS_FRAG) & FLAG_DF;
  const t = ttl === 0 ? b[innerOff + OFF_TTL] : ttl;
  id &= 0xffff;
  b[o] = 0x45;
  b[o + OFF_TOS] = tos;
  putU16(b, o + OFF_TOTAL_LEN, total);
  putU16(b, o + 4, id);
  putU16(b, o + OFF_FLAGS_FRAG, df);
  b[o + OFF_TTL] = t;
  b[o + OFF_PROTO] = PROTO_IPIP;
  putU32(b, o + OFF_SRC, src);
  putU32(b, o + OFF_DST, dst);
  // The checksum from the field values, without reading the bytes back.
  const sum = (0x4500 | tos) + total + id + df + ((t << 8) | PROTO_IPIP) + (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff);
  putU16(b, o + OFF_CHECKSUM, ~fold(sum) & 0xffff);
  return o;
}

/** Where egressRoute puts a route: route[ROUTE_DST] the remote underlay host, route[ROUTE_SRC] this host's. */
export const ROUTE_DST = 0;
export const ROUTE_SRC = 1;

/**
 * Decide where a packet read from the TUN goes: 0, with the outer destination (the underlay host that
 * owns the inner destination) and source (this host's address in that fan) in `route`, as int32; or a
 * drop code (> 0). `fans` is this host's table.
 */
export function egressRoute(b: Uint8Array, off: number, len: number, fans: FanTable, route: Int32Array): number {
  if (len < IPV4_MIN_HEADER) return Drop['tx-malformed'];
  if (b[off] >>> 4 !== 4) return Drop['tx-not-ipv4'];
  const hl = headerLength(b, off);
  if (hl < IPV4_MIN_HEADER || hl > len || u16(b, off + OFF_TOTAL_LEN) !== len) return Drop['tx-malformed'];
  const dst = i32(b, off + OFF_DST);
  const host = fans.underlayHostOf(dst);
  if (host === NO_FAN) return Drop['tx-no-fan'];
  if (host === NO_HOST) return Drop['tx-no-underlay-host'];
  if (fans.isLocalUnderlay(host)) return Drop['tx-local-destination'];
  if (fans.isLocalUnderlay(i32(b, off + OFF_SRC))) return Drop['tx-loop'];
  route[ROUTE_DST] = host;
  route[ROUTE_SRC] = fans.localHostFor(dst);
  return 0;
}

/** Decapsulation policy bits. */
export const ACCEPT_INNER_FRAGMENTS = 1;
export const ACCEPT_INNER_OPTIONS = 2;
/** What the kernel's ipip accepts: fragments and options pass through to the inner stack. */
export const DEFAULT_POLICY = ACCEPT_INNER_FRAGMENTS | ACCEPT_INNER_OPTIONS;

/**
 * Check an IP-in-IP packet that arrived at b[off, off+len) (outer header first, as a raw socket delivers
 * it) and return the offset of the inner packet, whose length is then `len - (result - off)`; or a
 * negative drop code. On success the inner ECN field has been updated per RFC 6040 (and the inner header
 * checksum with it, RFC 1624); nothing else is written.
 */
export function decapsulate(b: Uint8Array, off: number, len: number, fans: FanTable, policy: number = DEFAULT_POLICY): number {
  // Outer header.
  if (len < IPV4_MIN_HEADER) return -Drop['rx-truncated-outer'];
  if (b[off] >>> 4 !== 4) return -Drop['rx-bad-outer-version'];
  const ohl = headerLength(b, off);
  if (ohl < IPV4_MIN_HEADER) return -Drop['rx-bad-outer-ihl'];
  if (ohl > len) return -Drop['rx-truncated-outer'];
  if (u16(b, off + OFF_TOTAL_LEN) !== len) return -Drop['rx-bad-outer-length'];
  if (b[off + OFF_PROTO] !== PROTO_IPIP) return -Drop['rx-not-ipip'];

  // Inner header.
  const i = off + ohl;
  const ilen = len - ohl;
  if (ilen < IPV4_MIN_HEADER) return -Drop['rx-truncated-inner'];
  if (b[i] >>> 4 !== 4) return -Drop['rx-inner-not-ipv4'];
  const ihl = headerLength(b, i);
  if (ihl < IPV4_MIN_HEADER) return -Drop['rx-bad-inner-ihl'];
  if (ihl > ilen) return -Drop['rx-truncated-inner'];
  if (u16(b, i + OFF_TOTAL_LEN) !== ilen) return -Drop['rx-bad-inner-length'];
  if (fold(onesSum(b, i, ihl)) !== 0xffff) return -Drop['rx-bad-inner-checksum'];
  if (b[i + OFF_TTL] === 0) return -Drop['rx-inner-ttl-zero'];
  if ((policy & ACCEPT_INNER_FRAGMENTS) === 0 && (u16(b, i + OFF_FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK)) !== 0) return -Drop['rx-inner-fragment'];
  if ((policy & ACCEPT_INNER_OPTIONS) === 0 && ihl !== IPV4_MIN_HEADER) return -Drop['rx-inner-options'];

  // Who may send what: the Fan's mapping is a function, so anti-spoofing is one lookup.
  // int32, as FanTable answers (see there): no heap numbers per packet.
  const innerSrc = i32(b, i + OFF_SRC);
  const innerDst = i32(b, i + OFF_DST);
  // Every protocol-4 socket on the host sees every IP-in-IP packet: another daemon's fan is not ours.
  if (fans.fanIndexOf(innerDst) < 0) return -Drop['rx-foreign-overlay'];
  const outerSrc = i32(b, off + OFF_SRC);
  const outerDst = i32(b, off + OFF_DST);
  if (fans.isLocalUnderlay(outerSrc)) return -Drop['rx-from-self'];
  if (!fans.inUnderlay(outerSrc)) return -Drop['rx-outer-source-not-underlay'];
  if (innerSrc === outerSrc || innerSrc === outerDst || fans.isLocalUnderlay(innerSrc)) return -Drop['rx-loop'];
  if (!fans.senderOwns(innerSrc, outerSrc)) return -Drop['rx-spoofed-source'];
  if (fans.localHostFor(innerSrc) !== outerDst) return -Drop['rx-wrong-outer-destination'];
  if (!fans.isLocal(innerDst)) return -Drop['rx-not-local'];

  // ECN, RFC 6040.
  const itos = b[i + OFF_TOS];
  const inner = itos & ECN_MASK;
  const next = decapEcn(inner, b[off + OFF_TOS] & ECN_MASK);
  if (next === ECN_DROP) return -Drop['rx-ecn-ce-not-ect'];
  if (next !== inner) {
    const ntos = (itos & ~ECN_MASK & 0xff) | next;
    const oldWord = (b[i] << 8) | itos;
    b[i + OFF_TOS] = ntos;
    putU16(b, i + OFF_CHECKSUM, updateChecksum(u16(b, i + OFF_CHECKSUM), oldWord, (b[i] << 8) | ntos));
  }
  return i;
}
