/**
 * The data plane's pure per-batch steps, without devices: planEgress (map and plan) and planIngress
 * (check and plan). Expected values are worked out here from the Fan rule (250.0.0.0/8 over
 * 198.18.0.0/16: host 198.18.0.A owns 250.0.A.0/24) and RFC 2003's header, not by the code under test.
 */
import { describe, expect, it } from 'vitest';
import { parseIPv4 } from '../../src/fan/addr.js';
import { Fan } from '../../src/fan/fan.js';
import { FanTable } from '../../src/fan/table.js';
import { PacketList, RoutePlan } from '../../src/io/batch.js';
import { C_DROPS, C_RX_BYTES, C_RX_PACKETS, ROW } from '../../src/io/counters.js';
import { TraceRing, TraceTap, type TraceRecord } from '../../src/io/trace-ring.js';
import { planEgress } from '../../src/dataplane/egress.js';
import { planIngress } from '../../src/dataplane/ingress.js';
import { Drop } from '../../src/wire/drops.js';
import { icmpEcho, ipv4Packet } from '../helpers/packets.js';

const ip = parseIPv4;
const A = ip('198.18.0.28');
const fans = new FanTable([new Fan({ net: ip('250.0.0.0'), len: 8 }, { net: ip('198.18.0.0'), len: 16 }, A)]);
const HEAD = 64;
const SLOT = 2048;

/** Packets laid out as a read or receive puts them: packet i at i * SLOT + HEAD. */
function batchOf(packets: Uint8Array[]): { b: Uint8Array; list: PacketList } {
  const b = new Uint8Array(packets.length * SLOT + SLOT);
  const list = new PacketList(b, 64);
  packets.forEach((p, i) => {
    b.set(p, i * SLOT + HEAD);
    list.push(i * SLOT + HEAD, p.length);
  });
  return { b, list };
}

const echo = (src: string, dst: string) => ipv4Packet({ src: ip(src), dst: ip(dst), protocol: 1, payload: icmpEcho(1, 1) });

/** An IP-in-IP packet as RFC 2003 has it: outer header (protocol 4, checksum) in front of `inner`. */
const ipip = (outerSrc: string, outerDst: string, inner: Uint8Array) => ipv4Packet({ src: ip(outerSrc), dst: ip(outerDst), protocol: 4, payload: inner });

const signed = (x: number) => x | 0;

describe('planEgress', () => {
  it('maps each destination to the host that owns its slice, with this host as the outer source', () => {
    const { b, list } = batchOf([echo('250.0.28.3', '250.0.27.3'), echo('250.0.28.3', '250.0.200.9'), echo('250.0.28.4', '250.0.1.1')]);
    const plan = new RoutePlan(64);
    const c = new Float64Array(ROW);
    planEgress(b, list, new Int32Array(64), 3, fans, plan, new Int32Array(2), c, new TraceTap(undefined));
    expect([...plan.verdict.subarray(0, 3)]).toEqual([0, 0, 0]);
    expect([...plan.dst.subarray(0, 3)]).toEqual([ip('198.18.0.27'), ip('198.18.0.200'), ip('198.18.0.1')].map(signed));
    expect([...plan.src.subarray(0, 3)]).toEqual([A, A, A].map(signed));
    expect(c.every((v) => v === 0)).toBe(true);
  });

  it('drops, counts by reason and traces what it cannot send', () => {
    const notV4 = echo('250.0.28.3', '250.0.27.3');
    notV4[0] = 0x65;
    const { b, list } = batchOf([
      echo('250.0.28.3', '8.8.8.8'), // outside every fan
      echo('250.0.28.3', '250.0.28.9'), // this host's own slice
      notV4,
      echo('250.0.28.3', '250.0.27.3'), // fine, but the read marked it malformed
      echo('250.0.28.3', '250.0.27.3'),
    ]);
    const gso = new Int32Array(64);
    gso[3] = -1;
    const plan = new RoutePlan(64);
    const c = new Float64Array(ROW);
    const ring = new TraceRing(TraceRing.buffer());
    const tap = new TraceTap(ring);
    tap.on = true;
    planEgress(b, list, gso, 5, fans, plan, new Int32Array(2), c, tap);
    const want = [Drop['tx-no-fan'], Drop['tx-local-destination'], Drop['tx-not-ipv4'], Drop['tx-malformed'], 0];
    expect([...plan.verdict.subarray(0, 5)]).toEqual(want);
    for (const d of want.slice(0, 4)) expect(c[C_DROPS + d], `drop ${d}`).toBe(1);
    const traced: TraceRecord[] = [];
    ring.drain((r) => traced.push({ ...r, bytes: Uint8Array.from(r.bytes) }));
    expect(traced.map((r) => r.verdict)).toEqual(want.slice(0, 4));
    expect(traced[0].bytes).toEqual(echo('250.0.28.3', '8.8.8.8'));
  });
});

describe('planIngress', () => {
  const inner = echo('250.0.27.3', '250.0.28.3');
  it('decapsulates what passes the checks and lists the inner packets for the TUN', () => {
    const { b, list } = batchOf([ipip('198.18.0.27', '198.18.0.28', inner), ipip('198.18.0.27', '198.18.0.28', echo('250.0.27.9', '250.0.28.1'))]);
    const out = new PacketList(b, 64);
    const c = new Float64Array(ROW);
    planIngress(b, list, 2, SLOT - HEAD, fans, 0, out, c, new TraceTap(undefined));
    expect(out.count).toBe(2);
    expect(out.offsets[0]).toBe(HEAD + 20);
    expect(out.packet(0)).toEqual(inner);
    expect(c[C_RX_PACKETS]).toBe(2);
    expect(c[C_RX_BYTES]).toBe(inner.length * 2);
  });

  it('drops under its reason a spoofed inner source, a packet for another host, a truncated one, a non-IPIP one', () => {
    const { b, list } = batchOf([
      ipip('198.18.0.27', '198.18.0.28', echo('250.0.26.3', '250.0.28.3')), // 250.0.26.0/24 is not 198.18.0.27's
      ipip('198.18.0.27', '198.18.0.28', echo('250.0.27.3', '250.0.29.3')), // for 198.18.0.29's slice
      ipip('198.18.0.27', '198.18.0.28', inner), // cut by its slot (capacity below)
      ipv4Packet({ src: ip('198.18.0.27'), dst: A, protocol: 17, payload: inner }),
    ]);
    list.lengths[2] = SLOT; // as a receive reports a datagram longer than its slot
    const out = new PacketList(b, 64);
    const c = new Float64Array(ROW);
    planIngress(b, list, 4, SLOT - HEAD, fans, 0, out, c, new TraceTap(undefined));
    expect(out.count).toBe(0);
    expect(c[C_RX_PACKETS]).toBe(0);
    for (const r of ['rx-spoofed-source', 'rx-not-local', 'rx-truncated-inner', 'rx-not-ipip'] as const) expect(c[C_DROPS + Drop[r]], r).toBe(1);
  });
});
