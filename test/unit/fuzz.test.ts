/**
 * Fuzzing decapsulation: at least 1,000,000 generated and mutated packets, each either decapsulated into a
 * packet that satisfies every promise (inner IPv4 header valid, inner source owned by the outer source,
 * inner destination local) or dropped with a known reason — never an exception, never an out-of-range
 * result. The promises are judged here from the Fan's definition and RFC 791/1071, not with the FanTable
 * and checksum code under test. Bounded in count; how fast it goes is not a test's business.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseIPv4 as ip } from '../../src/fan/addr.js';
import { parseFan } from '../../src/fan/parse.js';
import { FanTable } from '../../src/fan/table.js';
import { DROP_REASONS } from '../../src/wire/drops.js';
import { decapsulate, encapsulate } from '../../src/wire/ipip.js';
import { u16, u32 } from '../../src/wire/ipv4.js';
import { ipv4Packet, withHeadroom } from '../helpers/packets.js';
import { refFan, refIsLocal, refSenderOwns } from '../helpers/fan-reference.js';
import { refIpv4HeaderVerifies } from '../helpers/inet-checksum.js';

const A = ip('198.18.0.28');
const B = ip('198.18.0.27');
const fanB = new FanTable([parseFan('250.0.0.0/8', '198.18.0.27/16', {}, () => [])]);
const REF_B = refFan('250.0.0.0/8', '198.18.0.27/16');
const TOTAL = 1_000_000;
const seen = new Map<number, number>();

/** Check one packet; returns nothing, throws (fails the test) if a promise is broken. */
function check(b: Uint8Array, len: number): void {
  const r = decapsulate(b, 0, len, fanB);
  if (r < 0) {
    if (-r < 1 || -r > DROP_REASONS.length) throw new Error(`unknown drop code ${r}`);
    seen.set(-r, (seen.get(-r) ?? 0) + 1);
    return;
  }
  const ilen = len - r;
  if (r < 20 || ilen < 20) throw new Error(`inner offset ${r} out of range`);
  if (u16(b, r + 2) !== ilen || b[r] >>> 4 !== 4 || !refIpv4HeaderVerifies(b, r)) throw new Error('accepted a bad inner header');
  // Judged by the Fan rule written again in the test helpers, not by the FanTable under test.
  if (!refSenderOwns(REF_B, u32(b, r + 12), u32(b, 12))) throw new Error('accepted a spoofed source');
  if (!refIsLocal(REF_B, u32(b, r + 16))) throw new Error('accepted a non-local destination');
  seen.set(0, (seen.get(0) ?? 0) + 1);
}

describe('decapsulation fuzz', () => {
  it(`survives ${TOTAL.toLocaleString('en')} generated and mutated packets, dropping each bad one by reason`, () => {
    let count = 0;
    // 1. Valid packets from plausible and implausible senders, then byte mutations (mutate in place, many per base).
    const base = fc.record({
      s: fc.integer({ min: 0, max: 255 }), sHost: fc.oneof({ arbitrary: fc.constant(28), weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 1 }),
      d: fc.integer({ min: 0, max: 255 }), dHost: fc.oneof({ arbitrary: fc.constant(27), weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 255 }), weight: 1 }),
      outerSrc: fc.oneof({ arbitrary: fc.constant(A), weight: 4 }, { arbitrary: fc.constantFrom(B, ip('198.18.0.66'), ip('198.18.0.99'), ip('192.0.2.1')), weight: 1 }), payload: fc.integer({ min: 0, max: 1400 }),
      flags: fc.integer({ min: 0, max: 7 }), tos: fc.integer({ min: 0, max: 255 }), ttl: fc.integer({ min: 0, max: 64 }),
    });
    const mutations = fc.array(fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 0, maxLength: 4 });
    const cut = fc.option(fc.nat(), { freq: 4 });
    fc.assert(
      fc.property(base, fc.array(fc.tuple(mutations, cut), { minLength: 50, maxLength: 50 }), (p, muts) => {
        const inner = ipv4Packet({
          src: (ip('250.0.0.0') | (p.sHost << 8) | p.s) >>> 0, dst: (ip('250.0.0.0') | (p.dHost << 8) | p.d) >>> 0,
          tos: p.tos, ttl: p.ttl, mf: (p.flags & 1) === 1, df: (p.flags & 2) === 2, payload: new Uint8Array(p.payload),
        });
        const clean = withHeadroom(inner);
        encapsulate(clean, 20, inner.length, p.outerSrc, B, 64, 1);
        check(clean.slice(), clean.length);
        count++;
        const work = new Uint8Array(clean.length);
        for (const [ms, c] of muts) {
          work.set(clean);
          for (const m of ms) work[m.at % work.length] ^= m.xor;
          const len = c === null ? work.length : c % (work.length + 1);
          check(work, len);
          count++;
        }
      }),
      { numRuns: Math.ceil(TOTAL / 51) },
    );
    // 2. Pure noise of every short length.
    const noise = new Uint8Array(2048);
    let x = 0x9e3779b9;
    for (let k = 0; k < 20_000; k++) {
      for (let i = 0; i < noise.length; i++) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
        noise[i] = x & 255;
      }
      noise[0] = 0x45;
      noise[9] = 4;
      check(noise, k % 200);
      count++;
    }
    expect(count).toBeGreaterThanOrEqual(TOTAL);
    // The generator reaches deep: valid packets are accepted and most checks fire at least once.
    expect(seen.get(0) ?? 0).toBeGreaterThan(0);
    expect(seen.size).toBeGreaterThan(15);
    console.log(`fuzz: ${count} packets; accepted ${seen.get(0)}; drops by reason: ${[...seen].filter(([k]) => k > 0).map(([k, v]) => `${DROP_REASONS[k - 1][0]}=${v}`).join(' ')}`);
  }, 120_000);
});
