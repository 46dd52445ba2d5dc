/**
 * The IP-in-IP receive spread (src/underlay/share.ts): the classic BPF program each worker's raw socket
 * carries, run here by a small interpreter of the instructions it uses (linux/filter.h semantics), against
 * shareOf, on packets built byte by byte. The kernel's own run of the program is in
 * test/integration/native.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { shareFilter, shareOf } from '../../src/underlay/share.js';

/** Runs a program packed as assemble() packs it ([code | jt << 16 | jf << 24, k] pairs) on pkt; returns what it keeps. */
function runFilter(prog: Uint32Array, pkt: Uint8Array): number {
  let a = 0, x = 0, pc = 0;
  const mem = new Uint32Array(16);
  const load = (at: number, size: number): number | undefined => {
    if (at < 0 || at + size > pkt.length) return undefined;
    let v = 0;
    for (let i = 0; i < size; i++) v = (v * 256) + pkt[at + i];
    return v >>> 0;
  };
  for (let steps = 0; steps < 4096; steps++) {
    const word = prog[2 * pc], k = prog[2 * pc + 1];
    const code = word & 0xffff, jt = (word >>> 16) & 0xff, jf = word >>> 24;
    pc++;
    const cls = code & 0x07;
    const size = ({ 0x00: 4, 0x08: 2, 0x10: 1 } as Record<number, number>)[code & 0x18];
    const mode = code & 0xe0;
    if (cls === 0x00 || cls === 0x01) { // LD, LDX
      let v: number | undefined;
      if (mode === 0x00) v = k;
      else if (mode === 0x80) v = pkt.length;
      else if (mode === 0x60) v = mem[k];
      else if (mode === 0x20) v = load(k, size);
      else if (mode === 0x40) v = load(x + k, size);
      else if (mode === 0xa0) v = ((pkt[k] ?? 0) & 0x0f) * 4; // MSH
      if (v === undefined) return 0; // a load past the end: the kernel drops the packet
      if (cls === 0x00) a = v; else x = v;
    } else if (cls === 0x02) mem[k] = a;
    else if (cls === 0x03) mem[k] = x;
    else if (cls === 0x04) { // ALU
      const src = code & 0x08 ? x : k;
      const op = code & 0xf0;
      if (op === 0x00) a = (a + src) >>> 0;
      else if (op === 0x10) a = (a - src) >>> 0;
      else if (op === 0x20) a = Math.imul(a, src) >>> 0;
      else if (op === 0x50) a = (a & src) >>> 0;
      else if (op === 0x60) a = (a << src) >>> 0;
      else if (op === 0x70) a = a >>> src;
      else if (op === 0x90) a = a % src;
      else if (op === 0xa0) a = (a ^ src) >>> 0;
      else throw new Error(`ALU op ${op.toString(16)}`);
    } else if (cls === 0x05) { // JMP
      const src = code & 0x08 ? x : k;
      const op = code & 0xf0;
      if (op === 0x00) pc += k;
      else {
        const yes = op === 0x10 ? a === src : op === 0x20 ? a > src : op === 0x30 ? a >= src : (a & src) !== 0;
        pc += yes ? jt : jf;
      }
    } else if (cls === 0x06) return k;
    else if (cls === 0x07) { if (code & 0x80) a = x; else x = a; } // TXA, TAX
  }
  throw new Error('program did not end');
}

/** An IP-in-IP packet: a 20-byte outer header, then an inner IPv4 header (protocol proto) and its 4 port bytes. */
function ipipPacket(src: number, dst: number, sport: number, dport: number, proto = 6, frag = 0): Uint8Array {
  const p = new Uint8Array(20 + 20 + 8);
  p[0] = 0x45;
  p[9] = 4;
  const inner = p.subarray(20);
  inner[0] = 0x45;
  inner[6] = frag >>> 8;
  inner[7] = frag & 0xff;
  inner[9] = proto;
  new DataView(inner.buffer, inner.byteOffset).setUint32(12, src);
  new DataView(inner.buffer, inner.byteOffset).setUint32(16, dst);
  new DataView(inner.buffer, inner.byteOffset).setUint16(20, sport);
  new DataView(inner.buffer, inner.byteOffset).setUint16(22, dport);
  return p;
}

const A = (250 << 24 | 28 << 8 | 2) >>> 0; // 250.0.28.2
const B = (250 << 24 | 27 << 8 | 2) >>> 0; // 250.0.27.2

/** Which share each worker's filter gives p; exactly one must keep it. */
function filterShare(p: Uint8Array, count: number): number {
  const keep = Array.from({ length: count }, (_, i) => runFilter(shareFilter(i, count), p) !== 0);
  expect(keep.filter(Boolean)).toHaveLength(1);
  return keep.indexOf(true);
}

describe('IP-in-IP receive spread', () => {
  it('the filter and shareOf agree, and exactly one share keeps each packet', () => {
    for (const count of [1, 2, 3, 4]) {
      for (let i = 0; i < 60; i++) {
        const p = ipipPacket(A + (i % 3), B, 33000 + 7 * i, 5201, i % 2 ? 6 : 17, i % 5 === 0 ? 0x2000 : 0);
        expect(filterShare(p, count)).toBe(shareOf(p, 0, p.length, count));
      }
      const short = ipipPacket(A, B, 1, 2).subarray(0, 30); // no room for an inner header: share 0
      expect(filterShare(short, count)).toBe(0);
      expect(shareOf(short, 0, short.length, count)).toBe(0);
    }
  });

  // Linux's connect() picks even source ports: before the hash was folded, every connection from one host
  // to one server port landed on one worker of two.
  it('connections from one host to one server port, all from even source ports, spread over the workers', () => {
    for (const count of [2, 4]) {
      const per = new Array<number>(count).fill(0);
      for (let sport = 40000; sport < 40256; sport += 2) {
        const p = ipipPacket(A, B, sport, 5201);
        const s = filterShare(p, count);
        expect(shareOf(p, 0, p.length, count)).toBe(s);
        per[s]++;
      }
      for (const n of per) expect(n).toBeGreaterThan(128 / count / 2);
    }
  });

  it('the fragments of one datagram stay on one worker (addresses only)', () => {
    const first = ipipPacket(A, B, 40000, 5201, 17, 0x2000);
    const later = ipipPacket(A, B, 0x1234, 0x5678, 17, 0x0010); // a later fragment: no ports, other bytes there
    for (const count of [2, 3, 4]) expect(filterShare(later, count)).toBe(filterShare(first, count));
  });
});
