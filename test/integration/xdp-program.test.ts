/**
 * The XDP program of `up --recv xdp` (src/io/xdp.ts), run by the kernel on frames we make
 * (BPF_PROG_TEST_RUN, root): it must pick exactly the frames a TypeScript statement of the rule picks,
 * for any frame. Built with XDP_TX as the map's fallback action, so "would go to an AF_XDP socket" (the
 * queue has none in this empty map: the fallback) is told apart from "left to the kernel" (XDP_PASS).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { native } from '../../src/io/native.js';
import { loadXdpProgram, XDP_MAX_FRAME, XDP_PASS } from '../../src/io/xdp.js';

const XDP_TX = 3;
const LOCAL = (198 << 24) | (18 << 16) | 28; // 198.18.0.28 as int32

/** The rule, as the module comment states it. */
function wanted(f: Uint8Array, local: number): boolean {
  if (f.length < 34 || f.length > XDP_MAX_FRAME) return false;
  if (f[12] !== 0x08 || f[13] !== 0x00) return false; // IPv4
  if (f[14] !== 0x45) return false; // version 4, no options
  if ((f[20] & 0x3f) !== 0 || f[21] !== 0) return false; // not a fragment (DF may be set)
  if (f[23] !== 4) return false; // IP-in-IP
  return ((f[30] << 24) | (f[31] << 16) | (f[32] << 8) | f[33]) === local;
}

/** An IP-in-IP frame to `dst` of `len` bytes (Ethernet header included). */
function frame(len: number, dst: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00], 0);
  if (len >= 34) {
    f.set([0x45, 0, (len - 14) >> 8, (len - 14) & 0xff, 0, 1, 0x40, 0, 64, 4, 0, 0, 198, 18, 0, 27], 14);
    f.set([dst >>> 24, (dst >>> 16) & 0xff, (dst >>> 8) & 0xff, dst & 0xff], 30);
  }
  return f;
}

describe('the XDP program (BPF_PROG_TEST_RUN)', () => {
  let map = -1;
  let prog = -1;
  beforeAll(() => {
    map = native().bpfXskMap(1);
    prog = loadXdpProgram(map, LOCAL, XDP_TX);
  });
  afterAll(() => {
    for (const fd of [prog, map]) if (fd >= 0) native().close(fd);
  });
  const run = (f: Uint8Array) => native().bpfTestRun(prog, f);

  it('takes IP-in-IP for this host, with or without DF, up to the frame limit', () => {
    expect(run(frame(1514, LOCAL))).toBe(XDP_TX);
    expect(run(frame(34, LOCAL))).toBe(XDP_TX);
    expect(run(frame(XDP_MAX_FRAME, LOCAL))).toBe(XDP_TX);
    const noDf = frame(100, LOCAL);
    noDf[20] = 0;
    expect(run(noDf)).toBe(XDP_TX);
  });

  it('leaves to the kernel: other hosts, fragments, options, other protocols, ARP, runts, jumbo frames', () => {
    expect(run(frame(1514, LOCAL + 1))).toBe(XDP_PASS);
    const mf = frame(1514, LOCAL);
    mf[20] = 0x20;
    expect(run(mf)).toBe(XDP_PASS);
    const offset = frame(1514, LOCAL);
    offset[21] = 1;
    expect(run(offset)).toBe(XDP_PASS);
    const options = frame(1514, LOCAL);
    options[14] = 0x46;
    expect(run(options)).toBe(XDP_PASS);
    const gre = frame(1514, LOCAL);
    gre[23] = 47;
    expect(run(gre)).toBe(XDP_PASS);
    const arp = frame(60, LOCAL);
    arp[12] = 0x08;
    arp[13] = 0x06;
    expect(run(arp)).toBe(XDP_PASS);
    expect(run(frame(33, LOCAL))).toBe(XDP_PASS);
    expect(run(frame(XDP_MAX_FRAME + 1, LOCAL))).toBe(XDP_PASS);
  });

  it('a program the verifier refuses, a bad ring size and a descriptor that is no AF_XDP socket are clear errors', () => {
    // An exit with r0 never set: the verifier's words end the message.
    expect(() => native().bpfLoadXdp(new Uint8Array([0x95, 0, 0, 0, 0, 0, 0, 0]), 'Dual MIT/GPL')).toThrow(/BPF_PROG_LOAD XDP program: EACCES \(verifier: .*R0 !read_ok/s);
    expect(() => native().xskOpen({ ifindex: 1, queue: 0, map, ring: 1000 })).toThrow(/ring must be a power of two/);
    const b = new Uint8Array(4096);
    expect(() => native().xskRecvBatch(map, b, new Uint32Array([0]), new Uint32Array(1), 2048, 1, new Uint32Array(1))).toThrow(/AF_XDP socket fd \d+: EBADF/);
  });

  it('agrees with the rule on any frame (property)', () => {
    const field = (at: number, values: number[]) => fc.record({ at: fc.constant(at), v: fc.constantFrom(...values) });
    const edits = fc.array(fc.oneof(
      field(12, [0x08, 0x86, 0x81]), field(13, [0x00, 0x06, 0xdd]), field(14, [0x45, 0x46, 0x4f, 0x65, 0x44]),
      field(20, [0x00, 0x40, 0x20, 0x60, 0x01, 0x80]), field(21, [0, 1, 0xff]), field(23, [4, 6, 17, 41, 47]),
      field(33, [28, 29, 27, 0]), field(30, [198, 197, 0xff]),
      fc.record({ at: fc.integer({ min: 0, max: 40 }), v: fc.integer({ min: 0, max: 255 }) }),
    ), { maxLength: 4 });
    fc.assert(fc.property(fc.integer({ min: 14, max: 2048 }), edits, (len, es) => {
      const f = frame(len, LOCAL);
      for (const e of es) if (e.at < f.length) f[e.at] = e.v;
      expect(run(f)).toBe(wanted(f, LOCAL) ? XDP_TX : XDP_PASS);
    }), { numRuns: 3000 });
  });
});
