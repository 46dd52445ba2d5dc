import { native } from './native.js';

/**
 * Ranges to sum in one native call (the addon's sum16Batch: the same folded sums as sum16, computed in C,
 * where the per-call cost is paid once for up to `capacity` ranges):
 *
 *   batch.count = 0; batch.add(off, len) …; batch.run(b); … batch.sums[i]
 *
 * Allocation-free after construction.
 */
export class SumBatch {
  readonly offs: Uint32Array;
  readonly lens: Uint32Array;
  /** After run(): sums[i] = sum16(b, offs[i], lens[i]). */
  readonly sums: Uint32Array;
  count = 0;

  constructor(readonly capacity: number) {
    this.offs = new Uint32Array(capacity);
    this.lens = new Uint32Array(capacity);
    this.sums = new Uint32Array(capacity);
  }

  /** Adds the range b[off, off+len); returns its index. The caller keeps count below capacity. */
  add(off: number, len: number): number {
    const i = this.count++;
    this.offs[i] = off;
    this.lens[i] = len;
    return i;
  }

  /** Sums every range added since count was last set to 0. */
  run(b: Uint8Array): void {
    if (this.count > 0) native().sum16Batch(b, this.offs, this.lens, this.count, this.sums);
  }
}
