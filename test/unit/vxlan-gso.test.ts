/**
 * TX GSO's VXLAN form (src/underlay/vxlan-frame.ts): the frame written in front of a TCP super-frame read
 * from the TAP, and the UDP checksum it carries for the kernel to copy onto every segment. The kernel's
 * cut is played here by the user-space cut (splitTcp makes the segments the kernel would: same IDs,
 * sequence numbers, flags, checksums); every datagram that results must then carry a UDP checksum that
 * verifies over its bytes, and the tail left out of the frame must continue the segments exactly.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PacketList } from '../../src/io/batch.js';
import { Arena, splitTcp } from '../../src/tun/segment.js';
import { gsoFixProgram } from '../../src/underlay/tx-gso.js';
import { VXLAN_FRAME_HEADROOM, VxlanCut, VxlanOuter, vxlanFrame, vxlanPlain, vxlanTail } from '../../src/underlay/vxlan-frame.js';
import { checksum, sum16 } from '../../src/wire/checksum.js';
import { putU16, putU32, u16, u32 } from '../../src/wire/ipv4.js';
import { partialTcpChecksum, tcpChecksumVerifies, TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH } from '../../src/wire/tcp.js';
import { putVnetHdr, putVnetNone, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_HDR_LEN, vnetCsumOffset, vnetCsumStart, vnetFlags, vnetGsoSize, vnetGsoType } from '../../src/wire/virtio.js';
import { bytesFrom } from '../helpers/packets.js';

const SRC = 0xc612001c | 0; // 198.18.0.28
const DST = 0xc612001b | 0; // 198.18.0.27
const PORT = 8472;
const VNI = 16384000;
const FLOW_PORT = 45678;

/** The outer headers every frame here gets: A to B, the flow's source port, first outer ID `id`. */
function outer(id: number): VxlanOuter {
  const o = new VxlanOuter();
  Object.assign(o, { dstHi: 0x02000000, dstLo: 0x1b, srcHi: 0x02000000, srcLo: 0x1c, src: SRC, dst: DST, port: PORT, srcPort: FLOW_PORT, vni: VNI, id });
  return o;
}

/**
 * What the kernel (or a NIC) does with a frame whose virtio-net header says NEEDS_CSUM: sums from csum_start
 * (counted from the outer Ethernet header) to the end, the field (holding the pseudo-header sum) included,
 * and stores the complement there (0 as 0xffff). Returns the outer IPv4 header's offset.
 */
function kernelFill(b: Uint8Array, cut: VxlanCut): number {
  const eth = cut.at + VNET_HDR_LEN;
  if ((vnetFlags(b, cut.at) & VNET_F_NEEDS_CSUM) !== 0) {
    const start = eth + vnetCsumStart(b, cut.at);
    const field = start + vnetCsumOffset(b, cut.at);
    const c = ~sum16(b, start, cut.at + cut.length - start) & 0xffff;
    putU16(b, field, c === 0 ? 0xffff : c);
  }
  return eth + 14;
}

/** An inner super-frame as the TAP hands it over: Ethernet, IPv4 (with `opt` option bytes), TCP with a partial checksum. */
function superFrame(payload: Uint8Array, flags: number, opt = 0, tcpOpt = 12): Uint8Array {
  const ihl = 20 + opt;
  const thl = 20 + tcpOpt;
  const ipLen = ihl + thl + payload.length;
  const f = new Uint8Array(14 + ipLen);
  f.set([2, 0, 0, 0, 0, 0x27, 2, 0, 0, 0, 0, 0x28, 0x08, 0x00]);
  const ip = 14;
  f[ip] = 0x40 | (ihl >>> 2);
  putU16(f, ip + 2, ipLen);
  putU16(f, ip + 4, 0xfff0); // the inner IDs wrap
  putU16(f, ip + 6, 0x4000);
  f[ip + 8] = 64;
  f[ip + 9] = 6;
  putU32(f, ip + 12, 0xfa001c03);
  putU32(f, ip + 16, 0xfa001b03);
  f.fill(1, ip + 20, ip + ihl);
  putU16(f, ip + 10, checksum(f, ip, ihl));
  const t = ip + ihl;
  putU16(f, t, 40000);
  putU16(f, t + 2, 5201);
  putU32(f, t + 4, 0xfffff000); // the sequence numbers wrap
  putU32(f, t + 8, 777);
  f[t + 12] = (thl >>> 2) << 4;
  f[t + 13] = flags;
  putU16(f, t + 14, 1000);
  f.fill(1, t + 20, t + thl);
  f.set(payload, t + thl);
  putU16(f, t + 16, partialTcpChecksum(f, ip, ipLen));
  return f;
}

/** Fills the right TCP checksum into the frame at b[f] (a complete packet, as a TAP gives one without NEEDS_CSUM). */
function fillTcp(b: Uint8Array, f: number): void {
  const ip = f + 14;
  const len = u16(b, ip + 2);
  putU16(b, ip + 20 + 16, 0);
  const s = sum16(b, ip + 12, 8) + 6 + (len - 20) + sum16(b, ip + 20, len - 20);
  putU16(b, ip + 20 + 16, ~((s % 0xffff) || 0xffff) & 0xffff);
}

/** Whether the UDP datagram (IPv4 header at o) verifies: pseudo-header + header + payload sum to 0xffff. */
function udpVerifies(b: Uint8Array, o: number): boolean {
  const ihl = (b[o] & 15) * 4;
  const len = u16(b, o + 2) - ihl;
  let s = sum16(b, o + 12, 8) + 17 + len + sum16(b, o + ihl, len);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s === 0xffff;
}

/**
 * The datagrams the kernel makes of the frame at b[cut.at, + cut.length): the inner packet cut at gso_size
 * (splitTcp, as tcp_gso_segment does), each behind a copy of the frame's outer headers with its own lengths,
 * outer ID and IPv4 checksum; the UDP checksum field is copied as the frame has it.
 */
function kernelCut(b: Uint8Array, cut: VxlanCut, segs: number) {
  const outer = cut.at + VNET_HDR_LEN + 14; // the outer IPv4 header
  const inner = outer + 20 + 8 + 8 + 14;
  const work = new Uint8Array(1 << 20);
  work.set(b.subarray(cut.at, cut.at + cut.length));
  const base = inner - cut.at;
  const out = new PacketList(work, 256);
  const n = splitTcp(work, base, cut.length - base, vnetGsoSize(b, cut.at), out, new Arena(200_000, work.length), 64);
  expect(n).toBe(segs);
  const id0 = u16(b, outer + 4);
  return [...Array(n).keys()].map((i) => {
    const seg = work.subarray(out.offsets[i], out.offsets[i] + out.lengths[i]);
    const d = new Uint8Array(50 + seg.length);
    d.set(b.subarray(outer, inner));
    d.set(seg, 50);
    putU16(d, 2, d.length);
    putU16(d, 4, (id0 + i) & 0xffff);
    putU16(d, 10, 0);
    putU16(d, 10, checksum(d, 0, 20));
    putU16(d, 24, d.length - 20);
    return d;
  });
}

describe('TX GSO, the VXLAN form', () => {
  const arb = fc.record({
    gso: fc.integer({ min: 200, max: 1398 }),
    segs: fc.integer({ min: 2, max: 40 }),
    rest: fc.integer({ min: 0, max: 1397 }),
    opt: fc.constantFrom(0, 4, 8),
    flags: fc.constantFrom(TCP_ACK, TCP_ACK | TCP_PSH, TCP_ACK | TCP_CWR | TCP_PSH, TCP_ACK | TCP_FIN),
    seed: fc.integer({ min: 1, max: 0x7fffffff }),
  });

  it('every datagram the kernel cuts from the frame carries a UDP checksum that verifies; the tail continues the segments and verifies too', () => {
    fc.assert(
      fc.property(arb, ({ gso, segs, rest, opt, flags, seed }) => {
        const r = rest % gso;
        const payload = bytesFrom(seed, segs * gso + r);
        const sup = superFrame(payload, flags, opt);
        const b = new Uint8Array(200_000);
        const f = 1000;
        b.set(sup, f);
        const cut = new VxlanCut();
        const n = vxlanFrame(b, f, sup.length, gso, false, outer(0xfffe), cut);
        expect(n).toBe(segs);
        expect(cut.at).toBe(f - VXLAN_FRAME_HEADROOM);
        expect([vnetFlags(b, cut.at), vnetGsoType(b, cut.at), vnetGsoSize(b, cut.at), vnetCsumStart(b, cut.at)]).toEqual([VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, gso, 14 + 50 + 20 + opt]);
        const dgrams = kernelCut(b, cut, segs);
        for (const d of dgrams) {
          expect(d[6] & 0x40, 'outer DF').toBe(0);
          expect([u16(d, 20), u16(d, 22)], 'UDP ports').toEqual([FLOW_PORT, PORT]);
          expect(udpVerifies(d, 0), 'UDP checksum of a segment').toBe(true);
          expect(tcpChecksumVerifies(d, 50, d.length - 50)).toBe(true);
        }
        const lastFlags = dgrams[segs - 1][50 + 20 + opt + 13];
        expect(cut.tail).toBe(r);
        if (r === 0) {
          expect(lastFlags & (TCP_PSH | TCP_FIN)).toBe(flags & (TCP_PSH | TCP_FIN));
          return;
        }
        expect(lastFlags & (TCP_PSH | TCP_FIN), 'PSH and FIN wait for the tail').toBe(0);
        const sentAt = cut.at;
        const sent = Uint8Array.from(b.subarray(cut.at, cut.at + cut.length));
        vxlanTail(b, cut, outer((0xfffe + segs) & 0xffff));
        expect(vnetFlags(b, cut.at)).toBe(0);
        const o = cut.at + VNET_HDR_LEN + 14;
        const d = b.subarray(o, cut.at + cut.length);
        expect(udpVerifies(d, 0), 'UDP checksum of the tail').toBe(true);
        expect(u16(d, 20), 'the tail\'s source port').toBe(FLOW_PORT);
        const ip = 50;
        expect(checksum(d, ip, 20 + opt)).toBe(0);
        expect(tcpChecksumVerifies(d, ip, d.length - ip)).toBe(true);
        expect(u16(d, ip + 4)).toBe((0xfff0 + segs) & 0xffff);
        expect(u32(d, ip + 20 + opt + 4)).toBe((0xfffff000 + segs * gso) >>> 0);
        expect(d[ip + 20 + opt + 13]).toBe(flags & ~TCP_CWR);
        expect(d.subarray(d.length - r)).toEqual(payload.subarray(segs * gso));
        expect(u16(d, 4)).toBe((0xfffe + segs) & 0xffff);
        // The tail was written over the frame's last bytes only: the frame before them is intact.
        expect(cut.at).toBeGreaterThan(sentAt);
        expect(b.subarray(sentAt, cut.at)).toEqual(sent.subarray(0, cut.at - sentAt));
      }),
      { numRuns: 120 },
    );
  });

  it('one full segment or less (and a tail): a frame without GSO, its TCP checksum left to the kernel, its UDP checksum right once that is in', () => {
    fc.assert(
      fc.property(fc.integer({ min: 200, max: 1398 }), fc.integer({ min: 0, max: 2795 }), fc.integer({ min: 1, max: 0x7fffffff }), (gso, size, seed) => {
        const payload = bytesFrom(seed, size % (2 * gso));
        const sup = superFrame(payload, TCP_ACK | TCP_PSH);
        const b = new Uint8Array(20_000);
        const f = 1000;
        b.set(sup, f);
        const cut = new VxlanCut();
        expect(vxlanFrame(b, f, sup.length, gso, false, outer(7), cut)).toBe(1);
        expect([vnetFlags(b, cut.at), vnetGsoType(b, cut.at), vnetGsoSize(b, cut.at)]).toEqual([VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0]);
        const full = Math.min(payload.length, gso);
        expect(cut.tail).toBe(payload.length - full);
        const o = kernelFill(b, cut);
        const d = b.subarray(o, cut.at + cut.length);
        expect(d.length).toBe(50 + 20 + 32 + full);
        expect(udpVerifies(d, 0), 'UDP checksum').toBe(true);
        expect(tcpChecksumVerifies(d, 50, d.length - 50)).toBe(true);
        if (cut.tail === 0) return;
        vxlanTail(b, cut, outer(8));
        const t = b.subarray(cut.at + VNET_HDR_LEN + 14, cut.at + cut.length);
        expect(udpVerifies(t, 0), 'UDP checksum of the tail').toBe(true);
        expect(t.subarray(t.length - cut.tail)).toEqual(payload.subarray(full));
      }),
      { numRuns: 100 },
    );
  });

  it('a frame without GSO: one datagram; the kernel fills the UDP checksum, or the inner one the TAP left partial (the UDP one then right from the headers)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1400 }), fc.boolean(), fc.integer({ min: 1, max: 0x7fffffff }), (size, partial, seed) => {
        const payload = bytesFrom(seed, size);
        const sup = superFrame(payload, TCP_ACK);
        const b = new Uint8Array(20_000);
        const f = 1000;
        b.set(sup, f);
        const v = f - VNET_HDR_LEN;
        if (partial) putVnetHdr(b, v, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0, 0, 14 + 20, 16); // as the TAP gives it
        else {
          fillTcp(b, f);
          putVnetNone(b, v);
        }
        const before = Uint8Array.from(b.subarray(f, f + sup.length));
        const cut = new VxlanCut();
        expect(vxlanPlain(b, f, sup.length, outer(3), cut)).toBe(1);
        expect(cut.at).toBe(f - VXLAN_FRAME_HEADROOM);
        expect(cut.length).toBe(sup.length + VXLAN_FRAME_HEADROOM);
        expect(vnetCsumStart(b, cut.at)).toBe(partial ? 14 + 50 + 20 : 14 + 20);
        const o = kernelFill(b, cut);
        const d = b.subarray(o, cut.at + cut.length);
        expect(d[6] & 0x40, 'outer DF').toBe(0);
        expect(checksum(d, 0, 20)).toBe(0);
        expect([u16(d, 20), u16(d, 22), u16(d, 24)]).toEqual([FLOW_PORT, PORT, 8 + 8 + sup.length]);
        expect(udpVerifies(d, 0), 'UDP checksum').toBe(true);
        expect(tcpChecksumVerifies(d, 50, d.length - 50)).toBe(true);
        // The inner frame is unchanged but for the checksum the kernel filled in.
        const inner = Uint8Array.from(d.subarray(36));
        if (partial) putU16(inner, 14 + 20 + 16, u16(before, 14 + 20 + 16));
        expect(inner).toEqual(before);
      }),
      { numRuns: 100 },
    );
    // UDP with a partial checksum (as a container's stack hands it over a veth): finished here, as the
    // socket's cut would, the UDP checksum then the kernel's.
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1400 }), fc.integer({ min: 1, max: 0x7fffffff }), (size, seed) => {
        const b = new Uint8Array(4000);
        const f = 1000;
        const ip = f + 14;
        b.set([2, 0, 0, 0, 0, 0x27, 2, 0, 0, 0, 0, 0x28, 0x08, 0x00], f);
        b.set([0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0, 250, 0, 28, 3, 250, 0, 27, 3], ip);
        putU16(b, ip + 2, 28 + size);
        putU16(b, ip + 10, checksum(b, ip, 20));
        putU16(b, ip + 20, 40000);
        putU16(b, ip + 22, 9999);
        putU16(b, ip + 24, 8 + size);
        b.set(bytesFrom(seed, size), ip + 28);
        let p = sum16(b, ip + 12, 8) + 17 + 8 + size;
        while (p > 0xffff) p = (p & 0xffff) + (p >>> 16);
        putU16(b, ip + 26, p); // the pseudo-header sum: partial
        putVnetHdr(b, f - VNET_HDR_LEN, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0, 0, 14 + 20, 6);
        const cut = new VxlanCut();
        expect(vxlanPlain(b, f, 42 + size, outer(5), cut)).toBe(1);
        expect(vnetCsumStart(b, cut.at)).toBe(14 + 20);
        const u = sum16(b, ip + 12, 8) + 17 + 8 + size + sum16(b, ip + 20, 8 + size);
        expect(u % 0xffff, 'the inner UDP checksum, finished').toBe(0);
        expect(u16(b, ip + 26)).not.toBe(0);
        const d = b.subarray(kernelFill(b, cut), cut.at + cut.length);
        expect(udpVerifies(d, 0), 'the outer UDP checksum').toBe(true);
      }),
      { numRuns: 100 },
    );
    // ARP: the whole datagram's checksum is the kernel's.
    const b = new Uint8Array(2000);
    const arp = [2, 0, 0, 0, 0, 0x27, 2, 0, 0, 0, 0, 0x28, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 0x28, 250, 0, 28, 3, 0, 0, 0, 0, 0, 0, 250, 0, 27, 1];
    b.set(arp, 1000);
    const cut = new VxlanCut();
    expect(vxlanPlain(b, 1000, arp.length, outer(4), cut)).toBe(1);
    const d = b.subarray(kernelFill(b, cut), cut.at + cut.length);
    expect(udpVerifies(d, 0)).toBe(true);
    expect([...d.subarray(36)]).toEqual(arp);
  });

  it('refuses, writing nothing, what cannot go whole: a full checksum, not IPv4', () => {
    const b = new Uint8Array(100_000);
    const cut = new VxlanCut();
    const tryFrame = (sup: Uint8Array, gso: number) => {
      b.fill(0xaa);
      b.set(sup, 1000);
      const before = Uint8Array.from(b);
      const n = vxlanFrame(b, 1000, sup.length, gso, false, outer(1), cut);
      if (n === 0) expect(b).toEqual(before);
      return n;
    };
    expect(tryFrame(superFrame(bytesFrom(1, 2000), TCP_ACK), 1398)).toBe(1); // one full segment and a rest: no GSO
    const full = superFrame(bytesFrom(2, 5000), TCP_ACK);
    putU16(full, 14 + 20 + 16, 0x1234);
    expect(tryFrame(full, 1000)).toBe(0);
    const arp = superFrame(bytesFrom(3, 5000), TCP_ACK);
    arp[13] = 0x06;
    expect(tryFrame(arp, 1000)).toBe(0);
    expect(tryFrame(superFrame(bytesFrom(4, 5000), TCP_ACK), 1000)).toBe(5);
  });

  it('builds the TC program with the UDP-tunnel flags: ENCAP_L3_IPV4 | ENCAP_L4_UDP | ENCAP_L2_ETH | FIXED_GSO, ENCAP_L2(14), 50 bytes', () => {
    const p = gsoFixProgram(2 ** 40 + 7, 'vxlan');
    const v = new DataView(p.buffer);
    let flags = false;
    let len50 = false;
    for (let i = 0; i + 16 <= p.length; i += 8) {
      if (p[i] === 0x18 && (p[i + 1] & 15) === 4) flags ||= v.getUint32(i + 4, true) === 0x53 && v.getUint32(i + 12, true) === 14 << 24;
      if (p[i] === 0xb7 && (p[i + 1] & 15) === 4) len50 ||= v.getInt32(i + 4, true) === 50;
    }
    expect(flags).toBe(true);
    expect(len50).toBe(true);
    expect(gsoFixProgram(7, 'ipip')).not.toEqual(gsoFixProgram(7, 'vxlan'));
  });
});
