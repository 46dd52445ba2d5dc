/**
 * The TX GSO underlay (--send gso, the default): a TCP super-packet from the TUN to an underlay neighbour
 * the kernel has resolved leaves whole, as one frame by MAC through the daemon's AF_PACKET socket, and the
 * kernel cuts it into IP-in-IP segments (src/underlay/tx-gso.ts says how). Every other packet, a
 * super-packet to a host not (yet) in the neighbour copy included, goes through the raw underlay
 * (src/underlay/raw.ts), which also receives. Frames and raw sends keep the order the TUN gave.
 *
 * The VXLAN type uses the same underlay with its own frame (src/underlay/vxlan-frame.ts: a super-frame
 * from the TAP in VXLAN, cut by the kernel as its own VXLAN's) and the VXLAN socket as the fallback
 * (src/underlay/vxlan.ts): a FrameBuilder and a FrameFallback, chosen once per worker.
 */
import { type EgressBatch, GSO_ECN, type PacketBatch, PacketList, type RoutePlan } from '../io/batch.js';
import { C_DROPS, C_TX_BYTES, C_TX_GSO, C_TX_LINK, C_TX_PACKETS } from '../io/counters.js';
import { native } from '../io/native.js';
import { Poller } from '../io/poll.js';
import { Drop } from '../wire/drops.js';
import { headerLength } from '../wire/ipv4.js';
import { OUTER_HEADER_LEN } from '../wire/ipip.js';
import { tcpHeaderLength } from '../wire/tcp.js';
import { GSO_FRAME_HEADROOM, gsoFrame } from './gso-frame.js';
import { NeighbourTable, warmUpLookups } from './neighbours.js';
import { RawUnderlay, type RawUnderlayOptions } from './raw.js';
import { GsoFrameSocket } from './tx-gso.js';
import { SEND_TRIES, SEND_WAIT_MS, type Underlay } from './underlay.js';

/** Bytes of a frame in front of the outer IPv4 header (virtio-net and Ethernet headers): not traced. */
const FRAME_L2 = GSO_FRAME_HEADROOM - OUTER_HEADER_LEN;

/** The underlay a GsoUnderlay sends everything but whole frames through, and receives with. */
export interface FrameFallback extends Underlay {
  /** Cuts packet i of `batch` (if need be) and queues it for src → dst. */
  take(batch: EgressBatch, i: number, src: number, dst: number): void;
  /** Whether packets are queued. */
  readonly pending: boolean;
  /** Sends what is queued. */
  flush(): void;
}

/** How a fan type writes a whole frame's headers in front of a super-packet read from the device. */
export interface FrameBuilder {
  /** Bytes of a frame before its outer IPv4 header (virtio-net, Ethernet): not traced. */
  readonly l2: number;
  /** After build() or buildTail(): where the frame starts, its length, and the inner bytes it carries (headers once per segment). */
  at: number;
  length: number;
  bytes: number;
  /**
   * After build(): the packet's last segment was left out of the frame, for buildTail() (VXLAN: a shorter
   * last segment could not get the others' UDP checksum).
   */
  tail: boolean;
  /** Whether packets without GSO (gso 0) go as frames too (VXLAN: all of a flow by one path, one source port). */
  readonly plain?: boolean;
  /** Writes the frame for the super-packet at b[p, p + len); returns the segments the kernel will cut, or 0 (nothing written). */
  build(b: Uint8Array, p: number, len: number, gso: number, ecn: boolean, dstHi: number, dstLo: number, srcHi: number, srcLo: number, src: number, dst: number): number;
  /** Writes the segment build() left out as a frame of its own, over the end of build()'s frame: send that one first. */
  buildTail(b: Uint8Array): void;
}

/** IP-in-IP frames (gso-frame.ts): outer IDs continue the raw socket's; no tail. */
class IpipFrames implements FrameBuilder {
  readonly l2 = FRAME_L2;
  at = 0;
  length = 0;
  bytes = 0;
  readonly tail = false;
  constructor(
    private readonly raw: RawUnderlay,
    private readonly ttl: number,
  ) {}

  build(b: Uint8Array, ip: number, len: number, gso: number, ecn: boolean, dstHi: number, dstLo: number, srcHi: number, srcLo: number, src: number, dst: number): number {
    const raw = this.raw;
    const segs = gsoFrame(b, ip, len, gso, ecn, dstHi, dstLo, srcHi, srcLo, src, dst, this.ttl, raw.id);
    if (segs === 0) return 0;
    raw.id = (raw.id + segs) & 0xffff;
    const ihl = headerLength(b, ip);
    this.at = ip - GSO_FRAME_HEADROOM;
    this.length = len + GSO_FRAME_HEADROOM;
    this.bytes = len + (segs - 1) * (ihl + tcpHeaderLength(b, ip + ihl));
    return segs;
  }

  buildTail(): void {}
}

export interface GsoUnderlayOptions extends RawUnderlayOptions {
  /** The daemon's AF_PACKET socket for whole frames (the pool owns it). */
  fd: number;
  /** The interfaces the TC program is attached to, with this host's MAC on each. */
  links: readonly { ifindex: number; macHi: number; macLo: number }[];
  /** The pool's copy of the kernel's neighbours (src/underlay/neighbours.ts). */
  neighbours: SharedArrayBuffer;
  /** How many read packets a batch has at most (one frame each at most). */
  capacity: number;
}

export class GsoUnderlay implements Underlay {
  readonly raw: FrameFallback;
  private readonly frame: FrameBuilder;
  private readonly frames: GsoFrameSocket;
  private readonly table: NeighbourTable;
  private readonly gtx: PacketList;
  private readonly gtxIf: Int32Array;
  private readonly gtxSegs: Int32Array;
  private readonly ifs: Int32Array;
  private readonly macHi: Int32Array;
  private readonly macLo: Int32Array;
  private readonly hop = new Int32Array(2);
  private readonly room = new Poller(1);
  private readonly c: Float64Array;
  private readonly o: GsoUnderlayOptions;
  private frameErrors = 0;

  /** IP-in-IP by default: the raw underlay and gso-frame.ts's frames; the VXLAN type passes its own. */
  constructor(o: GsoUnderlayOptions, fallback?: FrameFallback, frame?: FrameBuilder) {
    if (fallback && frame) {
      this.raw = fallback;
      this.frame = frame;
    } else {
      const raw = new RawUnderlay(o);
      this.raw = raw;
      this.frame = new IpipFrames(raw, o.ttl);
    }
    this.o = o;
    this.c = o.counters;
    this.frames = new GsoFrameSocket(o.fd);
    this.table = new NeighbourTable(o.neighbours);
    this.gtx = new PacketList(o.bytes, o.capacity);
    this.gtxIf = new Int32Array(o.capacity);
    this.gtxSegs = new Int32Array(o.capacity);
    this.ifs = Int32Array.from(o.links, (l) => l.ifindex);
    this.macHi = Int32Array.from(o.links, (l) => l.macHi);
    this.macLo = Int32Array.from(o.links, (l) => l.macLo);
    this.room.add(o.fd, native().POLLOUT);
    // Both paths before any traffic (see RawUnderlay's constructor), and the lookups: the neighbour copy
    // is empty for the first moments of traffic, so a first flood may never see a hit.
    for (let i = 0; i < 16; i++) {
      this.flushFrames();
      this.flushRaw(true);
    }
    warmUpLookups();
  }

  /**
   * Sends what the fallback holds before a frame goes (`always`: also when it holds nothing: the warm-up
   * above, so that V8 has seen the call before a batch first has a packet by the socket and then a frame,
   * which with VXLAN's plain frames may come only in sparse traffic, test/integration/deopt.test.ts).
   */
  private flushRaw(always: boolean): void {
    if (always || this.raw.pending) this.raw.flush();
  }

  get fd(): number {
    return this.raw.fd;
  }

  send(batch: EgressBatch, plan: RoutePlan, n: number): void {
    const raw = this.raw;
    for (let i = 0; i < n; i++) {
      if (plan.verdict[i] !== 0) continue;
      const gso = batch.gsoSize[i];
      if ((gso > 0 || (gso === 0 && this.frame.plain === true)) && this.whole(batch, i, plan.src[i], plan.dst[i])) continue;
      if (this.gtx.count > 0) this.flushFrames(); // keep the TUN's order
      raw.take(batch, i, plan.src[i], plan.dst[i]);
    }
    if (raw.pending) raw.flush();
    if (this.gtx.count > 0) this.flushFrames();
    batch.resetCuts();
  }

  /** Makes packet i one whole frame for the kernel to cut, if its destination is a neighbour with a MAC. */
  private whole(batch: EgressBatch, i: number, src: number, dst: number): boolean {
    const hop = this.hop;
    const ifindex = this.table.lookup(dst, hop, 0);
    if (ifindex === 0) return false;
    let m = 0;
    while (m < this.ifs.length && this.ifs[m] !== ifindex) m++;
    if (m === this.ifs.length) return false;
    const b = batch.bytes;
    const frame = this.frame;
    const ecn = (batch.gsoFlags[i] & GSO_ECN) !== 0;
    const segs = frame.build(b, batch.packets.offsets[i], batch.packets.lengths[i], batch.gsoSize[i], ecn, hop[0], hop[1], this.macHi[m], this.macLo[m], src, dst);
    if (segs === 0) return false;
    this.flushRaw(false); // keep the TUN's order
    this.queue(ifindex, segs);
    if (frame.tail) {
      this.flushFrames(); // the tail's headers go over the frame's last bytes
      frame.buildTail(b);
      this.queue(ifindex, 1);
    }
    return true;
  }

  /** Queues the frame the builder just wrote (segs: what the kernel cuts it into) and counts it. */
  private queue(ifindex: number, segs: number): void {
    const frame = this.frame;
    const g = this.gtx;
    g.push(frame.at, frame.length);
    this.gtxIf[g.count - 1] = ifindex;
    this.gtxSegs[g.count - 1] = segs;
    const c = this.c;
    c[C_TX_BYTES] += frame.bytes;
    c[C_TX_PACKETS] += segs;
    c[C_TX_LINK] += segs;
    c[C_TX_GSO] += segs > 1 ? 1 : 0;
    if (g.count >= g.capacity) this.flushFrames();
  }

  /**
   * Sends the whole frames `gtx` holds (waiting briefly while the send buffer is full); empties it. A frame
   * that did not go counts as one dropped packet (tx-send-error), and its segments come off the tx counts:
   * exactly for frames the send buffer never took; for frames the kernel refused (the batch call does not
   * say which), this flush's mean segments per frame. Runs its send once also when empty.
   */
  private flushFrames(): void {
    const g = this.gtx;
    const n = g.count;
    const tap = this.o.tap;
    const l2 = this.frame.l2;
    if (tap.on) for (let k = 0; k < n; k++) tap.out(g.bytes, g.offsets[k] + l2, g.lengths[k] - l2, 0);
    let from = 0;
    for (let tries = 0; tries < SEND_TRIES; tries++) {
      from = this.frames.send(g, this.gtxIf, from, n);
      if (from >= n) break;
      this.room.wait(SEND_WAIT_MS);
    }
    const refused = this.frames.errors.total - this.frameErrors;
    this.frameErrors = this.frames.errors.total;
    if (from < n || refused > 0) {
      let unsent = 0;
      let all = 0;
      for (let k = 0; k < n; k++) {
        all += this.gtxSegs[k];
        if (k >= from) unsent += this.gtxSegs[k];
      }
      const segs = unsent + (refused > 0 ? Math.round((refused * all) / n) : 0);
      const c = this.c;
      c[C_DROPS + Drop['tx-send-error']] += n - from + refused;
      c[C_TX_PACKETS] -= segs;
      c[C_TX_LINK] -= segs;
    }
    g.count = 0;
  }

  receive(into: PacketBatch): number {
    return this.raw.receive(into);
  }

  close(): void {
    this.raw.close();
  }
}
