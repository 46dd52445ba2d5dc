/**
 * TX GSO (up --send gso, the default, with TUN offloads): a TCP super-packet read from the TUN leaves as ONE
 * IP-in-IP frame, and the kernel cuts it into wire-sized segments, as it does for its own tunnels, at the
 * underlay interface (in software, or in a NIC that can: `tx-ipxip4-segmentation`), or never, when the
 * frame stays on the machine (a veth to another namespace carries it whole, as it carries VXLAN's).
 *
 * Linux has no way for a socket to say "IP-in-IP super-packet": a virtio-net header knows TCP and UDP,
 * and the kernel segments IP-in-IP only when the packet carries SKB_GSO_IPXIP4 and marks where the inner
 * headers start, which only the kernel's own encapsulation sets. So:
 *
 *  1. userfan writes the whole frame (src/underlay/gso-frame.ts): a virtio-net header (NEEDS_CSUM,
 *     gso_type TCPV4, gso_size from the TUN's), the Ethernet header to the neighbour's MAC, the outer
 *     IPv4 header, and the inner packet as the TUN gave it (its TCP checksum field holding the
 *     pseudo-header sum). It sends it through an AF_PACKET SOCK_RAW socket with PACKET_VNET_HDR (the
 *     GsoSender's, one per daemon, shared by the workers).
 *  2. A TC egress program on each underlay interface (tcx) takes that socket's GSO packets only (by
 *     socket cookie), removes the outer header and puts it back with bpf_skb_adjust_room(...,
 *     BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO): the kernel then records the packet as
 *     IP-in-IP (SKB_GSO_IPXIP4, inner headers, encapsulation) without touching its bytes, and the saved
 *     header is written back. Every other packet passes untouched (TCX_NEXT).
 *  3. Segmentation (ipip_gso_segment, built into every IPv4 kernel, also without the ipip module) gives
 *     each segment its outer length, ID (consecutive from userfan's) and header checksum, and tcp's
 *     segmentation the inner ones: the packets on the wire are the kernel ipip driver's.
 *
 * Without the program the kernel refuses such a frame (sendmmsg fails), so it is attached before the
 * workers start, and if the kernel refuses the program (tcx needs Linux 6.6; BPF may be locked down),
 * userfan cuts super-packets itself as before and `show` says why. The program and its links are owned
 * by the daemon's descriptors: closed (also by SIGKILL), they are gone.
 */
import { readFileSync } from 'node:fs';
import { ETH_HLEN } from '../wire/ethernet.js';
import { OUTER_HEADER_LEN } from '../wire/ipip.js';
import type { PacketList } from '../io/batch.js';
import { IoErrors } from '../io/errors.js';
import { ADD, ALU64, assembleEbpf, CALL, DW, EXIT, IMM, JEQ, JMP, JNE, K, LD, LDX, MEM, MOV, R0, R1, R2, R3, R4, R5, R6, R7, R10, W, X } from '../io/ebpf.js';
import { closeFd, native, rethrowAs } from '../io/native.js';
import { macWords } from './neighbours.js';
import { VXLAN_ENCAP_LEN } from './vxlan-frame.js';

// Helpers (enum bpf_func_id) and their flags (linux/bpf.h).
const FUNC_SKB_STORE_BYTES = 9;
const FUNC_SKB_LOAD_BYTES = 26;
const FUNC_GET_SOCKET_COOKIE = 46;
const FUNC_SKB_ADJUST_ROOM = 50;
const ADJ_ROOM_MAC = 1;
const F_ADJ_ROOM_FIXED_GSO = 1;
const F_ADJ_ROOM_ENCAP_L3_IPV4 = 2;
const F_ADJ_ROOM_ENCAP_L4_UDP = 1 << 4;
const F_ADJ_ROOM_ENCAP_L2_ETH = 1 << 6;
/** BPF_F_ADJ_ROOM_ENCAP_L2(len): the inner link header's length in bits 56–63 (here: the flags' upper word). */
const adjRoomEncapL2Hi = (len: number) => (len & 0xff) << 24;
/** offsetof(struct __sk_buff, gso_size). */
const SKB_GSO_SIZE = 176;
/** tcx verdicts: next program (or pass when none), drop. */
export const TCX_NEXT = -1;
export const TCX_DROP = 2;

/**
 * What the program re-pushes as the encapsulation, and how bpf_skb_adjust_room() is told its kind:
 *  - ipip: the outer IPv4 header (SKB_GSO_IPXIP4);
 *  - vxlan: outer IPv4, UDP, VXLAN and the inner Ethernet header (SKB_GSO_UDP_TUNNEL, inner protocol
 *    ETH_P_TEB: the kernel cuts the inner TCP behind the inner Ethernet header, as its own VXLAN's).
 */
export type GsoEncap = 'ipip' | 'vxlan';
const ENCAPS: Record<GsoEncap, { len: number; lo: number; hi: number }> = {
  ipip: { len: OUTER_HEADER_LEN, lo: F_ADJ_ROOM_FIXED_GSO | F_ADJ_ROOM_ENCAP_L3_IPV4, hi: 0 },
  vxlan: {
    len: VXLAN_ENCAP_LEN,
    lo: F_ADJ_ROOM_FIXED_GSO | F_ADJ_ROOM_ENCAP_L3_IPV4 | F_ADJ_ROOM_ENCAP_L4_UDP | F_ADJ_ROOM_ENCAP_L2_ETH,
    hi: adjRoomEncapL2Hi(ETH_HLEN),
  },
};

/**
 * The TC egress program for the socket whose cookie is `cookie`: its GSO packets get their outer headers
 * (`encap`) re-pushed as an encapsulation (see the module comment). A packet whose headers cannot be
 * re-pushed is dropped (it would be refused later anyway). Everything else: TCX_NEXT.
 */
export function gsoFixProgram(cookie: number, encap: GsoEncap = 'ipip'): Uint8Array {
  const lo = cookie % 2 ** 32 | 0;
  const hi = Math.floor(cookie / 2 ** 32) | 0;
  const e = ENCAPS[encap];
  const stack = (e.len + 7) & ~7; // the saved headers live at r10 - stack
  const adjust = (delta: number, flagsLo: number, flagsHi: number) => [
    { code: ALU64 | MOV | X, dst: R1, src: R6 },
    { code: ALU64 | MOV | K, dst: R2, imm: delta },
    { code: ALU64 | MOV | K, dst: R3, imm: ADJ_ROOM_MAC },
    ...(flagsHi === 0 ? [{ code: ALU64 | MOV | K, dst: R4, imm: flagsLo }] : [{ code: LD | IMM | DW, dst: R4, imm: flagsLo }, { code: 0, imm: flagsHi }]),
    { code: JMP | CALL, imm: FUNC_SKB_ADJUST_ROOM },
    { code: JMP | JNE | K, dst: R0, imm: 0, to: 'drop' },
  ];
  const header = (fn: number) => [
    { code: ALU64 | MOV | X, dst: R1, src: R6 },
    { code: ALU64 | MOV | K, dst: R2, imm: ETH_HLEN },
    { code: ALU64 | MOV | X, dst: R3, src: R10 },
    { code: ALU64 | ADD | K, dst: R3, imm: -stack },
    { code: ALU64 | MOV | K, dst: R4, imm: e.len },
    ...(fn === FUNC_SKB_STORE_BYTES ? [{ code: ALU64 | MOV | K, dst: R5, imm: 0 }] : []),
    { code: JMP | CALL, imm: fn },
  ];
  return assembleEbpf([
    { code: ALU64 | MOV | X, dst: R6, src: R1 },
    { code: LDX | MEM | W, dst: R7, src: R6, off: SKB_GSO_SIZE },
    { code: JMP | JEQ | K, dst: R7, imm: 0, to: 'next' }, // not a GSO packet
    { code: JMP | CALL, imm: FUNC_GET_SOCKET_COOKIE }, // r1 is still the context
    { code: LD | IMM | DW, dst: R1, imm: lo },
    { code: 0, imm: hi },
    { code: JMP | JNE | X, dst: R0, src: R1, to: 'next' }, // not userfan's socket
    ...header(FUNC_SKB_LOAD_BYTES), // the outer headers, to the stack
    { code: JMP | JNE | K, dst: R0, imm: 0, to: 'next' },
    ...adjust(-e.len, F_ADJ_ROOM_FIXED_GSO, 0),
    ...adjust(e.len, e.lo, e.hi),
    ...header(FUNC_SKB_STORE_BYTES),
    { code: JMP | JNE | K, dst: R0, imm: 0, to: 'drop' },
    { code: ALU64 | MOV | K, dst: R0, imm: TCX_NEXT, label: 'next' },
    { code: JMP | EXIT },
    { code: ALU64 | MOV | K, dst: R0, imm: TCX_DROP, label: 'drop' },
    { code: JMP | EXIT },
  ]);
}

/** An underlay interface the GsoSender's frames may leave by, and this host's MAC on it. */
export interface GsoLink {
  iface: string;
  ifindex: number;
  /** The interface's MAC as NeighbourTable keeps MACs: bytes 0–3 big-endian (int32), bytes 4–5. */
  macHi: number;
  macLo: number;
}

/** The daemon's TX GSO path: one AF_PACKET socket for the workers, and the program on every underlay interface. */
export class GsoSender {
  #fds: number[];

  private constructor(readonly fd: number, readonly links: GsoLink[], fds: number[]) {
    this.#fds = fds;
  }

  /**
   * Opens the socket and attaches the program to each interface (deduplicated). Throws with the
   * interface named when the kernel refuses; nothing stays open then.
   */
  static open(ifaces: readonly string[], encap: GsoEncap = 'ipip', sndbuf = 4 << 20): GsoSender {
    const n = native();
    const opened: number[] = [];
    let at = 'AF_PACKET socket';
    try {
      const fd = n.linkOpen({ sndbuf, vnet: true });
      opened.push(fd);
      at = 'TC program';
      const prog = n.bpfLoadTc(gsoFixProgram(n.socketCookie(fd), encap), 'Dual MIT/GPL');
      opened.push(prog);
      const links: GsoLink[] = [];
      for (const iface of new Set(ifaces)) {
        at = `TC egress on ${iface}`;
        const ifindex = n.ifIndex(iface);
        if (ifindex <= 0) throw new Error(`TX GSO: ${iface}: no such interface`);
        const mac = readFileSync(`/sys/class/net/${iface}/address`, 'utf8').trim();
        let words: [number, number];
        try {
          words = macWords(mac);
        } catch {
          throw new Error(`TX GSO: ${iface} has no Ethernet address (${mac || 'none'})`);
        }
        const [macHi, macLo] = words;
        opened.push(n.tcxLink(prog, ifindex));
        links.push({ iface, ifindex, macHi, macLo });
      }
      return new GsoSender(fd, links, opened);
    } catch (e) {
      for (const fd of opened.reverse()) closeFd(fd, 'TX GSO');
      rethrowAs(e, `TX GSO: ${at}`);
    }
  }

  get closed(): boolean {
    return this.#fds.length === 0;
  }

  /** Detaches the program (closing its links) and closes the socket (idempotent; after the workers stopped). */
  close(): void {
    const fds = this.#fds;
    this.#fds = [];
    for (const fd of fds.reverse()) closeFd(fd, 'TX GSO');
  }
}

/** A worker's handle on the GsoSender's socket (it does not own the descriptor). */
export class GsoFrameSocket {
  /** Frames sendmmsg skipped: EMSGSIZE, EINVAL (a header the kernel refused), ENXIO (interface gone), … */
  readonly errors = new IoErrors();

  constructor(readonly fd: number) {}

  /**
   * Sends frames [from, to) of `list` (each a virtio-net header and an Ethernet frame), frame i out of
   * interface ifindex[i]. Refused frames are skipped and counted. Returns the index after the last frame
   * handled: `to`, or less when the send buffer is full.
   */
  send(list: PacketList, ifindex: Int32Array, from: number, to: number): number {
    try {
      return native().sendFrameBatch(this.fd, list.bytes, list.offsets, list.lengths, ifindex, from, to, this.errors.counters);
    } catch (e) {
      rethrowAs(e, `TX GSO socket ${this.fd}`);
    }
  }
}
