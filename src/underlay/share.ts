/**
 * Receive spread for raw IP-in-IP sockets.
 *
 * The kernel hands every protocol-4 packet to every protocol-4 raw socket, so N workers with one
 * socket each would each see every packet. A classic BPF filter on worker i's socket keeps only
 * the packets whose flow hash mod N is i: every packet is then received by exactly one worker, and
 * a flow always by the same one (its packets stay in order).
 *
 * The hash covers the INNER header (the outer addresses are the same for every flow between two
 * hosts): inner source ^ inner destination ^ the first 32 bits after the inner header (the ports)
 * for TCP and UDP packets that are not fragments; addresses only otherwise (so the fragments of
 * one datagram stay together). It is then folded and mixed (multiply by 2^32/φ, keep the high 16
 * bits) so that flows differing only in a port spread too:
 *
 *   x ^= x >>> 16
 *   share = ((x * 0x9e3779b1) mod 2^32 >>> 16) mod N
 *
 * The fold matters: bit k of a product depends only on bits 0..k of x, and the source port sits in
 * x's high half. Without it, with N = 2, the share was bit 16 of the product, which saw only the
 * source port's lowest bit: Linux's connect() picks even ports, so every connection from one host to
 * one server port landed on the same worker.
 *
 * The raw socket's filter sees the packet from the outer IPv4 header on. A packet too short for
 * the loads (outer header + 20 bytes of inner header) goes to share 0, so that one worker sees it and
 * counts it as the drop it is (a classic BPF load past the end would drop it silently for every
 * share); a TCP/UDP packet too short for its ports is hashed on its addresses.
 * `shareOf` computes the same in TypeScript.
 */

// Classic BPF opcodes (linux/filter.h).
const LD = 0x00, LDX = 0x01, ST = 0x02, ALU = 0x04, JMP = 0x05, RET = 0x06, MISC = 0x07;
const W = 0x00, H = 0x08, B = 0x10;
const IMM = 0x00, IND = 0x40, MEM = 0x60, LEN = 0x80, MSH = 0xa0;
const ADD = 0x00, SUB = 0x10, MUL = 0x20, AND = 0x50, LSH = 0x60, RSH = 0x70, MOD = 0x90, XOR = 0xa0;
const JA = 0x00, JEQ = 0x10, JGE = 0x30, JSET = 0x40;
const K = 0x00, X = 0x08;
const TAX = 0x00;

/** One instruction; jt/jf are labels, resolved by assemble(). */
interface Insn {
  code: number;
  k: number;
  jt?: string;
  jf?: string;
  label?: string;
}

/** Resolves labels into relative jumps and packs [code | jt << 16 | jf << 24, k] pairs for attachFilter. */
export function assemble(insns: readonly Insn[]): Uint32Array {
  const at = new Map<string, number>();
  insns.forEach((ins, i) => ins.label && at.set(ins.label, i));
  const out = new Uint32Array(insns.length * 2);
  insns.forEach((ins, i) => {
    const rel = (label: string | undefined): number => {
      if (label === undefined) return 0;
      const target = at.get(label);
      if (target === undefined || target <= i || target - i - 1 > 255) throw new Error(`bad jump to ${label}`);
      return target - i - 1;
    };
    if ((ins.code & 0x07) === JMP && (ins.code & 0xf0) === JA) {
      out[2 * i] = ins.code;
      out[2 * i + 1] = rel(ins.jt);
    } else {
      out[2 * i] = (ins.code | (rel(ins.jt) << 16) | (rel(ins.jf) << 24)) >>> 0;
      out[2 * i + 1] = ins.k >>> 0;
    }
  });
  return out;
}

export const HASH_MULTIPLIER = 0x9e3779b1;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

/** The filter program keeping share `index` of `count` (0 ≤ index < count ≤ 65536). */
export function shareFilter(index: number, count: number): Uint32Array {
  if (!Number.isInteger(count) || count < 1 || count > 65536) throw new RangeError(`share count: ${count}`);
  if (!Number.isInteger(index) || index < 0 || index >= count) throw new RangeError(`share index: ${index}`);
  return assemble([
    { code: LDX | B | MSH, k: 0 }, // X = outer header length
    { code: LD | W | LEN, k: 0 }, // A = packet length
    { code: JMP | JGE | X, k: 0, jt: 'sub1', jf: 'short' }, // (compare before subtracting: no wrap-around)
    { label: 'sub1', code: ALU | SUB | X, k: 0 },
    { code: JMP | JGE | K, k: 20, jt: 'long', jf: 'short' }, // room for an inner header?
    { label: 'short', code: LD | IMM, k: 0 }, // no: share 0 takes it
    { code: JMP | JA, k: 0, jt: 'pick' },
    { label: 'long', code: LD | W | IND, k: 12 }, // A = inner source
    { code: ST, k: 0 },
    { code: LD | W | IND, k: 16 }, // A = inner destination
    { code: ST, k: 1 },
    { code: LD | B | IND, k: 9 }, // A = inner protocol
    { code: JMP | JEQ | K, k: IPPROTO_TCP, jt: 'ports' },
    { code: JMP | JEQ | K, k: IPPROTO_UDP, jt: 'ports', jf: 'noports' },
    { label: 'ports', code: LD | H | IND, k: 6 }, // A = inner flags + fragment offset
    { code: JMP | JSET | K, k: 0x3fff, jt: 'noports' }, // MF or an offset: a fragment
    { code: LD | B | IND, k: 0 }, // A = inner version/IHL
    { code: ALU | AND | K, k: 0x0f },
    { code: ALU | LSH | K, k: 2 },
    { code: ALU | ADD | X, k: 0 },
    { code: MISC | TAX, k: 0 }, // X = outer + inner header length
    { code: LD | W | LEN, k: 0 },
    { code: JMP | JGE | X, k: 0, jt: 'sub2', jf: 'noports' },
    { label: 'sub2', code: ALU | SUB | X, k: 0 },
    { code: JMP | JGE | K, k: 4, jt: 'haveports', jf: 'noports' }, // room for the ports?
    { label: 'haveports', code: LD | W | IND, k: 0 }, // A = ports
    { code: LDX | MEM, k: 0 },
    { code: ALU | XOR | X, k: 0 },
    { code: LDX | MEM, k: 1 },
    { code: ALU | XOR | X, k: 0 },
    { code: JMP | JA, k: 0, jt: 'mix' },
    { label: 'noports', code: LD | MEM, k: 0 },
    { code: LDX | MEM, k: 1 },
    { code: ALU | XOR | X, k: 0 },
    { label: 'mix', code: ST, k: 2 }, // fold: A ^= A >>> 16
    { code: ALU | RSH | K, k: 16 },
    { code: MISC | TAX, k: 0 },
    { code: LD | MEM, k: 2 },
    { code: ALU | XOR | X, k: 0 },
    { code: ALU | MUL | K, k: HASH_MULTIPLIER },
    { code: ALU | RSH | K, k: 16 },
    { code: ALU | MOD | K, k: count },
    { label: 'pick', code: JMP | JEQ | K, k: index, jt: 'accept', jf: 'drop' },
    { label: 'accept', code: RET | K, k: 0xffffffff },
    { label: 'drop', code: RET | K, k: 0 },
  ]);
}

/**
 * Which share of `count` the filter gives the IP-in-IP packet bytes[offset .. offset+length)
 * (outer header first): the same computation as shareFilter, in TypeScript.
 */
export function shareOf(bytes: Uint8Array, offset: number, length: number, count: number): number {
  const end = offset + length;
  const u32 = (at: number): number => ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
  if (length < 1) return 0;
  const inner = offset + (bytes[offset] & 0x0f) * 4;
  if (inner > end || end - inner < 20) return 0; // too short to hash: share 0 counts it
  let x = (u32(inner + 12) ^ u32(inner + 16)) >>> 0;
  const proto = bytes[inner + 9];
  if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
    const frag = (bytes[inner + 6] << 8) | bytes[inner + 7];
    const ports = inner + (bytes[inner] & 0x0f) * 4;
    if ((frag & 0x3fff) === 0 && ports <= end && end - ports >= 4) x = (x ^ u32(ports)) >>> 0;
  }
  x = (x ^ (x >>> 16)) >>> 0;
  return ((Math.imul(x, HASH_MULTIPLIER) >>> 16) % count);
}
