/**
 * eBPF instructions, as the kernel takes them (struct bpf_insn, linux/bpf.h): the encoding constants
 * and a small assembler with labels. userfan's kernel programs are built with it: the receive share
 * filter (classic BPF, src/underlay/share.ts, has its own) aside, the TC egress program of TX GSO
 * (src/underlay/tx-gso.ts). The addon only loads what is built here.
 */

// Classes, sizes, modes, operations, sources.
export const LD = 0x00, LDX = 0x01, ALU64 = 0x07, JMP = 0x05, JMP32 = 0x06;
export const W = 0x00, H = 0x08, B = 0x10, DW = 0x18;
export const IMM = 0x00, MEM = 0x60;
export const ADD = 0x00, AND = 0x50, MOV = 0xb0;
export const JA = 0x00, JEQ = 0x10, JGT = 0x20, JNE = 0x50, CALL = 0x80, EXIT = 0x90;
export const K = 0x00, X = 0x08;
/** Registers: r0 return value, r1–r5 arguments, r6–r9 kept across calls, r10 the frame pointer. */
export const R0 = 0, R1 = 1, R2 = 2, R3 = 3, R4 = 4, R5 = 5, R6 = 6, R7 = 7, R10 = 10;

/** One eBPF instruction; `to` is a label, resolved by assembleEbpf() into `off`. */
export interface EInsn {
  code: number;
  dst?: number;
  src?: number;
  off?: number;
  imm?: number;
  to?: string;
  label?: string;
}

/** Resolves labels (forward jumps only) and packs struct bpf_insn (8 bytes each, little-endian). */
export function assembleEbpf(insns: readonly EInsn[]): Uint8Array {
  const at = new Map<string, number>();
  insns.forEach((ins, i) => ins.label && at.set(ins.label, i));
  const out = new Uint8Array(insns.length * 8);
  const v = new DataView(out.buffer);
  insns.forEach((ins, i) => {
    let off = ins.off ?? 0;
    if (ins.to !== undefined) {
      const target = at.get(ins.to);
      if (target === undefined || target <= i) throw new Error(`bad jump to ${ins.to}`);
      off = target - i - 1;
    }
    v.setUint8(8 * i, ins.code);
    v.setUint8(8 * i + 1, ((ins.src ?? 0) << 4) | (ins.dst ?? 0));
    v.setInt16(8 * i + 2, off, true);
    v.setInt32(8 * i + 4, ins.imm ?? 0, true);
  });
  return out;
}
