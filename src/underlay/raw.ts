/**
 * The raw-socket underlay: every outer packet through one protocol-4 raw socket (src/underlay/raw-socket.ts),
 * sent with sendmmsg, received with recvmmsg. The kernel routes each packet, fills in the outer length and
 * checksum, and netfilter's OUTPUT sees it (why --send raw exists: a host firewall that must see every
 * outer packet). Super-packets are cut in user space first (the TUN device's cut()).
 *
 * With several workers each socket keeps only its flow-hash share of what arrives (src/underlay/share.ts).
 */
import { type EgressBatch, NO_ROOM, PacketList, type PacketBatch, type RoutePlan } from '../io/batch.js';
import { C_DROPS, C_TX_BYTES, C_TX_PACKETS } from '../io/counters.js';
import { native } from '../io/native.js';
import { Poller } from '../io/poll.js';
import type { TraceTap } from '../io/trace-ring.js';
import { Drop } from '../wire/drops.js';
import { encapsulate, OUTER_HEADER_LEN } from '../wire/ipip.js';
import { RawIpipSocket } from './raw-socket.js';
import { countSendLosses, SEND_TRIES, SEND_WAIT_MS, type Underlay } from './underlay.js';

const SOCKET_BUFFER = 8 << 20;
/** Wire-sized packets one send can carry; at least what one 64 KiB super-packet makes at Linux's smallest MSS (1366). */
const SEGMENTS = 2048;

export interface RawUnderlayOptions {
  /** The read batch's bytes (packets are encapsulated in place there). */
  bytes: Uint8Array;
  /** Outer TTL; 0 copies the inner one. */
  ttl: number;
  /** This worker's share of received packets: index of count (count 1: everything). */
  index: number;
  count: number;
  /** This worker's counter row (src/io/counters.ts). */
  counters: Float64Array;
  tap: TraceTap;
}

export class RawUnderlay implements Underlay {
  readonly sock: RawIpipSocket;
  /** What the next flush sends: outer packets in the read batch's bytes. */
  readonly tx: PacketList;
  /** The next outer IPv4 ID; spread over workers so that two never start at the same one. */
  id: number;
  private readonly ttl: number;
  private readonly c: Float64Array;
  private readonly tap: TraceTap;
  private readonly room = new Poller(1);
  private sendErrors = 0;

  constructor(o: RawUnderlayOptions) {
    this.sock = RawIpipSocket.open({ rcvbuf: SOCKET_BUFFER, sndbuf: SOCKET_BUFFER });
    try {
      if (o.count > 1) this.sock.share(o.index, o.count);
      this.room.add(this.sock.fd, native().POLLOUT);
    } catch (e) {
      this.sock.close();
      throw e;
    }
    this.tx = new PacketList(o.bytes, SEGMENTS);
    this.id = Math.floor((o.index * 0x10000) / o.count);
    this.ttl = o.ttl;
    this.c = o.counters;
    this.tap = o.tap;
    // A few empty flushes before any traffic, so that V8 has seen every path of flush() when it
    // optimizes it: a path first taken under sparse traffic deoptimizes it, and sparse traffic is too
    // slow to get it optimized again.
    for (let i = 0; i < 16; i++) this.flush();
  }

  get fd(): number {
    return this.sock.fd;
  }

  send(batch: EgressBatch, plan: RoutePlan, n: number): void {
    for (let i = 0; i < n; i++) if (plan.verdict[i] === 0) this.take(batch, i, plan.src[i], plan.dst[i]);
    if (this.tx.count > 0) this.flush();
    batch.resetCuts();
  }

  /** Cuts packet i of `batch` into `tx` and encapsulates it for src → dst; sends first if `tx` is full. */
  take(batch: EgressBatch, i: number, src: number, dst: number): void {
    const tx = this.tx;
    let r = batch.cut(i, tx, OUTER_HEADER_LEN);
    if (r === NO_ROOM) {
      this.flush();
      batch.resetCuts();
      r = batch.cut(i, tx, OUTER_HEADER_LEN);
    }
    if (r < 0) {
      this.c[C_DROPS + Drop['tx-malformed']]++;
      if (this.tap.on) this.tap.out(batch.bytes, batch.packets.offsets[i], batch.packets.lengths[i], Drop['tx-malformed']);
      return;
    }
    const b = tx.bytes;
    const ttl = this.ttl;
    let id = this.id;
    let bytes = 0;
    for (let k = tx.count - r; k < tx.count; k++) {
      const len = tx.lengths[k];
      tx.offsets[k] = encapsulate(b, tx.offsets[k], len, src, dst, ttl, id);
      tx.lengths[k] = len + OUTER_HEADER_LEN;
      tx.addresses[k] = dst;
      id = (id + 1) & 0xffff;
      bytes += len;
    }
    this.id = id;
    this.c[C_TX_PACKETS] += r;
    this.c[C_TX_BYTES] += bytes;
  }

  /** Whether `tx` holds packets not yet sent. */
  get pending(): boolean {
    return this.tx.count > 0;
  }

  /**
   * Sends what `tx` holds, waiting briefly while the send buffer is full; what still does not fit, and
   * what the kernel refuses, is dropped and counted (tx-send-error). Runs its send once also when empty.
   */
  flush(): void {
    const tx = this.tx;
    const n = tx.count;
    if (this.tap.on) for (let k = 0; k < n; k++) this.tap.out(tx.bytes, tx.offsets[k], tx.lengths[k], 0);
    let from = 0;
    for (let tries = 0; tries < SEND_TRIES; tries++) {
      from = this.sock.send(tx, from, n);
      if (from >= n) break;
      this.room.wait(SEND_WAIT_MS);
    }
    const refused = this.sock.errors.total - this.sendErrors;
    this.sendErrors = this.sock.errors.total;
    countSendLosses(this.c, n - from + refused);
    tx.count = 0;
  }

  receive(into: PacketBatch): number {
    return this.sock.receive(into);
  }

  close(): void {
    this.sock.close();
  }
}
