/**
 * FanTable, the per-packet mapping, against the Fan rule written again in test/helpers/fan-reference.ts
 * (which the decapsulation fuzz also judges by): worked examples from the README and LAB.md, then any fan,
 * any address, any sender.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseFan } from '../../src/fan/parse.js';
import { FanTable, NO_FAN, NO_HOST } from '../../src/fan/table.js';
import { refAddress as a, refFan, refIsLocal, refOwner, refSenderOwns } from '../helpers/fan-reference.js';

describe('the reference mapping', () => {
  it('gives the worked examples', () => {
    // README: -o 250.0.0.0/8 -u 172.30.0.28/16 owns 250.0.28.0/24; 250.0.27.3 goes to 172.30.0.27.
    const readme = refFan('250.0.0.0/8', '172.30.0.28/16');
    expect(refOwner(readme, a('250.0.27.3'))).toBe(a('172.30.0.27'));
    expect(refIsLocal(readme, a('250.0.28.200'))).toBe(true);
    expect(refIsLocal(readme, a('250.0.27.3'))).toBe(false);
    expect(refOwner(readme, a('250.1.2.3'))).toBe(a('172.30.1.2'));
    expect(refOwner(readme, a('251.0.27.3'))).toBe(null); // outside the overlay
    expect(refOwner(readme, a('250.0.0.9'))).toBe(null); // the underlay's network address owns nothing
    expect(refOwner(readme, a('250.255.255.9'))).toBe(null); // nor its broadcast address
    // LAB.md's second width: 250.1.0.0/16 over 198.18.7.0/24 gives 198.18.7.28 the slice 250.1.28.0/24.
    const second = refFan('250.1.0.0/16', '198.18.7.28/24');
    expect(refOwner(second, a('250.1.27.3'))).toBe(a('198.18.7.27'));
    expect(refIsLocal(second, a('250.1.28.3'))).toBe(true);
    // A /20 slice: 10.0.0.0/8 over 192.168.0.0/20 — the 12 host bits follow the overlay's 8.
    const wide = refFan('10.0.0.0/8', '192.168.5.6/20');
    // 10.86.128.1: after the 8 overlay bits come 0101 0110 1000 = 0x568 = 1384 = 5 * 256 + 104.
    expect(refOwner(wide, a('10.86.128.1'))).toBe(a('192.168.5.104'));
    expect(refSenderOwns(wide, a('10.86.143.255'), a('192.168.5.104'))).toBe(true); // the slice 10.86.128.0/20
    expect(refSenderOwns(wide, a('10.86.144.0'), a('192.168.5.104'))).toBe(false);
  });
});

const arbFan = fc
  .record({
    overlayLen: fc.integer({ min: 4, max: 16 }),
    overlayBits: fc.nat(),
    underlayExtra: fc.integer({ min: 2, max: 30 }),
    underlayNet: fc.integer({ min: 11, max: 223 }).filter((n) => n !== 127),
    underlayBits: fc.nat(),
  })
  .map((r) => {
    const underlayLen = Math.max(8, Math.min(32, r.overlayLen + r.underlayExtra));
    // Overlay in 240.0.0.0/4, underlay below 224.0.0.0: never overlapping.
    const overlayNet = 0xf0000000 + (r.overlayBits % 2 ** (r.overlayLen - 4)) * 2 ** (32 - r.overlayLen);
    const hostBits = 32 - underlayLen;
    const hostPart = hostBits >= 2 ? 1 + (r.underlayBits % (2 ** hostBits - 2)) : r.underlayBits % 2 ** hostBits;
    const host = r.underlayNet * 2 ** 24 + (Math.floor((r.underlayBits * 2654435761) % 2 ** 24 / 2 ** hostBits) * 2 ** hostBits) % 2 ** 24 + hostPart;
    const net = Math.floor(host / 2 ** hostBits) * 2 ** hostBits;
    const text = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
    return { overlay: `${text(overlayNet)}/${r.overlayLen}`, underlay: `${text(host)}/${underlayLen}`, net, hostBits };
  });

describe('FanTable agrees with the reference', () => {
  it('for any fan: the owner of any address, whether it is local, and whether a sender owns a source', () => {
    fc.assert(
      fc.property(arbFan, fc.array(fc.tuple(fc.nat(), fc.nat(), fc.boolean()), { minLength: 1, maxLength: 40 }), (f, picks) => {
        const ref = refFan(f.overlay, f.underlay);
        const table = new FanTable([parseFan(f.overlay, f.underlay, {}, () => [])]);
        const span = 2 ** (32 - ref.overlayLen);
        for (const [x, y, inside] of picks) {
          // Mostly addresses in the overlay, some anywhere.
          const d = inside ? ref.overlayNet + (x % span) : x >>> 0;
          const owner = refOwner(ref, d);
          const got = table.underlayHostOf(d);
          expect(got === NO_FAN || got === NO_HOST ? null : got >>> 0, `${d} in ${f.overlay} over ${f.underlay}`).toBe(owner);
          expect(table.isLocal(d)).toBe(refIsLocal(ref, d));
          // A sender: the right owner, a neighbour of it, or anyone.
          const outer = owner !== null && y % 3 === 0 ? owner : owner !== null && y % 3 === 1 ? owner + 1 : f.net + (y % 2 ** f.hostBits);
          expect(table.senderOwns(d, outer)).toBe(refSenderOwns(ref, d, outer));
        }
      }),
      { numRuns: 500 },
    );
  });
});
