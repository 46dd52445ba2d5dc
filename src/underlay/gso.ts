/**
 * The TX GSO underlay (--send gso, the default): a TCP super-packet from the TUN to an underlay neighbour
 * the kernel has resolved leaves whole, as one frame by MAC through the daemon's AF_PACKET socket, and the
 * kernel cuts it into IP-in-IP segments (src/underlay/tx-gso.ts says how). Every other packet, a
 * super-packet to a host not (yet) in the neighbour copy included, goes through the raw underlay
 * (src/underlay/raw.ts), which also receives. Frames and raw sends keep the order the TUN gave.
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
  readonly raw: RawUnderlay;
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

  constructor(o: GsoUnderlayOptions) {
    this.raw = new RawUnderlay(o);
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
    for (let i = 0; i < 16; i++) this.flushFrames();
    warmUpLookups();
  }

  get fd(): number {
    return this.raw.fd;
  }

  send(batch: EgressBatch, plan: RoutePlan, n: number): void {
    const raw = this.raw;
    for (let i = 0; i < n; i++) {
      if (plan.verdict[i] !== 0) continue;
      if (batch.gsoSize[i] > 0 && this.whole(batch, i, plan.src[i], plan.dst[i])) continue;
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
    const ip = batch.packets.offsets[i];
    const len = batch.packets.lengths[i];
    const raw = this.raw;
    const ecn = (batch.gsoFlags[i] & GSO_ECN) !== 0;
    const segs = gsoFrame(b, ip, len, batch.gsoSize[i], ecn, hop[0], hop[1], this.macHi[m], this.macLo[m], src, dst, this.o.ttl, raw.id);
    if (segs === 0) return false;
    if (raw.pending) raw.flush(); // keep the TUN's order
    const g = this.gtx;
    g.push(ip - GSO_FRAME_HEADROOM, len + GSO_FRAME_HEADROOM);
    this.gtxIf[g.count - 1] = ifindex;
    this.gtxSegs[g.count - 1] = segs;
    raw.id = (raw.id + segs) & 0xffff;
    // Inner bytes as they will leave: the headers once per segment.
    const ihl = headerLength(b, ip);
    const c = this.c;
    c[C_TX_BYTES] += len + (segs - 1) * (ihl + tcpHeaderLength(b, ip + ihl));
    c[C_TX_PACKETS] += segs;
    c[C_TX_LINK] += segs;
    c[C_TX_GSO]++;
    if (g.count >= g.capacity) this.flushFrames();
    return true;
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
    if (tap.on) for (let k = 0; k < n; k++) tap.out(g.bytes, g.offsets[k] + FRAME_L2, g.lengths[k] - FRAME_L2, 0);
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
