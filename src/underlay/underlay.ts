/**
 * The underlay boundary: how encapsulated packets leave this host and arrive, chosen once when a worker
 * starts (in the manner of wireguard-go's conn.Bind). The data plane hands an underlay a read batch and
 * its plan, and gets back received outer packets; it never knows which one it has.
 *
 *  - raw.ts: the raw IP-in-IP socket, both ways (every packet through the kernel's IP output: --send raw,
 *    and every other underlay's fallback);
 *  - gso.ts: TX GSO (--send gso, the default): TCP super-packets leave whole by MAC for the kernel to
 *    cut; everything else, and everything received, through raw.ts.
 */
import type { EgressBatch, PacketBatch, RoutePlan } from '../io/batch.js';
import { C_DROPS, C_TX_PACKETS } from '../io/counters.js';
import { Drop } from '../wire/drops.js';

/** Tries, and the wait between them (ms), while a socket's send buffer is full; what is left then is lost. */
export const SEND_TRIES = 50;
export const SEND_WAIT_MS = 2;

/** Counts packets a send lost (refused, or never taken): tx-send-error, and off the tx count. */
export function countSendLosses(c: Float64Array, lost: number): void {
  if (lost !== 0) {
    c[C_DROPS + Drop['tx-send-error']] += lost;
    c[C_TX_PACKETS] -= lost;
  }
}

export interface Underlay {
  /** The descriptor that becomes readable when packets arrive (the worker polls it). */
  readonly fd: number;
  /**
   * Encapsulates and sends packets [0, n) of `batch` whose plan verdict is 0, from plan.src[i] to
   * plan.dst[i], in the order they were read; counts what left and what could not.
   */
  send(batch: EgressBatch, plan: RoutePlan, n: number): void;
  /**
   * Receives what has arrived, up to a batch, into `into.received` (outer packets, outer header first;
   * addresses[i] = the outer source). Returns the count.
   */
  receive(into: PacketBatch): number;
  close(): void;
}
