/** Packet builders for tests: the same ones the lab's tools use. */
export * from '../../src/wire/build.js';

/** Pseudo-random bytes from a seed (xorshift32; fast for 64 KiB payloads). */
export function bytesFrom(seed: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x;
  }
  return b;
}
