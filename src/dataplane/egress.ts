/**
 * Egress, map and plan (pure: bytes in, verdicts out; no device, no socket): for each packet the TUN
 * read, the fan mapping's answer (wire/ipip.ts's egressRoute): the underlay host that owns its
 * destination, and this host's address in that fan as the outer source; or why it is dropped, counted
 * under that reason (and copied to the trace, when one is attached).
 */
import type { PacketList, RoutePlan } from '../io/batch.js';
import { C_DROPS } from '../io/counters.js';
import type { TraceTap } from '../io/trace-ring.js';
import type { FanTable } from '../fan/table.js';
import { Drop } from '../wire/drops.js';
import { egressRoute, ROUTE_DST, ROUTE_SRC } from '../wire/ipip.js';

/** How a fan type maps one packet or frame: wire/ipip.ts's egressRoute, wire/vxlan.ts's vxlanRoute. */
export type RouteFn = (b: Uint8Array, off: number, len: number, fans: FanTable, route: Int32Array) => number;

/**
 * Plans packets [0, n) of `packets` (in `b`; gsoSize[i] < 0 marks one the read could not take whole):
 * plan.verdict[i] = 0 with plan.src[i] → plan.dst[i], or the Drop code it was counted under in `c`.
 * `route` is a 2-slot scratch array (no allocation per packet); `routeOf` the fan type's mapping (one
 * per worker, so the call stays monomorphic).
 */
export function planEgress(
  b: Uint8Array, packets: PacketList, gsoSize: Int32Array, n: number, fans: FanTable, plan: RoutePlan, route: Int32Array,
  c: Float64Array, tap: TraceTap, routeOf: RouteFn = egressRoute,
): void {
  for (let i = 0; i < n; i++) {
    const off = packets.offsets[i];
    const len = packets.lengths[i];
    const drop = gsoSize[i] < 0 ? Drop['tx-malformed'] : routeOf(b, off, len, fans, route);
    plan.verdict[i] = drop;
    if (drop !== 0) {
      c[C_DROPS + drop]++;
      if (tap.on) tap.dropOut(b, off, len, drop);
      continue;
    }
    plan.src[i] = route[ROUTE_SRC];
    plan.dst[i] = route[ROUTE_DST];
  }
}
