/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624), over bytes in a Uint8Array.
 * Allocation-free; the per-packet path uses these.
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
