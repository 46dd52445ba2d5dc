/**
 * Segmentation in user space (the send side of TUN offloads, what the kernel's tcp_gso_segment does):
 * a TUN queue opened with IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4) hands over TCP
 * super-packets of up to 64 KiB, with a virtio-net header saying how to cut them, and packets whose
 * transport checksum is left unfinished. Before such packets go on the wire:
 *
 *  - a super-packet is cut into gso_size-byte payloads, each a complete TCP/IPv4 segment: IPv4 ID + i,
 *    total length, header checksum; TCP sequence number + i·gso_size, FIN and PSH only on the last
 *    segment, CWR only on the first, a full TCP checksum;
 *  - a packet with NEEDS_CSUM gets its checksum finished in place.
 *
 * Segments are written into an Arena, a region of the same buffer the packets were read into,
 * with `headroom` bytes free in front of each (for the outer IP-in-IP header), copied with copyWithin:
 * nothing is allocated per packet. Each result is pushed to a PacketList as (offset of its IPv4 header,
 * length); the caller encapsulates them there.
 */
import { BAD_PACKET, NO_ROOM, type PacketList } from '../io/batch.js';
import { checksum, sum16 } from '../wire/checksum.js';
import { FLAG_MF, FRAG_OFFSET_MASK, headerLength, IPV4_MIN_HEADER, OFF_CHECKSUM, OFF_FLAGS_FRAG, OFF_ID, OFF_PROTO, OFF_TOTAL_LEN, PROTO_TCP, PROTO_UDP, u16, putU16, putU32 } from '../wire/ipv4.js';
import { SumBatch } from '../io/sum-batch.js';
import { TCP_CWR, TCP_FIN, TCP_MIN_HEADER, TCP_PSH, tcpHeaderLength, OFF_FLAGS, OFF_SEQ, OFF_TCP_CHECKSUM, pseudoHeaderSum } from '../wire/tcp.js';
import {
  VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_HDR_LEN, vnetCsumOffset, vnetCsumStart, vnetFlags,
  vnetGsoSize, vnetGsoType,
} from '../wire/virtio.js';

// What cut() answers (the underlay's contract, in io/batch.ts): BAD_PACKET, the packet is not what its
// virtio header or its own headers say; NO_ROOM, the arena or the output list cannot take its segments.
export { BAD_PACKET, NO_ROOM };

/** Where segments go: [start, end) of a buffer, filled from `cursor`. Reset once what it holds was sent. */
export class Arena {
  cursor: number;
  constructor(
    readonly start: number,
    readonly end: number,
  ) {
    if (!(start >= 0 && end >= start)) throw new RangeError(`arena [${start}, ${end})`);
    this.cursor = start;
  }

  reset(): void {
    this.cursor = this.start;
  }

  get empty(): boolean {
    return this.cursor === this.start;
  }
}

/**
 * Finishes a NEEDS_CSUM checksum in place: the field at csumStart + csumOffset holds the pseudo-header sum;
 * sum from csumStart to the end and store the complement (for UDP a result of 0 is sent as 0xffff).
 * `ip` is where the packet starts, `l2` the link header in front of its IPv4 header (0 on a TUN, 14 on a
 * TAP: the offsets count from the frame's start). Returns false when the offsets do not fit the packet.
 */
export function finishChecksum(b: Uint8Array, ip: number, ipLen: number, csumStart: number, csumOffset: number, l2 = 0): boolean {
  if (csumStart < l2 + IPV4_MIN_HEADER || csumStart + csumOffset + 2 > ipLen) return false;
  let c = ~sum16(b, ip + csumStart, ipLen - csumStart) & 0xffff;
  if (c === 0 && b[ip + l2 + OFF_PROTO] === PROTO_UDP && csumOffset === 6) c = 0xffff;
  putU16(b, ip + csumStart + csumOffset, c);
  return true;
}

/**
 * A packet as read from a TUN queue with a virtio-net header: header at b[v], the packet right after it
 * (on a TAP, `l2` = 14: an Ethernet frame), vlen bytes in all. Pushes the packet(s) ready for the wire to
 * `out` (frames, on a TAP) and returns how many, or BAD_PACKET or NO_ROOM (then nothing was pushed).
 */
export function segment(b: Uint8Array, v: number, vlen: number, out: PacketList, arena: Arena, headroom: number, l2 = 0, packed = false): number {
  const p = v + VNET_HDR_LEN;
  const pLen = vlen - VNET_HDR_LEN;
  if (pLen < (l2 === 0 ? IPV4_MIN_HEADER : l2)) return BAD_PACKET;
  const gsoType = vnetGsoType(b, v);
  const needsCsum = (vnetFlags(b, v) & VNET_F_NEEDS_CSUM) !== 0;
  if (gsoType === VNET_GSO_NONE) {
    if (needsCsum && !finishChecksum(b, p, pLen, vnetCsumStart(b, v), vnetCsumOffset(b, v), l2)) return BAD_PACKET;
    if (out.count >= out.capacity) return NO_ROOM;
    out.push(p, pLen);
    return 1;
  }
  if ((gsoType & ~VNET_GSO_ECN) !== VNET_GSO_TCPV4) return BAD_PACKET;
  const gso = vnetGsoSize(b, v);
  return l2 === 0 ? splitTcp(b, p, pLen, gso, out, arena, headroom, packed) : splitFrame(b, p, pLen, gso, out, arena, headroom, l2, packed);
}

/**
 * splitTcp() for a frame: the TCP/IPv4 packet behind the `l2`-byte link header at b[f, f+fLen) is cut, and
 * each segment gets a copy of the link header in front (`headroom` free bytes before that). Pushes the
 * frames to `out`; returns their number, BAD_PACKET or NO_ROOM.
 */
export function splitFrame(b: Uint8Array, f: number, fLen: number, gso: number, out: PacketList, arena: Arena, headroom: number, l2: number, packed = false): number {
  if (fLen < l2) return BAD_PACKET;
  const r = splitTcp(b, f + l2, fLen - l2, gso, out, arena, headroom + l2, packed);
  // Each segment behind a copy of the frame's link header (in place when the packet was not cut).
  for (let j = out.count - (r > 0 ? r : 0); j < out.count; j++) {
    const s = out.offsets[j] - l2;
    if (s !== f) b.copyWithin(s, f, f + l2);
    out.offsets[j] = s;
    out.lengths[j] += l2;
  }
  return r;
}

/**
 * Cuts the TCP/IPv4 packet at b[ip, ip+ipLen) into segments of at most `gso` payload bytes (see the module
 * comment for what each carries), written into the arena with `headroom` free bytes in front of each
 * (4-byte aligned; `packed`: right behind the previous segment's end, so that headers written in the
 * headroom make them one run of equal-size datagrams), and pushes them to `out`. A packet whose payload
 * fits in one segment is finished in place (its checksum computed) and pushed as it is. The checksum field
 * of the input is ignored: it may be a partial (pseudo-header) sum or a full one. Returns the number
 * pushed, BAD_PACKET or NO_ROOM.
 */
export function splitTcp(b: Uint8Array, ip: number, ipLen: number, gso: number, out: PacketList, arena: Arena, headroom: number, packed = false): number {
  if (ipLen < IPV4_MIN_HEADER || b[ip] >>> 4 !== 4 || b[ip + OFF_PROTO] !== PROTO_TCP) return BAD_PACKET;
  const ihl = headerLength(b, ip);
  if (ihl < IPV4_MIN_HEADER || u16(b, ip + OFF_TOTAL_LEN) !== ipLen) return BAD_PACKET;
  if ((u16(b, ip + OFF_FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK)) !== 0) return BAD_PACKET;
  const t = ip + ihl;
  if (ihl + TCP_MIN_HEADER > ipLen) return BAD_PACKET;
  const thl = tcpHeaderLength(b, t);
  const hl = ihl + thl;
  if (thl < TCP_MIN_HEADER || hl > ipLen) return BAD_PACKET;
  const payload = ipLen - hl;
  if (gso <= 0) return BAD_PACKET;

  if (payload <= gso) {
    if (out.count >= out.capacity) return NO_ROOM;
    putU16(b, t + OFF_TCP_CHECKSUM, 0);
    const s = pseudoHeaderSum(b, ip, PROTO_TCP, ipLen - ihl) + sum16(b, t, ipLen - ihl);
    putU16(b, t + OFF_TCP_CHECKSUM, ~((s & 0xffff) + (s >>> 16)) & 0xffff);
    out.push(ip, ipLen);
    return 1;
  }

  const n = Math.ceil(payload / gso);
  // Room check first, so a refusal leaves everything as it was.
  if (out.count + n > out.capacity) return NO_ROOM;
  if (arena.cursor + n * (headroom + hl + 3) + payload > arena.end) return NO_ROOM;

  // Each segment's TCP part is summed in one native call for the whole packet, after it is cut.
  const sums = segmentSums;
  if (n > sums.capacity) return BAD_PACKET; // not reachable: 64 KiB at the smallest MSS is 1366 segments
  sums.count = 0;
  const id0 = u16(b, ip + OFF_ID);
  const seq0 = (b[t + OFF_SEQ] << 24) | (b[t + OFF_SEQ + 1] << 16) | (b[t + OFF_SEQ + 2] << 8) | b[t + OFF_SEQ + 3]; // int32: no heap number
  const flags0 = b[t + OFF_FLAGS];
  let pos = arena.cursor;
  let from = ip + hl; // the next payload byte of the super-packet
  for (let i = 0; i < n; i++) {
    const len = i < n - 1 ? gso : payload - i * gso;
    pos = packed ? pos + headroom : (pos + headroom + 3) & ~3;
    const st = pos + ihl;
    b.copyWithin(pos, ip, ip + hl);
    b.copyWithin(pos + hl, from, from + len);
    from += len;
    // IPv4: length, ID + i, header checksum.
    putU16(b, pos + OFF_TOTAL_LEN, hl + len);
    putU16(b, pos + OFF_ID, (id0 + i) & 0xffff);
    putU16(b, pos + OFF_CHECKSUM, 0);
    putU16(b, pos + OFF_CHECKSUM, checksum(b, pos, ihl));
    // TCP: sequence number, flags, checksum.
    putU32(b, st + OFF_SEQ, (seq0 + i * gso) | 0);
    let f = flags0;
    if (i > 0) f &= ~TCP_CWR;
    if (i < n - 1) f &= ~(TCP_FIN | TCP_PSH);
    b[st + OFF_FLAGS] = f;
    putU16(b, st + OFF_TCP_CHECKSUM, 0);
    sums.add(st, thl + len);
    out.push(pos, hl + len);
    pos += hl + len;
  }
  arena.cursor = pos;
  sums.run(b);
  const first = out.count - n;
  for (let i = 0; i < n; i++) {
    const at = out.offsets[first + i];
    const st = sums.offs[i];
    const s = pseudoHeaderSum(b, at, PROTO_TCP, sums.lens[i]) + sums.sums[i];
    putU16(b, st + OFF_TCP_CHECKSUM, ~((s & 0xffff) + (s >>> 16)) & 0xffff);
  }
  return n;
}

/** Segments of one super-packet: at most 1366 (64 KiB at Linux's smallest MSS, 48). */
const segmentSums = new SumBatch(2048);
