/**
 * Ingress, check and plan (pure: bytes in, inner packets out; no device, no socket): each outer packet the
 * underlay received is checked and decapsulated in place (wire/ipip.ts's decapsulate: headers, the fan
 * mapping's anti-spoofing, RFC 6040 ECN); what passes is listed for the TUN device to write, what does
 * not is counted under its reason (and copied to the trace, as it arrived, with that reason).
 */
import type { PacketList } from '../io/batch.js';
import { C_DROPS, C_RX_BYTES, C_RX_PACKETS } from '../io/counters.js';
import type { TraceTap } from '../io/trace-ring.js';
import type { FanTable } from '../fan/table.js';
import { Drop } from '../wire/drops.js';
import { decapsulate } from '../wire/ipip.js';

/**
 * How a fan type checks and strips one arrival: the offset of what goes to the device, or a negative
 * drop code. `param` is the type's setting (IP-in-IP: the policy bits; VXLAN: the VNI); `outerSrc` the
 * sender as the socket reported it (int32).
 */
export type DecapFn = (b: Uint8Array, off: number, len: number, fans: FanTable, param: number, outerSrc: number) => number;

/** IP-in-IP: the outer header is part of what arrived, so the socket's sender is not needed. */
export const ipipDecap: DecapFn = (b, off, len, fans, policy) => decapsulate(b, off, len, fans, policy);

/**
 * Checks received packets [0, n) of `rx` (in `b`; a length above `capacity` means the slot cut it) and
 * pushes each inner packet that passes to `inner` (emptied first; its capacity must be at least n).
 */
export function planIngress(
  b: Uint8Array, rx: PacketList, n: number, capacity: number, fans: FanTable, param: number, inner: PacketList,
  c: Float64Array, tap: TraceTap, decap: DecapFn = ipipDecap,
): void {
  inner.count = 0;
  for (let i = 0; i < n; i++) {
    const off = rx.offsets[i];
    const len = rx.lengths[i];
    if (len > capacity) {
      c[C_DROPS + Drop['rx-truncated-inner']]++;
      if (tap.on) tap.inDropped(b, off, capacity, Drop['rx-truncated-inner'], rx.addresses[i] | 0);
      continue;
    }
    // Copied as it arrived (decapsulate rewrites the inner ECN field), published with the verdict.
    const traced = tap.on && tap.beginIn(b, off, len, rx.addresses[i] | 0);
    const at = decap(b, off, len, fans, param, rx.addresses[i] | 0);
    if (traced) tap.commitIn(at < 0 ? -at : 0);
    if (at < 0) {
      c[C_DROPS - at]++;
      continue;
    }
    const ilen = len - (at - off);
    c[C_RX_PACKETS]++;
    c[C_RX_BYTES] += ilen;
    inner.push(at, ilen);
  }
}

/** Counts what the TUN device did not take of a write (write()'s result when not -1). */
export function countWriteLosses(lost: number, c: Float64Array): void {
  if (lost > 0) {
    c[C_DROPS + Drop['rx-write-error']] += lost;
    c[C_RX_PACKETS] -= lost;
  }
}
