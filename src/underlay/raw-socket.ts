/**
 * A raw IPv4 socket for IP-in-IP: socket(AF_INET, SOCK_RAW, IPPROTO_IPIP) with IP_HDRINCL, non-blocking.
 *
 * One socket does both directions:
 *  - send: the caller writes the complete packet, outer IPv4 header included, in front of the
 *    inner packet; the kernel routes it by the destination address given per packet, fills in the
 *    total length and header checksum (and the ID and source when they are 0);
 *  - receive: every protocol-4 packet addressed to this namespace, outer header included, with the
 *    sender's address.
 *
 * Why protocol 4 and not an IPPROTO_RAW send socket: an IPPROTO_RAW socket cannot receive, so it
 * would need a second socket per worker; sending is the same kernel path (raw_send_hdrinc) for
 * both, and the bench measured no difference (bench/native-rawproto). A protocol-4 socket that only
 * sends still gets a copy of every incoming protocol-4 packet: give it a share (see share()) or a
 * small receive buffer if it never reads.
 *
 * Receive spread: every protocol-4 raw socket gets every packet. share(i, n) attaches a BPF filter
 * keeping only flow-hash share i of n (src/underlay/share.ts), so n workers receive each packet once.
 */
import type { PacketBatch, PacketList } from '../io/batch.js';
import { IoErrors } from '../io/errors.js';
import { closeFd, native, rethrowAs, type RawOpenOptions } from '../io/native.js';
import { shareFilter } from './share.js';

export type { RawOpenOptions };

/** Protocol number of IP-in-IP (IPPROTO_IPIP). */
export const IPPROTO_IPIP = 4;
/** Send-only raw protocol (IPPROTO_RAW). */
export const IPPROTO_RAW = 255;

/** 4 MiB, as net.core.[rw]mem_max allow here; the kernel doubles it. */
export const DEFAULT_SOCKET_BUFFER = 4 << 20;

export class RawIpipSocket {
  /**
   * Packets send() skipped (EMSGSIZE: bigger than the underlay MTU with DF; ENETUNREACH; EPERM: a
   * firewall) and socket errors receive() consumed (ICMP reports from the underlay).
   */
  readonly errors = new IoErrors();
  #fd: number;
  #label: string;

  private constructor(fd: number, readonly protocol: number) {
    this.#fd = fd;
    this.#label = `raw socket ${fd}`;
  }

  /** Opens a socket in the calling thread's network namespace. Buffers default to 4 MiB. */
  static open(options: RawOpenOptions = {}): RawIpipSocket {
    const protocol = options.protocol ?? IPPROTO_IPIP;
    const fd = native().rawOpen({
      protocol,
      rcvbuf: options.rcvbuf ?? DEFAULT_SOCKET_BUFFER,
      sndbuf: options.sndbuf ?? DEFAULT_SOCKET_BUFFER,
      device: options.device,
    });
    return new RawIpipSocket(fd, protocol);
  }

  /** The descriptor; -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** The buffer sizes the kernel granted. */
  buffers(): { rcvbuf: number; sndbuf: number } {
    return native().socketBuffers(this.#fd);
  }

  /**
   * Keeps only flow-hash share `index` of `count` from now on, and discards what was queued before
   * the filter (unfiltered). Call it on every worker's socket before traffic starts. Returns the
   * number of packets discarded.
   */
  share(index: number, count: number): number {
    try {
      native().attachFilter(this.#fd, shareFilter(index, count));
      return native().drain(this.#fd, 1 << 20);
    } catch (e) {
      rethrowAs(e, this.#label);
    }
  }

  /** Discards queued packets (at most max); returns how many. */
  drain(max = 1 << 20): number {
    try {
      return native().drain(this.#fd, max);
    } catch (e) {
      rethrowAs(e, this.#label);
    }
  }

  /**
   * Receives packets until the socket is empty or the batch is full, into batch.received: packet
   * i (outer header first) at offsets[i], lengths[i] (the full length: above batch.packetCapacity
   * when truncated, see batch.truncated(i)),
   * addresses[i] = the outer source. Returns the count.
   */
  receive(batch: PacketBatch, max = batch.slots): number {
    const r = batch.received;
    try {
      r.count = native().recvBatch(
        this.#fd, batch.bytes, r.offsets, r.lengths, batch.packetCapacity, max, r.addresses, this.errors.counters,
      );
    } catch (e) {
      r.count = 0;
      rethrowAs(e, this.#label);
    }
    return r.count;
  }

  /**
   * Sends packets [from, to) (to: list.count by default): each is a complete IPv4 packet (outer header
   * first), routed to list.addresses[i]. Refused packets are skipped and counted in `errors`. Returns
   * the index after the last packet handled: `to`, or less when the socket buffer is full (EAGAIN) —
   * then wait for POLLOUT and call again from there, or drop the rest.
   */
  send(list: PacketList, from = 0, to = list.count): number {
    try {
      return native().sendBatch(
        this.#fd, list.bytes, list.offsets, list.lengths, list.addresses, from, to, this.errors.counters,
      );
    } catch (e) {
      rethrowAs(e, this.#label);
    }
  }

  /** Closes the fd (idempotent). */
  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    closeFd(fd, this.#label);
  }
}
