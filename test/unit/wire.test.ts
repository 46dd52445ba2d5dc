import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseIPv4 as ip } from '../../src/fan/addr.js';
import { parseFan } from '../../src/fan/parse.js';
import { FanTable } from '../../src/fan/table.js';
import { checksum, updateChecksum, verifies } from '../../src/wire/checksum.js';
import { Drop, DROP_REASONS, dropName } from '../../src/wire/drops.js';
import { decapEcn, ECN_DROP, encapEcn } from '../../src/wire/ecn.js';
import { ACCEPT_INNER_OPTIONS, decapsulate, DEFAULT_POLICY, egressRoute, encapsulate, OUTER_HEADER_LEN, ROUTE_DST, ROUTE_SRC } from '../../src/wire/ipip.js';
import { ECN_CE, ECN_ECT0, ECN_ECT1, ECN_NOT_ECT, putU16, u16, u32 } from '../../src/wire/ipv4.js';
import { ipv4Packet, withHeadroom } from '../helpers/packets.js';
import { refIpv4HeaderVerifies, rfc1071Sum } from '../helpers/inet-checksum.js';

// Host A 198.18.0.28 (slice 250.0.28.0/24) and host B 198.18.0.27 (slice 250.0.27.0/24), as in LAB.md.
const A = ip('198.18.0.28');
const B = ip('198.18.0.27');
const fanA = new FanTable([parseFan('250.0.0.0/8', '198.18.0.28/16', {}, () => [])]);
const fanB = new FanTable([parseFan('250.0.0.0/8', '198.18.0.27/16', {}, () => [])]);

describe('checksum', () => {
  it('matches the RFC 1071 worked example', () => {
    // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded), checksum 220d.
    expect(checksum(Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0, 8)).toBe(0x220d);
  });
  it('verifies what it writes, for any bytes and any odd length', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 2, maxLength: 3000 }), (bytes) => {
        const b = new Uint8Array(bytes.length + 2);
        b.set(bytes, 2);
        putU16(b, 0, checksum(b, 0, b.length));
        expect(verifies(b, 0, b.length)).toBe(true);
        expect(rfc1071Sum(b)).toBe(0xffff); // and by the RFC 1071 reference
      }),
    );
  });
  it('RFC 1624 incremental update equals recomputation', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 0xffff }), (h, w, nv) => {
        fc.pre(w !== 5); // word 5 is the checksum field itself
        const b = Uint8Array.from(h);
        putU16(b, 10, 0);
        putU16(b, 10, checksum(b, 0, 20));
        const old = u16(b, 2 * w);
        putU16(b, 2 * w, nv);
        const inc = updateChecksum(u16(b, 10), old, nv);
        putU16(b, 10, 0);
        const full = checksum(b, 0, 20);
        // 0x0000 and 0xffff are the same value in one's complement.
        expect(inc === full || (inc ^ full) === 0xffff).toBe(true);
      }),
    );
  });
});

describe('ECN, RFC 6040', () => {
  it('encapsulation copies, but an inner CE leaves as ECT(0) as Linux does', () => {
    expect([ECN_NOT_ECT, ECN_ECT1, ECN_ECT0, ECN_CE].map(encapEcn)).toEqual([ECN_NOT_ECT, ECN_ECT1, ECN_ECT0, ECN_ECT0]);
  });
  it('decapsulation follows the table (inner row × outer column)', () => {
    const cols = [ECN_NOT_ECT, ECN_ECT0, ECN_ECT1, ECN_CE];
    const table: Record<number, number[]> = {
      [ECN_NOT_ECT]: [ECN_NOT_ECT, ECN_NOT_ECT, ECN_NOT_ECT, ECN_DROP],
      [ECN_ECT0]: [ECN_ECT0, ECN_ECT0, ECN_ECT1, ECN_CE],
      [ECN_ECT1]: [ECN_ECT1, ECN_ECT1, ECN_ECT1, ECN_CE],
      [ECN_CE]: [ECN_CE, ECN_CE, ECN_CE, ECN_CE],
    };
    for (const [inner, row] of Object.entries(table)) expect(cols.map((o) => decapEcn(Number(inner), o))).toEqual(row);
  });
});

/** A random valid inner packet from a container on A to a container on B. */
const arbInner = fc
  .record({
    s: fc.integer({ min: 2, max: 254 }),
    d: fc.integer({ min: 2, max: 254 }),
    tos: fc.integer({ min: 0, max: 255 }),
    ttl: fc.integer({ min: 1, max: 255 }),
    id: fc.integer({ min: 0, max: 0xffff }),
    df: fc.boolean(),
    proto: fc.constantFrom(1, 6, 17, 47),
    payload: fc.uint8Array({ maxLength: 1460 }),
    optWords: fc.integer({ min: 0, max: 10 }),
  })
  .map((r) =>
    ipv4Packet({
      src: (ip('250.0.28.0') + r.s) >>> 0,
      dst: (ip('250.0.27.0') + r.d) >>> 0,
      tos: r.tos,
      ttl: r.ttl,
      id: r.id,
      df: r.df,
      protocol: r.proto,
      options: new Uint8Array(r.optWords * 4).fill(1), // NOP options
      payload: r.payload,
    }),
  );

describe('encapsulate and decapsulate', () => {
  it('decapsulate(encapsulate(p)) gives back p\'s bytes, and every checksum written verifies', () => {
    fc.assert(
      fc.property(arbInner, fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffff }), (p, ttl, id) => {
        const b = withHeadroom(p);
        const route = new Int32Array(2);
        expect(egressRoute(b, 20, p.length, fanA, route)).toBe(0);
        expect([route[ROUTE_DST] >>> 0, route[ROUTE_SRC] >>> 0]).toEqual([B, A]);
        const o = encapsulate(b, 20, p.length, route[ROUTE_SRC], route[ROUTE_DST], ttl, id);
        expect(o).toBe(0);
        expect(refIpv4HeaderVerifies(b)).toBe(true);
        expect(u16(b, 2)).toBe(p.length + 20);
        expect(b[9]).toBe(4);
        expect(u32(b, 12)).toBe(A);
        expect(u32(b, 16)).toBe(B);
        expect(u16(b, 4)).toBe(id);
        expect(u16(b, 6)).toBe(p[6] & 0x40 ? 0x4000 : 0); // DF copied, nothing else
        expect(b[8]).toBe(ttl === 0 ? p[8] : ttl);
        expect(b[1] >>> 2).toBe(p[1] >>> 2); // DSCP copied
        // ECN (RFC 6040 normal mode, as Linux encapsulates): the outer copies the inner's, except that an
        // inner CE goes out as ECT(0); decapsulation then gives back the inner's own (CE stays CE).
        const innerEcn = p[1] & 3;
        expect(b[1] & 3).toBe(innerEcn === ECN_CE ? ECN_ECT0 : innerEcn);
        const inner = decapsulate(b, 0, b.length, fanB);
        expect(inner).toBe(OUTER_HEADER_LEN);
        expect(b.subarray(inner)).toEqual(p);
      }),
      { numRuns: 3000 },
    );
  });

  it('rewrites the inner ECN on decapsulation and keeps its checksum right', () => {
    const p = ipv4Packet({ src: ip('250.0.28.3'), dst: ip('250.0.27.3'), tos: 0xb8 | ECN_ECT0 });
    const b = withHeadroom(p);
    encapsulate(b, 20, p.length, A, B, 64, 1);
    b[1] = (b[1] & ~3) | ECN_CE; // a router on the underlay marked congestion
    putU16(b, 10, 0);
    putU16(b, 10, checksum(b, 0, 20));
    expect(decapsulate(b, 0, b.length, fanB)).toBe(20);
    expect(b[21]).toBe(0xb8 | ECN_CE);
    expect(refIpv4HeaderVerifies(b, 20)).toBe(true);
  });
});

/** An encapsulated packet from A to B, built correctly, then `mutate`d to trigger one check. */
function encapsulated(inner: Parameters<typeof ipv4Packet>[0], mutate: (b: Uint8Array) => void = () => {}, outerSrc = A, outerDst = B): Uint8Array {
  const p = ipv4Packet(inner);
  const b = withHeadroom(p);
  encapsulate(b, 20, p.length, outerSrc, outerDst, 64, 7);
  mutate(b);
  return b;
}
const ok = { src: ip('250.0.28.3'), dst: ip('250.0.27.3'), payload: new Uint8Array(30) };
const reseal = (b: Uint8Array, off: number) => {
  putU16(b, off + 10, 0);
  putU16(b, off + 10, checksum(b, off, (b[off] & 15) * 4));
};

describe('every drop reason is produced by a packet built to trigger it', () => {
  const rx: Record<string, () => Uint8Array> = {
    'rx-truncated-outer': () => encapsulated(ok).subarray(0, 19),
    'rx-bad-outer-version': () => encapsulated(ok, (b) => (b[0] = 0x65)),
    'rx-bad-outer-ihl': () => encapsulated(ok, (b) => (b[0] = 0x44)),
    'rx-bad-outer-length': () => encapsulated(ok, (b) => putU16(b, 2, u16(b, 2) + 1)),
    'rx-not-ipip': () => encapsulated(ok, (b) => (b[9] = 41)),
    'rx-from-self': () => encapsulated(ok, undefined, B, B),
    'rx-outer-source-not-underlay': () => encapsulated(ok, undefined, ip('192.0.2.1'), B),
    'rx-truncated-inner': () => encapsulated(ok, (b) => putU16(b, 2, 20 + 19)).subarray(0, 39),
    'rx-inner-not-ipv4': () => encapsulated(ok, (b) => (b[20] = 0x65)),
    'rx-bad-inner-ihl': () => encapsulated(ok, (b) => (b[20] = 0x43)),
    'rx-bad-inner-length': () => encapsulated(ok, (b) => (putU16(b, 22, u16(b, 22) - 1), reseal(b, 20))),
    'rx-bad-inner-checksum': () => encapsulated(ok, (b) => (b[31] ^= 0xff)),
    'rx-inner-ttl-zero': () => encapsulated({ ...ok, ttl: 0 }),
    'rx-loop': () => encapsulated({ ...ok, src: A }),
    'rx-loop (inner source is the receiver)': () => encapsulated({ ...ok, src: B }),
    'rx-spoofed-source': () => encapsulated({ ...ok, src: ip('250.0.66.3') }),
    'rx-wrong-outer-destination': () => encapsulated(ok, undefined, A, ip('198.18.0.99')),
    'rx-not-local': () => encapsulated({ ...ok, dst: ip('250.0.66.3') }),
    'rx-foreign-overlay': () => encapsulated({ ...ok, dst: ip('251.0.27.3') }),
    'rx-ecn-ce-not-ect': () => encapsulated(ok, (b) => (b[1] |= 3)),
  };
  for (const [name, build] of Object.entries(rx)) {
    it(name, () => {
      const b = build();
      expect(dropName(-decapsulate(b, 0, b.length, fanB))).toBe(name.split(' ')[0]);
    });
  }
  it('rx-inner-fragment and rx-inner-options, when the policy refuses them (the kernel accepts both)', () => {
    const frag = encapsulated({ ...ok, mf: true });
    expect(decapsulate(frag, 0, frag.length, fanB)).toBe(20);
    expect(dropName(-decapsulate(frag, 0, frag.length, fanB, ACCEPT_INNER_OPTIONS))).toBe('rx-inner-fragment');
    const opts = encapsulated({ ...ok, options: new Uint8Array(4).fill(1) });
    expect(decapsulate(opts, 0, opts.length, fanB)).toBe(20);
    expect(dropName(-decapsulate(opts, 0, opts.length, fanB, DEFAULT_POLICY & ~ACCEPT_INNER_OPTIONS))).toBe('rx-inner-options');
  });

  const tx: Record<string, () => Uint8Array> = {
    'tx-malformed': () => ipv4Packet(ok).subarray(0, 19),
    'tx-not-ipv4': () => Uint8Array.from([0x60, ...new Uint8Array(39)]),
    'tx-no-fan': () => ipv4Packet({ ...ok, dst: ip('198.51.100.7') }),
    'tx-no-underlay-host': () => ipv4Packet({ ...ok, dst: ip('250.0.0.9') }),
    'tx-local-destination': () => ipv4Packet({ ...ok, dst: ip('250.0.28.9') }),
    'tx-loop': () => ipv4Packet({ ...ok, src: A }),
  };
  for (const [name, build] of Object.entries(tx)) {
    it(name, () => {
      const p = build();
      expect(dropName(egressRoute(p, 0, p.length, fanA, new Int32Array(2)))).toBe(name);
    });
  }
  it('tx-malformed also for a total length that disagrees', () => {
    const p = ipv4Packet(ok);
    putU16(p, 2, p.length + 4);
    expect(egressRoute(p, 0, p.length, fanA, new Int32Array(2))).toBe(Drop['tx-malformed']);
  });
  it('covers every reason except those counted outside the codec', () => {
    // The VXLAN type's own reasons are covered by test/unit/vxlan.test.ts.
    const vxlan = ['tx-not-ipv4-or-arp', 'rx-vxlan-truncated', 'rx-vxlan-flags', 'rx-vxlan-vni', 'rx-vxlan-ethertype', 'rx-vxlan-bad-mac'];
    const outside = ['tx-send-error', 'rx-write-error', 'rx-inner-fragment', 'rx-inner-options', ...vxlan];
    const covered = new Set([...Object.keys(rx), ...Object.keys(tx), ...outside]);
    expect(DROP_REASONS.map(([n]) => n).filter((n) => !covered.has(n))).toEqual([]);
  });
});
