/**
 * The TUN device boundary: one queue of the daemon's TUN device, read and written in batches of plain IPv4
 * packets. The virtio-net header that TUN offloads put in front of every packet stays inside this file:
 * a read hands over each packet's offset and length with its GSO metadata (gsoSize: a TCP super-packet to
 * cut at that payload size), cut() turns a packet into what may go on the wire (the segments of a
 * super-packet, a finished checksum), and write() coalesces received segments into super-packets (with
 * offloads) or finishes and cuts what the underlay's GRO joined (without). In the manner of wireguard-go's
 * tun.Device and tun/offload_linux.go.
 *
 *   fromTun slot i:  [ headroom | (virtio-net 10) | IPv4 packet … ]      packets.offsets[i] → the IPv4 header
 *   toTun slot i:    [ outer packet as the underlay received it … ]      inner: decapsulated packets to write
 *
 * The headroom in front of each read packet is the underlay's (its outer headers are written in place),
 * and cuts leave the same room in front of every segment. Nothing is allocated per packet: buffers, lists
 * and arenas are made once. The buffers are plain ArrayBuffers (only this worker touches them; V8 copies
 * within a SharedArrayBuffer with relaxed-atomic moves, several times slower).
 */
import { readFileSync } from 'node:fs';
import { GSO_ECN, MALFORMED, NO_ROOM, PacketBatch, PacketList } from '../io/batch.js';
import { Poller } from '../io/poll.js';
import { native } from '../io/native.js';
import { OFF_TCP_CHECKSUM, tcpHeaderLength } from '../wire/tcp.js';
import { VNET_F_NEEDS_CSUM, VNET_GSO_ECN, VNET_GSO_TCPV4, VNET_HDR_LEN, vnetFlags, vnetGsoSize, vnetGsoType } from '../wire/virtio.js';
import { headerLength } from '../wire/ipv4.js';
import { ETH_HLEN } from '../wire/ethernet.js';
import { Coalescer, ipv4Frame, partialTcp } from './coalesce.js';
import { offloadFlags } from './probe.js';
import { TunQueue } from './queue.js';
import { Arena, finishChecksum, segment, splitFrame } from './segment.js';

export { BAD_PACKET, GSO_ECN, MALFORMED, NO_ROOM } from '../io/batch.js';

/** Datagrams per receive batch (the underlay receives at most this many into `toTun`'s slots). */
export const RX_BATCH = 64;
/**
 * Packets a receive batch may list: UDP GRO glues up to 64 datagrams into one (the underlay lists each),
 * so up to 64 per slot.
 */
export const RX_PACKETS = RX_BATCH * 64;
/** A slot that holds the largest IPv4 packet (with an Ethernet and a virtio-net header) plus headroom. */
const BIG_SLOT = 65536 + 128;
/** TUN reads per batch with offloads: each may be a 64 KiB super-packet. */
const TSO_READS = 16;
const PLAIN_READS = 64;
const PLAIN_SLOT = 2048;
/**
 * Segments one read batch or one receive batch can produce before the list or the arena asks for a send
 * (or a write) in between; at least what one 64 KiB super-packet makes at Linux's smallest MSS (48: 1366).
 */
const SEGMENTS = 2048;
const TX_ARENA = 2 << 20;
/** Without offloads: where GRO-joined packets are cut to the MTU. With offloads: where the coalescer moves packets out of a shared slot (at most the slots' bytes). */
const RX_ARENA = 1 << 20;
/** Tries, and the wait between them (ms), while the queue pushes back on a write. */
const WRITE_TRIES = 50;
const WRITE_WAIT_MS = 2;

const unshared = (b: ArrayBuffer) => b as unknown as SharedArrayBuffer;

/** The device's MTU, what coalesced or GRO-joined packets are cut to; 1480 if sysfs does not say. */
function tunMtu(name: string): number {
  try {
    const m = Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim());
    return Number.isInteger(m) && m >= 576 ? m : 1480;
  } catch {
    return 1480;
  }
}

export interface TunDeviceOptions {
  /** The TUN device (created by the daemon); this attaches one more queue to it. */
  name: string;
  /** TUN offloads (IFF_VNET_HDR + TUNSETOFFLOAD), decided once for the whole device (src/tun/probe.ts). */
  offload: boolean;
  /**
   * Bytes the underlay writes in front of each packet it sends (its outer headers): every read packet and
   * every segment has at least this much free room before it. At most 48 with offloads (64 on a TAP), 32
   * without.
   */
  headroom: number;
  /** A TAP device: Ethernet frames instead of IP packets (the VXLAN type). */
  tap?: boolean;
}

export class TunDevice {
  readonly name: string;
  readonly offload: boolean;
  /** Ethernet frames (a TAP) rather than IP packets. */
  readonly tap: boolean;
  readonly mtu: number;
  /** The read side's bytes: read packets and the segments cut from them. */
  readonly bytes: Uint8Array;
  /** After read(): packet i is the IPv4 packet at bytes[offsets[i], + lengths[i]). */
  readonly packets: PacketList;
  /** Per read packet: > 0 a TCP super-packet with a partial checksum, to cut at that payload size; 0 a packet; MALFORMED. */
  readonly gsoSize: Int32Array;
  /** Per read packet: GSO_ECN. */
  readonly gsoFlags: Uint8Array;
  /** The batch the underlay receives into; ingress decapsulates in place and lists the inner packets in `inner`. */
  readonly toTun: PacketBatch;
  /** Inner packets to write (offsets into the receive buffer), each with at least VNET_HDR_LEN free bytes before it. */
  readonly inner: PacketList;
  /** Why the device failed, after write() returned -1. */
  error = '';
  /** Segments the last write() joined into super-packets (with offloads), and super-packets written. */
  readonly coalescer: Coalescer;

  private readonly queue: TunQueue;
  private readonly fromTun: PacketBatch;
  private readonly vnet: number;
  /** The link header in front of each packet's IPv4 header: 14 on a TAP, 0 on a TUN. */
  private readonly l2: number;
  private readonly cuts: Arena;
  /** Without offloads: what write() hands the queue (finished packets, GRO-joined ones cut to the MTU). */
  private readonly plain: PacketList;
  private readonly splits: Arena;
  /** The receive side's whole buffer: the slots and, without offloads, the arena packets are cut into. */
  private readonly inBytes: Uint8Array;
  private readonly room = new Poller(1);
  private writeErrors = 0;

  private constructor(queue: TunQueue, o: TunDeviceOptions) {
    this.queue = queue;
    this.name = o.name;
    this.offload = o.offload;
    this.tap = o.tap === true;
    this.l2 = this.tap ? ETH_HLEN : 0;
    this.mtu = tunMtu(o.name);
    const off = o.offload;
    this.vnet = off ? VNET_HDR_LEN : 0;
    const slots = off ? TSO_READS : PLAIN_READS;
    const slotSize = off ? BIG_SLOT : PLAIN_SLOT;
    const max = off ? (this.tap ? 64 : 48) : 32;
    if (!Number.isInteger(o.headroom) || o.headroom < 8 || o.headroom > max) throw new RangeError(`TUN headroom ${o.headroom}: 8 to ${max}`);
    // With offloads the IPv4 packet starts aligned behind the virtio-net header: at slot + 48 on a TUN; on
    // a TAP the frame at slot + 66, its IPv4 header at slot + 80.
    const headroom = off ? (this.tap ? 66 : 48) - VNET_HDR_LEN : 32;
    const region = slots * slotSize;
    const out = new ArrayBuffer(region + (off ? TX_ARENA : 0));
    this.fromTun = new PacketBatch({ slots, slotSize, headroom, buffer: unshared(out) });
    this.bytes = new Uint8Array(out);
    this.packets = new PacketList(this.bytes, slots);
    this.gsoSize = new Int32Array(slots);
    this.gsoFlags = new Uint8Array(slots);
    this.cuts = new Arena(region, out.byteLength);

    const inRegion = RX_BATCH * BIG_SLOT;
    // With offloads on a TAP, spare room for the coalescer: UDP GRO may glue datagrams into one slot.
    const inb = new ArrayBuffer(inRegion + (off ? (this.tap ? inRegion : 0) : RX_ARENA));
    this.toTun = new PacketBatch({ slots: RX_BATCH, slotSize: BIG_SLOT, buffer: unshared(inb), listCapacity: RX_PACKETS });
    // The whole buffer, arena included (toTun.bytes covers only its slots).
    this.inBytes = new Uint8Array(inb);
    this.inner = new PacketList(this.inBytes, RX_PACKETS);
    this.plain = new PacketList(this.inBytes, SEGMENTS);
    this.splits = new Arena(inRegion, inb.byteLength);
    this.coalescer = new Coalescer(RX_PACKETS);
    this.room.add(queue.fd, native().POLLOUT);
  }

  /** Attaches a queue (multi-queue; with offloads, IFF_VNET_HDR and the offload flags, device-wide). */
  static open(o: TunDeviceOptions): TunDevice {
    const q = TunQueue.open(o.name, { multiQueue: true, vnetHdr: o.offload, tap: o.tap === true });
    try {
      if (o.offload) q.setOffload(offloadFlags());
      return new TunDevice(q, o);
    } catch (e) {
      q.close();
      throw e;
    }
  }

  get fd(): number {
    return this.queue.fd;
  }

  /** Read packets per batch at most. */
  get capacity(): number {
    return this.packets.capacity;
  }

  /**
   * Reads what the queue holds, up to a batch, into `packets` (with gsoSize and gsoFlags). Returns the
   * count (0: nothing waiting). Throws when the device is gone (EBADFD: deleted under the queue).
   */
  read(): number {
    const b = this.bytes;
    const batch = this.fromTun;
    const n = this.queue.read(batch);
    const rx = batch.received;
    const v = this.vnet;
    const p = this.packets;
    for (let i = 0; i < n; i++) {
      const off = rx.offsets[i];
      const len = rx.lengths[i];
      p.offsets[i] = off + v;
      p.lengths[i] = len - v;
      this.gsoFlags[i] = 0;
      if (batch.truncated(i) || len < v) {
        // A packet the slot cut (or a header alone): the whole of it is not here.
        p.offsets[i] = off;
        p.lengths[i] = len;
        this.gsoSize[i] = MALFORMED;
        continue;
      }
      let gso = 0;
      if (v !== 0) {
        const t = vnetGsoType(b, off);
        if ((t & ~VNET_GSO_ECN) === VNET_GSO_TCPV4 && (vnetFlags(b, off) & VNET_F_NEEDS_CSUM) !== 0) {
          gso = vnetGsoSize(b, off);
          if ((t & VNET_GSO_ECN) !== 0) this.gsoFlags[i] = GSO_ECN;
        }
      }
      this.gsoSize[i] = gso;
    }
    p.count = n;
    return n;
  }

  /**
   * Pushes read packet i, ready for the wire, to `out` (whose bytes are this.bytes): the packet itself,
   * its checksum finished where the kernel left it partial, or a super-packet's segments written into the
   * cut arena, each with `headroom` free bytes in front. Returns how many it pushed; BAD_PACKET when the
   * packet is not what its headers say; NO_ROOM (nothing pushed) when `out` or the arena is full: send
   * what `out` holds, call resetCuts(), and cut it again.
   */
  cut(i: number, out: PacketList, headroom: number, packed = false): number {
    const ip = this.packets.offsets[i];
    const len = this.packets.lengths[i];
    if (this.vnet === 0) {
      if (out.count >= out.capacity) return NO_ROOM;
      out.push(ip, len);
      return 1;
    }
    return segment(this.bytes, ip - VNET_HDR_LEN, len + VNET_HDR_LEN, out, this.cuts, headroom, this.l2, packed);
  }

  /** Forgets the segments cut so far (once they were sent). */
  resetCuts(): void {
    this.cuts.reset();
  }

  /**
   * Writes `inner` to the queue (and empties it): with offloads, same-flow TCP segments joined into
   * super-packets behind virtio-net headers; without, partial checksums finished and packets longer than
   * the MTU (the underlay's GRO joined them) cut to it. Returns how many packets the queue did not take
   * (refused, or still pushed back after a short wait): each is one lost packet, a super-packet included;
   * -1 when the device is gone (`error` says why).
   */
  write(): number {
    const list = this.inner;
    let lost: number;
    if (this.offload) {
      this.splits.reset();
      this.coalescer.run(this.inBytes, list, BIG_SLOT, this.mtu, this.l2, this.splits);
      lost = this.flush(list);
    } else {
      lost = this.finishPlain(list, this.l2);
    }
    list.count = 0;
    return lost;
  }

  /**
   * Without offloads: finishes or cuts each packet of `list` into `plain` and writes it. A TCP packet whose
   * checksum field holds only the pseudo-header sum (the underlay's GRO, or a kernel sender over a veth
   * handing over its CHECKSUM_PARTIAL packets) gets it finished, and cut to the MTU when longer: the
   * bridge behind the device drops what exceeds it. `l2` is the link header in front of each packet
   * (14 on a TAP, copied in front of each segment; 0 on a TUN).
   */
  private finishPlain(list: PacketList, l2: number): number {
    const b = this.inBytes;
    const out = this.plain;
    const mtu = this.mtu;
    out.count = 0;
    this.splits.reset();
    let lost = 0;
    for (let k = 0; k < list.count; k++) {
      const f = list.offsets[k];
      const ip = f + l2;
      const len = list.lengths[k] - l2;
      if ((l2 === 0 || ipv4Frame(b, f)) && partialTcp(b, ip, len, mtu) === 1) {
        const ihl = headerLength(b, ip);
        if (len <= mtu) {
          finishChecksum(b, ip, len, ihl, OFF_TCP_CHECKSUM);
        } else {
          const mss = mtu - ihl - tcpHeaderLength(b, ip + ihl);
          let r = splitFrame(b, f, len + l2, mss, out, this.splits, 0, l2);
          if (r === NO_ROOM) {
            const l = this.flush(out);
            if (l < 0) return l;
            lost += l;
            this.splits.reset();
            r = splitFrame(b, f, len + l2, mss, out, this.splits, 0, l2);
          }
          if (r > 0) continue;
          // Headers too long to cut at this MTU: written as it is; the kernel answers for it.
        }
      }
      if (out.count >= out.capacity) {
        const l = this.flush(out);
        if (l < 0) return l;
        lost += l;
      }
      out.push(f, len + l2);
    }
    const l = this.flush(out);
    return l < 0 ? l : lost + l;
  }

  /** Writes `list` (waiting briefly while the queue pushes back) and empties it: packets not taken, or -1. */
  private flush(list: PacketList): number {
    let from = 0;
    for (let tries = 0; from < list.count && tries < WRITE_TRIES; tries++) {
      try {
        from = this.queue.write(list, from);
      } catch (e) {
        this.error = (e as Error).message;
        return -1;
      }
      if (from < list.count) this.room.wait(WRITE_WAIT_MS);
    }
    const refused = this.queue.errors.total - this.writeErrors;
    this.writeErrors = this.queue.errors.total;
    const lost = list.count - from + refused;
    list.count = 0;
    return lost;
  }

  close(): void {
    this.queue.close();
  }
}
