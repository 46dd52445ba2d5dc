/**
 * Per-worker counters in shared memory: each worker is the only writer of its own row, the main thread
 * reads all rows (for `show`, `stats`, metrics). Float64 cells: exact integers up to 2^53, and aligned
 * 8-byte stores that a reader never sees torn on the platforms Node runs on.
 */
import { DROP_REASONS, DROP_SLOTS, type DropName } from '../wire/drops.js';

export const C_TX_PACKETS = 0; // encapsulated and handed to the underlay (TX GSO frames: the segments the kernel cuts)
export const C_TX_BYTES = 1; //   inner bytes of those
export const C_RX_PACKETS = 2; // decapsulated and written to the TUN
export const C_RX_BYTES = 3; //   inner bytes of those
export const C_TX_BATCHES = 4; // TUN reads that returned packets
export const C_RX_BATCHES = 5; // socket receives that returned packets
export const C_RESTARTS = 6; //  times this worker slot was started again after a death
export const C_TX_LINK = 7; //   of C_TX_PACKETS, those that left by MAC (TX GSO's segments)
export const C_BUSY_POLLS = 8; // waits that looked again before sleeping (up --busy-poll)
export const C_BUSY_POLL_HITS = 9; // of those, the ones that found packets while looking, without a sleep
export const C_TX_GSO = 10; //   frames sent whole for the kernel to cut (TX GSO); their segments count in C_TX_PACKETS and C_TX_LINK
export const C_DROPS = 11; //    drops by reason: C_DROPS + code (codes start at 1)
export const ROW = C_DROPS + DROP_SLOTS;

export interface CounterSnapshot {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  txBatches: number;
  /** Of txPackets, those that left by MAC: the segments of TX GSO's whole frames. */
  txLinkPackets: number;
  rxBatches: number;
  restarts: number;
  /** Waits that looked again before sleeping (up --busy-poll, src/dataplane/busy-poll.ts). */
  busyPolls: number;
  /** Of busyPolls, those that found packets while the worker looked, without a sleep: wake-ups saved. */
  busyPollHits: number;
  /** Super-packets sent whole, for the kernel to cut (TX GSO, up --send gso or packet, with offloads); their segments count in txPackets. */
  txGsoFrames: number;
  drops: Partial<Record<DropName, number>>;
  dropsTotal: number;
}

/** One SharedArrayBuffer with a row per worker. */
export class CounterTable {
  readonly cells: Float64Array;
  constructor(
    readonly workers: number,
    readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(workers * ROW * 8),
  ) {
    this.cells = new Float64Array(buffer);
  }

  /** The row of worker i, as a Float64Array view the worker increments. */
  row(i: number): Float64Array {
    return new Float64Array(this.buffer, i * ROW * 8, ROW);
  }

  snapshot(i: number): CounterSnapshot {
    return snapshotOf(this.row(i));
  }

  total(): CounterSnapshot {
    const sum = new Float64Array(ROW);
    for (let w = 0; w < this.workers; w++) {
      const r = this.row(w);
      for (let k = 0; k < ROW; k++) sum[k] += r[k];
    }
    return snapshotOf(sum);
  }
}

function snapshotOf(r: Float64Array): CounterSnapshot {
  const drops: Partial<Record<DropName, number>> = {};
  let dropsTotal = 0;
  DROP_REASONS.forEach(([name], i) => {
    const v = r[C_DROPS + i + 1];
    dropsTotal += v;
    if (v) drops[name] = v;
  });
  return {
    txPackets: r[C_TX_PACKETS], txBytes: r[C_TX_BYTES], rxPackets: r[C_RX_PACKETS], rxBytes: r[C_RX_BYTES],
    txBatches: r[C_TX_BATCHES], txLinkPackets: r[C_TX_LINK], rxBatches: r[C_RX_BATCHES], restarts: r[C_RESTARTS],
    busyPolls: r[C_BUSY_POLLS], busyPollHits: r[C_BUSY_POLL_HITS], txGsoFrames: r[C_TX_GSO], drops, dropsTotal,
  };
}
