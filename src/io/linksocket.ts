/**
 * A link-layer send socket: socket(AF_PACKET, SOCK_DGRAM, 0), non-blocking, send-only.
 *
 * `userfan up --send packet` sends IP-in-IP packets through it straight to the underlay neighbour's
 * MAC (src/io/neighbours.ts says which), instead of through the raw IP socket. The kernel then adds
 * only the Ethernet header and hands the frame to the interface's queue: no route lookup, no
 * netfilter OUTPUT or POSTROUTING (so no conntrack entry and no host firewall rule sees the outer
 * packet), no neighbour lookup per packet. That path is what a raw socket spends most of its send
 * time in; the frame still passes the qdisc, where tcpdump on the underlay sees it.
 *
 * Everything in the packet is the caller's: the outer header's length, ID and checksum included
 * (wire/ipip.ts encapsulate writes them all).
 */
import type { PacketList } from './batch.js';
import { IoErrors } from './errors.js';
import { closeFd, native, rethrowAs } from './native.js';

export class LinkSocket {
  /** Packets send() skipped: EMSGSIZE (longer than the interface's MTU), ENXIO (interface gone), … */
  readonly errors = new IoErrors();
  #fd: number;
  #label: string;

  private constructor(fd: number) {
    this.#fd = fd;
    this.#label = `link socket ${fd}`;
  }

  /** Opens one in the calling thread's network namespace; sndbuf defaults to 4 MiB. */
  static open(options: { sndbuf?: number } = {}): LinkSocket {
    return new LinkSocket(native().linkOpen({ sndbuf: options.sndbuf ?? 4 << 20 }));
  }

  /** The descriptor; -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  /**
   * Sends packets [from, to) of `list`, each a complete IPv4 packet, packet i to the MAC
   * (lladdr[2i], lladdr[2i+1]) on interface ifindex[i] (see NeighbourTable.lookup). Refused packets
   * are skipped and counted in `errors`. Returns the index after the last packet handled: `to`, or
   * less when the send buffer is full (wait for POLLOUT and call again from there).
   */
  send(list: PacketList, ifindex: Int32Array, lladdr: Int32Array, from: number, to: number): number {
    try {
      return native().sendLinkBatch(this.#fd, list.bytes, list.offsets, list.lengths, ifindex, lladdr, from, to, this.errors.counters);
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
