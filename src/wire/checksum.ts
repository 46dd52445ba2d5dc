/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624), over bytes in a Uint8Array: the
 * one checksum module. onesSum reads byte pairs (headers, short ranges); sum16 reads 32-bit words (payloads);
 * src/io/sum-batch.ts sums whole batches of ranges in the addon. Allocation-free.
 */

/** One's-complement sum of 16-bit big-endian words of buf[off, off+len), not folded or complemented. */
export function onesSum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let sum = initial;
  const end = off + (len & ~1);
  let i = off;
  // Unrolled by 8 bytes: four 16-bit words per step. 32-bit JS numbers hold the sum of up to
  // 2^16 words before folding is needed; we fold every 16 KiB to stay well within range.
  while (i < end) {
    const stop = Math.min(end, i + 16384);
    for (; i + 8 <= stop; i += 8) {
      sum += ((buf[i] << 8) | buf[i + 1]) + ((buf[i + 2] << 8) | buf[i + 3]) + ((buf[i + 4] << 8) | buf[i + 5]) + ((buf[i + 6] << 8) | buf[i + 7]);
    }
    for (; i < stop; i += 2) sum += (buf[i] << 8) | buf[i + 1];
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  if (len & 1) sum += buf[off + len - 1] << 8;
  return sum;
}

/** Fold a one's-complement sum to 16 bits. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** RFC 1071 checksum: the complement of the folded one's-complement sum. */
export function checksum(buf: Uint8Array, off: number, len: number): number {
  return ~fold(onesSum(buf, off, len)) & 0xffff;
}

/** True when the bytes, checksum field included, sum to 0xffff (the checksum verifies). */
export function verifies(buf: Uint8Array, off: number, len: number): boolean {
  return fold(onesSum(buf, off, len)) === 0xffff;
}

/**
 * RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered data changes from `oldWord`
 * to `newWord`: HC' = ~(~HC + ~m + m').
 */
export function updateChecksum(oldChecksum: number, oldWord: number, newWord: number): number {
  const sum = (~oldChecksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~fold(sum) & 0xffff;
}

/*
 * sum16: the one's-complement sum four bytes at a time, for payloads (onesSum above reads byte pairs).
 * The aligned middle of the range is read as little-endian 32-bit words through an Int32Array over the
 * same buffer, each added as its two 16-bit halves into int32 accumulators folded every 8192 words:
 * every value stays a small integer, so nothing is allocated even in unoptimized code (whole uint32
 * words summed as float64 are faster while optimized, but after a deoptimization allocate a heap number
 * per addition). Whole batches of ranges are summed in the addon instead (src/io/sum-batch.ts), where
 * one call pays for many; this stays for single packets. docs/performance.md has the figures.
 *
 * Why little-endian words give the same answer (RFC 1071 §2): the one's-complement sum is independent of
 * byte order up to a final byte swap, and of the word width, since 2^16 ≡ 1 (mod 2^16 − 1): a 32-bit word
 * lo + hi·2^16 contributes lo + hi. A byte at an even absolute address is the low byte of its little-endian
 * 16-bit word, at an odd one the high byte; in the big-endian words of a range that starts at an even
 * address it is the other way round, so the sum is swapped back; for a range starting at an odd address
 * the two pairings agree.
 *
 * Allocation-free: the Int32Array views of the last two buffers are cached (a worker alternates between
 * its send and receive buffers).
 */


let buf0: ArrayBufferLike | null = null;
let words0: Int32Array<ArrayBufferLike> = new Int32Array(0);
let buf1: ArrayBufferLike | null = null;
let words1: Int32Array<ArrayBufferLike> = new Int32Array(0);

function wordsOf(buffer: ArrayBufferLike): Int32Array<ArrayBufferLike> {
  if (buffer === buf0) return words0;
  if (buffer === buf1) {
    // Most recent first.
    const w = words1;
    buf1 = buf0;
    words1 = words0;
    buf0 = buffer;
    words0 = w;
    return w;
  }
  buf1 = buf0;
  words1 = words0;
  buf0 = buffer;
  words0 = new Int32Array(buffer, 0, buffer.byteLength >>> 2);
  return words0;
}

/**
 * fold(onesSum(b, off, len)) of checksum.ts, computed 32 bits at a time: the one's-complement sum of the
 * big-endian 16-bit words of b[off, off+len) (an odd last byte padded with zero), folded to 16 bits, not
 * complemented. 0 only when every byte is 0.
 */
export function sum16(b: Uint8Array, off: number, len: number): number {
  const base = b.byteOffset;
  let a = base + off; // absolute address in the buffer
  const end = a + len;
  const startOdd = a & 1;
  let s = 0;
  if (len >= 16) {
    const w = wordsOf(b.buffer);
    // Head: up to 3 bytes, until a is 4-aligned.
    for (; (a & 3) !== 0; a++) s += b[a - base] << ((a & 1) << 3);
    let i = a >>> 2;
    const wend = end >>> 2;
    // 16-bit halves into int32 accumulators, folded every 8192 words (see the top of this file).
    let s1 = 0;
    while (i < wend) {
      const stop = Math.min(wend, i + 8192);
      for (; i + 4 <= stop; i += 4) {
        const x0 = w[i];
        const x1 = w[i + 1];
        const x2 = w[i + 2];
        const x3 = w[i + 3];
        s += (x0 & 0xffff) + (x0 >>> 16) + (x1 & 0xffff) + (x1 >>> 16);
        s1 += (x2 & 0xffff) + (x2 >>> 16) + (x3 & 0xffff) + (x3 >>> 16);
      }
      for (; i < stop; i++) {
        const x = w[i];
        s += (x & 0xffff) + (x >>> 16);
      }
      // Congruent mod 0xffff and still non-zero when non-zero (one's complement: 0xffff, not 0).
      s = (s === 0 ? 0 : ((s - 1) % 0xffff) + 1) + (s1 === 0 ? 0 : ((s1 - 1) % 0xffff) + 1);
      s1 = 0;
    }
    a = i << 2;
  }
  for (; a < end; a++) s += b[a - base] << ((a & 1) << 3);
  // Fold: the value mod 0xffff, with a non-zero sum never folding to 0 (one's complement has no +0 here).
  let r = s % 0xffff;
  if (r === 0 && s !== 0) r = 0xffff;
  return startOdd ? r : ((r & 0xff) << 8) | (r >>> 8);
}
