import { describe, expect, it } from 'vitest';
import { isoTime } from '../../src/control/iso-time.js';

describe('isoTime (the daemon timestamps without ICU)', () => {
  it('writes what toISOString writes', () => {
    const times = [
      0, 1, 999, 1000, 59_999, 86_399_999, Date.UTC(2000, 1, 29, 23, 59, 59, 999), Date.UTC(1999, 11, 31, 23, 59, 59, 1),
      Date.UTC(2026, 11, 6, 6, 23, 39, 619), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(123, 0, 1), Date.now(),
    ];
    for (let i = 0; i < 2000; i++) times.push(Math.floor(Math.random() * Date.UTC(9999, 11, 31)));
    for (const t of times) expect(isoTime(t), String(t)).toBe(new Date(t).toISOString());
  });

  it('is now by default', () => {
    const before = Date.now();
    const t = Date.parse(isoTime());
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Date.now());
  });
});
