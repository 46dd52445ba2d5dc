/**
 * Busy polling's decision (src/dataplane/busy-poll.ts): a worker spins before sleeping only after
 * handling packets that came after a long wait, while it has spent most of its time waiting; never
 * when idle, never under load, never when turned off. Times are µs on a made-up clock.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BusyPoll, IDLE_SHARE, MAX_BUSY_POLL_US, WINDOW_US } from '../../src/dataplane/busy-poll.js';

/** Drives a BusyPoll along a clock: wait(us) then work(us), as a worker's loop does. */
function driver(spinUs: number) {
  const b = new BusyPoll(spinUs);
  const times = new Float64Array(2);
  let now = 0;
  return {
    b,
    /** A wait that lasts us; then, if `found`, a round that handled packets for workUs. */
    wait(us: number, found = true, workUs = 10) {
      times[0] = now;
      times[1] = now + us;
      b.waited(times);
      now += us;
      if (found) {
        b.worked();
        now += workUs;
      }
    },
  };
}

describe('busy polling', () => {
  it('spins after sparse traffic: a packet after a long wait, handled, may be followed by its reply', () => {
    const d = driver(200);
    d.wait(20_000); // a quiet first window, then the echo request
    expect(d.b.idleShare).toBeGreaterThanOrEqual(IDLE_SHARE);
    expect(d.b.spins).toBe(true);
    // The spin caught the reply 70 µs later: after handling it, sleep at once (no second spin).
    d.wait(70);
    expect(d.b.spins).toBe(false);
    // The next request, 10 ms later: spin again.
    d.wait(10_000);
    expect(d.b.spins).toBe(true);
  });

  it('never spins when idle: waits that find nothing arm nothing', () => {
    const d = driver(200);
    for (let i = 0; i < 100; i++) {
      d.wait(20_000, false);
      expect(d.b.spins).toBe(false);
    }
  });

  it('never spins under load, even after a wait longer than the spin', () => {
    const d = driver(200);
    // Busy 90% of the time: short waits between long rounds.
    for (let i = 0; i < 100; i++) d.wait(20, true, 180);
    expect(d.b.idleShare).toBeLessThan(IDLE_SHARE);
    d.wait(500); // a gap in the load
    expect(d.b.spins).toBe(false);
    // Once a whole window has gone by quietly, the load is over, and it spins again.
    d.wait(WINDOW_US, false);
    d.wait(WINDOW_US, false);
    d.wait(1000);
    expect(d.b.spins).toBe(true);
  });

  it('is off at 0, whatever the traffic', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 50_000 }), fc.boolean(), fc.integer({ min: 0, max: 5000 })), { maxLength: 200 }), (steps) => {
        const d = driver(0);
        for (const [w, found, work] of steps) {
          d.wait(w, found, work);
          expect(d.b.spins).toBe(false);
        }
      }),
    );
  });

  it('spins only right after packets, only after a wait at least as long as the spin, only when mostly idle', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 2000 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 30_000 }), fc.boolean(), fc.integer({ min: 0, max: 5000 })), { maxLength: 200 }),
        (spinUs, steps) => {
          const d = driver(spinUs);
          for (const [w, found, work] of steps) {
            d.wait(w, found, work);
            if (d.b.spins) {
              expect(found).toBe(true);
              expect(w).toBeGreaterThanOrEqual(spinUs);
              expect(d.b.idleShare).toBeGreaterThanOrEqual(IDLE_SHARE);
            }
          }
        },
      ),
    );
  });

  it('refuses a spin that is not a whole number of µs from 0 to the maximum', () => {
    for (const bad of [-1, 1.5, MAX_BUSY_POLL_US + 1, Number.NaN]) expect(() => new BusyPoll(bad), String(bad)).toThrow(/whole number of µs, 0 to 10000/);
    expect(new BusyPoll(MAX_BUSY_POLL_US).spinUs).toBe(MAX_BUSY_POLL_US);
  });
});
