/**
 * The VXLAN underlay (--type vxlan): each frame leaves as one VXLAN datagram on a UDP socket bound to the
 * VXLAN port (8472 by default), the 8-byte VXLAN header written in front of the frame in place, to the
 * remote host the plan computed; the kernel adds the outer IPv4 and UDP headers (DF clear, UDP checksum
 * on, source port the socket's: the VXLAN port). Every worker binds its own socket with SO_REUSEPORT: the
 * kernel gives each a share of what arrives, by the outer 4-tuple's hash, so by flow when the sender sets
 * the source port from the inner flow as the kernel's vxlan does, and as the frames below do. A port held
 * by a socket without SO_REUSEPORT (a kernel vxlan device) is refused (EADDRINUSE).
 *
 * With TAP offloads a TCP super-frame is cut back to back and leaves by UDP GSO (one sendmmsg entry per
 * run of equal-size datagrams, each made a datagram with its own checksum by the kernel), and the socket
 * takes arrivals glued by UDP GRO, listed here one datagram at a time. With TX GSO (the default) this
 * underlay is the GsoUnderlay's fallback (for hosts not in the neighbour copy) and receiver, and
 * VxlanFrames its frames (vxlan-frame.ts): everything to a neighbour leaves as a frame by MAC, with the
 * source port of its inner flow (wire/vxlan.ts), but for the neighbour copy's probe (one packet a second
 * per neighbour through the kernel, src/underlay/neighbours.ts), which leaves here from the VXLAN port.
 */
import { type EgressBatch, NO_ROOM, PacketList, type PacketBatch, type RoutePlan } from '../io/batch.js';
import { C_DROPS, C_TX_BYTES, C_TX_PACKETS } from '../io/counters.js';
import { IoErrors } from '../io/errors.js';
import { closeFd, native, rethrowAs } from '../io/native.js';
import { Poller } from '../io/poll.js';
import type { TraceTap } from '../io/trace-ring.js';
import { Drop } from '../wire/drops.js';
import { putVxlan, VXLAN_HLEN, vxlanSourcePort } from '../wire/vxlan.js';
import { ETH_HLEN } from '../wire/ethernet.js';
import { VNET_HDR_LEN } from '../wire/virtio.js';
import type { FrameBuilder, FrameFallback } from './gso.js';
import { countSendLosses, SEND_TRIES, SEND_WAIT_MS } from './underlay.js';
import { VxlanCut, VxlanOuter, vxlanFrame, vxlanPlain, vxlanTail } from './vxlan-frame.js';

const SOCKET_BUFFER = 8 << 20;
/** Datagrams one send can carry; at least what one 64 KiB super-frame makes at Linux's smallest MSS (1366). */
const SEGMENTS = 2048;
/** UDP GSO: at most this many datagrams (the kernel's UDP_MAX_SEGMENTS is 64 or more) and bytes per message. */
const GSO_MAX_DATAGRAMS = 64;
const GSO_MAX_BYTES = 0xffff - 20 - 8;

export interface VxlanUnderlayOptions {
  /** The read batch's bytes (frames get their VXLAN header in place there). */
  bytes: Uint8Array;
  port: number;
  vni: number;
  /** This worker's counter row (src/io/counters.ts). */
  counters: Float64Array;
  /** The worker's trace tap (a TraceTap for the VXLAN type: it writes the outer headers the kernel will). */
  tap: TraceTap;
  /**
   * UDP GSO (UDP_SEGMENT): a super-frame's segments are cut back to back and leave in one message, the
   * kernel making each its datagram (with its UDP checksum).
   */
  udpGso?: boolean;
  /**
   * UDP GRO: datagrams of one flow may arrive glued into one message; each is listed on its own. `rx` is
   * the batch receive() will be handed (its slots are where messages land).
   */
  udpGro?: { rx: PacketBatch };
}

/**
 * TX GSO's VXLAN frames (vxlan-frame.ts) for a GsoUnderlay around a VxlanUnderlay: every frame to a
 * neighbour, a super-frame whole, any other as one datagram; each with its flow's source port.
 */
export class VxlanFrames implements FrameBuilder {
  readonly l2 = VNET_HDR_LEN + ETH_HLEN;
  /** Frames without GSO go too: all of a flow leaves by one path, with one source port. */
  readonly plain = true;
  at = 0;
  length = 0;
  bytes = 0;
  tail = false;
  private readonly cut = new VxlanCut();
  /** The outer headers; o.id: the next outer IPv4 ID (the socket's datagrams get theirs from the kernel). */
  private readonly o = new VxlanOuter();

  constructor(port: number, vni: number, index: number, count: number) {
    this.o.port = port;
    this.o.vni = vni;
    this.o.id = Math.floor((index * 0x10000) / count);
  }

  build(b: Uint8Array, f: number, len: number, gso: number, ecn: boolean, dstHi: number, dstLo: number, srcHi: number, srcLo: number, src: number, dst: number): number {
    const o = this.o;
    const cut = this.cut;
    o.dstHi = dstHi;
    o.dstLo = dstLo;
    o.srcHi = srcHi;
    o.srcLo = srcLo;
    o.src = src;
    o.dst = dst;
    o.srcPort = vxlanSourcePort(b, f, len);
    const segs = gso > 0 ? vxlanFrame(b, f, len, gso, ecn, o, cut) : vxlanPlain(b, f, len, o, cut);
    if (segs === 0) return 0;
    o.id = (o.id + segs) & 0xffff;
    this.done();
    this.tail = cut.tail !== 0;
    return segs;
  }

  /** The tail of the last super-frame, to where it went, with its source port. */
  buildTail(b: Uint8Array): void {
    const o = this.o;
    vxlanTail(b, this.cut, o);
    o.id = (o.id + 1) & 0xffff;
    this.done();
    this.tail = false;
  }

  private done(): void {
    const cut = this.cut;
    this.at = cut.at;
    this.length = cut.length;
    this.bytes = cut.bytes;
  }
}

export class VxlanUnderlay implements FrameFallback {
  readonly fd: number;
  readonly errors = new IoErrors();
  private readonly tx: PacketList;
  private readonly room = new Poller(1);
  private readonly port: number;
  private readonly vni: number;
  private readonly c: Float64Array;
  private readonly tap: TraceTap;
  private readonly udpGso: boolean;
  /** UDP GSO: the messages flush() sends (runs of `tx`), each one's datagram size (0: one datagram) and count. */
  private readonly msgs: PacketList;
  private readonly msgSeg: Uint32Array;
  private readonly msgDatagrams: Uint32Array;
  /** UDP GRO: where each slot's message starts, and per message its length, sender and glued datagrams' size. */
  private readonly gro: boolean;
  private readonly rxStarts: Uint32Array;
  private readonly rxLens: Uint32Array;
  private readonly rxSrcs: Uint32Array;
  private readonly rxSegs: Uint32Array;
  private sendErrors = 0;

  constructor(o: VxlanUnderlayOptions) {
    this.fd = native().udpOpen({ port: o.port, rcvbuf: SOCKET_BUFFER, sndbuf: SOCKET_BUFFER });
    this.room.add(this.fd, native().POLLOUT);
    this.tx = new PacketList(o.bytes, SEGMENTS);
    this.udpGso = o.udpGso === true;
    this.msgs = new PacketList(o.bytes, SEGMENTS);
    this.msgSeg = new Uint32Array(SEGMENTS);
    this.msgDatagrams = new Uint32Array(SEGMENTS);
    const rx = o.udpGro?.rx;
    this.gro = rx !== undefined;
    const slots = rx ? rx.slots : 0;
    this.rxStarts = Uint32Array.from({ length: slots }, (_, i) => rx!.packetStart(i));
    this.rxLens = new Uint32Array(slots);
    this.rxSrcs = new Uint32Array(slots);
    this.rxSegs = new Uint32Array(slots);
    if (rx) {
      try {
        native().udpSetGro(this.fd, true);
      } catch (e) {
        closeFd(this.fd, `VXLAN socket ${this.fd}`);
        throw e;
      }
    }
    this.port = o.port;
    this.vni = o.vni;
    this.c = o.counters;
    this.tap = o.tap;
    for (let i = 0; i < 16; i++) this.flush(); // every path of flush() seen before traffic (see raw.ts)
    if (this.udpGso) this.warmJoin();
  }

  /**
   * join()'s inner loop runs only on datagrams that lie back to back: traffic that first had none (a flood
   * of single frames) got join() optimized without feedback for its sums, and the first run of two then
   * deoptimized it (--trace-deopt, the deopt test: "insufficient type feedback for binary operation").
   * So join() sees every branch here, on made-up entries (nothing is sent), before any traffic.
   */
  private warmJoin(): void {
    const tx = this.tx;
    for (let round = 0; round < 16; round++) {
      tx.count = 0;
      tx.push(0, 100, 1); // a run of three to one host, the last shorter
      tx.push(100, 100, 1);
      tx.push(200, 60, 1);
      tx.push(300, 100, 1); // after a shorter one: a new message
      tx.push(400, 100, 2); // another host
      tx.push(600, 100, 2); // not back to back
      this.join();
    }
    tx.count = 0;
    this.msgs.count = 0;
  }

  send(batch: EgressBatch, plan: RoutePlan, n: number): void {
    for (let i = 0; i < n; i++) if (plan.verdict[i] === 0) this.take(batch, i, plan.src[i], plan.dst[i]);
    if (this.tx.count > 0) this.flush();
    batch.resetCuts();
  }

  /**
   * Cuts frame i of `batch` into `tx` (a TCP super-frame into segments) with a VXLAN header for dst (the
   * socket's address is the source: `src` is this host's in the fan, the same); sends first if `tx` is full.
   */
  take(batch: EgressBatch, i: number, _src: number, dst: number): void {
    const tx = this.tx;
    let r = batch.cut(i, tx, VXLAN_HLEN, this.udpGso);
    if (r === NO_ROOM) {
      this.flush();
      batch.resetCuts();
      r = batch.cut(i, tx, VXLAN_HLEN, this.udpGso);
    }
    if (r < 0) {
      this.c[C_DROPS + Drop['tx-malformed']]++;
      if (this.tap.on) this.tap.dropOut(batch.bytes, batch.packets.offsets[i], batch.packets.lengths[i], Drop['tx-malformed']);
      return;
    }
    const b = tx.bytes;
    const vni = this.vni;
    let bytes = 0;
    for (let k = tx.count - r; k < tx.count; k++) {
      const at = tx.offsets[k] - VXLAN_HLEN;
      putVxlan(b, at, vni);
      bytes += tx.lengths[k];
      tx.offsets[k] = at;
      tx.lengths[k] += VXLAN_HLEN;
      tx.addresses[k] = dst;
    }
    this.c[C_TX_PACKETS] += r;
    this.c[C_TX_BYTES] += bytes;
  }

  /** Whether `tx` holds datagrams not yet sent. */
  get pending(): boolean {
    return this.tx.count > 0;
  }

  /**
   * Sends what `tx` holds (with UDP GSO: as messages of back-to-back datagrams), waiting briefly while the
   * send buffer is full; the rest is counted lost, by datagram. Runs its send once also when empty.
   */
  flush(): void {
    const tx = this.tx;
    const tap = this.tap;
    if (tap.on) for (let k = 0; k < tx.count; k++) tap.outDatagram(tx.bytes, tx.offsets[k], tx.lengths[k], tx.addresses[k] | 0, 0);
    const gso = this.udpGso;
    const list = gso ? this.join() : tx;
    const n = list.count;
    let from = 0;
    for (let tries = 0; tries < SEND_TRIES; tries++) {
      try {
        from = gso
          ? native().sendUdpGsoBatch(this.fd, list.bytes, list.offsets, list.lengths, list.addresses, this.msgSeg, this.port, from, n, this.errors.counters)
          : native().sendUdpBatch(this.fd, list.bytes, list.offsets, list.lengths, list.addresses, this.port, from, n, this.errors.counters);
      } catch (e) {
        rethrowAs(e, `VXLAN socket ${this.fd}`);
      }
      if (from >= n) break;
      this.room.wait(SEND_WAIT_MS);
    }
    const refused = this.errors.total - this.sendErrors;
    this.sendErrors = this.errors.total;
    let lost = n - from + refused;
    if (gso && lost > 0) {
      // By datagram: exactly for the messages never taken, the mean per message for those refused.
      lost = refused > 0 ? Math.round((refused * tx.count) / n) : 0;
      for (let m = from; m < n; m++) lost += this.msgDatagrams[m];
    }
    countSendLosses(this.c, lost);
    tx.count = 0;
  }

  /**
   * UDP GSO: joins `tx` into messages, each a run of datagrams that lie back to back, go to one host and
   * have one size (the last may be shorter), within the kernel's limits. Returns the messages.
   */
  private join(): PacketList {
    const tx = this.tx;
    const m = this.msgs;
    m.count = 0;
    let k = 0;
    while (k < tx.count) {
      const at = tx.offsets[k];
      const dst = tx.addresses[k];
      const seg = tx.lengths[k];
      let end = at + seg;
      let j = k + 1;
      while (j < tx.count && j - k < GSO_MAX_DATAGRAMS && tx.offsets[j] === end && tx.addresses[j] === dst && tx.lengths[j] <= seg && end + tx.lengths[j] - at <= GSO_MAX_BYTES) {
        end += tx.lengths[j];
        j++;
        if (tx.lengths[j - 1] < seg) break;
      }
      m.push(at, end - at, dst);
      this.msgSeg[m.count - 1] = j - k > 1 ? seg : 0;
      this.msgDatagrams[m.count - 1] = j - k;
      k = j;
    }
    return m;
  }

  receive(into: PacketBatch): number {
    if (this.gro) return this.receiveGlued(into);
    const r = into.received;
    try {
      r.count = native().recvBatch(this.fd, into.bytes, r.offsets, r.lengths, into.packetCapacity, into.slots, r.addresses, this.errors.counters);
    } catch (e) {
      r.count = 0;
      rethrowAs(e, `VXLAN socket ${this.fd}`);
    }
    return r.count;
  }

  /**
   * With UDP GRO: receives up to a batch of messages into the slots and lists every datagram on its own in
   * `into.received` (a message of glued datagrams is cut at their size, in place).
   */
  private receiveGlued(into: PacketBatch): number {
    const r = into.received;
    const cap = into.packetCapacity;
    let m: number;
    try {
      m = native().recvGroBatch(this.fd, into.bytes, this.rxStarts, this.rxLens, cap, into.slots, this.rxSrcs, this.rxSegs, this.errors.counters);
    } catch (e) {
      r.count = 0;
      rethrowAs(e, `VXLAN socket ${this.fd}`);
    }
    let n = 0;
    for (let i = 0; i < m; i++) {
      const at = this.rxStarts[i];
      const len = this.rxLens[i];
      const src = this.rxSrcs[i];
      const g = this.rxSegs[i];
      // One entry at least (an empty datagram too: the checks count it), one per glued datagram.
      const step = g === 0 || g >= len || len > cap ? len + 1 : g;
      let o = 0;
      do {
        if (n >= r.capacity) {
          this.c[C_DROPS + Drop['rx-truncated-inner']]++; // not reachable: 64 datagrams per message at most
          break;
        }
        r.offsets[n] = at + o;
        r.lengths[n] = o + step <= len ? step : len - o;
        r.addresses[n] = src;
        n++;
        o += step;
      } while (o < len);
    }
    r.count = n;
    return n;
  }

  close(): void {
    closeFd(this.fd, `VXLAN socket ${this.fd}`);
  }
}
