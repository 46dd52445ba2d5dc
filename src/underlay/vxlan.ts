/**
 * The VXLAN underlay (--type vxlan): each frame leaves as one VXLAN datagram on a UDP socket bound to the
 * VXLAN port (8472 by default), the 8-byte VXLAN header written in front of the frame in place, to the
 * remote host the plan computed; the kernel adds the outer IPv4 and UDP headers (DF clear, UDP checksum
 * on, source port the socket's). Every worker binds its own socket with SO_REUSEPORT: the kernel gives
 * each a share of what arrives, by flow hash. A port held by a socket without SO_REUSEPORT (a kernel
 * vxlan device) is refused (EADDRINUSE).
 */
import { type EgressBatch, NO_ROOM, PacketList, type PacketBatch, type RoutePlan } from '../io/batch.js';
import { C_DROPS, C_TX_BYTES, C_TX_PACKETS } from '../io/counters.js';
import { IoErrors } from '../io/errors.js';
import { closeFd, native, rethrowAs } from '../io/native.js';
import { Poller } from '../io/poll.js';
import { Drop } from '../wire/drops.js';
import { putVxlan, VXLAN_HLEN } from '../wire/vxlan.js';
import { countSendLosses, SEND_TRIES, SEND_WAIT_MS, type Underlay } from './underlay.js';

const SOCKET_BUFFER = 8 << 20;
/** Datagrams one send can carry; at least what one 64 KiB super-frame makes at Linux's smallest MSS (1366). */
const SEGMENTS = 2048;

export interface VxlanUnderlayOptions {
  /** The read batch's bytes (frames get their VXLAN header in place there). */
  bytes: Uint8Array;
  port: number;
  vni: number;
  /** This worker's counter row (src/io/counters.ts). */
  counters: Float64Array;
}

export class VxlanUnderlay implements Underlay {
  readonly fd: number;
  readonly errors = new IoErrors();
  private readonly tx: PacketList;
  private readonly room = new Poller(1);
  private readonly port: number;
  private readonly vni: number;
  private readonly c: Float64Array;
  private sendErrors = 0;

  constructor(o: VxlanUnderlayOptions) {
    this.fd = native().udpOpen({ port: o.port, rcvbuf: SOCKET_BUFFER, sndbuf: SOCKET_BUFFER });
    this.room.add(this.fd, native().POLLOUT);
    this.tx = new PacketList(o.bytes, SEGMENTS);
    this.port = o.port;
    this.vni = o.vni;
    this.c = o.counters;
    for (let i = 0; i < 16; i++) this.flush(); // every path of flush() seen before traffic (see raw.ts)
  }

  send(batch: EgressBatch, plan: RoutePlan, n: number): void {
    for (let i = 0; i < n; i++) if (plan.verdict[i] === 0) this.take(batch, i, plan.dst[i]);
    if (this.tx.count > 0) this.flush();
    batch.resetCuts();
  }

  /** Cuts frame i of `batch` into `tx` (a TCP super-frame into segments) with a VXLAN header for dst; sends first if `tx` is full. */
  private take(batch: EgressBatch, i: number, dst: number): void {
    const tx = this.tx;
    let r = batch.cut(i, tx, VXLAN_HLEN);
    if (r === NO_ROOM) {
      this.flush();
      batch.resetCuts();
      r = batch.cut(i, tx, VXLAN_HLEN);
    }
    if (r < 0) {
      this.c[C_DROPS + Drop['tx-malformed']]++;
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

  /** Sends what `tx` holds, waiting briefly while the send buffer is full; the rest is counted lost. */
  private flush(): void {
    const tx = this.tx;
    const n = tx.count;
    let from = 0;
    for (let tries = 0; tries < SEND_TRIES; tries++) {
      try {
        from = native().sendUdpBatch(this.fd, tx.bytes, tx.offsets, tx.lengths, tx.addresses, this.port, from, n, this.errors.counters);
      } catch (e) {
        rethrowAs(e, `VXLAN socket ${this.fd}`);
      }
      if (from >= n) break;
      this.room.wait(SEND_WAIT_MS);
    }
    const refused = this.errors.total - this.sendErrors;
    this.sendErrors = this.errors.total;
    countSendLosses(this.c, n - from + refused);
    tx.count = 0;
  }

  receive(into: PacketBatch): number {
    const r = into.received;
    try {
      r.count = native().recvBatch(this.fd, into.bytes, r.offsets, r.lengths, into.packetCapacity, into.slots, r.addresses, this.errors.counters);
    } catch (e) {
      r.count = 0;
      rethrowAs(e, `VXLAN socket ${this.fd}`);
    }
    return r.count;
  }

  close(): void {
    closeFd(this.fd, `VXLAN socket ${this.fd}`);
  }
}
