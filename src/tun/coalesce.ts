/**
 * Coalescing in user space (the receive side of TUN offloads, what the kernel's GRO does): TCP segments
 * of one flow that arrive in order in one batch are joined into one super-packet and written to the TUN
 * queue once, with a virtio-net header (NEEDS_CSUM, gso_type TCPV4, gso_size = the segments' payload
 * size), so the kernel carries one packet through routing, the bridge and the veth into the container
 * instead of dozens, and cuts it again only if something on the way needs that.
 *
 * A segment joins the flow's latest super-packet only when everything that segmentation would rebuild
 * from the first segment's headers matches (Linux's tcp_gro_receive rules):
 *  - same addresses and ports; same IHL, TOS, TTL, DF, IP options; no fragments; IPv4 ID = first + count;
 *  - same data offset, TCP options, ACK number, window and flags (the first may carry CWR, a later one only
 *    PSH besides); sequence number adjacent; no SYN, FIN, RST or URG anywhere;
 *  - payload not larger than the first's (that size is gso_size); nothing joins after a PSH or after a
 *    segment shorter than the first; at most 65535 bytes in all;
 *  - both checksums verify (the first's is checked when the second arrives): the super-packet goes out
 *    with NEEDS_CSUM, so the kernel will not check it again, and a corrupt segment must not be laundered.
 *    The sums behind those checks are computed for the whole batch at once, in the addon (SumBatch).
 *
 * Everything else is written as it came, behind a virtio-net header without flags. Packets the kernel's
 * own GRO already joined on the underlay (a protocol-4 raw socket receives those: their TCP checksum field
 * holds the partial, pseudo-header sum) go out with NEEDS_CSUM, and with gso_type TCPV4 when longer than
 * the TUN's MTU allows.
 *
 * Joining happens in place: a segment's payload is copied (copyWithin) to the end of the first segment,
 * which must have room behind it up to the end of its slot (slots of 64 KiB + headroom). Nothing is
 * allocated per packet: item state lives in typed arrays made once.
 *
 * Several packets may share a slot (UDP GRO hands over a run of datagrams glued into one, each its own
 * packet behind its own VXLAN header). Then an item grows over the packets behind it in its slot only by
 * taking them in order, and a packet left in place right before a new item is moved to `spare` first:
 * the new item's virtio-net header is written over the previous packet's last bytes.
 *
 * On a TAP (the VXLAN type) each packet is an Ethernet frame (`l2` = 14 bytes of link header in front of
 * the IPv4 header): only IPv4 frames are candidates, a segment joins only a frame with the same MAC
 * addresses (the kernel copies the first's link header onto every segment it cuts), and the virtio-net
 * offsets count from the frame's start.
 */
import type { PacketList } from '../io/batch.js';
import { checksum } from '../wire/checksum.js';
import { FLAG_MF, FRAG_OFFSET_MASK, headerLength, i32, IPV4_MIN_HEADER, OFF_CHECKSUM, OFF_DST, OFF_FLAGS_FRAG, OFF_ID, OFF_PROTO, OFF_SRC, OFF_TOS, OFF_TOTAL_LEN, OFF_TTL, PROTO_TCP, u16, putU16 } from '../wire/ipv4.js';
import { TCP_CWR, TCP_FIN, TCP_MIN_HEADER, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, tcpChecksumVerifies, tcpHeaderLength, tcpSumVerifies, OFF_ACK, OFF_DATA_OFFSET, OFF_FLAGS, OFF_SEQ, OFF_SPORT, OFF_TCP_CHECKSUM, OFF_WINDOW, pseudoHeaderSum } from '../wire/tcp.js';
import { SumBatch } from '../io/sum-batch.js';
import { OFF_ETH_TYPE } from '../wire/ethernet.js';
import type { Arena } from './segment.js';
import { putVnetHdr, putVnetNone, VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_HDR_LEN } from '../wire/virtio.js';

/**
 * Whether the TCP/IPv4 segment at b[o, o+L) (headers already checked) carries a partial checksum, the
 * pseudo-header sum a CHECKSUM_PARTIAL packet holds, as the packets the kernel's GRO joins on the underlay
 * do when a raw socket receives them: 1 if so; 0 if not; 2 if the field happens to hold that value but
 * the full checksum verifies (a complete checksum can equal the partial value, 1 time in 65536; for a
 * packet longer than the MTU that is not checked: only GRO makes those). `tcpSum`, when given, is the
 * folded sum of the TCP part already computed (the coalescer sums its batch at once).
 */
export function partialChecksum(b: Uint8Array, o: number, L: number, mtu: number, tcpSum = -1): number {
  const ihl = headerLength(b, o);
  if (u16(b, o + ihl + OFF_TCP_CHECKSUM) !== pseudoHeaderSum(b, o, PROTO_TCP, L - ihl)) return 0;
  if (L > mtu) return 1;
  return (tcpSum < 0 ? tcpChecksumVerifies(b, o, L) : tcpSumVerifies(b, o, L, tcpSum)) ? 2 : 1;
}

/**
 * partialChecksum() for any packet: 0 unless b[o, o+L) is a whole, unfragmented TCP/IPv4 segment whose
 * checksum field holds the partial sum (then 1, or 2 when it also verifies as a full checksum). For the
 * receive path without offloads, which must finish such checksums (or cut such packets) itself.
 */
export function partialTcp(b: Uint8Array, o: number, L: number, mtu: number): number {
  if (L < IPV4_MIN_HEADER + TCP_MIN_HEADER || b[o] >>> 4 !== 4 || b[o + OFF_PROTO] !== PROTO_TCP) return 0;
  const ihl = headerLength(b, o);
  if (ihl < IPV4_MIN_HEADER || ihl + TCP_MIN_HEADER > L || u16(b, o + OFF_TOTAL_LEN) !== L) return 0;
  if ((u16(b, o + OFF_FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK)) !== 0) return 0;
  const thl = tcpHeaderLength(b, o + ihl);
  if (thl < TCP_MIN_HEADER || ihl + thl > L) return 0;
  return partialChecksum(b, o, L, mtu);
}

/** Whether the frame at b[f] (with at least 14 bytes) carries IPv4 (EtherType 0x0800). */
export const ipv4Frame = (b: Uint8Array, f: number): boolean => b[f + OFF_ETH_TYPE] === 0x08 && b[f + OFF_ETH_TYPE + 1] === 0;

/** What an item is. */
const PLAIN = 0; //   written as it came (not TCP, not joinable, or a segment nothing joined)
const TCP_OPEN = 1; // a TCP segment others may still join
const TCP_DONE = 2; // a TCP item nothing more may join (PSH, short segment, full, failed check)
const PARTIAL = 3; // a segment with a partial checksum (the kernel's GRO built it): NEEDS_CSUM

const NEVER = TCP_SYN | TCP_FIN | TCP_RST | TCP_URG;
const MAX_IP_LEN = 0xffff;
/** How far back to look for a flow's latest item. */
const SCAN = 32;

export class Coalescer {
  private readonly ip: Uint32Array; //   offset of the first segment's IPv4 header
  private readonly len: Uint32Array; //  IPv4 length so far
  private readonly limit: Uint32Array; // the item may grow up to here (end of its slot)
  private readonly segs: Uint32Array; // segments joined
  private readonly gso: Uint32Array; //  payload size of the first segment
  // 32-bit fields are kept as signed int32 (small integers to V8): a uint32 above 2^31 becomes a heap
  // number whenever it crosses a call that was not inlined, and the per-packet path must not allocate.
  private readonly next: Int32Array; // sequence number the next segment must have
  private readonly src: Int32Array;
  private readonly dst: Int32Array;
  private readonly ports: Int32Array;
  private readonly kind: Uint8Array;
  private readonly verified: Uint8Array; // the first segment's checksum was checked
  private readonly psh: Uint8Array; //      a PSH segment joined last
  private readonly at: Uint32Array; //      the list index of the item's first segment
  private readonly last: Uint32Array; //    the list index of the item's last segment
  /** Per list index: the sum of its TCP part in `sums`, or -1 (not summed: not a TCP candidate). */
  private readonly sumOf: Int32Array;
  private readonly sums: SumBatch;
  private count = 0;
  /** The link header in front of each packet of the current run (0: IP packets; 14: Ethernet frames). */
  private l2 = 0;
  /** The current run's list, slot size and spare room (see run()). */
  private list: PacketList | undefined;
  private slotSize = 1;
  private spare: Arena | undefined;

  /** Segments that joined a super-packet (not counting the first of each), since construction. */
  joined = 0;
  /** Super-packets written (items of two segments or more, and kernel-GRO packets passed on). */
  supers = 0;

  constructor(readonly capacity: number) {
    this.ip = new Uint32Array(capacity);
    this.len = new Uint32Array(capacity);
    this.limit = new Uint32Array(capacity);
    this.segs = new Uint32Array(capacity);
    this.gso = new Uint32Array(capacity);
    this.next = new Int32Array(capacity);
    this.src = new Int32Array(capacity);
    this.dst = new Int32Array(capacity);
    this.ports = new Int32Array(capacity);
    this.kind = new Uint8Array(capacity);
    this.verified = new Uint8Array(capacity);
    this.psh = new Uint8Array(capacity);
    this.at = new Uint32Array(capacity);
    this.last = new Uint32Array(capacity);
    this.sumOf = new Int32Array(capacity);
    this.sums = new SumBatch(capacity);
  }

  /**
   * `list` holds inner IPv4 packets (offset of the IPv4 header, length) in arrival order, each with at least
   * VNET_HDR_LEN free bytes before it; the packet at offset o may grow to the end of its slot,
   * o − o % slotSize + slotSize. Rewrites `list` in place into what to write to a TUN queue opened with
   * IFF_VNET_HDR: (offset of the virtio-net header, VNET_HDR_LEN + length) per packet. `mtu` is the TUN's
   * MTU: the gso_size of kernel-GRO packets longer than it. With `l2` (14: a TAP's Ethernet frames) the
   * offsets and lengths in `list` are the frames', link header included. Packets that share a slot must be
   * listed in the order they lie there, and `spare` must be given: where a packet is moved when its
   * neighbour's header needs the bytes (at most the bytes the shared slots hold). Returns the new count.
   */
  run(b: Uint8Array, list: PacketList, slotSize: number, mtu: number, l2 = 0, spare?: Arena): number {
    if (list.count > this.capacity) throw new RangeError(`coalesce: ${list.count} packets, capacity ${this.capacity}`);
    this.count = 0;
    this.l2 = l2;
    this.list = list;
    this.slotSize = slotSize;
    this.spare = spare;
    const n = list.count;
    // The one's-complement sums of every TCP segment's TCP part, in one native call; the checks use them.
    // Not for a packet longer than the MTU with a partial checksum (a super-packet the kernel's GRO or a
    // sender's TX GSO made): it goes on as it is, and partialChecksum() does not sum those.
    const sums = this.sums;
    sums.count = 0;
    let tcp = 0;
    for (let k = 0; k < n; k++) {
      const o = list.offsets[k] + l2;
      const L = list.lengths[k] - l2;
      this.sumOf[k] = -1;
      if (l2 !== 0 && !ipv4Frame(b, o - l2)) continue;
      if (L < IPV4_MIN_HEADER + TCP_MIN_HEADER || b[o] >>> 4 !== 4 || b[o + OFF_PROTO] !== PROTO_TCP) continue;
      tcp++;
      const ihl = headerLength(b, o);
      if (ihl < IPV4_MIN_HEADER || ihl + TCP_MIN_HEADER > L) continue;
      if (L > mtu && u16(b, o + ihl + OFF_TCP_CHECKSUM) === pseudoHeaderSum(b, o, PROTO_TCP, L - ihl)) continue;
      this.sumOf[k] = sums.add(o + ihl, L - ihl);
    }
    if (tcp === 0) return this.asItCame(b, list);
    sums.run(b);
    for (let k = 0; k < n; k++) this.add(b, list.offsets[k] + l2, list.lengths[k] - l2, slotSize, mtu, k);
    const front = VNET_HDR_LEN + l2;
    for (let j = 0; j < this.count; j++) {
      const ip = this.ip[j];
      this.finish(b, j, mtu);
      list.offsets[j] = ip - front;
      list.lengths[j] = this.len[j] + front;
    }
    list.count = this.count;
    return this.count;
  }

  /**
   * A batch without TCP (echoes, UDP, DNS): nothing can join, so every packet goes as it came, behind a
   * virtio-net header without flags, as add() and finish() would have written it, without their per-item
   * state: after a sleep every array touched is a cache miss, and the items cost a sparse echo ~8 µs per
   * host (docs/performance.md, small packets).
   */
  private asItCame(b: Uint8Array, list: PacketList): number {
    const n = list.count;
    for (let k = 0; k < n; k++) {
      const v = list.offsets[k] - VNET_HDR_LEN;
      putVnetNone(b, v);
      list.offsets[k] = v;
      list.lengths[k] += VNET_HDR_LEN;
    }
    return n;
  }

  /**
   * tcpChecksumVerifies() for list entry k at b[o, o+L), from the batch's precomputed sum of its TCP part
   * (computed before anything in the batch moved; joining only writes behind an item's first segment).
   */
  private verifies(b: Uint8Array, o: number, L: number, k: number): boolean {
    const si = this.sumOf[k];
    return si < 0 ? tcpChecksumVerifies(b, o, L) : tcpSumVerifies(b, o, L, this.sums.sums[si]);
  }

  private newItem(ip: number, len: number, kind: number, k: number, b: Uint8Array): number {
    // The item made of packet k - 1 alone, right before this one in the same slot: this item's virtio-net
    // header will cover its last bytes, so it moves out first (it can take no more segments: the only
    // one it could is packet k).
    // Every part read every time (no short cut): a load first made by sparse traffic after a flood that
    // never made it would deoptimize the caller (test/integration/deopt.test.ts).
    const p = this.count - 1;
    const q = p < 0 ? 0 : p;
    const kp = k === 0 ? 0 : k - 1;
    const alone = (this.at[q] === kp ? 1 : 0) + (this.last[q] === kp ? 1 : 0) + (this.sharesSlot(kp, k) ? 1 : 0);
    if (p >= 0 && k > 0 && alone === 3) this.relocate(b, p);
    const j = this.count++;
    this.at[j] = k;
    this.last[j] = k;
    this.ip[j] = ip;
    this.len[j] = len;
    this.kind[j] = kind;
    this.segs[j] = 1;
    this.verified[j] = 0;
    this.psh[j] = 0;
    return j;
  }

  /** Whether list entries a and c lie in one slot. */
  private sharesSlot(a: number, c: number): boolean {
    const o = this.list!.offsets;
    const z = this.slotSize;
    return o[a] - (o[a] % z) === o[c] - (o[c] % z);
  }

  /** Moves item j (one packet, its link header included) to the spare arena, with room for its virtio-net header. */
  private relocate(b: Uint8Array, j: number): void {
    const spare = this.spare;
    const l2 = this.l2;
    const from = this.ip[j] - l2;
    const n = this.len[j] + l2;
    if (!spare) throw new RangeError('coalesce: packets share a slot, and there is no spare room');
    const to = (spare.cursor + VNET_HDR_LEN + 3) & ~3;
    if (to + n > spare.end) throw new RangeError('coalesce: the spare room is full');
    b.copyWithin(to, from, from + n);
    spare.cursor = to + n;
    this.ip[j] = to + l2;
    this.limit[j] = to + n;
    if (this.kind[j] === TCP_OPEN) this.kind[j] = TCP_DONE;
  }

  private add(b: Uint8Array, o: number, L: number, slotSize: number, mtu: number, k: number): void {
    // Only whole, unfragmented TCP/IPv4 with room for its headers is a candidate; decapsulate() checked
    // version, IHL and total length already, but stay safe on our own.
    if (this.l2 !== 0 && !ipv4Frame(b, o - this.l2)) {
      this.newItem(o, L, PLAIN, k, b);
      return;
    }
    if (L < IPV4_MIN_HEADER + TCP_MIN_HEADER || b[o] >>> 4 !== 4 || b[o + OFF_PROTO] !== PROTO_TCP) {
      this.newItem(o, L, PLAIN, k, b);
      return;
    }
    const ihl = headerLength(b, o);
    const t = o + ihl;
    if (ihl < IPV4_MIN_HEADER || ihl + TCP_MIN_HEADER > L || u16(b, o + OFF_TOTAL_LEN) !== L || (u16(b, o + OFF_FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK)) !== 0) {
      this.newItem(o, L, PLAIN, k, b);
      return;
    }
    const thl = tcpHeaderLength(b, t);
    if (thl < TCP_MIN_HEADER || ihl + thl > L) {
      this.newItem(o, L, PLAIN, k, b);
      return;
    }
    const payload = L - ihl - thl;
    const flags = b[t + OFF_FLAGS];
    const src = i32(b, o + OFF_SRC);
    const dst = i32(b, o + OFF_DST);
    const ports = i32(b, t + OFF_SPORT);
    // A segment the kernel's GRO joined on the underlay carries a partial checksum.
    const si = this.sumOf[k];
    const partial = partialChecksum(b, o, L, mtu, si < 0 ? -1 : this.sums.sums[si]);

    // The flow's latest item, if any. A segment whose complete checksum happens to equal the partial
    // value (partial === 2) is an ordinary segment and joins like one.
    if (partial !== 1) {
      const stop = this.count > SCAN ? this.count - SCAN : 0;
      for (let j = this.count - 1; j >= stop; j--) {
        const kind = this.kind[j];
        if (kind === PLAIN || this.ports[j] !== ports || this.src[j] !== src || this.dst[j] !== dst) continue;
        if (kind === TCP_OPEN && this.joins(b, j, o, L, ihl, thl, payload, flags, k)) return;
        break;
      }
    }

    const j = this.newItem(o, L, partial === 1 ? PARTIAL : payload > 0 && (flags & (NEVER | TCP_PSH)) === 0 ? TCP_OPEN : TCP_DONE, k, b);
    if (partial === 2) this.verified[j] = 1;
    this.limit[j] = Math.min(o - (o % slotSize) + slotSize, o + MAX_IP_LEN);
    this.gso[j] = payload;
    this.next[j] = (i32(b, t + OFF_SEQ) + payload) | 0;
    this.src[j] = src;
    this.dst[j] = dst;
    this.ports[j] = ports;
  }

  /** Joins the segment at o to item j if every rule allows it; true when it did. */
  private joins(b: Uint8Array, j: number, o: number, L: number, ihl: number, thl: number, payload: number, flags: number, k: number): boolean {
    const h = this.ip[j];
    const ht = h + headerLength(b, h);
    const t = o + ihl;
    if (headerLength(b, h) !== ihl || tcpHeaderLength(b, ht) !== thl) return false;
    // A packet behind the item's last one in its slot is in the way until it is the one joining.
    const q = this.last[j] + 1; // ≤ k
    const inWay = this.sharesSlot(q, this.at[j]); // read every time (see newItem)
    if (q !== k && inWay) return false;
    // Ethernet: the same MAC addresses (the EtherType is IPv4 for both).
    const l2 = this.l2;
    for (let i = 0; i < l2; i++) if (b[o - l2 + i] !== b[h - l2 + i]) return false;
    // IPv4: TOS, flags (DF), TTL equal; ID consecutive; options equal.
    if (b[o + OFF_TOS] !== b[h + OFF_TOS] || b[o + OFF_TTL] !== b[h + OFF_TTL] || u16(b, o + OFF_FLAGS_FRAG) !== u16(b, h + OFF_FLAGS_FRAG)) return false;
    if (u16(b, o + OFF_ID) !== ((u16(b, h + OFF_ID) + this.segs[j]) & 0xffff)) return false;
    for (let i = IPV4_MIN_HEADER; i < ihl; i++) if (b[o + i] !== b[h + i]) return false;
    // TCP: in order, same ACK, window, flags, options; a payload no larger than the first's.
    if (i32(b, t + OFF_SEQ) !== this.next[j] || payload === 0 || payload > this.gso[j]) return false;
    if (i32(b, t + OFF_ACK) !== i32(b, ht + OFF_ACK) || u16(b, t + OFF_WINDOW) !== u16(b, ht + OFF_WINDOW)) return false;
    if ((flags & (NEVER | TCP_CWR)) !== 0 || (flags & ~TCP_PSH) !== (b[ht + OFF_FLAGS] & ~TCP_CWR)) return false;
    if (b[t + OFF_DATA_OFFSET] !== b[ht + OFF_DATA_OFFSET]) return false;
    for (let i = TCP_MIN_HEADER; i < thl; i++) if (b[t + i] !== b[ht + i]) return false;
    const len = this.len[j];
    if (h + len + payload > this.limit[j]) {
      this.kind[j] = TCP_DONE;
      return false;
    }
    // Checksums last: they cost a pass over the bytes.
    if (this.verified[j] === 0) {
      if (!this.verifies(b, h, len, this.at[j])) {
        this.kind[j] = TCP_DONE;
        return false;
      }
      this.verified[j] = 1;
    }
    if (!this.verifies(b, o, L, k)) return false;

    b.copyWithin(h + len, t + thl, o + L);
    this.len[j] = len + payload;
    this.last[j] = k;
    this.segs[j]++;
    this.next[j] = (this.next[j] + payload) | 0;
    this.joined++;
    if ((flags & TCP_PSH) !== 0) {
      this.psh[j] = 1;
      this.kind[j] = TCP_DONE;
    } else if (payload < this.gso[j]) this.kind[j] = TCP_DONE;
    return true;
  }

  /** Writes item j's virtio-net header and, for a super-packet, its new lengths, flags and checksums. */
  private finish(b: Uint8Array, j: number, mtu: number): void {
    const h = this.ip[j];
    const l2 = this.l2;
    const v = h - l2 - VNET_HDR_LEN;
    const kind = this.kind[j];
    if (kind === PARTIAL) {
      const ihl = headerLength(b, h);
      const hl = ihl + tcpHeaderLength(b, h + ihl);
      const gso = mtu - hl;
      const big = this.len[j] > mtu && gso > 0;
      const ecn = big && (b[h + ihl + OFF_FLAGS] & TCP_CWR) !== 0 ? VNET_GSO_ECN : 0;
      putVnetHdr(b, v, VNET_F_NEEDS_CSUM, big ? VNET_GSO_TCPV4 | ecn : VNET_GSO_NONE, l2 + hl, big ? gso : 0, l2 + ihl, OFF_TCP_CHECKSUM);
      if (big) this.supers++;
      return;
    }
    if (this.segs[j] === 1) {
      putVnetNone(b, v);
      return;
    }
    const len = this.len[j];
    const ihl = headerLength(b, h);
    const t = h + ihl;
    const thl = tcpHeaderLength(b, t);
    putU16(b, h + OFF_TOTAL_LEN, len);
    putU16(b, h + OFF_CHECKSUM, 0);
    putU16(b, h + OFF_CHECKSUM, checksum(b, h, ihl));
    if (this.psh[j]) b[t + OFF_FLAGS] |= TCP_PSH;
    putU16(b, t + OFF_TCP_CHECKSUM, pseudoHeaderSum(b, h, PROTO_TCP, len - ihl));
    const ecn = (b[t + OFF_FLAGS] & TCP_CWR) !== 0 ? VNET_GSO_ECN : 0;
    putVnetHdr(b, v, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4 | ecn, l2 + ihl + thl, this.gso[j], l2 + ihl, OFF_TCP_CHECKSUM);
    this.supers++;
  }
}
