/**
 * TAP offloads (the VXLAN type): the TUN device's segmentation and coalescing generalised to Ethernet
 * frames, a 14-byte link header in front of each IPv4 packet. Frames are built here field by field; the
 * virtio-net offsets must count from the frame's start, every segment must carry the frame's link header,
 * and frames of different MACs or of another EtherType must never be joined.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PacketList } from '../../src/io/batch.js';
import { Coalescer } from '../../src/tun/coalesce.js';
import { Arena, segment, splitFrame } from '../../src/tun/segment.js';
import { checksum } from '../../src/wire/checksum.js';
import { putU16, putU32, u16 } from '../../src/wire/ipv4.js';
import { fillTcpChecksum, partialTcpChecksum, pseudoHeaderSum, tcpChecksumVerifies, TCP_ACK, TCP_PSH } from '../../src/wire/tcp.js';
import { udpDatagram, bytesFrom } from '../helpers/packets.js';
import {
  putVnetHdr, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_GSO_TCPV4, VNET_HDR_LEN, vnetCsumOffset, vnetCsumStart, vnetFlags, vnetGsoSize, vnetGsoType,
  vnetHdrLen,
} from '../../src/wire/virtio.js';

const L2 = 14;
const MAC_A = [2, 0, 0, 0, 0, 0x28];
const MAC_B = [2, 0, 0, 0, 0, 0x27];

/** An Ethernet frame around an IPv4 TCP segment (20-byte headers, DF, TTL 64). */
function tcpFrame(o: { seq: number; id: number; payload: Uint8Array; flags?: number; partial?: boolean; dst?: number[]; src?: number[] }): Uint8Array {
  const ipLen = 40 + o.payload.length;
  const f = new Uint8Array(L2 + ipLen);
  f.set(o.dst ?? MAC_B, 0);
  f.set(o.src ?? MAC_A, 6);
  f[12] = 0x08;
  const ip = L2;
  f[ip] = 0x45;
  putU16(f, ip + 2, ipLen);
  putU16(f, ip + 4, o.id);
  putU16(f, ip + 6, 0x4000);
  f[ip + 8] = 64;
  f[ip + 9] = 6;
  putU32(f, ip + 12, 0xfa001c03); // 250.0.28.3
  putU32(f, ip + 16, 0xfa001b03); // 250.0.27.3
  putU16(f, ip + 10, checksum(f, ip, 20));
  const t = ip + 20;
  putU16(f, t, 40000);
  putU16(f, t + 2, 5201);
  putU32(f, t + 4, o.seq >>> 0);
  putU32(f, t + 8, 12345);
  f[t + 12] = 5 << 4;
  f[t + 13] = o.flags ?? TCP_ACK;
  putU16(f, t + 14, 512);
  f.set(o.payload, t + 20);
  if (o.partial) putU16(f, t + 16, partialTcpChecksum(f, ip, ipLen));
  else fillTcpChecksum(f, ip, ipLen);
  return f;
}

/** A super-frame as a TAP reader gets it: virtio-net header (offsets from the frame's start), then the frame. */
function superFrame(payload: Uint8Array, gso: number, seq = 1000, id = 7): Uint8Array {
  const f = tcpFrame({ seq, id, payload, partial: true });
  const v = new Uint8Array(VNET_HDR_LEN + f.length);
  putVnetHdr(v, 0, VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, L2 + 40, gso, L2 + 20, 16);
  v.set(f, VNET_HDR_LEN);
  return v;
}

const SLOT = 65536 + 128;
/** Frames laid out in slots as a receive batch has them after decapsulation (40 bytes free in front). */
function inSlots(frames: Uint8Array[]) {
  const b = new Uint8Array(new SharedArrayBuffer(SLOT * frames.length));
  const list = new PacketList(b, frames.length);
  frames.forEach((p, k) => {
    b.set(p, k * SLOT + 40);
    list.push(k * SLOT + 40, p.length);
  });
  return { b, list };
}

const IN = 64;
const ARENA = 80 * 1024;
function cutFrame(sup: Uint8Array, headroom = 8) {
  const b = new Uint8Array(new SharedArrayBuffer(ARENA + (4 << 20)));
  b.set(sup, IN);
  const out = new PacketList(b, 4096);
  const n = segment(b, IN, sup.length, out, new Arena(ARENA, b.length), headroom, L2);
  return { b, out, n, frames: [...Array(Math.max(n, 0)).keys()].map((i) => Uint8Array.from(out.packet(i))) };
}

describe('TAP offloads: segment and coalesce Ethernet frames', () => {
  it('cuts a super-frame into frames, each with the link header and room in front; coalescing them gives the super-frame back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 1436 }), fc.integer({ min: 2, max: 44 }), fc.integer({ min: 1, max: 0x7fffffff }), (gso, segs, seed) => {
        const payload = bytesFrom(seed, Math.min(gso * segs - (seed % gso), 65535 - 40));
        fc.pre(payload.length > gso);
        const sup = superFrame(payload, gso);
        const { out, n, frames } = cutFrame(sup);
        expect(n).toBe(Math.ceil(payload.length / gso));
        for (let i = 0; i < n; i++) {
          const f = frames[i];
          expect([...f.subarray(0, 14)]).toEqual([...sup.subarray(VNET_HDR_LEN, VNET_HDR_LEN + 14)]);
          expect(u16(f, L2 + 2)).toBe(f.length - L2);
          expect(tcpChecksumVerifies(f, L2, f.length - L2)).toBe(true);
          expect(out.offsets[i] >= ARENA + 8 || n === 1).toBe(true);
        }
        const r = inSlots(frames);
        const c = new Coalescer(frames.length);
        expect(c.run(r.b, r.list, SLOT, 1450, L2)).toBe(1);
        const back = Uint8Array.from(r.list.packet(0));
        expect(vnetGsoType(back, 0)).toBe(VNET_GSO_TCPV4);
        expect(vnetGsoSize(back, 0)).toBe(gso);
        expect(vnetCsumStart(back, 0)).toBe(L2 + 20);
        expect(vnetHdrLen(back, 0)).toBe(L2 + 40);
        expect(back).toEqual(sup);
      }),
      { numRuns: 60 },
    );
  });

  it('never joins frames whose MAC addresses differ; passes ARP and other EtherTypes as they are', () => {
    const p = bytesFrom(3, 2000);
    const seg = (k: number, o: { dst?: number[] } = {}) => tcpFrame({ seq: 1000 + k * 1000, id: 7 + k, payload: p.subarray(k * 1000, k * 1000 + 1000), ...o });
    const arp = Uint8Array.from([...MAC_B, ...MAC_A, 0x08, 0x06, ...new Array(28).fill(1)]);
    const frames = [seg(0), seg(1, { dst: [2, 0, 0, 0, 0, 0x99] }), arp];
    const r = inSlots(frames);
    const c = new Coalescer(frames.length);
    expect(c.run(r.b, r.list, SLOT, 1450, L2)).toBe(3);
    for (let i = 0; i < 3; i++) {
      const w = Uint8Array.from(r.list.packet(i));
      expect(vnetFlags(w, 0)).toBe(0);
      expect(w.subarray(VNET_HDR_LEN)).toEqual(frames[i]);
    }
    expect(c.joined).toBe(0);
    // The same two segments with one MAC pair do join.
    const same = inSlots([seg(0), seg(1)]);
    expect(new Coalescer(2).run(same.b, same.list, SLOT, 1450, L2)).toBe(1);
  });

  it('a partial-checksum super-frame from a kernel peer goes to the TAP with NEEDS_CSUM and GSO, offsets from the frame start', () => {
    const f = tcpFrame({ seq: 1, id: 1, payload: bytesFrom(9, 20000), partial: true, flags: TCP_ACK | TCP_PSH });
    const r = inSlots([f]);
    expect(new Coalescer(1).run(r.b, r.list, SLOT, 1450, L2)).toBe(1);
    const w = Uint8Array.from(r.list.packet(0));
    expect([vnetFlags(w, 0), vnetGsoType(w, 0), vnetGsoSize(w, 0), vnetCsumStart(w, 0), vnetCsumOffset(w, 0)]).toEqual([VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, 1450 - 40, L2 + 20, 16]);
    expect(w.subarray(VNET_HDR_LEN)).toEqual(f);
  });

  it('finishes a NEEDS_CSUM UDP frame at the offsets the TAP gave (from the frame start)', () => {
    const u = udpDatagram(0xfa001c03, 0xfa001b03, 1, 2, bytesFrom(5, 300));
    const want = u16(u, 6);
    const frame = new Uint8Array(L2 + 20 + u.length);
    frame[12] = 0x08;
    frame[L2] = 0x45;
    putU16(frame, L2 + 2, 20 + u.length);
    frame[L2 + 8] = 64;
    frame[L2 + 9] = 17;
    putU32(frame, L2 + 12, 0xfa001c03);
    putU32(frame, L2 + 16, 0xfa001b03);
    frame.set(u, L2 + 20);
    // The field holds the pseudo-header sum, as a partial checksum does.
    putU16(frame, L2 + 20 + 6, pseudoHeaderSum(frame, L2, 17, u.length));
    const v = new Uint8Array(VNET_HDR_LEN + frame.length);
    putVnetHdr(v, 0, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, 0, 0, L2 + 20, 6);
    v.set(frame, VNET_HDR_LEN);
    const { frames, n } = cutFrame(v);
    expect(n).toBe(1);
    expect(u16(frames[0], L2 + 20 + 6)).toBe(want);
  });

  it('splitFrame refuses what is not TCP/IPv4 and leaves the list as it was', () => {
    const b = new Uint8Array(4096);
    const out = new PacketList(b, 8);
    b[12] = 0x08;
    b[14] = 0x45;
    putU16(b, 16, 100);
    b[23] = 17;
    expect(splitFrame(b, 0, 114, 50, out, new Arena(1024, 4096), 8, L2)).toBeLessThan(0);
    expect(out.count).toBe(0);
  });
});

/**
 * A super-frame cut back to back (UDP GSO's layout), each segment behind an 8-byte VXLAN header, glued in
 * one slot as UDP GRO hands them over; the list holds each frame (offset past its VXLAN header).
 */
function glued(sup: Uint8Array, slotAt = 32) {
  const { b: cb, out, n } = cutPacked(sup);
  const first = out.offsets[0] - 8;
  const last = out.offsets[n - 1] + out.lengths[n - 1];
  const b = new Uint8Array(new SharedArrayBuffer(SLOT * 2));
  b.set(cb.subarray(first, last), slotAt);
  const list = new PacketList(b, 256);
  for (let i = 0; i < n; i++) list.push(slotAt + out.offsets[i] - first, out.lengths[i]);
  return { b, list, n };
}

function cutPacked(sup: Uint8Array) {
  const b = new Uint8Array(new SharedArrayBuffer(ARENA + (4 << 20)));
  b.set(sup, IN);
  const out = new PacketList(b, 4096);
  const n = segment(b, IN, sup.length, out, new Arena(ARENA, b.length), 8, L2, true);
  return { b, out, n };
}

describe('TAP offloads: UDP GSO and GRO layouts', () => {
  it('a packed cut lays the segments back to back, 8 bytes apart: one run of equal-size datagrams, the last shorter', () => {
    const sup = superFrame(bytesFrom(11, 10_000), 1398);
    const { out, n } = cutPacked(sup);
    expect(n).toBe(Math.ceil(10_000 / 1398));
    for (let i = 1; i < n; i++) expect(out.offsets[i]).toBe(out.offsets[i - 1] + out.lengths[i - 1] + 8);
    for (let i = 0; i < n - 1; i++) expect(out.lengths[i]).toBe(L2 + 40 + 1398);
    expect(out.lengths[n - 1]).toBe(L2 + 40 + (10_000 % 1398));
  });

  it('coalesces datagrams glued in one slot back into the super-frame', () => {
    fc.assert(
      fc.property(fc.integer({ min: 100, max: 1398 }), fc.integer({ min: 2, max: 40 }), fc.integer({ min: 1, max: 0x7fffffff }), (gso, segs, seed) => {
        const payload = bytesFrom(seed, Math.min(gso * segs - (seed % gso), 60_000));
        fc.pre(payload.length > gso);
        const sup = superFrame(payload, gso);
        const g = glued(sup);
        const spare = new Arena(SLOT, SLOT * 2);
        const c = new Coalescer(256);
        expect(c.run(g.b, g.list, SLOT, 1450, L2, spare)).toBe(1);
        expect(Uint8Array.from(g.list.packet(0))).toEqual(sup);
        expect(spare.cursor).toBe(SLOT); // nothing had to move
      }),
      { numRuns: 40 },
    );
  });

  it('datagrams of two flows glued in one slot: each frame comes out whole, none overwritten by its neighbour\'s header', () => {
    // X0 Y0 X1 Y1 …: alternating flows (another container pair behind the same two hosts), 1000-byte payloads.
    const p = bytesFrom(21, 8000);
    const frames: Uint8Array[] = [];
    for (let k = 0; k < 8; k++) {
      const flow = k % 2;
      const i = k >> 1;
      const f = tcpFrame({ seq: 1000 + i * 1000, id: 7 + i, payload: p.subarray(k * 1000, k * 1000 + 1000), src: flow ? [2, 0, 0, 0, 0, 0x33] : MAC_A });
      frames.push(f);
    }
    const b = new Uint8Array(new SharedArrayBuffer(SLOT * 2));
    const list = new PacketList(b, 16);
    let at = 32;
    for (const f of frames) {
      b.fill(0xee, at, at + 8); // a VXLAN header's place
      b.set(f, at + 8);
      list.push(at + 8, f.length);
      at += 8 + f.length;
    }
    const spare = new Arena(SLOT, SLOT * 2);
    const c = new Coalescer(16);
    const n = c.run(b, list, SLOT, 1450, L2, spare);
    // Each flow alternates with the other, so nothing joins; every frame is written as it came.
    expect(n).toBe(8);
    for (let i = 0; i < n; i++) expect(Uint8Array.from(list.packet(i)).subarray(VNET_HDR_LEN)).toEqual(frames[i]);
    expect(spare.cursor).toBeGreaterThan(SLOT);
  });
});
