/**
 * AF_XDP receive (up --recv xdp): IP-in-IP taken off the underlay interface before the IP stack.
 *
 * An XDP program on the fan's underlay interface (XdpRedirect, made once by the daemon) hands every
 * frame that is
 *
 *   Ethernet + IPv4 with a 20-byte header (no options), not a fragment, protocol 4 (IP-in-IP),
 *   addressed to this host's underlay address, and small enough for a UMEM frame
 *
 * to the AF_XDP socket (XskSocket, one per worker) serving the RX queue it arrived on. The socket's
 * UMEM is this process's memory: the kernel copies the frame in, and the worker reads it without a
 * system call while the RX ring has frames. What the kernel skips for these packets, and what a raw socket
 * pays per packet: IP receive, the route lookup, netfilter and conntrack, the raw socket's clone of the
 * packet, its queue lock and wake-up, and recvmmsg. `node dist/bench/native-bench.js --only xdp` (both
 * receivers in C, bench/xsk-rx.c): 2.73 µs of the whole machine's time per packet through a raw socket
 * against 1.93 through XDP and AF_XDP (0.71), the receiving thread's own 0.89 against 0.29.
 *
 * Everything else goes on to the kernel as before: ARP and other traffic, fragments and outer options
 * (the kernel reassembles and parses those; the raw socket then receives them), frames too big for a
 * UMEM frame (jumbo underlays, GRO-joined packets), and packets on a queue no worker's socket serves
 * (the map lookup fails and the program's fallback is XDP_PASS). So while a worker is being replaced,
 * its queue goes to the kernel and whatever raw sockets are open; frames left on the dead worker's ring
 * are lost, as what waits in a dead raw socket's queue is.
 *
 * What an operator should know: the program runs in generic mode (XDP_FLAGS_SKB_MODE: after the
 * driver, on any interface, veth included; the driver's own mode would also change a veth's receive
 * path to NAPI), so packet taps (tcpdump on the underlay) no longer see the IP-in-IP packets it takes,
 * and neither do netfilter's INPUT rules: `userfan trace` shows them. While it is attached, the kernel
 * does no GRO on the interface (netif_elide_gro), and attaching it turns the NIC's LRO and hardware GRO
 * off for good (generic_xdp_install): on a real NIC, measure against --recv raw. The XDP program is attached
 * through a BPF link, which the kernel removes when the daemon's descriptor closes, also on SIGKILL.
 *
 * The program is built here (with src/io/ebpf.ts), like the share filter (src/io/share.ts); the addon
 * only loads it.
 */
import { readdirSync } from 'node:fs';
import type { PacketBatch } from './batch.js';
import { closeFd, isNativeError, native, rethrowAs } from './native.js';
import {
  ADD, ALU64, AND, assembleEbpf, B, CALL, DW, type EInsn, EXIT, H, IMM, JA, JGT, JMP, JMP32, JNE, K, LD, LDX, MEM, MOV, PSEUDO_MAP_FD, W, X,
} from './ebpf.js';

const FUNC_REDIRECT_MAP = 51;
export const XDP_PASS = 2;

/** Offsets into struct xdp_md. */
const MD_DATA = 0, MD_DATA_END = 4, MD_RX_QUEUE = 16;
const ETH_HLEN = 14;

/** Bytes b0..b3 of an IPv4 address (int32, b0 highest) as a little-endian 32-bit load of them reads. */
const wireLoad = (addr: number) => ((addr & 0xff) << 24) | ((addr >>> 8 & 0xff) << 16) | ((addr >>> 16 & 0xff) << 8) | (addr >>> 24 & 0xff);

/**
 * The XDP program: redirect IP-in-IP for `local` (int32 IPv4 address) of at most `maxFrame` bytes
 * (Ethernet header included) to xskmap[rx queue]; pass everything else. When the queue has no socket
 * in the map, the redirect returns `fallback` (XDP_PASS; tests give another action, to tell "would
 * redirect" from "passed"). Loads are little-endian, so 16-bit fields are compared byte-swapped (0x0800
 * reads as 0x0008).
 */
export function xdpProgram(map: number, local: number, maxFrame: number, fallback = XDP_PASS): Uint8Array {
  const jne32 = (dst: number, imm: number): EInsn => ({ code: JMP32 | JNE | K, dst, imm, to: 'pass' });
  return assembleEbpf([
    { code: LDX | MEM | W, dst: 2, src: 1, off: MD_DATA },
    { code: LDX | MEM | W, dst: 3, src: 1, off: MD_DATA_END },
    { code: ALU64 | MOV | X, dst: 4, src: 2 },
    { code: ALU64 | ADD | K, dst: 4, imm: ETH_HLEN + 20 },
    { code: JMP | JGT | X, dst: 4, src: 3, to: 'pass' }, // shorter than Ethernet + IPv4 headers
    { code: ALU64 | MOV | X, dst: 4, src: 2 },
    { code: ALU64 | ADD | K, dst: 4, imm: maxFrame + 1 },
    { code: JMP | JGT | X, dst: 4, src: 3, to: 'fits' },
    { code: JMP | JA, to: 'pass' }, // longer than a UMEM frame holds
    { code: LDX | MEM | H, dst: 5, src: 2, off: 12, label: 'fits' },
    jne32(5, 0x0008), // EtherType IPv4
    { code: LDX | MEM | B, dst: 5, src: 2, off: ETH_HLEN },
    jne32(5, 0x45), // version 4, 20-byte header
    { code: LDX | MEM | H, dst: 5, src: 2, off: ETH_HLEN + 6 },
    { code: ALU64 | AND | K, dst: 5, imm: 0xff3f }, // MF and the fragment offset
    jne32(5, 0),
    { code: LDX | MEM | B, dst: 5, src: 2, off: ETH_HLEN + 9 },
    jne32(5, 4), // IP-in-IP
    { code: LDX | MEM | W, dst: 5, src: 2, off: ETH_HLEN + 16 },
    jne32(5, wireLoad(local)),
    { code: LDX | MEM | W, dst: 2, src: 1, off: MD_RX_QUEUE },
    { code: LD | IMM | DW, dst: 1, src: PSEUDO_MAP_FD, imm: map },
    { code: 0 },
    { code: ALU64 | MOV | K, dst: 3, imm: fallback }, // no socket on this queue: to the kernel
    { code: JMP | CALL, imm: FUNC_REDIRECT_MAP },
    { code: JMP | EXIT },
    { code: ALU64 | MOV | K, dst: 0, imm: XDP_PASS, label: 'pass' },
    { code: JMP | EXIT },
  ]);
}

/** UMEM frame size, and what the kernel leaves in front of a frame's data in copy mode (XDP_PACKET_HEADROOM). */
export const XSK_FRAME = 2048;
const XDP_HEADROOM = 256;
/** The longest frame (Ethernet header included) the program hands to AF_XDP; longer ones go to the kernel. */
export const XDP_MAX_FRAME = XSK_FRAME - XDP_HEADROOM;
/**
 * Frames per ring (fill and RX), and in the UMEM (8 MiB): every frame is on one ring or the other, or
 * with the kernel between them; a frame the kernel finds no room for is lost (rx-xdp-lost). More UMEM
 * than the fill ring holds would not buffer more. With 2048 the kernel lost frames to a full RX ring in a 5 s iperf3 stream here (1623, each a TCP
 * retransmission, counted as rx-xdp-lost); with 4096 none.
 */
export const XSK_RING = 4096;

/** Number of RX queues of an interface (sysfs); 1 if sysfs does not say. */
export function rxQueues(iface: string): number {
  try {
    return Math.max(1, readdirSync(`/sys/class/net/${iface}/queues`).filter((d) => d.startsWith('rx-')).length);
  } catch {
    return 1;
  }
}

/** Loads the program (for tests: bpfTestRun runs it on a frame); the caller closes the fd. */
export function loadXdpProgram(map: number, local: number, fallback = XDP_PASS): number {
  return native().bpfLoadXdp(xdpProgram(map, local, XDP_MAX_FRAME, fallback), 'Dual MIT/GPL');
}

/** The XDP program on one interface with its socket map: made by the daemon before the workers start. */
export class XdpRedirect {
  #fds: number[];

  private constructor(readonly iface: string, readonly ifindex: number, readonly map: number, prog: number, link: number, readonly queues: number) {
    this.#fds = [link, prog, map];
  }

  /**
   * Loads the program for `local` (int32) and attaches it to `iface` in generic mode. Throws with the
   * interface named when the kernel refuses (no BPF, another XDP program already attached: EBUSY).
   */
  static attach(iface: string, local: number): XdpRedirect {
    const n = native();
    const ifindex = n.ifIndex(iface);
    if (ifindex <= 0) throw new Error(`XDP ${iface}: no such interface`);
    const queues = rxQueues(iface);
    const opened: number[] = [];
    try {
      const map = n.bpfXskMap(queues);
      opened.push(map);
      const prog = loadXdpProgram(map, local);
      opened.push(prog);
      const link = n.xdpLink(prog, ifindex, true);
      return new XdpRedirect(iface, ifindex, map, prog, link, queues);
    } catch (e) {
      for (const fd of opened) closeFd(fd, `XDP ${iface}`);
      if (isNativeError(e) && e.code === 'EBUSY') {
        e.message = `${e.syscall} XDP on ${iface}: EBUSY (another XDP program is attached; \`ip link show dev ${iface}\` names it)`;
        throw e;
      }
      rethrowAs(e, `XDP on ${iface}`);
    }
  }

  get closed(): boolean {
    return this.#fds.length === 0;
  }

  /** Detaches the program (closing its link) and frees the map (idempotent). */
  close(): void {
    const fds = this.#fds;
    this.#fds = [];
    for (const fd of fds) closeFd(fd, `XDP ${this.iface}`);
  }
}

/** A worker's AF_XDP socket on one RX queue (copy mode), entered in the XdpRedirect's map. */
export class XskSocket {
  #fd: number;

  private constructor(fd: number, readonly queue: number) {
    this.#fd = fd;
  }

  static open(o: { ifindex: number; queue: number; map: number }): XskSocket {
    try {
      return new XskSocket(native().xskOpen({ ...o, ring: XSK_RING, frame: XSK_FRAME }), o.queue);
    } catch (e) {
      rethrowAs(e, `AF_XDP socket on queue ${o.queue}`);
    }
  }

  get fd(): number {
    return this.#fd;
  }

  /**
   * Takes the packets waiting on the RX ring (at most max) into batch.received as RawIpipSocket.receive
   * does: outer IPv4 header first, lengths[i] the full length, addresses[i] the outer source. Returns the count.
   */
  receive(batch: PacketBatch, max = batch.slots): number {
    const r = batch.received;
    r.count = native().xskRecvBatch(this.#fd, batch.bytes, r.offsets, r.lengths, batch.packetCapacity, max, r.addresses);
    return r.count;
  }

  /** What the kernel could not deliver to this socket (XDP_STATISTICS). */
  stats(): { dropped: number; ringFull: number; fillEmpty: number; invalid: number } {
    return native().xskStats(this.#fd);
  }

  /** Unmaps and closes (idempotent). */
  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    native().xskClose(fd);
  }
}
