/**
 * A batch of packets in one SharedArrayBuffer, the unit every native I/O call works on.
 *
 * The buffer is cut into `slots` equal slots. Reads (TUN read, raw-socket receive) put packet i at
 * the fixed start of slot i, `headroom` bytes into it, so a header can be written in front of a
 * packet in place (IP-in-IP encapsulation writes its 20-byte outer header at start - 20) and one
 * can be dropped by moving the start (decapsulation). Nothing is allocated per packet.
 *
 *   slot i:  [ headroom ........ | packet (≤ packetCapacity bytes) ............ ]
 *            ^ i * slotSize       ^ received.offsets[i]
 *
 * Two packet lists index the buffer:
 *  - `received`: what the last read put there (offsets fixed at the slot starts; lengths; the
 *    sender's address for raw-socket receives);
 *  - `outgoing`: what to write or send next: any (offset, length, address) inside the buffer,
 *    usually derived from `received` (e.g. offset - 20, length + 20, underlay destination).
 */
import { OUTER_HEADER_LEN } from '../wire/ipip.js';

/** Default room before every received packet: an outer IPv4 header and a 10-byte virtio-net header fit. */
export const DEFAULT_HEADROOM = 32;
/** Default slot size: 1500-byte packets plus headroom, rounded to a power of two. */
export const DEFAULT_SLOT_SIZE = 2048;
/** Default number of slots: the batch size userspace tunnels settle on (wireguard-go: up to 128). */
export const DEFAULT_SLOTS = 128;

/** Packets inside a batch's buffer: where each starts, its length, one IPv4 address (host order). */
export class PacketList {
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  /** Source (after a receive) or destination (for a send) IPv4 address as an unsigned 32-bit int. */
  readonly addresses: Uint32Array;
  /** Number of valid entries. */
  count = 0;

  constructor(
    /** The bytes the offsets refer to. */
    readonly bytes: Uint8Array,
    readonly capacity: number,
  ) {
    this.offsets = new Uint32Array(capacity);
    this.lengths = new Uint32Array(capacity);
    this.addresses = new Uint32Array(capacity);
  }

  clear(): void {
    this.count = 0;
  }

  /** Appends a packet; false when the list is full. */
  push(offset: number, length: number, address = 0): boolean {
    const i = this.count;
    if (i >= this.capacity) return false;
    this.offsets[i] = offset;
    this.lengths[i] = length;
    this.addresses[i] = address;
    this.count = i + 1;
    return true;
  }

  /** A view of packet i (allocates a view: for tests and diagnostics, not for the data path). */
  packet(i: number): Uint8Array {
    if (i < 0 || i >= this.count) throw new RangeError(`packet ${i} of ${this.count}`);
    return this.bytes.subarray(this.offsets[i], this.offsets[i] + this.lengths[i]);
  }
}

export interface PacketBatchOptions {
  /** Number of packets a read can return. Default 128. */
  slots?: number;
  /** Bytes per slot, headroom included. Default 2048 (use 64 KiB + headroom with TUN offloads). */
  slotSize?: number;
  /** Bytes kept free before each received packet, ≥ 20. Default 32. */
  headroom?: number;
  /** Use this buffer (e.g. one shared with another thread) instead of allocating one. */
  buffer?: SharedArrayBuffer;
  /** Entries `received` can hold (default: one per slot; more when a read may hand over several packets per slot). */
  listCapacity?: number;
}

export class PacketBatch {
  readonly slots: number;
  readonly slotSize: number;
  readonly headroom: number;
  /** Bytes a read can put in a slot; a packet must be shorter to be known whole (see truncated()). */
  readonly packetCapacity: number;
  readonly buffer: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** Filled by reads: packet i at offsets[i] (fixed), lengths[i], addresses[i] = sender. */
  readonly received: PacketList;
  /** Filled by the caller, consumed by writes and sends. */
  readonly outgoing: PacketList;

  constructor(options: PacketBatchOptions = {}) {
    this.slots = options.slots ?? DEFAULT_SLOTS;
    this.slotSize = options.slotSize ?? DEFAULT_SLOT_SIZE;
    this.headroom = options.headroom ?? DEFAULT_HEADROOM;
    if (!Number.isInteger(this.slots) || this.slots < 1) throw new RangeError(`slots: ${this.slots}`);
    if (!Number.isInteger(this.headroom) || this.headroom < OUTER_HEADER_LEN) {
      throw new RangeError(`headroom must be at least ${OUTER_HEADER_LEN}: ${this.headroom}`);
    }
    if (!Number.isInteger(this.slotSize) || this.slotSize <= this.headroom + 20) {
      throw new RangeError(`slotSize too small: ${this.slotSize}`);
    }
    this.packetCapacity = this.slotSize - this.headroom;
    const bytes = this.slots * this.slotSize;
    if (options.buffer && options.buffer.byteLength < bytes) {
      throw new RangeError(`buffer has ${options.buffer.byteLength} bytes, the batch needs ${bytes}`);
    }
    this.buffer = options.buffer ?? new SharedArrayBuffer(bytes);
    this.bytes = new Uint8Array(this.buffer, 0, bytes);
    this.view = new DataView(this.buffer, 0, bytes);
    this.received = new PacketList(this.bytes, Math.max(this.slots, options.listCapacity ?? 0));
    this.outgoing = new PacketList(this.bytes, this.slots);
    for (let i = 0; i < this.slots; i++) this.received.offsets[i] = i * this.slotSize + this.headroom;
  }

  /** Where slot i's packet starts (received.offsets[i]). */
  packetStart(i: number): number {
    return i * this.slotSize + this.headroom;
  }

  /**
   * True if received packet i may not have fit its slot. A raw socket reports the full length (above
   * packetCapacity); a TUN read just fills the slot and drops the rest, so a packet exactly
   * packetCapacity long counts as truncated too: size slots above the device MTU (+ virtio-net header).
   */
  truncated(i: number): boolean {
    return this.received.lengths[i] >= this.packetCapacity;
  }
}

/**
 * What the egress plan decided for each packet of a read batch: its outer source and destination (int32
 * underlay addresses) and its verdict (0: send; else the Drop code it was counted under).
 */
export class RoutePlan {
  readonly src: Int32Array;
  readonly dst: Int32Array;
  readonly verdict: Int32Array;
  constructor(readonly capacity: number) {
    this.src = new Int32Array(capacity);
    this.dst = new Int32Array(capacity);
    this.verdict = new Int32Array(capacity);
  }
}

/** What cut() answers for a packet that is not what its headers say. */
export const BAD_PACKET = -1;
/** What cut() answers when the output list or the arena is full: nothing was pushed; send, reset, cut again. */
export const NO_ROOM = -2;
/** gsoSize of a packet the read could not take whole (cut by its slot, or shorter than its header). */
export const MALFORMED = -1;
/** gsoFlags bit: the super-packet carries ECN (CWR seen): its segments keep it as the kernel's do. */
export const GSO_ECN = 1;

/**
 * A read batch as the underlay sees it (the TUN device, src/tun/device.ts): plain IPv4 packets, GSO
 * metadata, and the cut into wire-sized packets. Here so that the two boundaries need not import each other.
 */
export interface EgressBatch {
  readonly bytes: Uint8Array;
  readonly packets: PacketList;
  /** > 0: a TCP super-packet with a partial checksum, to cut at this payload size; 0: a packet; MALFORMED. */
  readonly gsoSize: Int32Array;
  /** GSO_ECN. */
  readonly gsoFlags: Uint8Array;
  /**
   * Pushes packet i ready for the wire to `out`, `headroom` free bytes before each: count, BAD_PACKET or
   * NO_ROOM. `packed`: a super-packet's segments lie back to back, each right behind the previous one's
   * end plus `headroom` (so that, headers written, they form one buffer of equal-size datagrams).
   */
  cut(i: number, out: PacketList, headroom: number, packed?: boolean): number;
  /** Forgets what was cut, once it was sent. */
  resetCuts(): void;
}
