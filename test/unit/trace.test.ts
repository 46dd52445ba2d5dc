/** The trace ring between a worker and the daemon, and the lines `userfan trace` prints. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TRACE_IN, TRACE_OUT, TRACE_SNAPLEN, TraceRing, type TraceRecord } from '../../src/io/trace-ring.js';
import { describePacket } from '../../src/debug/trace.js';
import { Drop } from '../../src/wire/drops.js';
import { encapsulate } from '../../src/wire/ipip.js';
import { parseIPv4 } from '../../src/fan/addr.js';
import { ipv4Packet, udpDatagram } from '../helpers/packets.js';

const ip = parseIPv4;

function drainAll(r: TraceRing): TraceRecord[] {
  const out: TraceRecord[] = [];
  r.drain((x) => out.push(x));
  return out;
}

describe('TraceRing', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('publishes a copy only on commit, with its direction, verdict and wall-clock time, as it was before the worker changed it', () => {
    // A clock the test sets: 2030-01-02 03:04:05.678 UTC, then 0.25 ms later the copy is taken.
    const at = Date.UTC(2030, 0, 2, 3, 4, 5, 678);
    vi.useFakeTimers({ toFake: ['performance'], now: at });
    vi.advanceTimersByTime(0.25);
    const r = new TraceRing(TraceRing.buffer());
    const b = Uint8Array.from({ length: 100 }, (_, i) => i);
    expect(r.begin(b, 10, 50, TRACE_IN)).toBe(true);
    b[10] = 0xff; // the worker rewrites the packet after the copy
    expect(drainAll(r)).toEqual([]);
    r.commit(Drop['rx-spoofed-source']);
    const [rec, ...rest] = drainAll(r);
    expect(rest).toEqual([]);
    expect(Array.from(rec.bytes)).toEqual(Array.from({ length: 50 }, (_, i) => i + 10));
    expect([rec.originalLength, rec.direction, rec.verdict]).toEqual([50, TRACE_IN, Drop['rx-spoofed-source']]);
    // pcap time: whole seconds since 1970 and the microseconds within that second, of when begin() ran.
    expect([rec.seconds, rec.micros]).toEqual([Math.floor(at / 1000), 678_250]);
  });

  it('cuts long packets at the snap length and keeps the original length', () => {
    const r = new TraceRing(TraceRing.buffer());
    r.append(new Uint8Array(65000).fill(7), 0, 65000, TRACE_OUT, 0);
    const [rec] = drainAll(r);
    expect([rec.bytes.length, rec.originalLength, rec.verdict]).toEqual([TRACE_SNAPLEN, 65000, 0]);
  });

  it('never blocks the producer: a full ring drops copies and counts them, and frees up when drained', () => {
    const r = new TraceRing(TraceRing.buffer());
    const b = new Uint8Array(64);
    let n = 0;
    for (let i = 0; i < 5000; i++) {
      b[0] = i & 0xff;
      if (r.begin(b, 0, 64, TRACE_OUT)) {
        r.commit(0);
        n++;
      }
    }
    expect(r.dropped).toBe(5000 - n);
    const recs = drainAll(r);
    expect(recs.length).toBe(n);
    // In order, the first n.
    expect(recs.map((x) => x.bytes[0])).toEqual(Array.from({ length: n }, (_, i) => i & 0xff));
    r.append(b, 0, 64, TRACE_OUT, 0);
    expect(drainAll(r).length).toBe(1);
    expect(r.dropped).toBe(5000 - n);
  });
});

describe('describePacket', () => {
  it('shows the outer and the inner packet, and why it was dropped', () => {
    const inner = ipv4Packet({ src: ip('250.0.28.5'), dst: ip('250.0.27.3'), protocol: 17, payload: udpDatagram(ip('250.0.28.5'), ip('250.0.27.3'), 1, 2, new Uint8Array(10)) });
    const b = new Uint8Array(20 + inner.length);
    b.set(inner, 20);
    encapsulate(b, 20, inner.length, ip('198.18.0.99'), ip('198.18.0.27'), 64, 1);
    expect(describePacket(b, 0, 42, TRACE_IN, Drop['rx-spoofed-source'])).toBe(
      `00:00:00.000042 in  198.18.0.99 > 198.18.0.27 IPIP | 250.0.28.5 > 250.0.27.3 UDP length ${inner.length}  DROPPED rx-spoofed-source`,
    );
    expect(describePacket(inner, 1, 0, TRACE_OUT, Drop['tx-no-fan'])).toBe(`00:00:01.000000 out 250.0.28.5 > 250.0.27.3 UDP length ${inner.length}  DROPPED tx-no-fan`);
  });
});
